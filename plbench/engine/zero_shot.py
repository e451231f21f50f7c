"""Zero-shot runs: train on a split's seen classes, evaluate ZSL (unseen classes) and GZSL (seen + unseen).

A run is zero-shot when ``config.zsl_split`` is set (``"nuswide"``: 925 tags / 81 concepts from the class
files; otherwise a split file, :func:`plbench.zsl.splits.read_split_file`). Then, before anything is
written (:func:`prepare`, which :func:`plbench.engine.train.train` passes to :func:`plbench.engine.inputs.load_inputs`):

* the class embeddings of every class of the split (seen then unseen) are computed from
  ``config.class_embeddings`` with ``config.prompt`` (:func:`plbench.embeddings.class_embeddings`);
* the training labels keep the seen columns, and images without a seen positive are dropped (as ML-Decoder's
  ``get_relevant_samples``), counted in the summary; the training dataset reads the kept rows of the split
  (:class:`RowSubset`), so image caches and feature stores stay aligned with the split's rows;
* the per-epoch validation scores the seen classes on every validation image (``val_map`` and the usual
  summary fields are seen-class numbers).

The head is ML-Decoder in zero-shot mode, its queries built from the seen classes' embeddings
(:func:`head_kwargs`). After the last epoch :func:`evaluate_zero_shot` gives the headline model every
class's embeddings and scores the validation split: ZSL over the unseen columns and GZSL over all, each on
every validation image (LESA, BiAM) and ZSL also on the images with an unseen positive only (ML-Decoder's
``train_zsl_nus.py``); the result is the summary's ``zero_shot`` block.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from plbench.choices import Head, MissingEmbeddings
from plbench.datasets import DatasetSplit
from plbench.embeddings import CLIP_PREFIX, DEFAULT_CLIP_MODEL, class_embeddings, is_encoder
from plbench.errors import InputError
from plbench.labels import POS, PartialLabels
from plbench.zsl.splits import NUSWIDE, ZSLSplit, class_indices, read_nuswide_split, read_split_file, restrict_labels

log = logging.getLogger(__name__)



@dataclass
class ZeroShotInputs:
    """What a zero-shot run needs beyond the seen-class training data.

    Attributes:
        split: seen and unseen class names.
        vectors: float32 (S + U, Q) class embeddings, rows in ``split.classes`` order (seen then unseen).
        embeddings: :meth:`plbench.embeddings.ClassEmbeddings.report` (source, prompt, dim, OOV words).
        train_rows: int64 (M,) rows of the (possibly truncated) training split that have a seen positive.
        train_labels_all_rows: seen-column labels of every training row (what the datasets index).
        train_paths_all_rows: (N,) the training split's image paths.
        dropped_train_images: N - M.
        val_split: the validation split with every class of the split (seen then unseen columns).
    """

    split: ZSLSplit
    vectors: np.ndarray
    embeddings: dict[str, Any]
    train_rows: np.ndarray
    train_labels_all_rows: PartialLabels
    train_paths_all_rows: np.ndarray
    dropped_train_images: int
    val_split: DatasetSplit

    @property
    def seen_vectors(self) -> np.ndarray:
        return self.vectors[: self.split.num_seen]


def resolve_split(source: str, data_root: str | Path, class_names: Sequence[str]) -> ZSLSplit:
    """The split ``source`` names for a dataset with ``class_names``.

    Raises:
        InputError: a missing or bad split file, or a split naming classes the dataset lacks.
    """
    if source == NUSWIDE:
        split = read_nuswide_split(data_root)
    else:
        return read_split_file(source, class_names)
    missing = [c for c in split.classes if c not in set(class_names)]
    if missing:
        raise InputError(data_root, "--zsl-split", f"the NUS-WIDE split names {len(missing)} classes the loaded "
                         f"labels lack (first: {missing[:3]})", "load NUS-WIDE's official layout with "
                         "--nuswide-labels zsl (config: dataset_options nuswide_labels = \"zsl\"; 925 tags + 81 "
                         "concepts), or ML-Decoder's data.csv layout, whose classes are these 1,006")
    return split


def default_dataset_options(dataset: str, data_root: str | Path, zsl_split: str | None,
                            options: dict[str, Any]) -> dict[str, Any]:
    """A run's loader options with the label set its split needs filled in: ``--zsl-split nuswide`` on
    NUS-WIDE's official layout reads ``nuswide_labels = "zsl"`` (925 seen tags, then the 81 unseen concepts)
    unless the options name a label set. Other runs get ``options`` as they are."""
    from plbench.datasets.nuswide import is_official_layout

    if dataset == NUSWIDE and zsl_split == NUSWIDE and "nuswide_labels" not in options and \
            is_official_layout(data_root):
        return {**options, "nuswide_labels": "zsl"}
    return dict(options)


def file_classes(source: str, data_root: str | Path, dataset_classes: Sequence[str]) -> list[str] | None:
    """The classes of an embedding file that holds no names: the dataset's, in its class order, for ``.npy``
    and ``.pt`` / ``.pth`` (the reader takes a (C, D) array's rows in this order, and an ML-Decoder-style
    (D, C) tensor's columns in *sorted* order: :func:`plbench.embeddings.files.read_torch_file`); NUS-WIDE's
    tags then concepts for the LESA / BiAM pickle (read from the class files under ``data_root``). None for
    encoders and named files (CSV)."""
    suffix = Path(source).suffix.lower()
    if not Path(source).is_file() or suffix == ".csv":
        return None
    if suffix in (".pth", ".pt", ".npy"):
        return list(dataset_classes)
    from plbench.datasets.nuswide import nuswide_class_lists

    tags, concepts = nuswide_class_lists(Path(data_root))
    return list(tags) + list(concepts)


def _getter(config: Any) -> Any:
    """``key -> value`` of a :class:`plbench.config.TrainConfig` or a run's ``config.json`` dict (a key an older
    ``config.json`` lacks reads as the field's default)."""
    if isinstance(config, dict):
        from plbench.config import DEFAULTS

        return lambda key: config.get(key, DEFAULTS[key])
    return lambda key: getattr(config, key)


def allows_missing(config: Any) -> bool:
    """Whether the run gives classes without a vector zero vectors (``missing_embeddings = "zero"``)."""
    return MissingEmbeddings.parse(_getter(config)("missing_embeddings")) is MissingEmbeddings.ZERO


#: the folder of cached encoder embeddings under a training run's ``out_dir`` (the folder of run folders)
EMBEDDING_CACHE = "class-embeddings"


def embedding_cache(config: Any) -> Path | None:
    """Where a training run caches what its encoder computes (class names, alignment captions):
    ``<out_dir>/class-embeddings``, shared by the runs of that folder (a sweep's too), one entry per class
    list, source and prompt (:mod:`plbench.embeddings.cache`). None for an embedding file, which is read
    directly. The folder belongs to no run: deleting it costs only the recomputation."""
    get = _getter(config)
    source = get("class_embeddings")
    return Path(get("out_dir")) / EMBEDDING_CACHE if source and is_encoder(source) else None


def embed_classes(config: Any, names: Sequence[str], dataset_classes: Sequence[str] | None = None, *,
                  allow_missing: bool | None = None, cache: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """float32 (C, Q) embeddings of ``names`` from the run's recorded source and prompt, and their report.

    ``config``: a :class:`plbench.config.TrainConfig`, or a run's ``config.json`` dict.
    ``dataset_classes``: the dataset's classes (default ``names``), for files whose rows are unnamed
    (:func:`file_classes`). ``allow_missing``: zero rows for names without a vector, listed in the
    report's ``missing``, instead of an error; ``None``: the run's ``missing_embeddings`` policy.
    ``cache``: read and write the run's cache of encoder results (:func:`embedding_cache`; training only).

    Raises:
        InputError: no ``class_embeddings`` source, or the source fails (missing package, bad file, classes
            without a vector unless allowed).
    """
    get = _getter(config)
    if allow_missing is None:
        allow_missing = allows_missing(config)
    source = get("class_embeddings")
    if not source:
        raise InputError(None, "--class-embeddings", "a zero-shot run needs class embeddings, but none were given",
                         "pass --class-embeddings glove (or minilm, random, clip:FILE, an embedding file)")
    rows = file_classes(source, get("data_root"), list(dataset_classes or names))
    emb = class_embeddings(list(names), source, prompt=get("prompt"), file_classes=rows, allow_missing=allow_missing,
                           clip_model=get("clip_model"), cache_dir=embedding_cache(config) if cache else None)
    return emb.vectors, emb.report()


def prepare(config: Any, data: Any) -> None:
    """Turn loaded :class:`plbench.engine.inputs.TrainingData` into a zero-shot run's (in place; see the
    module docstring). Does nothing when ``config.zsl_split`` is unset.

    Raises:
        InputError: a head other than ML-Decoder, a bad split or embedding source, or no training image with
            a seen positive.
    """
    if config.zsl_split is None:
        if config.class_embeddings is not None or config.prompt is not None or allows_missing(config) or \
                config.clip_model != DEFAULT_CLIP_MODEL:
            raise InputError(None, "--class-embeddings", "class embeddings, prompts, --missing-embeddings and "
                             "--clip-model are for zero-shot runs, but no --zsl-split was given",
                             "add --zsl-split FILE|nuswide, or leave them out")
        return
    if config.clip_model != DEFAULT_CLIP_MODEL and not (config.class_embeddings or "").startswith(CLIP_PREFIX):
        raise InputError(None, "--clip-model", f"--clip-model {config.clip_model} names the architecture of a CLIP "
                         f"checkpoint, but the class embeddings are {config.class_embeddings!r}",
                         "pass --class-embeddings clip:CHECKPOINT, or leave out --clip-model")
    if config.head != Head.ML_DECODER.value:
        raise InputError(None, "--head", f"a zero-shot run needs the ml-decoder head (queries from class "
                         f"embeddings), but got {config.head!r}", "pass --head ml-decoder")
    all_names = list(data.class_names)
    split = resolve_split(config.zsl_split, config.data_root, all_names)
    vectors, report = embed_classes(config, split.classes, all_names, cache=True)
    if report["missing"]:  # only under missing_embeddings = "zero"; else embed_classes raised
        log.warning("zero-shot: %d classes have no vector in %s and get zero vectors (first: %s)",
                    len(report["missing"]), config.class_embeddings, ", ".join(report["missing"][:5]))
    labels, rows, dropped = restrict_labels(data.train_labels, split.seen, drop_empty=True)
    if labels.num_images == 0:
        raise InputError(config.zsl_split, "seen classes", "no training image has a positive among the seen classes",
                         "check the split against the dataset's class names")
    all_rows, _, _ = restrict_labels(data.train_labels, split.seen, drop_empty=False)
    val_all, _, _ = restrict_labels(data.val_split.labels, split.classes, drop_empty=False)
    val_seen, _, _ = restrict_labels(data.val_split.labels, split.seen, drop_empty=False)
    data.zero_shot = ZeroShotInputs(
        split, vectors, report, rows, all_rows, np.asarray(data.train_paths), dropped,
        dataclasses.replace(data.val_split, labels=val_all, class_groups={}))
    seen_train = restrict_labels(data.train_split.labels, split.seen, drop_empty=False)[0]
    data.train_split = dataclasses.replace(data.train_split, labels=seen_train, class_groups={})
    data.val_split = dataclasses.replace(data.val_split, labels=val_seen, class_groups={})
    data.train_labels, data.train_paths = labels, np.asarray(data.train_paths)[rows]
    if data.prior is not None:  # read for every class of the dataset: keep the seen ones
        data.prior = data.prior[torch.from_numpy(class_indices(all_names, split.seen))]
    log.info("zero-shot split %s: %d seen, %d unseen classes; %d of %d training images kept (%d without a seen "
             "positive dropped)", split.source, split.num_seen, split.num_unseen, labels.num_images,
             all_rows.num_images, dropped)


def head_kwargs(data: Any) -> dict[str, Any]:
    """Extra head arguments of a zero-shot run: the seen classes' embeddings as ML-Decoder's queries."""
    zs = getattr(data, "zero_shot", None)
    return {} if zs is None else {"query_embeddings": torch.from_numpy(zs.seen_vectors)}


class RowSubset(Dataset):
    """``dataset`` restricted to ``rows``: item k is ``dataset[rows[k]]`` with index k (the training set's
    position, as the sampler and per-image method state count them). ``None`` items (undecodable) pass through.
    """

    def __init__(self, dataset: Dataset, rows: np.ndarray) -> None:
        self.dataset = dataset
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        picked = [int(self.rows[i]) for i in indices]
        many = getattr(self.dataset, "__getitems__", None)
        items = many(picked) if many is not None else [self.dataset[i] for i in picked]
        return [None if item is None else (*item[:-1], i) for item, i in zip(items, indices)]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def empty_batch(self) -> Any:
        return self.dataset.empty_batch()


def zero_shot_head(model: nn.Module) -> nn.Module:
    """The zero-shot ML-Decoder head of a model (image model, head-only model, or the head itself).

    Raises:
        ValueError: the model has no zero-shot head.
    """
    head = getattr(model, "head", model)
    if not getattr(head, "zero_shot", False):
        raise ValueError("expected a model with a zero-shot ML-Decoder head (built with class embeddings)")
    return head


#: what ``plbench evaluate --classes`` names -> the summary key of that evaluation
TASK_KEYS = {"seen": "seen", "unseen": "zsl", "all": "gzsl"}


def task_classes(split: ZSLSplit, task: str) -> tuple[str, ...]:
    """The classes of one evaluation: ``seen``, ``unseen`` (ZSL) or ``all`` (GZSL: seen then unseen)."""
    return {"seen": split.seen, "unseen": split.unseen, "all": split.classes}[task]


def scored_classes(split: ZSLSplit, tasks: Sequence[str]) -> tuple[str, ...]:
    """The fewest classes to score for ``tasks``: all of them when two evaluations are asked for or GZSL is."""
    wanted = set(tasks)
    return task_classes(split, next(iter(wanted))) if len(wanted) == 1 else split.classes


def scores_block(scores: np.ndarray, targets: np.ndarray, split: ZSLSplit,
                 tasks: Sequence[str] = ("unseen", "all"), names: Sequence[str] | None = None) -> dict[str, Any]:
    """Zero-shot metrics (percent) of (N, K) scores and targets whose columns are ``names`` (default
    ``split.classes``, seen then unseen).

    ``tasks`` picks the evaluations (:data:`TASK_KEYS`): ``unseen`` gives ``zsl`` (every image, as LESA and
    BiAM) and ``zsl_unseen_positive`` (the images with a positive among the unseen classes only: ML-Decoder's
    evaluation), ``all`` gives ``gzsl``, ``seen`` gives ``seen``. Top-K scores at K = 3 and 5, each where the
    evaluation has at least K classes. Valid as column subsets because the zero-shot decoder scores each class
    without looking at the others. ``images`` counts the images of each evaluation.

    Raises:
        ValueError: an unknown task, or ``names`` lacking a class of a task.
    """
    from plbench.zsl.metrics import DEFAULT_KS, zero_shot_scores

    def scored(s: np.ndarray, t: np.ndarray) -> dict[str, float]:
        return zero_shot_scores(s, t, ks=[k for k in DEFAULT_KS if k <= s.shape[1]]).row()

    bad = [t for t in tasks if t not in TASK_KEYS]
    if bad:
        raise ValueError(f"expected tasks among {tuple(TASK_KEYS)}, but got {bad}")
    names = list(split.classes if names is None else names)
    block: dict[str, Any] = {}
    images: dict[str, int] = {}
    for task in dict.fromkeys(tasks):
        cols = class_indices(names, task_classes(split, task))
        s, t = scores[:, cols], targets[:, cols]
        key = TASK_KEYS[task]
        block[key], images[key] = scored(s, t), int(s.shape[0])
        if task == "unseen":
            keep = (t == POS).any(1)
            images["zsl_unseen_positive"] = int(keep.sum())
            if keep.any():
                block["zsl_unseen_positive"] = scored(s[keep], t[keep])
    block["images"] = images
    return block


def evaluate_zero_shot(model: nn.Module, config: Any, data: Any, device: torch.device, mean: Sequence[float],
                       std: Sequence[float], *, progress: bool = False) -> dict[str, Any]:
    """The summary's ``zero_shot`` block: score the validation split on every class of the split.

    The head's stored embeddings are the seen classes' again afterwards.
    """
    from plbench.engine.evaluate import predict
    from plbench.engine.inputs import make_dataset, make_loader

    zs: ZeroShotInputs = data.zero_shot
    head = zero_shot_head(model)
    val = zs.val_split
    dataset = make_dataset(config, config.val_split, val.image_paths, val.labels, train=False,
                           fingerprint=val.fingerprint, store=data.feature_stores.get(config.val_split))
    loader = make_loader(dataset, config, device=device)
    head.set_query_embeddings(torch.from_numpy(zs.vectors))
    try:
        scores, targets, _ = predict(model, loader, device, mean=mean, std=std, amp=config.amp, progress=progress,
                                     desc="zero-shot evaluation")
    finally:
        head.set_query_embeddings(torch.from_numpy(zs.seen_vectors))
    block = scores_block(scores, targets, zs.split)
    block.update({"split": zs.split.source, "num_seen": zs.split.num_seen, "num_unseen": zs.split.num_unseen,
                  "unseen_classes": list(zs.split.unseen), **run_fields(config, zs.embeddings),
                  "dropped_train_images": zs.dropped_train_images})
    return block


def run_fields(config: Any, report: dict[str, Any]) -> dict[str, Any]:
    """What a ``zero_shot`` summary block (training's or ``plbench evaluate``'s) says of how the run embeds
    and trains: the run's source, prompt, CLIP architecture (``clip:`` sources; else None),
    ``missing_embeddings`` policy and CLIP-Decoder settings, and from ``report``
    (:meth:`plbench.embeddings.ClassEmbeddings.report` of the scored classes) the width, GloVe's
    out-of-vocabulary words and the classes without a vector (``missing``: zero vectors, only under the
    ``zero`` policy)."""
    get = _getter(config)
    return {"embeddings": report["source"], "prompt": report["prompt"], "embedding_dim": report["dim"],
            "clip_model": get("clip_model") if report["source"].startswith(CLIP_PREFIX) else None,
            "oov_words": report["oov_words"], "missing_embeddings": get("missing_embeddings"),
            "missing": list(report["missing"]), "alignment_weight": get("alignment_weight"),
            "classification_weight": get("classification_weight"), "alignment_trainable": get("alignment_trainable")}


# -- trained zero-shot runs: evaluate and predict ---------------------------------------------------------


def require_zero_shot(config: dict[str, Any], path: str | Path | None, option: str) -> None:
    """Raise unless the run's ``config.json`` dict describes a zero-shot run.

    Raises:
        InputError: no ``zsl_split`` in the config (naming ``option``, which only zero-shot runs take).
    """
    if not config.get("zsl_split"):
        raise InputError(path, option, f"{option} is for zero-shot runs (trained with --zsl-split), but this run "
                         "has no zero-shot split", f"leave out {option}, or pass a run trained with --zsl-split and "
                         "--class-embeddings")


def run_split(config: dict[str, Any], data_root: str | Path, class_names: Sequence[str],
              model_classes: Sequence[str]) -> ZSLSplit:
    """The split a zero-shot run recorded, resolved for a dataset with ``class_names``, checked against the
    classes the model was trained on (``model_classes``: its seen classes).

    Raises:
        InputError: the split as resolved now has other seen classes than the model (an edited split file).
    """
    split = resolve_split(config["zsl_split"], data_root, class_names)
    if list(split.seen) != list(model_classes):
        other = [c for c in split.seen if c not in set(model_classes)] + \
            [c for c in model_classes if c not in set(split.seen)]
        raise InputError(config["zsl_split"], "seen classes", f"the split now gives {split.num_seen} seen classes, "
                         f"but the run was trained on {len(model_classes)} (differing: {other[:5] or 'their order'})",
                         "restore the split file the run was trained with")
    return split


def set_split_classes(model: nn.Module, config: dict[str, Any], data_root: str | Path,
                      dataset_classes: Sequence[str], model_classes: Sequence[str],
                      tasks: Sequence[str]) -> tuple[ZSLSplit, list[str], dict[str, Any]]:
    """Make a loaded zero-shot run's model score the classes of its recorded split that ``tasks`` need
    (:func:`scored_classes`: ``seen``, ``unseen``, ``all``), embedded with the run's source and prompt.

    ``dataset_classes``: the classes of the dataset the split is resolved for (:func:`run_split`);
    ``model_classes``: the model's (seen) classes. Returns the split, the scored names (the model's output
    columns, in order) and the embedding report (:func:`set_run_classes`).

    Raises:
        InputError: see :func:`run_split` and :func:`set_run_classes`.
    """
    split = run_split(config, data_root, dataset_classes, model_classes)
    names = list(scored_classes(split, tasks))
    report = set_run_classes(model, config, names, dataset_classes, split_classes=True)
    return split, names, report


def dataset_class_names(config: dict[str, Any]) -> list[str]:
    """The class list of a run's training dataset (for embedding files whose rows hold no names)."""
    from plbench.datasets import load_dataset

    split = load_dataset(config["dataset"], config["data_root"], config.get("train_split", "train"),
                         **(config.get("dataset_options") or {}))
    return list(split.class_names)


def parse_class_names(value: str) -> list[str]:
    """Class names from ``--class-names``: a text file (one name a line; blank lines and ``#`` comments
    skipped) when ``value`` names a file, else a comma-separated list (spaces around names dropped).

    Raises:
        InputError: no name, or a name given twice.
    """
    path = Path(value)
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
        where: str | Path = path
    else:
        names, where = [n.strip() for n in value.split(",") if n.strip()], "--class-names"
    if not names:
        raise InputError(where, "--class-names", "expected at least one class name, but got none",
                         "give a comma-separated list (sky,dog) or a file with one name a line")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(where, "--class-names", f"expected each class name once, but {twice[:5]} repeat",
                         "list each name once")
    return names


def set_run_classes(model: nn.Module, config: dict[str, Any], names: Sequence[str],
                    dataset_classes: Sequence[str] | None = None, *, split_classes: bool = False) -> dict[str, Any]:
    """Make a loaded zero-shot run's model score ``names``: embed them with the run's recorded source and
    prompt (:func:`embed_classes`) and give them to its ML-Decoder as queries. Returns the embedding report.

    ``dataset_classes``: the run's dataset classes, needed only for embedding files whose rows hold no names
    (read from the dataset when not given). ``split_classes``: ``names`` are classes of the run's split, so
    the run's ``missing_embeddings`` policy applies as in training; names a user gives (``--class-names``)
    must all have a vector.

    Raises:
        InputError: the source cannot embed some names (a fixed embedding file lacking them, or GloVe knowing
            none of their words) and they are not split classes of a ``missing_embeddings = "zero"`` run: all
            such names are listed.
    """
    source = Path(config["class_embeddings"])
    if dataset_classes is None and source.is_file() and source.suffix.lower() in (".pth", ".pt", ".npy"):
        dataset_classes = dataset_class_names(config)  # rows named by the dataset's class order
    vectors, report = embed_classes(config, names, dataset_classes, allow_missing=True)
    missing = report["missing"]
    if missing and not (split_classes and allows_missing(config)):
        shown = ", ".join(map(repr, missing[:20])) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise InputError(config["class_embeddings"], "--class-names", f"the run's class embeddings "
                         f"({config['class_embeddings']}) have no vector for {len(missing)} of the {len(names)} "
                         f"names: {shown}", "use names this source holds, or a run trained with an encoder "
                         "(glove, minilm, clip:FILE) that embeds new names")
    zero_shot_head(model).set_query_embeddings(torch.from_numpy(vectors))
    return report
