"""MkDocs hook: the click command behind plbench's typer app, for the generated CLI reference.

docs/cli.md renders it with mkdocs-click (``:module: plbench_cli``, ``:command: cli``). MkDocs executes this
file before any page is rendered, under the name it has in mkdocs.yml; registering it as ``plbench_cli``
lets mkdocs-click import it. The reference is built from the app itself: a command added to
``plbench.cli.app`` appears on the page without being written twice.
"""

from __future__ import annotations

import sys

import typer

from plbench.cli import app

MODULE = "plbench_cli"

cli = typer.main.get_command(app)
sys.modules.setdefault(MODULE, sys.modules[__name__])
