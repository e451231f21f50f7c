"""Progress display for long loops: a tqdm bar on a terminal, a few plain lines anywhere else.

A bar redraws itself with carriage returns; written to a file (CI, Slurm, ``cmd 2>&1 | tee log``)
every redraw becomes a frame, thousands per run. So :func:`progress` draws a bar only when its
stream is a terminal (and, for the process's own stderr, stdout too: ``cmd | tee log`` means the
user keeps a log). Otherwise it writes plain, newline-terminated lines: at most one every
``interval`` seconds while the loop runs, and one when it ends (count, time, rate, postfix), so a
loop that takes less than ``interval`` writes exactly one line.

The environment variable ``PLBENCH_PROGRESS`` overrides the choice: ``bar``, ``lines``, ``off``
or ``auto`` (the default).

Usage, as with tqdm::

    bar = progress(loader, desc="epoch 1/40", unit="batch")
    for batch in bar:
        ...
        bar.set_postfix(loss=f"{loss:.4f}")

    with progress(total=n, desc="caching images", unit="img") as bar:
        bar.update(64)
"""

from __future__ import annotations

import logging
import os
import sys
import time
from enum import Enum
from typing import Any, Callable, Iterable, Iterator, TextIO

log = logging.getLogger(__name__)

ENV_VAR = "PLBENCH_PROGRESS"


