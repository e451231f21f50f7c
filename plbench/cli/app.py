"""The Typer applications and the error boundary shared by every command module."""

from __future__ import annotations

import errno
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


#: OSError numbers that say something about the user's files or disk, not about plbench: a full disk or quota,
#: a read-only or permission-denied folder, a file where a folder is expected (or the reverse).
FILE_SYSTEM_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.ENOTDIR, errno.EISDIR, errno.EEXIST})


def file_system_error(e: OSError) -> InputError:
    """The one-paragraph message for an OSError in :data:`FILE_SYSTEM_ERRORS` (the file and the errno name)."""
    path = e.filename or None
    fix = {errno.ENOSPC: "free disk space or write to another disk (--out)",
           errno.EDQUOT: "free space within your quota or write elsewhere (--out)",
           errno.EFBIG: "write to a file system that allows larger files (--out)"}.get(
        e.errno, "check that the path is a folder you can write (or a file you can read), or choose another one")
    return InputError(path, "file system", f"{e.strerror or e} ({errno.errorcode.get(e.errno, e.errno)})", fix)


def command(target: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable:
    """Register a function as a command of ``target``, turning :class:`InputError` into exit code 2.

    So is an OSError of :data:`FILE_SYSTEM_ERRORS` (a full disk, a folder that cannot be written): an error of
    the user's environment. Every other exception is a bug and keeps its traceback.
    """

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except InputError as e:
                fail(e.message)
            except OSError as e:
                if e.errno not in FILE_SYSTEM_ERRORS:
                    raise
                fail(file_system_error(e).message)

        target.command(name, **kwargs)(wrapper)
        return fn

    return deco
