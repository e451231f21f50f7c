"""Progress display: plain bounded lines without carriage returns off a terminal, a tqdm bar on one."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from plbench.progress import ENV_VAR, ProgressMode, format_duration, is_terminal, progress, resolve_mode


class FakeClock:
    """Monotonic seconds that advance only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_non_tty_writes_bounded_plain_lines():
    out, clock = io.StringIO(), FakeClock()
    seen = []
    bar = progress(range(1000), desc="epoch 1/2", unit="batch", stream=out, interval=60.0, clock=clock)
    assert bar.mode is ProgressMode.LINES and bar.total == 1000
    for i in bar:
        clock.now += 1.0  # 1 s per batch: 1,000 s in all
        seen.append(i)
        if i == 10:
            bar.set_postfix(loss=0.123456)
    assert seen == list(range(1000))  # every item, in order
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # at most one line per 60 s while running, plus the final one: floor(1000 / 60) + 1 = 17
    assert len(lines) == 1000 // 60 + 1
    assert lines[0] == "epoch 1/2: 60/1,000 batch (6%) in 1 min 00 s (1.0 batch/s), about 15 min 40 s left, loss=0.1235"
    assert lines[-1] == "epoch 1/2: done, 1,000 batch in 16 min 40 s (1.0 batch/s), loss=0.1235"


def test_short_loop_writes_one_line_and_update_api():
    out, clock = io.StringIO(), FakeClock()
    with progress(total=640, desc="caching images", unit="img", stream=out, clock=clock) as bar:
        for _ in range(10):
            clock.now += 0.5
            bar.update(64)
        assert bar.n == 640 and len(bar) == 640
    bar.close()  # closing twice writes nothing more
    assert out.getvalue() == "caching images: done, 640 img in 5.0 s (128.0 img/s)\n"


def test_stopped_loop_and_disabled():
    out, clock = io.StringIO(), FakeClock()
    for i in progress(iter(range(10)), total=10, desc="d", stream=out, clock=clock):
        clock.now += 2.0
        if i == 3:
            break
    assert out.getvalue() == "d: stopped at 3/10 it in 8.0 s (0.4 it/s)\n"  # the 4th item was not finished
    out = io.StringIO()
    bar = progress(range(5), stream=out, enabled=False)
    assert list(bar) == list(range(5)) and bar.n == 5 and bar.mode is ProgressMode.OFF
    bar.write("hidden")
    assert out.getvalue() == ""


def test_fake_tty_draws_a_bar():
    out = FakeTTY()
    bar = progress(range(50), desc="synthetic images", unit="img", stream=out, leave=True)
    assert bar.mode is ProgressMode.BAR
    for _ in bar:
        pass
    text = out.getvalue()
    assert "\r" in text and "synthetic images" in text and "50/50" in text


def test_env_override_and_mode_resolution(monkeypatch):
    assert resolve_mode(io.StringIO()) is ProgressMode.LINES
    assert resolve_mode(FakeTTY()) is ProgressMode.BAR
    monkeypatch.setenv(ENV_VAR, "off")
    out = FakeTTY()
    assert list(progress(range(3), stream=out)) == [0, 1, 2] and out.getvalue() == ""
    monkeypatch.setenv(ENV_VAR, "lines")
    assert resolve_mode(FakeTTY()) is ProgressMode.LINES
    monkeypatch.setenv(ENV_VAR, "fancy")  # unknown: ignored (logged), auto used
    assert resolve_mode(FakeTTY()) is ProgressMode.BAR
    assert resolve_mode(io.StringIO(), "bar") is ProgressMode.BAR  # an explicit mode wins
    with pytest.raises(ValueError, match="mode must be one of auto, bar, lines, off, but got 'x'"):
        resolve_mode(io.StringIO(), "x")
    with pytest.raises(ValueError, match="interval must be > 0"):
        progress(range(3), interval=0)


def test_process_stderr_is_a_terminal_only_with_stdout(monkeypatch):
    err, out = FakeTTY(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    assert not is_terminal(err)  # `cmd | tee log`: stdout is kept, so no bar on stderr either
    monkeypatch.setattr(sys, "stdout", FakeTTY())
    assert is_terminal(err)
    assert progress(range(2)).mode is ProgressMode.BAR  # default stream: sys.stderr at call time


def test_format_duration():
    assert [format_duration(s) for s in (0, 4.24, 59.9, 60, 187, 3600 + 300)] == [
        "0.0 s", "4.2 s", "59.9 s", "1 min 00 s", "3 min 07 s", "1 h 05 min"]


def test_piped_synthetic_writer_writes_lines_not_frames(tmp_path):
    """Stderr to a pipe, as in `plbench data synthetic 2> file`: before, 23 carriage-return frames for 800 images."""
    code = ("import sys; from plbench.datasets.synthetic import write_synthetic_coco; "
            "write_synthetic_coco(sys.argv[1], train=60, val=20, num_classes=4, image_size=32, progress=True)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    err = res.stderr.decode()
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("synthetic images")]
    assert len(lines) == 1 and lines[0].startswith("synthetic images: done, 80 img in "), err


def test_image_cache_progress_is_one_line_off_a_terminal(real_fixtures, tmp_path, capsys):
    from plbench.datasets.images import build_image_cache

    paths = sorted(str(p) for p in (real_fixtures / "images").glob("*.jpg"))
    build_image_cache(paths, 16, tmp_path / "c", workers=1, chunk=2, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("caching images")] == [
        ln for ln in err.splitlines() if ln.startswith(f"caching images: done, {len(paths)} img in ")]
    assert len(err.splitlines()) == 1
