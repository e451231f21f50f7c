"""``plbench predict RUN IMAGE_OR_FOLDER...`` and ``plbench evaluate RUN --dataset ... --split ...``."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from plbench.choices import Checkpoint
from plbench.cli.app import app, command
from plbench.cli.options import DataRoot, DatasetName, dataset_options, option_group
from plbench.errors import InputError

RunArg = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Run folder written by `plbench train`.")]
CheckpointOpt = Annotated[Checkpoint, typer.Option(
    "--checkpoint", help="last: the final epoch (what the run's headline mAP measures); best: the best validation "
    "epoch (selected on validation data).")]
EmaOpt = Annotated[bool, typer.Option(help="Use the EMA weights where the run has them (the headline model of csl "
                                      "runs); --no-ema: the plain model.")]
BatchOpt = Annotated[Optional[int], typer.Option(min=1, help="Images per forward pass (default: the run's batch size).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
WorkersOpt = Annotated[int, typer.Option(min=0, help="Image-decoding worker processes.")]
#: unreadable images named on the terminal (all of them are counted)
NAMED_FAILURES = 20


def _failure_note(failed: list[str]) -> str:
    named = ", ".join(failed[:NAMED_FAILURES]) + (f" and {len(failed) - NAMED_FAILURES} more"
                                                  if len(failed) > NAMED_FAILURES else "")
    return f"{len(failed)} unreadable image(s) skipped: {named}"


class _Writer:
    """Rows of ``--out``: JSON lines (one object per image) or CSV (one row per image and class)."""

    def __init__(self, stream: io.TextIOBase, kind: str) -> None:
        self.stream, self.kind = stream, kind
        self.csv = csv.writer(stream, lineterminator="\n") if kind == "csv" else None
        if self.csv is not None:
            self.csv.writerow(["image", "class", "score"])

    def write(self, image: str, picked: list[tuple[str, float]]) -> None:
        if self.csv is not None:
            for name, score in picked:
                self.csv.writerow([image, name, f"{score:.6f}"])
        else:
            rec = {"image": image, "predictions": [{"class": n, "score": round(s, 6)} for n, s in picked]}
            self.stream.write(json.dumps(rec) + "\n")


@command(app, "predict")
def predict_command(
    run: RunArg,
    images: Annotated[List[Path], typer.Argument(help="Image files and/or folders (searched recursively).")],
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Report the classes scoring at or above it.")] = 0.5,
    top_k: Annotated[Optional[int], typer.Option(min=1, help="Report the K best classes instead (ignores --threshold).")] = None,
    out: Annotated[Optional[Path], typer.Option(dir_okay=False, help="Write the predictions to FILE instead of the "
                                                "terminal: .jsonl (one object per image) or .csv (image,class,score).")] = None,
    checkpoint: CheckpointOpt = Checkpoint.LAST,
    ema: EmaOpt = True,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 0,
    strict: Annotated[bool, typer.Option(help="An unreadable image is an error instead of being counted.")] = False,
) -> None:
    """Print (or write) the classes a run's model sees in images, with their scores."""
    from plbench.artifacts.atomic import atomic_path
    from plbench.artifacts.runs import RunFolder
    from plbench.engine.inference import iter_predictions, list_images, load_checkpoint_model, select_classes
    from plbench.engine.train import resolve_device

    kind = None
    if out is not None:
        kind = {".jsonl": "jsonl", ".csv": "csv"}.get(out.suffix.lower())
        if kind is None:
            raise InputError(out, "--out", f"expected a .jsonl or .csv file name, but got {out.name!r}",
                             "name the output e.g. predictions.jsonl or predictions.csv")
    folder = RunFolder(run)
    (model, pre, names), source = load_checkpoint_model(folder, checkpoint, ema)
    paths = list_images(images)
    bs = batch_size or int(folder.config().get("batch_size", 32))
    batches = iter_predictions(model, paths, pre, batch_size=bs, device=resolve_device(device), workers=workers,
                               strict=strict, progress=out is not None)  # else the printed lines are the progress
    failed: list[str] = []
    done, t0 = 0, time.perf_counter()

    def emit(write: Any) -> None:
        nonlocal done
        for batch in batches:
            failed.extend(str(paths[i]) for i in batch.failed)
            for row, i in enumerate(batch.indices):
                write(str(paths[i]), select_classes(batch.scores[row], names, threshold=threshold, top_k=top_k))
            done += len(batch.indices)

    if out is None:
        def show(image: str, picked: list[tuple[str, float]]) -> None:
            classes = ", ".join(f"{n} {s:.3f}" for n, s in picked) or (
                f"(no class at or above {threshold:g})" if top_k is None else "")
            typer.echo(f"{image}: {classes}")

        emit(show)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            emit(_Writer(f, kind).write)
    seconds = time.perf_counter() - t0
    what = f"{source.checkpoint}.pt, {source.weights} weights, epoch {source.epoch + 1}"
    if out is not None:
        typer.echo(f"wrote predictions for {done} image(s) to {out} ({what}; {done / max(seconds, 1e-9):.1f} images/s)")
    if failed:
        typer.echo(_failure_note(failed), err=True)


@command(app, "evaluate")
@option_group(dataset_options, into="options")
def evaluate_command(
    run: RunArg,
    dataset: DatasetName,
    data_root: DataRoot,
    split: Annotated[str, typer.Option(help="Split to score (e.g. val, test).")],
    checkpoint: CheckpointOpt = Checkpoint.LAST,
    ema: EmaOpt = True,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 0,
    out: Annotated[Optional[Path], typer.Option(file_okay=False, help="Evaluation folder (default: "
                                                "RUN/eval-<dataset>-<split>-<checkpoint>).")] = None,
    options: dict | None = None,
) -> None:
    """Score a run's model on a split of any dataset with the same classes (matched by name).

    Writes predictions.npz and summary.json (mAP, per-class AP, CF1/OF1, LVIS groups) into a new folder
    beside the run's files; `plbench report FOLDER` reads it like a run.
    """
    from plbench.engine.inference import evaluate_run

    result = evaluate_run(run, dataset, data_root, split, dataset_options=options or {}, which=checkpoint, ema=ema,
                          batch_size=batch_size, device=device, workers=workers, out=out,
                          progress=True)
    s = result.summary
    groups = "".join(f", {k} {v:.2f}" for k, v in s.items() if k.startswith("map_") and v is not None)
    typer.echo(f"{dataset} {split}: mAP {s['map']:.2f}% over {s['classes_evaluated']} classes "
               f"({s['val_images']} images; CF1 {s['cf1']:.2f}, OF1 {s['of1']:.2f}{groups}); "
               f"{s['checkpoint']}.pt, {s['weights']} weights -> {result.folder}")
    if s["val_images_skipped"]:
        typer.echo(_failure_note(s["skipped_images"]) if s["val_images_skipped"] <= len(s["skipped_images"]) else
                   f"{s['val_images_skipped']} unreadable image(s) skipped (first: {s['skipped_images'][0]})", err=True)
