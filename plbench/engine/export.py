"""Export a run's model (backbone + head) to ONNX or TorchScript, with its preprocessing beside it.

The exported graph takes normalised float32 images ``images`` (B, 3, S, S) with a dynamic batch size B
and returns ``scores`` (sigmoid, in [0, 1]) or ``logits``, (B, C). A JSON file beside it,
``<model file>.json``, says how to make the input and what the outputs are::

    {"format": "onnx", "file": "model-last.onnx",
     "input": {"name": "images", "shape": ["batch", 3, S, S], "dtype": "float32"},
     "output": {"name": "scores", "shape": ["batch", C], "sigmoid": true},
     "preprocessing": {"image_size": S, "mean": [3], "std": [3], "color": "RGB",
                       "resize": "...", "formula": "(uint8 / 255 - mean) / std"},
     "class_names": [C names, in output order],
     "run": ..., "checkpoint": "last", "weights": "ema" | "plain", "epoch": ..., "backbone": ..., "head": ...,
     "plbench_version": ..., "torch_version": ..., "opset": 17 (ONNX only),
     "zero_shot": {...} (zero-shot runs only, :func:`zero_shot_export`)}

A zero-shot run's ML-Decoder scores whatever class embeddings it holds as queries; the export bakes one
class list into the graph: ``seen`` (the classes it was trained on, its checkpoint's queries), ``unseen``
(ZSL) or ``all`` (GZSL: seen then unseen, as ``plbench evaluate`` orders them) of the run's recorded
split, or any ``class_names`` its embedding source can embed (open vocabulary, as ``plbench predict
--class-names``).

ONNX is written with PyTorch's TorchScript-based exporter (``dynamo=False``): the torch.export-based
one needs the extra ``onnxscript`` package. Checking an ONNX file needs ``onnxruntime`` (the ``onnx``
extra: ``pip install plbench[onnx]``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from plbench import __version__
from plbench.artifacts.atomic import atomic_file, atomic_path, write_json
from plbench.artifacts.runs import RunFolder
from plbench.choices import Checkpoint, Choice
from plbench.engine.run_model import load_checkpoint_model
from plbench.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "images"
#: the resize the training engine applies (plbench.datasets.images.resize_square)
RESIZE = "square resize to image_size x image_size, bilinear with antialiasing (PIL), aspect ratio not kept"


class ExportFormat(Choice):
    """File format of an exported model."""

    ONNX = "onnx"  # for onnxruntime, TensorRT, OpenVINO, ...
    TORCHSCRIPT = "torchscript"  # torch.jit.load, no plbench or timm needed


SUFFIXES = {ExportFormat.ONNX: ".onnx", ExportFormat.TORCHSCRIPT: ".torchscript.pt"}


class ExportWrapper(nn.Module):
    """The model with its output function: images (B, 3, S, S) -> sigmoid scores or logits (B, C)."""

    def __init__(self, model: nn.Module, sigmoid: bool) -> None:
        super().__init__()
        self.model = model
        self.sigmoid = sigmoid

    def forward(self, images: Tensor) -> Tensor:
        logits = self.model(images)
        return torch.sigmoid(logits) if self.sigmoid else logits


def metadata_path(model_path: str | Path) -> Path:
    """The JSON written beside an exported model: ``<model file name>.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def export_onnx(module: nn.Module, path: str | Path, image_size: int, output_name: str,
                opset: int = DEFAULT_OPSET) -> None:
    """Write ``module`` (images (B, 3, S, S) -> (B, C)) as ONNX with a dynamic batch axis, atomically."""
    example = torch.zeros(2, 3, image_size, image_size)
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter is deprecated
        try:
            torch.onnx.export(module, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[output_name],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, **kwargs)
        except ModuleNotFoundError as e:  # the onnx package is an optional extra
            raise InputError(path, "onnx", f"exporting to ONNX needs the package {e.name!r}, which is not installed",
                             "pip install 'plbench[onnx]'") from None


def export_torchscript(module: nn.Module, path: str | Path, image_size: int) -> None:
    """Write ``module`` traced (and frozen) to TorchScript, atomically; the graph accepts any batch size.

    ``torch.jit`` is deprecated in favour of ``torch.export`` but still the format most C++ and mobile
    runtimes load; its FutureWarnings are silenced here.
    """
    example = torch.zeros(2, 3, image_size, image_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False).eval())
        with atomic_file(path) as f:  # through a Python file: a full disk is ENOSPC, not a C++ abort
            torch.jit.save(traced, f)


