"""Use a trained run: load its model, predict on image files, evaluate it on any dataset split.

The model of a run is rebuilt from its ``config.json`` (backbone, head, head options) and loaded from
``last.pt`` or ``best.pt``: the EMA weights where the checkpoint holds them (unless asked for the plain
model), else the plain ones. A linear-protocol run saved only its head; its backbone is rebuilt from the
weights its features were extracted with (see :func:`build_run_model`). Images get the run's own preprocessing:
decoded to RGB with the EXIF orientation applied, resized to S x S (bilinear, aspect ratio not kept)
exactly as the training engine did, then ``(uint8 / 255 - mean) / std``.

An evaluation (:func:`evaluate_run`) writes a new folder beside the run's files, by default
``RUN/eval-<dataset>-<split>-<checkpoint>/`` with ``predictions.npz`` and ``summary.json`` in the run
folder format, so ``plbench report`` can read it; the run's own files are never touched.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from plbench import __version__
from plbench.artifacts.atomic import atomic_path
from plbench.artifacts.features import FeatureStore, store_folder
from plbench.artifacts.files import sha256_file
from plbench.artifacts.runs import RunFolder
from plbench.choices import Checkpoint
from plbench.datasets import load_dataset
from plbench.engine.data import IMAGENET_MEAN, IMAGENET_STD, decode_resized, normalize, to_chw
from plbench.engine.evaluate import evaluate_scores
from plbench.engine.model import build_model
from plbench.engine.train import resolve_device
from plbench.errors import InputError
from plbench.progress import progress as progress_bar

log = logging.getLogger(__name__)

#: file suffixes a folder given to :func:`list_images` is searched for (case-insensitive)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# -- loading a run's model --------------------------------------------------------------------------------


class RunModel(NamedTuple):
    """What :func:`load_run_model` returns.

    Attributes:
        model: ``nn.Module`` in eval mode on the CPU: normalised float32 images (B, 3, S, S) -> logits (B, C).
        preprocessing: ``{"image_size": S, "mean": [3], "std": [3]}`` (model input = (uint8/255 - mean)/std).
        class_names: (C,) names, in the order of the logits.
    """

    model: nn.Module
    preprocessing: dict[str, Any]
    class_names: list[str]


@dataclass(frozen=True)
class ModelSource:
    """Where the weights of a loaded model came from (recorded in evaluation summaries and export metadata).

    Attributes:
        checkpoint: ``last`` or ``best``.
        weights: ``ema`` or ``plain``.
        epoch: the last finished epoch of the checkpoint, 0-based.
        ema_available: the checkpoint holds EMA weights (used or not).
    """

    checkpoint: str
    weights: str
    epoch: int
    ema_available: bool


def run_preprocessing(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``preprocessing``, or (older checkpoints) the config's image size with ImageNet mean/std."""
    pre = state.get("preprocessing")
    if pre is None:
        pre = {"image_size": int(config["image_size"]), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return {"image_size": int(pre["image_size"]), "mean": [float(m) for m in pre["mean"]],
            "std": [float(s) for s in pre["std"]]}


def _run_class_names(run: RunFolder, state: dict[str, Any]) -> list[str]:
    names = state.get("class_names")
    if names is None:  # checkpoints written before class names were saved in them
        if not run.is_finished:
            raise InputError(run.path, "class_names", "the checkpoint does not name its classes and the run has no "
                             "summary.json", "finish the run first (re-run `plbench train` on it)")
        names = run.summary()["class_names"]
    return [str(n) for n in names]


def checkpoint_weights(state: dict[str, Any], ema: bool) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict to load and its kind (``ema`` or ``plain``).

    ``ema=True`` takes the checkpoint's EMA weights when it holds them (``ema`` key present and not None)
    and falls back to the plain model otherwise. The engine saves the EMA as ``{"decay", "updates",
    "module": state_dict}`` (:meth:`plbench.engine.ema.ModelEma.state_dict`); a bare state dict, or one
    saved from a wrapper (keys ``module.*``), is accepted too.
    """
    weights = state.get("ema") if ema else None
    if weights is None:
        return state["model"], "plain"
    if isinstance(weights.get("module"), dict):
        weights = weights["module"]
    elif any(k.startswith("module.") for k in weights):
        weights = {k[len("module."):]: v for k, v in weights.items() if k.startswith("module.")}
    return weights, "ema"


def _check_linear_backbone(config: dict[str, Any]) -> None:
    """A linear-protocol run's backbone must be rebuildable with the weights its features came from.

    Raises:
        InputError: the features came from a randomly initialised backbone (its weights were never saved),
            or the ``checkpoint`` file changed since the extraction (sha256 recorded in the feature store).
    """
    if not config.get("pretrained") and not config.get("checkpoint"):
        raise InputError(
            config["features"], "features", "this linear-protocol run's features came from a randomly "
            "initialised backbone, whose weights were never saved, so the image model cannot be rebuilt",
            "extract features from pretrained weights (--pretrained) or a --checkpoint file, and train again",
        )
    if not config.get("checkpoint"):
        return
    folder = store_folder(config["features"], config.get("train_split", "train"))
    if not folder.is_dir():
        log.warning("cannot check %s against the feature store %s (absent)", config["checkpoint"], folder)
        return
    want = (FeatureStore.open(folder).meta.get("weights") or {}).get("checkpoint_sha256")
    got = sha256_file(config["checkpoint"])
    if want is not None and got != want:
        raise InputError(config["checkpoint"], "checkpoint_sha256", f"the backbone weights file changed since the "
                         f"features were extracted (sha256 {got[:12]}..., recorded {want[:12]}...)",
                         "restore the file the features were extracted with")


def build_run_model(config: dict[str, Any], num_classes: int, weights: dict[str, torch.Tensor],
                    source: str | Path | None = None) -> nn.Module:
    """Rebuild the image model of a run from its config dict and load ``weights`` into it (strictly).

    A fine-tuned run's weights are the whole model. A linear-protocol run (``config["features"]`` set)
    saved its head only (keys ``head.*``): the backbone is rebuilt from the config's ``backbone``,
    ``pretrained`` and ``checkpoint``, which the engine checked against the feature store when training.
    Its outputs then differ from the training-time ones by the float16 rounding of the stored features.

    Returns:
        A :class:`plbench.engine.model.MultiLabelClassifier` in eval mode: images (B, 3, S, S) -> logits (B, C).
    Raises:
        InputError: the weights do not fit the architecture the config describes; a linear-protocol run
            whose backbone cannot be rebuilt (see :func:`_check_linear_backbone`).
    """
    linear = bool(config.get("features"))
    if linear:
        _check_linear_backbone(config)
    model = build_model(config["backbone"], config["head"], num_classes,
                        pretrained=bool(config.get("pretrained")) if linear else False,
                        checkpoint=config.get("checkpoint") if linear else None,
                        head_options=config.get("head_options") or {})
    try:
        if linear:
            model.head.load_state_dict({k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")})
        else:
            model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(source, "model", f"the checkpoint's weights do not fit the {config['backbone']} + "
                         f"{config['head']} model its config describes ({first})",
                         "pass the run folder the checkpoint was written in, unchanged") from None
    return model.eval()


def run_batch_size(config: dict[str, Any], batch_size: int | None = None) -> int:
    """``batch_size`` when given, else the run's own (its ``config.json``; 32 when it records none): with
    the run's batch size, predicting its own validation split gives exactly the run's scores."""
    return batch_size or int(config.get("batch_size", 32))


def load_checkpoint_model(run: RunFolder | str | Path, which: str | Checkpoint = Checkpoint.LAST,
                          ema: bool = True) -> tuple[RunModel, ModelSource]:
    """Like :func:`load_run_model`, plus where the weights came from."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    which = Checkpoint.parse(which).value
    config = run.config()
    state = run.load_checkpoint(which, map_location="cpu")
    class_names = _run_class_names(run, state)
    weights, kind = checkpoint_weights(state, ema)
    model = build_run_model(config, len(class_names), weights, run.file(f"{which}.pt"))
    source = ModelSource(checkpoint=which, weights=kind, epoch=int(state["epoch"]),
                         ema_available=state.get("ema") is not None)
    return RunModel(model, run_preprocessing(state, config), class_names), source


def load_run_model(run: RunFolder | str | Path, which: str | Checkpoint = Checkpoint.LAST,
                   ema: bool = True) -> RunModel:
    """Load the model of a run folder for inference.

    Args:
        run: the run folder (``plbench train`` output).
        which: ``last`` (the final epoch: what the headline mAP measures) or ``best``.
        ema: use the EMA weights when the checkpoint has them (the headline model of csl runs).
    Returns:
        ``(model, preprocessing, class_names)`` (a :class:`RunModel`); the model is in eval mode on the CPU.
    Raises:
        InputError: no such checkpoint, a damaged one, weights that do not fit the config, or a
            linear-protocol run whose backbone cannot be rebuilt.

    Example:
        >>> model, pre, names = load_run_model("runs/synthetic-full-ignore-resnet10t-gap-s0")  # doctest: +SKIP
        >>> model(torch.zeros(1, 3, pre["image_size"], pre["image_size"])).shape  # doctest: +SKIP
        torch.Size([1, 20])
    """
    return load_checkpoint_model(run, which, ema)[0]


# -- images -------------------------------------------------------------------------------------------------


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named by ``inputs``: a file is taken as is, a folder is searched recursively.

    Folders contribute files whose suffix is in :data:`IMAGE_SUFFIXES`, sorted by path; the order of
    ``inputs`` is kept, and a file named twice is listed once.

    Raises:
        InputError: a path that does not exist, or no image at all.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.exists():
            found = [item]
        else:
            raise InputError(item, "IMAGE_OR_FOLDER", "no such file or folder", "pass image files or folders of images")
        for p in found:
            if p not in seen:
                seen.add(p)
                out.append(p)
    if not out:
        raise InputError(None, "IMAGE_OR_FOLDER", f"no image file ({', '.join(IMAGE_SUFFIXES)}) under "
                         f"{', '.join(map(str, inputs))}", "pass image files or folders holding images")
    return out


def load_pixels(path: str | Path, image_size: int, strict: bool = True) -> torch.Tensor | None:
    """One image file decoded and resized as the engine does: uint8 (3, S, S); None for an undecodable
    file when not ``strict``."""
    pixels = decode_resized(str(path), int(image_size), strict=strict)
    return None if pixels is None else to_chw(pixels)


def preprocess(images: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """Model input from uint8 images (B, 3, S, S): float32 ``(x / 255 - mean) / std`` (the engine's own code)."""
    return normalize(images, preprocessing["mean"], preprocessing["std"])


class ImageFiles(Dataset):
    """Items ``(image uint8 (3, S, S) or None, index)``: undecodable files give None, never an exception."""

    def __init__(self, paths: Sequence[str | Path], image_size: int) -> None:
        self.paths = [str(p) for p in paths]
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int]:
        return load_pixels(self.paths[index], self.image_size, strict=False), index


def _collate(items: list[tuple[torch.Tensor | None, int]]) -> tuple[torch.Tensor | None, list[int], list[int]]:
    """-> (images uint8 (b, 3, S, S) or None, indices of the decoded items, indices of the undecodable ones)."""
    ok = [(x, i) for x, i in items if x is not None]
    failed = [i for x, i in items if x is None]
    images = torch.stack([x for x, _ in ok]) if ok else None
    return images, [i for _, i in ok], failed


class PredictionBatch(NamedTuple):
    """One batch of :func:`iter_predictions`.

    Attributes:
        indices: int64 (b,) positions in the input list of the images that decoded.
        scores: float32 (b, C) sigmoid scores in [0, 1] (shape (0, 0) when no image of the batch decoded).
        failed: positions of the images of this batch that could not be decoded.
    """

    indices: np.ndarray
    scores: np.ndarray
    failed: list[int]


def iter_predictions(
    model: nn.Module,
    paths: Sequence[str | Path],
    preprocessing: dict[str, Any],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    workers: int = 0,
    strict: bool = False,
    amp: bool = False,
    progress: bool = False,
) -> Iterator[PredictionBatch]:
    """Predict image files batch by batch (memory independent of the number of files).

    Args:
        model: images (B, 3, S, S) -> logits (B, C); put in eval mode here.
        paths: (N,) image files.
        preprocessing: the run's (see :class:`RunModel`).
        batch_size: images per forward pass.
        device: where the model runs (it is moved there).
        workers: DataLoader processes decoding images (0: in this process).
        strict: an undecodable image raises instead of being reported in ``failed``.
        amp: bf16 autocast (CUDA only).
        progress: show progress on stderr (:func:`plbench.progress.progress`: a bar on a terminal, a few
            plain lines elsewhere).
    Yields:
        :class:`PredictionBatch` in input order.
    Raises:
        InputError: ``strict`` and an image that cannot be decoded (naming it).
    """
    device = torch.device(device)
    model = model.to(device).eval()
    size = int(preprocessing["image_size"])
    loader = DataLoader(ImageFiles(paths, size), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate, pin_memory=device.type == "cuda")
    with progress_bar(total=len(paths), desc="predict", unit="img", enabled=progress) as bar:
        for images, indices, failed in loader:
            if failed and strict:  # decode again in this process to raise the decoder's own error
                load_pixels(paths[failed[0]], size, strict=True)
            scores = np.zeros((0, 0), np.float32)
            if images is not None:
                x = preprocess(images.to(device, non_blocking=True), preprocessing)
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                     enabled=amp and device.type == "cuda"):
                    logits = model(x)
                scores = torch.sigmoid(logits.float()).cpu().numpy()
            bar.update(len(indices) + len(failed))
            yield PredictionBatch(np.asarray(indices, np.int64), scores, failed)


