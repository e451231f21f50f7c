"""``plbench export fiftyone RUN`` (a run's predictions as a FiftyOne ``Classifications`` field) and
``plbench export model RUN --format onnx|torchscript`` (the trained model for deployment).

The model export is a subcommand (``export model``) rather than ``export RUN --format``: a group that
takes a RUN argument itself cannot also hold the ``fiftyone`` subcommand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from plbench.choices import Checkpoint
from plbench.cli.app import command, export_app
from plbench.cli.options import ZslClasses
from plbench.errors import InputError


@command(export_app, "fiftyone")
def fiftyone_command(
    run: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Run folder with predictions.npz.")],
    fo_dataset: Annotated[Optional[str], typer.Option(
        help="Dataset to create (default plbench-RUNNAME; for a FiftyOne-trained run: its own dataset).")] = None,
    field: Annotated[str, typer.Option(help="Prediction field name (also FIELD_fp, FIELD_fn).")] = "plbench",
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Score at or above which a class is predicted.")] = 0.5,
    top_k: Annotated[int, typer.Option(min=0, help="Always show this many top-scoring classes.")] = 5,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset of that name.")] = False,
) -> None:
    """Write a run's validation scores into FiftyOne so mistakes can be browsed in the App."""
    from plbench.datasets.fiftyone_ import export_predictions

    result = export_predictions(run, fo_dataset=fo_dataset, field=field, threshold=threshold, top_k=top_k,
                                overwrite=overwrite)
    verb = "created" if result.created else "updated"
    typer.echo(f"{verb} FiftyOne dataset {result.dataset!r}: {result.samples:,} samples, field {result.field!r} "
               f"(+ {result.field}_fp, {result.field}_fn). Browse: fiftyone app launch {result.dataset}")


@command(export_app, "model")
def model_command(
    run: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Run folder written by `plbench train`.")],
    export_format: Annotated[str, typer.Option("--format", help="onnx (onnxruntime, TensorRT, ...) or torchscript "
                                        "(torch.jit.load): a plbench.engine.export.ExportFormat value.")],
    out: Annotated[Optional[Path], typer.Option(dir_okay=False, help="Model file (default: RUN/export/"
                                                "model-<checkpoint>[-<classes>]-<scores|logits>.onnx or "
                                                ".torchscript.pt; <classes> for zero-shot runs).")] = None,
    checkpoint: Annotated[Checkpoint, typer.Option("--checkpoint", help="last (final epoch) or best.")] = Checkpoint.LAST,
    ema: Annotated[bool, typer.Option(help="EMA weights where the run has them; --no-ema: the plain model.")] = True,
    sigmoid: Annotated[bool, typer.Option("--sigmoid/--logits", help="Output sigmoid scores or raw logits.")] = True,
    opset: Annotated[Optional[int], typer.Option(min=9, help="ONNX opset version (default: "
                                                 "plbench.engine.export.DEFAULT_OPSET).")] = None,
    check: Annotated[bool, typer.Option(help="Run the written file on batches of 1 and 3 and compare with PyTorch.")] = True,
    classes: Annotated[Optional[ZslClasses], typer.Option(
        "--classes", help="Zero-shot runs: the classes baked into the graph: seen (default: what the model was "
        "trained on), unseen (ZSL) or all (GZSL: seen then unseen) of the run's split, embedded with its "
        "--class-embeddings source and --prompt.")] = None,
    class_names: Annotated[Optional[str], typer.Option(
        help="Zero-shot runs: export these classes instead (open vocabulary), a comma-separated list or a file "
        "with one name a line, as `plbench predict --class-names`; not with --classes.")] = None,
) -> None:
    """Export a run's model (backbone + head, dynamic batch size) with its preprocessing in a JSON beside it.

    The model takes normalised float32 images (B, 3, S, S); the JSON gives S, mean, std and the class names.
    A zero-shot run's export scores one fixed class list (--classes or --class-names), named in the default
    file name (model-last-unseen-scores.onnx) and described by the JSON's zero_shot block.
    """
    from plbench.engine.export import ExportFormat, export_run

    try:
        fmt = ExportFormat.parse(export_format)
    except ValueError as e:
        raise InputError(None, "--format", str(e), "pass --format onnx or --format torchscript") from None
    names = None
    if class_names is not None:
        from plbench.artifacts.runs import RunFolder
        from plbench.engine.zero_shot import parse_class_names, require_zero_shot

        require_zero_shot(RunFolder(run).config(), run, "--class-names")  # before the list is read, as predict
        names = parse_class_names(class_names)
    result = export_run(run, fmt, out, which=checkpoint, ema=ema, sigmoid=sigmoid, opset=opset, check=check,
                        classes=None if classes is None else ZslClasses(classes).value, class_names=names)
    meta = result.metadata
    checked = ""
    if check:
        checked = ("; not checked (onnxruntime missing: pip install 'plbench[onnx]')" if result.max_abs_diff is None
                   else f"; checked: largest difference from PyTorch {result.max_abs_diff:.2e}")
    zsl = meta.get("zero_shot")
    zsl_note = f"; zero-shot: {len(meta['class_names'])} {zsl['classes']} classes" if zsl else ""
    typer.echo(f"wrote {result.path} ({meta['format']}, input {meta['input']['shape']}, output "
               f"{meta['output']['name']} {meta['output']['shape']}; {meta['checkpoint']}.pt, {meta['weights']} weights) "
               f"and {result.metadata_path}{zsl_note}{checked}")