def load_exported(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function running an exported model: float32 (B, 3, S, S) -> float32 (B, C), on the CPU.

    ONNX files run in ``onnxruntime`` (imported here; it is optional), TorchScript files in ``torch.jit``.

    Raises:
        InputError: the format is not known from the file name, or onnxruntime is not installed.
    """
    path = Path(path)
    if path.name.endswith(SUFFIXES[ExportFormat.ONNX]):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError(path, "onnxruntime", "running an ONNX model needs onnxruntime, which is not installed",
                             "pip install 'plbench[onnx]'") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(images: np.ndarray) -> np.ndarray:
            return session.run(None, {name: np.ascontiguousarray(images, dtype=np.float32)})[0]

        return run_onnx
    if path.suffix == ".pt":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run_torchscript(images: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).numpy()

        return run_torchscript
    raise InputError(path, "file name", "expected a .onnx or .torchscript.pt file", "pass a file from `plbench export model`")


#: ``--classes`` of a zero-shot export (``names``: the metadata's word for ``--class-names``)
ZSL_EXPORT_CLASSES = ("seen", "unseen", "all")
DEFAULT_ZSL_EXPORT_CLASSES = "seen"  # what the model was trained on: the export of a run without options


def check_zero_shot_options(config: dict[str, Any], run_path: Path, classes: str | None,
                            class_names: Sequence[str] | None) -> None:
    """Refuse export class options that do not fit the run (before anything is loaded or written).

    Raises:
        InputError: ``classes`` and ``class_names`` both given, either for a run that is not zero-shot, or an
            unknown ``classes``.
    """
    from plbench.engine.zero_shot import require_zero_shot

    if classes is not None and class_names is not None:
        raise InputError(None, "--classes", "--classes and --class-names both pick the exported classes, but both "
                         "were given", "pass --classes seen|unseen|all for the run's split, or --class-names for any "
                         "names, not both")
    if classes is not None:
        require_zero_shot(config, run_path, "--classes")
        if classes not in ZSL_EXPORT_CLASSES:
            raise InputError(None, "--classes", f"expected one of {', '.join(ZSL_EXPORT_CLASSES)}, but got "
                             f"{classes!r}", "pass --classes seen, unseen or all")
    if class_names is not None:
        require_zero_shot(config, run_path, "--class-names")


def zero_shot_export(model: nn.Module, config: dict[str, Any], run_path: Path, model_classes: list[str],
                     classes: str | None, class_names: Sequence[str] | None) -> tuple[list[str], dict[str, Any], str]:
    """Set the queries of a loaded run's model to the classes to export; check the options first.

    Args:
        model: the run's model, its head's queries the checkpoint's (the seen classes').
        config: the run's ``config.json`` dict.
        model_classes: the classes the model was trained on (the seen classes of a zero-shot run).
        classes: ``seen``, ``unseen`` or ``all`` (:data:`ZSL_EXPORT_CLASSES`); None: ``seen`` for a
            zero-shot run unless ``class_names`` are given.
        class_names: any names for the run's embedding source (open vocabulary).
    Returns:
        ``(output classes in order, the metadata's zero_shot block or {} for a run that is not zero-shot,
        the file-name tag: "" or seen, unseen, all, names-<first 8 hex digits of their sha256>)``. The block
        holds ``split`` (the run's ``zsl_split``), ``classes`` (seen | unseen | all | names), ``embeddings``
        and ``prompt`` (the run's source and template), ``embedding_dim``, ``oov_words`` (class name -> the words
        GloVe did not know; None for ``seen``, whose trained queries are kept, not embedded again) and
        ``seen_classes`` (the classes the model was trained on).
    Raises:
        InputError: see :func:`check_zero_shot_options`; names the embedding source cannot embed
            (:func:`plbench.engine.zero_shot.set_run_classes`).
    """
    from plbench.engine import zero_shot

    check_zero_shot_options(config, run_path, classes, class_names)
    if not config.get("zsl_split"):
        return model_classes, {}, ""
    head = zero_shot.zero_shot_head(model)
    oov: dict[str, list[str]] | None = None
    if class_names is not None:
        names = list(class_names)
        oov = zero_shot.set_run_classes(model, config, names)["oov_words"]
        choice = "names"
        tag = "names-" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:8]
    else:
        choice = tag = classes or DEFAULT_ZSL_EXPORT_CLASSES
        if choice == "seen":
            names = list(model_classes)  # the checkpoint's queries: exactly what was trained
        else:
            dataset_classes = zero_shot.dataset_class_names(config)
            _, names, report = zero_shot.set_split_classes(model, config, config["data_root"], dataset_classes,
                                                           model_classes, (choice,))
            oov = report["oov_words"]
    block = {"split": config["zsl_split"], "classes": choice, "embeddings": config.get("class_embeddings"),
             "prompt": config.get("prompt"), "embedding_dim": int(head.query_embeddings.shape[1]),
             "oov_words": oov, "seen_classes": list(model_classes)}
    return names, block, tag


@dataclass
class ExportResult:
    """What :func:`export_run` returns.

    Attributes:
        path: the model file.
        metadata_path: the JSON beside it.
        metadata: its content.
        max_abs_diff: largest |exported - PyTorch| output difference over the check inputs (batches
            of 1 and 3); None when not checked (``check=False``, or onnxruntime missing).
    """

    path: Path
    metadata_path: Path
    metadata: dict[str, Any]
    max_abs_diff: float | None


def compare_outputs(module: nn.Module, exported: Callable[[np.ndarray], np.ndarray],
                    batches: Sequence[np.ndarray]) -> float:
    """Largest absolute difference between ``module`` and ``exported`` outputs over ``batches`` (B, 3, S, S)."""
    worst = 0.0
    with torch.no_grad():
        for x in batches:
            ref = module(torch.from_numpy(np.asarray(x, np.float32))).numpy()
            got = exported(x)
            if got.shape != ref.shape:
                raise ValueError(f"expected exported output {ref.shape}, but got {got.shape}")
            worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export_run(
    run: RunFolder | str | Path,
    fmt: str | ExportFormat,
    out: str | Path | None = None,
    *,
    which: str | Checkpoint = Checkpoint.LAST,
    ema: bool = True,
    sigmoid: bool = True,
    opset: int | None = None,
    check: bool = True,
    tolerance: float = 1e-4,
    classes: str | None = None,
    class_names: Sequence[str] | None = None,
) -> ExportResult:
    """Export a run's model with a dynamic batch size and write the metadata JSON beside it.

    Args:
        run: the run folder.
        fmt: ``onnx`` or ``torchscript``.
        out: the model file (default ``RUN/export/model-<checkpoint>[-plain][-<classes>]-<scores|logits><suffix>``;
            suffix ``.onnx`` or ``.torchscript.pt``; ``<classes>`` for zero-shot runs only, see
            :func:`zero_shot_export`).
        which, ema: which weights (see :func:`plbench.engine.run_model.load_run_model`).
        sigmoid: outputs are sigmoid scores (True) or logits.
        opset: ONNX opset version (None: :data:`DEFAULT_OPSET`).
        check: run the file (onnxruntime / torch.jit.load) on random inputs of batch 1 and 3 and compare
            with the PyTorch model; skipped with a log message when onnxruntime is missing.
        tolerance: largest accepted absolute difference in that check.
        classes, class_names: zero-shot runs only: the classes baked into the graph (:func:`zero_shot_export`;
            default the seen classes).
    Raises:
        InputError: bad run (see ``load_run_model``), zero-shot options for a run that is not zero-shot (or
            both of them), or an exported model whose outputs differ from the PyTorch model's by more than
            ``tolerance``; nothing is written then.
    """
    fmt = ExportFormat.parse(fmt)
    opset = DEFAULT_OPSET if opset is None else int(opset)
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    config = run.config()
    check_zero_shot_options(config, run.path, classes, class_names)  # before the model is loaded
    (model, pre, model_classes), source = load_checkpoint_model(run, which, ema)
    class_names, zsl_block, tag = zero_shot_export(model, config, run.path, model_classes, classes, class_names)
    module = ExportWrapper(model, sigmoid).eval()
    output_name = "scores" if sigmoid else "logits"
    if out is None:
        plain = "-plain" if source.ema_available and source.weights == "plain" else ""
        tag = f"-{tag}" if tag else ""
        out = run.path / "export" / f"model-{source.checkpoint}{plain}{tag}-{output_name}{SUFFIXES[fmt]}"
    out = Path(out)
    wanted = ".onnx" if fmt is ExportFormat.ONNX else ".pt"
    if out.suffix != wanted:
        raise InputError(out, "--out", f"expected a {fmt.value} file name ending in {wanted}, but got {out.name!r}",
                         f"name it e.g. model{SUFFIXES[fmt]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    size = int(pre["image_size"])
    if fmt is ExportFormat.ONNX:
        export_onnx(module, out, size, output_name, opset)
    else:
        export_torchscript(module, out, size)

    metadata: dict[str, Any] = {
        "format": fmt.value, "file": out.name,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, size, size], "dtype": "float32"},
        "output": {"name": output_name, "shape": ["batch", len(class_names)], "sigmoid": sigmoid},
        "preprocessing": {**pre, "color": "RGB", "resize": RESIZE, "formula": "(uint8 / 255 - mean) / std",
                          "layout": "NCHW"},
        "class_names": class_names,
        "run": run.name, "checkpoint": source.checkpoint, "weights": source.weights, "epoch": source.epoch,
        "backbone": config.get("backbone"), "head": config.get("head"), "head_options": config.get("head_options"),
        "plbench_version": __version__, "torch_version": torch.__version__,
    }
    if fmt is ExportFormat.ONNX:
        metadata["opset"] = opset
    if zsl_block:
        metadata["zero_shot"] = zsl_block
    meta_path = metadata_path(out)
    write_json(meta_path, metadata)

    diff = None
    if check:
        try:
            runner = load_exported(out)
        except InputError as e:  # onnxruntime missing: the file is fine, it just cannot be checked here
            log.warning("not checking %s: %s", out, e.problem)
        else:
            rng = np.random.default_rng(0)
            batches = [rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in (1, 3)]
            try:
                diff = compare_outputs(module, runner, batches)
            except ValueError as e:  # an output of the wrong shape: the batch axis did not stay dynamic
                raise InputError(out, "outputs", str(e), "report this as a bug with the run's backbone and head") from None
            if not diff <= tolerance:
                raise InputError(out, "outputs", f"expected the exported model to match the PyTorch model within "
                                 f"{tolerance:g}, but the largest difference is {diff:.3g}",
                                 "report this as a bug with the run's backbone and head, or try another --opset")
    return ExportResult(out, meta_path, json.loads(json.dumps(metadata)), diff)