class ProgressMode(str, Enum):
    """How a loop's progress is shown."""

    AUTO = "auto"  # BAR on a terminal, LINES elsewhere
    BAR = "bar"  # a tqdm bar (carriage-return frames)
    LINES = "lines"  # plain lines: one per `interval` seconds at most, and a final one
    OFF = "off"  # nothing


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal.

    For the process's own stderr, stdout must be a terminal too: ``cmd | tee log`` or ``cmd > log``
    means the output is being kept, and a bar's frames do not belong in it.
    """
    isatty = getattr(stream, "isatty", None)
    try:
        if not (callable(isatty) and isatty()):
            return False
        if stream is sys.stderr or stream is sys.__stderr__:
            out = sys.stdout
            return bool(out is not None and callable(getattr(out, "isatty", None)) and out.isatty())
        return True
    except (ValueError, OSError):  # a closed stream
        return False


def resolve_mode(stream: Any, mode: ProgressMode | str | None = None) -> ProgressMode:
    """The mode to use on ``stream``: ``mode``, else ``$PLBENCH_PROGRESS``, else auto (never AUTO itself).

    Raises:
        ValueError: an unknown ``mode`` argument (an unknown environment value is logged and ignored).
    """
    if mode is None:
        raw = os.environ.get(ENV_VAR, "").strip().lower()
        try:
            mode = ProgressMode(raw) if raw else ProgressMode.AUTO
        except ValueError:
            log.warning("%s=%r is not one of %s; using auto", ENV_VAR, raw, ", ".join(m.value for m in ProgressMode))
            mode = ProgressMode.AUTO
    else:
        try:
            mode = ProgressMode(mode)
        except ValueError:
            allowed = ", ".join(m.value for m in ProgressMode)
            raise ValueError(f"mode must be one of {allowed}, but got {mode!r}") from None
    if mode is ProgressMode.AUTO:
        return ProgressMode.BAR if is_terminal(stream) else ProgressMode.LINES
    return mode


def format_duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 07 s``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """A progress display with tqdm's interface (iterate, ``update``, ``set_postfix``, ``close``, ``with``).

    Build it with :func:`progress`. Attributes ``n`` (units done) and ``total`` (or ``None``) are
    kept in every mode, so callers may read them even when nothing is shown.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        enabled: bool = True,
        leave: bool = False,
        stream: TextIO | None = None,
        interval: float = 60.0,
        mode: ProgressMode | str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, but got {interval}")
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.interval = interval
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._postfix: dict[str, str] = {}
        self._closed = False
        self._exhausted = False
        self.mode = resolve_mode(self._stream, mode) if enabled else ProgressMode.OFF
        self._bar = None
        if self.mode is ProgressMode.BAR:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=self._stream, dynamic_ncols=True)
        self._start = self._last_line = clock()

    # -- tqdm interface ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress display has no iterable: call update(n) instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
            self._exhausted = True
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this progress display has no total")
        return self.total

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Add ``n`` units done; in lines mode, write a line if ``interval`` seconds passed since the last."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode is ProgressMode.LINES and not self._closed:
            now = self._clock()
            if now - self._last_line >= self.interval:
                self._last_line = now
                self._write(self._status_line(now))

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Values shown after the count (e.g. ``loss="0.1234"``); numbers are formatted like tqdm's."""
        values = {**(ordered_dict or {}), **kwargs}
        self._postfix = {k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=refresh)

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc, refresh=refresh)

    def write(self, message: str) -> None:
        """Write a message line without breaking the bar (nothing when disabled)."""
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        elif self.mode is ProgressMode.LINES:
            self._write(message)

    def close(self) -> None:
        """End the display; in lines mode, write the final line (once)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode is ProgressMode.LINES:
            self._write(self._final_line(self._clock()))

    # -- lines mode -------------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Seconds since the display was created."""
        return self._clock() - self._start

    def _write(self, line: str) -> None:
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (ValueError, OSError):  # a closed or broken stream must not stop the work
            pass

    def _prefix(self) -> str:
        return f"{self.desc}: " if self.desc else ""

    def _suffix(self) -> str:
        return "".join(f", {k}={v}" for k, v in self._postfix.items())

    def _count(self) -> str:
        return f"{self.n:,}/{self.total:,} {self.unit}" if self.total is not None else f"{self.n:,} {self.unit}"

    def _status_line(self, now: float) -> str:
        elapsed = now - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = ""
        if self.total and rate > 0 and self.n < self.total:
            eta = f", about {format_duration((self.total - self.n) / rate)} left"
        return (f"{self._prefix()}{self._count()}{pct} in {format_duration(elapsed)} "
                f"({rate:,.1f} {self.unit}/s){eta}{self._suffix()}")

    def _final_line(self, now: float) -> str:
        elapsed = now - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        finished = self._exhausted or (self.total is not None and self.n >= self.total) or \
            (self.iterable is None and self.total is None)
        if finished:
            head = f"done, {self.n:,} {self.unit}"
        else:
            head = f"stopped at {self._count()}"
        return f"{self._prefix()}{head} in {format_duration(elapsed)} ({rate:,.1f} {self.unit}/s){self._suffix()}"


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = False,
    stream: TextIO | None = None,
    interval: float = 60.0,
    mode: ProgressMode | str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Progress:
    """Show the progress of a loop: a bar on a terminal, plain lines elsewhere (module docstring).

    Args:
        iterable: what to iterate (its ``len`` is the total when it has one); ``None``: call ``update``.
        total: number of units expected (``None``: unknown).
        desc: label, e.g. ``"epoch 3/40"``.
        unit: unit name, e.g. ``"img"`` or ``"batch"``.
        enabled: ``False`` shows nothing (the loop still runs and ``n`` is still counted).
        leave: keep the finished bar on screen (bar mode only; lines mode always ends with a line).
        stream: where to write (default: ``sys.stderr`` at call time).
        interval: lines mode: seconds between two progress lines at most; a loop shorter than
            this writes only its final line.
        mode: force a :class:`ProgressMode` (default: ``$PLBENCH_PROGRESS``, else auto).
        clock: monotonic seconds (tests pass a fake one).

    Returns:
        A :class:`Progress`.

    Raises:
        ValueError: ``interval`` <= 0 or an unknown ``mode``.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> for _ in progress(range(3), desc="demo", unit="img", stream=out, clock=lambda: 0.0):
        ...     pass
        >>> out.getvalue()
        'demo: done, 3 img in 0.0 s (0.0 img/s)\\n'
    """
    return Progress(iterable, total=total, desc=desc, unit=unit, enabled=enabled, leave=leave, stream=stream,
                    interval=interval, mode=mode, clock=clock)


__all__ = ["ENV_VAR", "Progress", "ProgressMode", "format_duration", "is_terminal", "progress", "resolve_mode"]


def is_bar_mode(stream: TextIO | None = None) -> bool:
    """Whether :func:`progress` would draw bars on ``stream`` (default stderr) now."""
    return resolve_mode(stream if stream is not None else sys.stderr) is ProgressMode.BAR


def progress_line(message: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
    """One status line, e.g. an epoch's summary: printed above any bar, as a plain line elsewhere, nothing
    when disabled or in ``off`` mode."""
    if not enabled:
        return
    out = stream if stream is not None else sys.stderr
    mode = resolve_mode(out)
    if mode is ProgressMode.OFF:
        return
    try:
        if mode is ProgressMode.BAR:
            from tqdm import tqdm

            tqdm.write(message, file=out)
        else:
            out.write(message + "\n")
            out.flush()
    except (ValueError, OSError):  # a closed or broken stream must not stop the work
        pass
