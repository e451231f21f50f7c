"""Run folders: the one owner of what a training run writes and of reading it back.

Layout of ``runs/<name>/``::

    config.json        the TrainConfig that defines the run (written once, before training)
    inputs.json        sha256 of the user files the config names by path (TrainConfig.input_files), at the start
    metrics.jsonl      one JSON line per finished epoch (an epoch never appears twice)
    last.pt            checkpoint to resume from (model, EMA, optimizer, epoch, step, RNG, config, fingerprints)
    best.pt            checkpoint of the epoch with the best headline-model mAP on the selection split
                       (TrainConfig.select_split), else on the validation split
    predictions.npz    validation scores of the final epoch's headline model (see PREDICTION_KEYS)
    summary.json       the final record (its presence means the run is finished)
    .lock              held while a process trains in the folder

Every file is written to a temporary file in the folder and renamed (``os.replace``); checkpoints are
flushed to disk (fsync) before the rename so a power loss cannot leave a renamed but empty file.
Train, report, predict/evaluate/export and the FiftyOne export all go through :class:`RunFolder`.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from plbench.artifacts.atomic import atomic_file, to_json, write_json, write_text
from plbench.artifacts.files import read_json
from plbench.errors import InputError

CONFIG, METRICS, LAST, BEST = "config.json", "metrics.jsonl", "last.pt", "best.pt"
PREDICTIONS, SUMMARY, LOCK, INPUTS = "predictions.npz", "summary.json", ".lock", "inputs.json"
#: arrays of ``predictions.npz``: scores float32 (N, C), targets int8 (N, C), image_paths str (N,),
#: image_ids (N,), class_names str (C,)
PREDICTION_KEYS = ("scores", "targets", "image_paths", "image_ids", "class_names")


def _plain(ids: np.ndarray) -> np.ndarray:
    """Object arrays (string ids) as unicode, so the .npz loads with allow_pickle=False."""
    return ids.astype(str) if ids.dtype == object else ids


class RunFolder:
    """One run folder (which need not exist yet).

    Args:
        path: the folder, e.g. ``runs/synthetic-fpc50-ignore-resnet10t-gap-s0``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    # -- state ---------------------------------------------------------------------------------------
    @property
    def is_finished(self) -> bool:
        """A finished run has its ``summary.json``."""
        return self.file(SUMMARY).is_file()

    def has_checkpoint(self, which: str = "last") -> bool:
        return self.file(f"{which}.pt").is_file()

    # -- writing (training) --------------------------------------------------------------------------
    def open(self, config: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        """Create the folder for ``config`` (a ``TrainConfig.to_dict()``), or check that it holds the same run.

        A key the existing ``config.json`` lacks counts as its value in ``defaults``
        (:data:`plbench.config.DEFAULTS`): that file was written before the key existed, so the run used
        the default.

        Call this only once every input has been validated: it is the first write of a run.

        Raises:
            InputError: the folder holds a run with a different configuration.
        """
        config = json.loads(json.dumps(config))
        path = self.file(CONFIG)
        if path.exists():
            old = read_json(path, "re-run with another --run-name, or delete the run folder")
            if isinstance(old, dict):  # keys added since the file was written: their defaults
                missing = {k: v for k, v in (defaults or {}).items() if k in config and k not in old}
                old = {**old, **json.loads(json.dumps(missing))}
            if old != config:
                changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise InputError(
                    self.path, "config.json", "this run folder holds a run with a different configuration "
                    f"(differs in: {', '.join(changed)})",
                    "pass another --run-name, or delete the folder to start over",
                )
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(path, config)

    def lock(self) -> None:
        """Take the folder's lock for this process (released by :meth:`unlock` or when the process dies).

        Raises:
            InputError: another live process trains in this folder.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(self.path, LOCK, "another plbench process is training in this run folder",
                             "wait for it to finish (or stop it), or pass another --run-name") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def save_checkpoint(self, which: str, state: dict[str, Any]) -> None:
        """Write ``<which>.pt`` atomically, flushed to disk before the rename."""
        import torch

        with atomic_file(self.file(f"{which}.pt"), fsync=True) as f:  # a full disk raises ENOSPC, not RuntimeError
            torch.save(state, f)
        _fsync_dir(self.path)

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Add an epoch's record (strict JSON: NaN as null); a resumed run rewrites the epochs it redoes, so
        none appears twice."""
        history = [h for h in self.metrics() if h["epoch"] < record["epoch"]]
        history.append(record)
        write_text(self.file(METRICS), "".join(to_json(h) + "\n" for h in history))

    def save_epoch(self, state: dict[str, Any], record: dict[str, Any], *, is_best: bool) -> None:
        """An epoch's files: its metrics line, ``best.pt`` when it is the best so far, then ``last.pt``.

        ``best.pt`` comes first: ``last.pt`` records the best mAP, so it must never be ahead of ``best.pt``.
        """
        self.append_metrics(record)
        if is_best:
            self.save_checkpoint("best", state)
        self.save_checkpoint("last", state)

    def write_predictions(self, scores: np.ndarray, targets: np.ndarray, image_paths: Sequence[str],
                          image_ids: np.ndarray, class_names: Sequence[str]) -> None:
        """Validation predictions: scores float32 (N, C) in [0, 1], targets int8 (N, C) in {1, 0, -1}."""
        with atomic_file(self.file(PREDICTIONS)) as f:
            np.savez_compressed(
                f, scores=np.asarray(scores, np.float32), targets=np.asarray(targets, np.int8),
                image_paths=np.asarray(image_paths, dtype=str), image_ids=_plain(np.asarray(image_ids)),
                class_names=np.asarray(class_names, dtype=str),
            )

    def write_inputs(self, digests: dict[str, str | None]) -> None:
        """``inputs.json``: input file path -> sha256 (None: the file did not exist)."""
        write_json(self.file(INPUTS), digests)

    def inputs(self) -> dict[str, str | None] | None:
        """``inputs.json``, or None for a run folder written before it existed."""
        if not self.file(INPUTS).is_file():
            return None
        return read_json(self.file(INPUTS), "delete the damaged inputs.json (it is written again on the next resume)")

    def write_summary(self, summary: dict[str, Any]) -> None:
        """``summary.json``, strict JSON: a number that does not exist (NaN, an infinity) is null."""
        write_json(self.file(SUMMARY), summary)

    # -- reading -------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """``config.json`` as a dict (see :meth:`plbench.config.TrainConfig.from_dict`)."""
        return read_json(self.file(CONFIG), "pass a run folder written by `plbench train`")

    def summary(self) -> dict[str, Any]:
        """``summary.json``; raises InputError when the run is not finished or the file is damaged."""
        return read_json(self.file(SUMMARY), "finish the run with `plbench train --config "
                         f"{self.file(CONFIG)}`, or leave it out")

    def metrics(self) -> list[dict[str, Any]]:
        """Per-epoch records in epoch order (empty before the first epoch ends)."""
        path = self.file(METRICS)
        if not path.exists():
            return []
        out = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(path, f"line {i}", f"not valid JSON ({e})",
                                 "delete the damaged line; the run's checkpoints are unaffected") from None
        return out

    def load_checkpoint(self, which: str = "last", map_location: Any = "cpu") -> dict[str, Any]:
        """``last.pt`` or ``best.pt``.

        Raises:
            InputError: missing, truncated or not a plbench checkpoint (never an unpickling traceback).
        """
        import torch

        path = self.file(f"{which}.pt")
        if not path.is_file():
            raise InputError(path, which, "no such checkpoint in this run folder",
                             "train the run first (or pick the other checkpoint)")
        try:  # weights_only: unpickling a file from elsewhere must never run its code
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # truncated zip, bad pickle, EOF: all mean a damaged file
            refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            if isinstance(e, pickle.UnpicklingError) and refused:
                raise InputError(path, which, "the checkpoint holds not only tensors, numbers and strings (found "
                                 f"{refused.group(1)}), so "
                                 "it was not loaded: unpickling it could run code. It is not a checkpoint written "
                                 "by `plbench train`", "use a run folder written by `plbench train`, or train the "
                                 "run again") from None
            other = "best" if which == "last" else "last"
            why = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:Check the documentation|$)", str(e), re.S)
            raise InputError(path, which, f"the checkpoint cannot be read ({type(e).__name__}: "
                             f"{why.group(1) if why else e})",
                             f"delete it to start over, or resume from {other}.pt with `--resume-from {other}`"
                             ) from None
        if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
            raise InputError(path, which, "not a plbench checkpoint (no model/epoch entries)",
                             "delete it and re-run the training")
        return state

    def predictions(self) -> dict[str, np.ndarray]:
        """The arrays of ``predictions.npz`` (:data:`PREDICTION_KEYS`), checked for consistent shapes."""
        path = self.file(PREDICTIONS)
        if not path.is_file():
            raise InputError(path, PREDICTIONS, "expected a run folder file, but it is missing",
                             "pass a run folder written by `plbench train` (after evaluation)")
        try:
            with np.load(path, allow_pickle=False) as z:
                absent = [k for k in PREDICTION_KEYS if k not in z.files]
                if absent:
                    raise InputError(path, ", ".join(absent), f"expected keys {', '.join(PREDICTION_KEYS)}, "
                                     f"but got {', '.join(z.files)}", "re-run the evaluation with this plbench version")
                arrays = {k: z[k] for k in PREDICTION_KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated: BadZipFile
            raise InputError(path, PREDICTIONS, f"cannot be read ({type(e).__name__}: {e})",
                             "re-run the training") from None
        n, c = len(arrays["image_paths"]), len(arrays["class_names"])
        for k in ("scores", "targets"):
            if arrays[k].shape != (n, c):
                raise InputError(path, k, f"expected shape ({n}, {c}), but got {arrays[k].shape}",
                                 "re-run the evaluation")
        if len(arrays["image_ids"]) != n:
            raise InputError(path, "image_ids", f"expected {n} ids, but got {len(arrays['image_ids'])}",
                             "re-run the evaluation")
        return arrays


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def find_runs(paths: Iterable[str | Path], *, finished: bool = True, evaluations: bool = False) -> list[RunFolder]:
    """Run folders among ``paths``: each path is a run folder or a folder of run folders (searched recursively).

    Args:
        finished: only runs with a ``summary.json`` (else every folder with a ``config.json``).
        evaluations: also the evaluation folders that ``plbench evaluate`` writes inside a run folder
            (left out by default: they would count a run twice).
    Raises:
        InputError: a path that does not exist, or no run found at all.
    """
    marker = SUMMARY if finished else CONFIG
    paths = [Path(p) for p in paths]
    runs: list[RunFolder] = []
    for p in paths:
        if (p / marker).is_file():
            runs.append(RunFolder(p))
        elif p.is_dir():
            runs.extend(RunFolder(q.parent) for q in sorted(p.rglob(marker))
                        if evaluations or not (q.parent.parent / CONFIG).is_file())
        else:
            raise InputError(p, "RUNS", "not a run folder nor a folder of runs",
                             "pass folders written by `plbench train`")
    if not runs:
        raise InputError(None, "RUNS", f"no finished run ({marker}) under {', '.join(map(str, paths))}",
                         "train first, or point at the runs/ folder")
    return runs
