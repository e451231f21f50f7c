"""User-facing error type: one paragraph naming the file, the field, the problem and the fix.

The CLI catches :class:`InputError`, prints it to stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input (a file, a field in it, or an option).

    Args:
        path: the offending file or folder (or ``None`` when the input is an option).
        field: the field, column, key or option at fault.
        problem: what is wrong, ideally "expected X, but got Y".
        fix: what the user should do.
    """

    def __init__(self, path: str | Path | None, field: str, problem: str, fix: str) -> None:
        self.path = None if path is None else Path(path)
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f"in {self.path}, " if self.path is not None else ""
        return f"Error {where}{self.field}: {self.problem}. Fix: {self.fix}"
