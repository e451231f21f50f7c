"""Stages of a sweep: what each one does, its content hash, and whether its output can be reused.

A stage's hash is the sha256 of its kind, its settings, the hashes of the stages it depends on and the
content of the user files it reads (backbone checkpoints). The same hash means the same output, so a
finished output is reused; a changed setting changes the hash of its stage and of every stage
downstream, and only those run again.

Finished stages leave a record ``<out>/.sweep/done/<hash>.json`` (written after the output, atomically);
an output counts as reusable when its record exists and the output itself is still there. A training
run is also reusable when its run folder is finished (``summary.json``), record or not.

What is not hashed: the contents of dataset folders (a dry run must not need the data). A simulation or a
run made from data that changed since is caught when a training loads it (the engine compares the dataset
fingerprint and raises an InputError naming the file); delete that output to redo it. A training's hash
covers the TrainConfig fields the experiment sets (:func:`plbench.sweep.plan.hashed_fields`; execution
ones such as device and workers included when set), not the values plbench fills in itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from plbench.artifacts.atomic import write_json
from plbench.artifacts.runs import RunFolder
from plbench.choices import Choice

#: bump when the meaning of stage settings changes, so that old outputs are not reused by mistake
HASH_VERSION = 1
STATE_DIR = ".sweep"


class StageKind(Choice):
    """The kinds of stage, in pipeline order."""

    DATA = "data"  # generate the synthetic dataset
    CACHE = "cache"  # decode + resize a split once into the image cache
    SIMULATE = "simulate"  # partial labels (FPC/RPS/SPL) -> simulations/*.parquet
    FEATURES = "features"  # frozen-backbone features (protocol "linear") -> features/*/
    TRAIN = "train"  # one training run -> runs/*/
    PRIOR = "estimate-prior"  # class prior from an Ignore-mode run -> priors/*.csv
    REPORT = "report"  # tables and figures -> reports/<name>/


#: stages that use a GPU when one exists
GPU_KINDS = frozenset({StageKind.FEATURES, StageKind.TRAIN, StageKind.PRIOR})


@dataclass(frozen=True)
class Stage:
    """One unit of work of a sweep.

    Attributes:
        kind: what it does.
        name: readable name, unique among the plan's stages of this kind.
        hash: sha256 hex digest (see the module docstring).
        settings: JSON-serialisable arguments of :func:`plbench.sweep.execute.execute_stage`.
        deps: hashes of the stages whose outputs it reads.
        output: the file or folder it writes.
        root: the sweep output root (where ``.sweep/`` lives).
        needs: user inputs (paths) that must exist when it runs and that no stage produces.
        gpus: GPUs it uses when GPUs exist (torchrun: ``nproc``).
    """

    kind: StageKind
    name: str
    hash: str
    settings: dict[str, Any]
    deps: tuple[str, ...]
    output: str
    root: str
    needs: tuple[str, ...] = ()
    gpus: int = 0

    @property
    def id(self) -> str:
        return f"{self.kind.value} {self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "hash": self.hash, "settings": self.settings,
                "deps": list(self.deps), "output": self.output, "root": self.root, "needs": list(self.needs),
                "gpus": self.gpus}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stage":
        return cls(kind=StageKind.parse(d["kind"]), name=d["name"], hash=d["hash"], settings=d["settings"],
                   deps=tuple(d["deps"]), output=d["output"], root=d["root"], needs=tuple(d.get("needs", ())),
                   gpus=int(d.get("gpus", 0)))


def canonical_json(obj: Any) -> str:
    """Stable text of a JSON value: sorted keys, no spaces (the input of every stage hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    from plbench.artifacts.files import sha256_file

    return sha256_file(path)


def file_digest(path: str | Path) -> str | None:
    """sha256 of a user input file, memoised on (path, size, mtime); None when it does not exist (yet)."""
    p = Path(path)
    if not p.is_file():
        return None
    st = p.stat()
    return _file_digest(str(p.resolve()), st.st_size, st.st_mtime_ns)


def stage_hash(kind: StageKind, settings: dict[str, Any], deps: Iterable[str] = (),
               files: Iterable[str | Path] = ()) -> str:
    """Content hash of a stage: kind, settings, dependency hashes (order-free), user file contents."""
    payload = {
        "version": HASH_VERSION, "kind": kind.value, "settings": settings, "deps": sorted(deps),
        "files": {str(f): file_digest(f) for f in files},
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def record_path(stage: Stage) -> Path:
    return Path(stage.root) / STATE_DIR / "done" / f"{stage.hash}.json"


def write_record(stage: Stage, seconds: float) -> None:
    """Mark a stage finished (call after its output is complete)."""
    write_json(record_path(stage), {
        "kind": stage.kind.value, "name": stage.name, "hash": stage.hash, "output": stage.output,
        "seconds": round(seconds, 3), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": stage.settings,
    })


def output_complete(stage: Stage) -> bool:
    """Whether the stage's output itself is present and complete (independent of the record)."""
    out = Path(stage.output)
    if stage.kind is StageKind.TRAIN:
        return RunFolder(out).is_finished
    if stage.kind is StageKind.DATA:
        return (out / "annotations" / "instances_train2017.json").is_file()
    if stage.kind is StageKind.CACHE:
        return (out / "index.json").is_file()
    if stage.kind is StageKind.REPORT:
        return (out / "report.md").is_file()
    return out.exists()


def is_done(stage: Stage) -> bool:
    """Reusable: a finished training run, or a record for this hash with its output still there."""
    if stage.kind is StageKind.TRAIN and output_complete(stage):
        return True
    return record_path(stage).is_file() and output_complete(stage)


@dataclass
class StageStatus:
    """What a sweep does with a stage: ``run``, ``reuse`` (finished output), or ``skip`` (output missing,
    but nothing that still has to run needs it)."""

    action: str
    missing: list[str] = field(default_factory=list)  # needed user inputs that do not exist
