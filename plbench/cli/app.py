"""The Typer applications and the error boundary shared by every command module."""

from __future__ import annotations

import functools
from typing import Any, Callable

import typer

from plbench.errors import InputError

app = typer.Typer(
    name="plbench",
    help="Benchmark multi-label image classification with partial annotations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Generate, inspect and cache datasets.", no_args_is_help=True)
export_app = typer.Typer(help="Export run results to other tools.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(export_app, name="export")


def fail(message: str, code: int = 2) -> None:
    """Print a one-paragraph error to stderr and exit with ``code`` (no traceback)."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def command(target: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable:
    """Register a function as a command of ``target``, turning :class:`InputError` into exit code 2."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except InputError as e:
                fail(e.message)

        target.command(name, **kwargs)(wrapper)
        return fn

    return deco
