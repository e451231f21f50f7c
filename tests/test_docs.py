"""The documentation site: the CLI reference is generated from the typer app and shows every command and
option; every page is in the navigation; every registered loss has its page. (`mkdocs build --strict` in
.ci/run checks links and API references.)"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import click
import pytest
import typer

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _mkdocs_config() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def _nav_files(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [f for v in nav.values() for f in _nav_files(v)]
    return [f for item in nav for f in _nav_files(item)]


def _directive_options() -> dict[str, str]:
    text = (DOCS / "cli.md").read_text()
    block = text.split("::: mkdocs-click", 1)[1]
    return dict(re.findall(r"^\s+:(\w+):\s*(.+?)\s*$", block, re.M))


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            out += _commands(sub, (*path, name))
    return out


def test_cli_reference_covers_every_command_and_option():
    mkdocs_click = pytest.importorskip("mkdocs_click._docs")
    from plbench.cli import app

    options = _directive_options()
    assert (options["module"], options["command"], options["prog_name"]) == ("plbench_cli", "cli", "plbench")
    # the hook mkdocs.yml names is what mkdocs-click imports: the click command of the app itself
    config = _mkdocs_config()
    (hook_path,) = config["hooks"]
    spec = importlib.util.spec_from_file_location(hook_path, REPO / hook_path)
    hook = importlib.util.module_from_spec(spec)
    sys.modules[hook_path] = hook
    try:
        spec.loader.exec_module(hook)
        assert sys.modules[options["module"]] is hook
    finally:
        sys.modules.pop(hook_path, None)
        sys.modules.pop(options["module"], None)
    expected = typer.main.get_command(app)
    assert sorted(hook.cli.commands) == sorted(expected.commands)
    page = "\n".join(mkdocs_click.make_command_docs(
        options["prog_name"], hook.cli, depth=int(options.get("depth", 0)), style=options.get("style", "plain"),
        list_subcommands=options.get("list_subcommands") == "true"))
    headings = {line.lstrip("#").strip() for line in page.splitlines() if line.startswith("#")}
    commands = _commands(expected)
    assert len(commands) > 15
    for path, command in commands:
        assert (path[-1] if path else "plbench") in headings, path
        ctx = click.Context(command)
        for param in command.get_params(ctx):
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and not getattr(param, "hidden", False):
                    assert opt in page, (" ".join(path), opt)  # the table style drops typer's options


def test_every_page_is_in_the_nav_and_every_loss_has_a_page():
    from plbench.losses import list_losses

    config = _mkdocs_config()
    nav = _nav_files(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "hooks" not in p.parts)
    assert sorted(nav) == pages  # no orphan page (mkdocs only logs them) and no missing file
    for name in list_losses():
        assert f"methods/{name}.md" in nav, f"loss {name!r} has no page docs/methods/{name}.md"
        assert f"`--loss {name}`" in (DOCS / "methods" / f"{name}.md").read_text()
