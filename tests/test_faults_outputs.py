"""Fault matrix, outputs: an output that exists (refused unless --force), an output folder that cannot be written
and a full disk, for every command that writes. Each stops with exit 2 and a message naming the file, no
traceback, the previous file (if any) intact and no temporary file left behind.

A full disk is a 1 MiB tmpfs filled up (needs root, as in the project's containers; skipped otherwise); a
read-only folder is a read-only tmpfs (root), and a folder that cannot be created is a path under a regular
file (works for every user, as root ignores permission bits).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
pytest.register_assert_rewrite("faults_support")  # its asserts report values, as in a test module

from faults_support import TRAIN_FAST, expect_user_error, invoke

pytest_plugins = ["faults_support"]  # the session fixture `trained`


def _writers(t: dict, out: Path) -> dict[str, tuple[list, Path]]:
    """Command -> (CLI call writing under ``out``, the path it writes)."""
    syn, run = t["syn"], t["run"]
    data = ["--dataset", "synthetic", "--data-root", syn]
    return {
        "data synthetic": (["data", "synthetic", "--out", out / "syn", "--train", "2", "--val", "1", "--classes", "2",
                            "--image-size", "32"], out / "syn"),
        "data cache": (["data", "cache", *data, "--split", "val", "--size", "32", "--workers", "1",
                        "--out", out / "cache"], out / "cache"),
        "simulate": (["simulate", *data, "--scheme", "rps", "--param", "0.5", "--seed", "0", "--out",
                      out / "s.parquet"], out / "s.parquet"),
        "estimate-prior": (["estimate-prior", *data, *TRAIN_FAST, "--max-train-images", "8", "--out", out / "p.csv"],
                           out / "p.csv"),
        "train": (["train", *data, *TRAIN_FAST, "--max-train-images", "8", "--mode", "ignore", "--out", out / "runs"],
                  out / "runs"),
        "report": (["report", run, "--out", out / "rep"], out / "rep"),
        "features extract": (["features", "extract", *data, "--split", "val", "--image-size", "32", "--device", "cpu",
                              "--out", out / "feat"], out / "feat"),
        "export model": (["export", "model", run, "--format", "torchscript", "--no-check", "--out", out / "m.pt"],
                         out / "m.pt"),
        "predict": (["predict", run, syn / "val2017", "--device", "cpu", "--out", out / "p.jsonl"], out / "p.jsonl"),
        "evaluate": (["evaluate", run, *data, "--split", "val", "--device", "cpu", "--out", out / "ev"], out / "ev"),
    }


WRITERS = ["data synthetic", "data cache", "simulate", "estimate-prior", "train", "report", "features extract",
           "export model", "predict", "evaluate"]


def _no_temporaries(*roots: Path) -> None:
    left = [p for root in roots if root.exists() for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert not left, f"temporary files left behind: {left}"


# --------------------------------------------------------------------------------------------- existing output


@pytest.mark.parametrize("command", ["data synthetic", "simulate", "estimate-prior"])
def test_existing_output_is_refused_without_force(trained, tmp_path, command):
    args, target = _writers(trained, tmp_path)[command]
    if command == "data synthetic":
        target.mkdir()
        (target / "keep.txt").write_text("an earlier dataset")
    else:
        target.write_text("an earlier file")
    expect_user_error(args, [target.name, "exists", "--force"], [tmp_path, trained["run"]])


def test_force_replaces_an_existing_simulation(trained, tmp_path):
    args, target = _writers(trained, tmp_path)["simulate"]
    target.write_text("an earlier file")
    result = invoke([*args, "--force"])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:4] == b"PAR1"  # a parquet file now


# --------------------------------------------------------------------------------- output folder not writable


@pytest.mark.parametrize("command", WRITERS)
def test_output_under_a_regular_file(trained, tmp_path, command):
    """The output's folder cannot be created (a regular file is in the way): exit 2 naming the path."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    args, _ = _writers(trained, blocker)[command]
    out = expect_user_error(args, ["blocker"], [tmp_path, trained["run"], trained["syn"]])
    assert "Not a directory" in out or "is a file" in out or "exists" in out, out


def _mount_tmpfs(path: Path, *options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def read_only_dir(tmp_path):
    path = tmp_path / "ro"
    _mount_tmpfs(path, "ro", "size=64k")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("command", ["simulate", "train", "report", "predict"])
def test_read_only_output_folder(trained, read_only_dir, command):
    args, _ = _writers(trained, read_only_dir / "sub")[command]
    expect_user_error(args, ["Read-only file system", "EROFS"], [read_only_dir, trained["run"]])


# ---------------------------------------------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs; ``fill()`` takes up all of its free space (with a file named .filler)."""
    path = tmp_path / "disk"
    _mount_tmpfs(path, "size=1m")

    def fill() -> None:
        with open(path / ".filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC

    yield path, fill
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("command", WRITERS)
def test_full_disk(trained, small_disk, command):
    """No space left: exit 2 naming ENOSPC; the previous output (where the command replaces one) is intact and
    no temporary file is left. (A training's checkpoint does not fit in 1 MiB even before the disk is filled.)"""
    disk, fill = small_disk
    args, target = _writers(trained, disk)[command]
    previous = None
    if command in ("simulate", "estimate-prior", "export model", "predict"):
        target.write_text("the previous output")
        previous = target.read_bytes()
        args = [*args, "--force"] if command in ("simulate", "estimate-prior") else args
    if command != "train":
        fill()
    result = invoke(args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output, result.output
    assert "ENOSPC" in result.output or "free" in result.output, result.output
    if previous is not None:
        assert target.read_bytes() == previous
    _no_temporaries(disk)


# ------------------------------------------------------------------------------------ bugs keep their traceback


@pytest.mark.parametrize("error", [ZeroDivisionError("a bug"), KeyError("a bug"),
                                   FileNotFoundError(errno.ENOENT, "an internal file", "x")])
def test_programming_errors_are_not_turned_into_user_errors(trained, tmp_path, monkeypatch, error):
    """Only InputError and the file-system errnos of plbench.cli.app.FILE_SYSTEM_ERRORS become exit 2; a bug
    (here any other exception raised inside the simulation) reaches the caller with its traceback."""
    import plbench.simulate

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(plbench.simulate, "simulate", broken)
    args, _ = _writers(trained, tmp_path)["simulate"]
    result = invoke(args)
    assert result.exit_code == 1 and result.exception is error, (result.exit_code, result.output)
