"""``plbench predict RUN IMAGE_OR_FOLDER... [--class-names ...]`` and ``plbench evaluate RUN [--dataset ... --split ...]``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from plbench.choices import Checkpoint
from plbench.cli.app import app, command
from plbench.cli.options import ZslClasses, dataset_options, option_group

RunArg = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Run folder written by `plbench train`.")]
CheckpointOpt = Annotated[Checkpoint, typer.Option(
    "--checkpoint", help="last: the final epoch (what the run's headline mAP measures); best: the best validation "
    "epoch (selected on validation data).")]
EmaOpt = Annotated[bool, typer.Option(help="Use the EMA weights where the run has them (the headline model of csl "
                                      "runs); --no-ema: the plain model.")]
BatchOpt = Annotated[Optional[int], typer.Option(min=1, help="Images per forward pass (default: the run's batch size).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
WorkersOpt = Annotated[int, typer.Option(min=0, help="Image-decoding worker processes.")]
OptDataset = Annotated[Optional[str], typer.Option(
    "--dataset", help="Dataset loader: coco, lvis, openimages, fiftyone, synthetic, nuswide (default: the run's).")]
OptDataRoot = Annotated[Optional[Path], typer.Option(help="Dataset root folder, as its publisher ships it (default: "
                                                     "the run's).")]


#: unreadable images named on the terminal (all of them are counted)
NAMED_FAILURES = 20


def _failure_note(count: int, paths: list[str]) -> str:
    """``N unreadable image(s) skipped: a, b and M more`` (``paths``: the first of them, at least)."""
    named = paths[:NAMED_FAILURES]
    more = f" and {count - len(named)} more" if count > len(named) else ""
    return f"{count} unreadable image(s) skipped: {', '.join(named)}{more}"


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
    class_names: Annotated[Optional[str], typer.Option(
        help="Zero-shot runs: score these classes instead of the seen ones (open vocabulary), a comma-separated "
        "list or a file with one name a line; embedded with the run's --class-embeddings source and --prompt.")] = None,
) -> None:
    """Print (or write) the classes a run's model sees in images, with their scores.

    A zero-shot run scores any class names given with --class-names (embedded as in its training).
    """
    from plbench.artifacts.runs import RunFolder
    from plbench.engine.image_files import list_images
    from plbench.engine.predict import iter_selected, prediction_file_kind, write_selected
    from plbench.engine.run_model import load_checkpoint_model, run_batch_size
    from plbench.engine.runtime import resolve_device

    if out is not None:
        prediction_file_kind(out)  # a bad suffix fails before the model is loaded
    folder = RunFolder(run)
    run_config = folder.config()
    if class_names is not None:
        from plbench.engine import zero_shot

        zero_shot.require_zero_shot(run_config, folder.path, "--class-names")
        wanted = zero_shot.parse_class_names(class_names)
    (model, pre, names), source = load_checkpoint_model(folder, checkpoint, ema)
    if class_names is not None:
        zero_shot.set_run_classes(model, run_config, wanted)
        names = wanted
    paths = list_images(images)
    failed: list[str] = []
    rows = iter_selected(model, paths, pre, names, threshold=threshold, top_k=top_k, failed=failed,
                         batch_size=run_batch_size(run_config, batch_size),
                         device=resolve_device(device), workers=workers, strict=strict,
                         progress=out is not None)  # on the terminal, the printed lines are the progress
    t0 = time.perf_counter()
    if out is None:
        for image, picked in rows:
            none = f"(no class at or above {threshold:g})"
            typer.echo(f"{image}: {', '.join(f'{n} {s:.3f}' for n, s in picked) or none}")
    else:
        done = write_selected(out, rows)
        rate = done / max(time.perf_counter() - t0, 1e-9)
        typer.echo(f"wrote predictions for {done} image(s) to {out} ({source.checkpoint}.pt, {source.weights} "
                   f"weights, epoch {source.epoch + 1}; {rate:.1f} images/s)")
    if failed:
        typer.echo(_failure_note(len(failed), failed), err=True)


@command(app, "evaluate")
@option_group(dataset_options, into="options")
def evaluate_command(
    run: RunArg,
    dataset: OptDataset = None,
    data_root: OptDataRoot = None,
    split: Annotated[Optional[str], typer.Option(help="Split to score (e.g. val, test; default: the run's "
                                                 "validation split).")] = None,
    classes: Annotated[Optional[List[ZslClasses]], typer.Option(
        "--classes", help="Zero-shot runs: unseen (ZSL), all (GZSL: seen + unseen) and/or seen, repeatable "
        "(default: unseen and all), with the run's split and class embeddings.")] = None,
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
    beside the run's files; `plbench report FOLDER` reads it like a run. A zero-shot run is scored on the
    unseen (ZSL) and all (GZSL) classes of its split: mAP and top-K precision, recall, F1 at K = 3, 5.
    """
    from plbench.engine.evaluate_run import evaluate_run

    given = {k: v for k, v in (options or {}).items() if k != "strict" or v}
    result = evaluate_run(run, dataset, data_root, split, dataset_options=given if (given or dataset) else None,
                          classes=None if not classes else [ZslClasses(c).value for c in classes],
                          which=checkpoint, ema=ema, batch_size=batch_size, device=device, workers=workers, out=out,
                          progress=True)
    s = result.summary
    where = f"{s['dataset']} {s['split']}"
    zs = s.get("zero_shot")
    if zs is not None:
        parts = []
        for key in ("zsl", "zsl_unseen_positive", "gzsl", "seen"):
            if key in zs:
                f1 = "".join(f", F1@{k} {zs[key][f'f1@{k}']:.2f}" for k in (3, 5) if f"f1@{k}" in zs[key])
                parts.append(f"{key.upper()} mAP {zs[key]['map']:.2f}{f1} ({zs['images'][key]} images)")
        typer.echo(f"{where}, zero-shot split {zs['split']} ({zs['num_seen']} seen / {zs['num_unseen']} unseen, "
                   f"{zs['embeddings']} embeddings): {'; '.join(parts)}; {s['checkpoint']}.pt, {s['weights']} "
                   f"weights -> {result.folder}")
    else:
        groups = "".join(f", {k} {v:.2f}" for k, v in s.items() if k.startswith("map_") and v is not None)
        typer.echo(f"{where}: mAP {s['map']:.2f}% over {s['classes_evaluated']} classes "
                   f"({s['val_images']} images; CF1 {s['cf1']:.2f}, OF1 {s['of1']:.2f}{groups}); "
                   f"{s['checkpoint']}.pt, {s['weights']} weights -> {result.folder}")
    if s["val_images_skipped"]:
        typer.echo(_failure_note(s["val_images_skipped"], s["skipped_images"]), err=True)