class Predictions(NamedTuple):
    """All of :func:`predict_files`: ``scores`` float32 (N', C) of the decoded images, their positions
    ``indices`` int64 (N',) in the input list, and ``failed`` positions of undecodable images."""

    scores: np.ndarray
    indices: np.ndarray
    failed: list[int]


def predict_files(model: nn.Module, paths: Sequence[str | Path], preprocessing: dict[str, Any],
                  num_classes: int, **kwargs: Any) -> Predictions:
    """:func:`iter_predictions` gathered into arrays (``kwargs`` as there)."""
    scores, indices, failed = [], [], []
    for batch in iter_predictions(model, paths, preprocessing, **kwargs):
        if len(batch.indices):
            scores.append(batch.scores)
            indices.append(batch.indices)
        failed.extend(batch.failed)
    if not scores:
        return Predictions(np.zeros((0, num_classes), np.float32), np.zeros(0, np.int64), failed)
    return Predictions(np.concatenate(scores), np.concatenate(indices), failed)


def select_classes(scores: np.ndarray, class_names: Sequence[str], *, threshold: float = 0.5,
                   top_k: int | None = None) -> list[tuple[str, float]]:
    """The classes to report for one image, highest score first.

    Args:
        scores: float (C,) in [0, 1].
        threshold: classes scoring at or above it (used when ``top_k`` is None).
        top_k: the k best classes regardless of the threshold (ties: lower class index first).
    Returns:
        ``[(class name, score), ...]``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        keep = order[:top_k]
    else:
        keep = order[scores[order] >= threshold]
    return [(class_names[j], float(scores[j])) for j in keep]


#: one image's reported classes: (image path, [(class name, score), ...] highest score first)
Selected = tuple[str, list[tuple[str, float]]]
#: ``--out`` file kinds by suffix: JSON lines (one object per image) or CSV (one row per image and class)
PREDICTION_FILE_KINDS = {".jsonl": "jsonl", ".csv": "csv"}


def iter_selected(model: nn.Module, paths: Sequence[str | Path], preprocessing: dict[str, Any],
                  class_names: Sequence[str], *, threshold: float = 0.5, top_k: int | None = None,
                  failed: list[str] | None = None, **kwargs: Any) -> Iterator[Selected]:
    """The classes each decodable image gets (:func:`select_classes`), in input order, batch by batch.

    Args:
        failed: when given, the paths of undecodable images are appended to it as they are met.
        kwargs: as for :func:`iter_predictions` (batch_size, device, workers, strict, progress, ...).
    """
    for batch in iter_predictions(model, paths, preprocessing, **kwargs):
        if failed is not None:
            failed.extend(str(paths[i]) for i in batch.failed)
        for row, i in enumerate(batch.indices):
            yield str(paths[i]), select_classes(batch.scores[row], class_names, threshold=threshold, top_k=top_k)


def prediction_file_kind(path: str | Path) -> str:
    """``jsonl`` or ``csv``, from the file name.

    Raises:
        InputError: another suffix.
    """
    kind = PREDICTION_FILE_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise InputError(path, "--out", f"expected a .jsonl or .csv file name, but got {Path(path).name!r}",
                         "name the output e.g. predictions.jsonl or predictions.csv")
    return kind


def write_selected(path: str | Path, rows: Iterable[Selected]) -> int:
    """Stream ``rows`` into a predictions file, atomically (the file appears complete or not at all).

    Formats, by suffix: ``.jsonl``, one line per image ``{"image": path, "predictions": [{"class": name,
    "score": s}, ...]}``; ``.csv``, header ``image,class,score`` then one row per (image, class). Scores
    have 6 decimals.

    Returns:
        The number of images written.
    Raises:
        InputError: a suffix other than .jsonl or .csv.
    """
    kind = prediction_file_kind(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        table = csv.writer(f, lineterminator="\n") if kind == "csv" else None
        if table is not None:
            table.writerow(["image", "class", "score"])
        for image, picked in rows:
            if table is not None:
                table.writerows([image, name, f"{score:.6f}"] for name, score in picked)
            else:
                f.write(json.dumps({"image": image, "predictions": [{"class": n, "score": round(sc, 6)}
                                                                    for n, sc in picked]}) + "\n")
            count += 1
    return count


# -- evaluation -----------------------------------------------------------------------------------------------


def match_classes(model_classes: Sequence[str], split_classes: Sequence[str], path: str | Path | None) -> np.ndarray:
    """Column order that puts a split's classes in the model's order: ``split_columns[:, perm]``.

    Raises:
        InputError: the two class lists differ as sets (the message names the classes on each side).
    """
    model_classes, split_classes = list(model_classes), list(split_classes)
    if len(set(split_classes)) != len(split_classes):
        raise InputError(path, "class names", "the dataset names a class twice", "fix the dataset's class list")
    position = {n: i for i, n in enumerate(split_classes)}
    missing = [n for n in model_classes if n not in position]
    extra = [n for n in split_classes if n not in set(model_classes)]
    if missing or extra:
        def names(xs: list[str]) -> str:
            return ", ".join(map(repr, xs[:8])) + (f" and {len(xs) - 8} more" if len(xs) > 8 else "") or "none"

        raise InputError(
            path, "class names", f"expected the run's {len(model_classes)} classes, but the split has "
            f"{len(split_classes)}: missing from the split: {names(missing)}; not known to the model: {names(extra)}",
            "evaluate on a dataset with the class list the run was trained on (order does not matter)",
        )
    return np.asarray([position[n] for n in model_classes], dtype=np.int64)


def reorder_groups(groups: dict[str, np.ndarray], perm: np.ndarray) -> dict[str, np.ndarray]:
    """Class groups (e.g. LVIS rare/common/frequent) of a split, as indices into the model's class order.

    Args:
        groups: name -> int64 indices into the split's classes.
        perm: from :func:`match_classes`: model class j is split class ``perm[j]``.
    Returns:
        name -> sorted int64 indices into the model's classes.
    """
    position = np.empty_like(perm)
    position[perm] = np.arange(len(perm))  # split class index -> model class index
    return {g: np.sort(position[np.asarray(idx, np.int64)]) for g, idx in groups.items()}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def evaluation_folder(run: RunFolder, dataset: str, split: str, which: str, weights: str, ema_available: bool) -> Path:
    """Default folder of an evaluation: ``RUN/eval-<dataset>-<split>-<checkpoint>[-plain]`` (``-plain`` only
    when the EMA weights were available but not used)."""
    suffix = "-plain" if ema_available and weights == "plain" else ""
    return run.path / f"eval-{_slug(dataset)}-{_slug(split)}-{which}{suffix}"


#: summary fields copied from the run's summary.json (what the run is; the rest describes the evaluation)
RUN_FIELDS = ("labels", "mode", "loss", "recipe", "protocol", "backbone", "head", "image_size", "epochs", "seed",
              "train_images", "train_annotated_fraction", "train_positives", "train_negatives", "simulation")


@dataclass
class EvaluationResult:
    """What :func:`evaluate_run` returns: the evaluation folder and its summary."""

    folder: Path
    summary: dict[str, Any]


def evaluate_run(
    run: RunFolder | str | Path,
    dataset: str,
    data_root: str | Path,
    split: str,
    *,
    dataset_options: dict[str, Any] | None = None,
    which: str | Checkpoint = Checkpoint.LAST,
    ema: bool = True,
    batch_size: int | None = None,
    device: str = "auto",
    workers: int = 0,
    amp: bool = False,
    out: str | Path | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Score a run's model on one split of a dataset with the same classes; write an evaluation folder.

    The split's classes are matched to the model's by name (any order); its labels are used as they
    are (complete or natural partial labels; ``-1`` entries are left out of the metrics).

    Args:
        run: a run folder with ``config.json`` and the checkpoint ``which``.
        dataset, data_root, split, dataset_options: as for :func:`plbench.datasets.load_dataset`.
        which, ema: which weights (see :func:`load_run_model`).
        batch_size: images per forward pass (default: the run's batch size, so the run's own
            validation split gives exactly the run's scores).
        device: auto, cpu, cuda or cuda:N.
        out: the evaluation folder (default :func:`evaluation_folder`); it must not be the run folder.
    Returns:
        The folder, holding ``predictions.npz`` (scores in the model's class order) and ``summary.json``:
        ``kind`` "evaluation" (what tells it from a training run), ``evaluated_run``, ``checkpoint``,
        ``weights`` (ema | plain), ``epoch``, ``dataset``, ``split``, ``train_dataset``; ``map`` and ``val_map``
        (both: mAP in percent on this split, so the report reads it like a run), ``val_map_plain`` or
        ``val_map_ema`` (the same number, under the weights used), ``best_val_map`` and ``authors_map`` null
        (one fixed model: nothing selected), ``evaluation_protocol`` (text), ``ap_per_class`` (percent),
        ``cf1``/``of1``/..., ``map_<group>``; ``val_images`` / ``val_images_skipped`` / ``skipped_images``
        (this split's counts, the first 100 unreadable paths); the run's own descriptive fields
        (:data:`RUN_FIELDS`), preprocessing and timing.
    Raises:
        InputError: bad run, dataset or options; class lists that differ (naming the classes); an
            ``out`` folder that is the run folder itself.
    """
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    started = time.time()
    config = run.config()
    (model, pre, class_names), source = load_checkpoint_model(run, which, ema)
    split_data = load_dataset(dataset, data_root, split, **(dataset_options or {}))
    perm = match_classes(class_names, split_data.class_names, data_root)
    folder = Path(out) if out is not None else evaluation_folder(run, dataset, split, source.checkpoint,
                                                                 source.weights, source.ema_available)
    if folder.resolve() == run.path.resolve():
        raise InputError(folder, "--out", "the evaluation folder is the run folder itself",
                         "pass another folder (the default is RUN/eval-<dataset>-<split>-<checkpoint>)")

    strict = bool((dataset_options or {}).get("strict", False))
    preds = predict_files(model, split_data.image_paths, pre, len(class_names),
                          batch_size=run_batch_size(config, batch_size),
                          device=resolve_device(device), workers=workers, strict=strict, amp=amp, progress=progress)
    targets = split_data.labels.batch(preds.indices)[:, perm]
    groups = reorder_groups(split_data.class_groups, perm)
    ev = evaluate_scores(preds.scores, targets, groups)

    ev_dir = RunFolder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ev_dir.write_predictions(preds.scores, targets, np.asarray(split_data.image_paths)[preds.indices],
                             np.asarray(split_data.labels.image_ids)[preds.indices], class_names)
    try:
        run_summary = run.summary()
    except InputError:
        run_summary = {}
    failed = [str(split_data.image_paths[i]) for i in preds.failed]
    summary: dict[str, Any] = {
        "kind": "evaluation", "run": f"{run.name}/{folder.name}" if folder.parent == run.path else folder.name,
        "evaluated_run": str(run.path), "checkpoint": source.checkpoint, "weights": source.weights,
        "epoch": source.epoch, "train_dataset": config.get("dataset"),
        **{k: run_summary.get(k, config.get(k)) for k in RUN_FIELDS},
        "dataset": dataset, "data_root": str(data_root), "split": split, "data_fingerprint": split_data.fingerprint,
        "val_images": int(len(preds.indices)), "val_images_skipped": len(failed), "skipped_images": failed[:100],
        "num_classes": len(class_names), "class_names": class_names, "classes_reordered": bool(
            (perm != np.arange(len(perm))).any()),
        "map": ev["map"], "val_map": ev["map"],
        "val_map_plain": ev["map"] if source.weights == "plain" else None,
        "val_map_ema": ev["map"] if source.weights == "ema" else None,
        "best_val_map": None, "authors_map": None,  # one fixed model: nothing selected on this split
        "evaluation_protocol": f"{source.checkpoint}.pt (epoch {source.epoch + 1}), "
                               f"{'EMA' if source.weights == 'ema' else 'plain'} model, on {dataset} {split}",
        **{k: v for k, v in ev.items() if k != "map"},
        "preprocessing": pre, "plbench_version": __version__,
        "evaluation_seconds": time.time() - started,
    }
    summary = _json_safe(summary)
    ev_dir.write_summary(summary)
    return EvaluationResult(folder, summary)


def _json_safe(obj: Any) -> Any:
    """NaN (an undefined group mAP) as null, numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
