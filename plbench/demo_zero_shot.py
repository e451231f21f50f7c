"""The demo's zero-shot block: unseen conjunctions of seen attributes, recognised from their names.

The synthetic classes are conjunctions ``colour_texture_shape``. :func:`held_out_conjunctions` holds out
classes whose colour, texture and shape each occur in a seen class; the ML-Decoder head (zero-shot mode,
on frozen ``tf_efficientnet_lite0`` tokens) is trained on the seen classes with the names embedded by GloVe
(the mean of the three words' vectors) and, as a control, with random vectors per name (no meaning shared
between names: ``random``). Each (source, seed) is one ``plbench`` training; the numbers are the
summary's ``zero_shot`` block: ZSL (unseen classes) and GZSL (all classes) mAP on every validation image,
beside chance (a random ranking's expected AP is the class's prevalence).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("glove", "random")


@dataclass(frozen=True)
class ZeroShotDemoSettings:
    """The zero-shot block of ``plbench demo`` (same data, backbone and seeds as the partial-label grid)."""

    num_unseen: int = 5  # of the 20 classes: conjunctions held out
    epochs: int = 8
    lr: float = 3e-3
    batch_size: int = 64
    # a small decoder: the block must fit the demo's time budget on 2 CPU cores
    head_options: tuple[tuple[str, Any], ...] = (("embed_dim", 64), ("num_heads", 4), ("ff_dim", 128))


def held_out_conjunctions(class_names: Sequence[str], frequency: Sequence[float], num_unseen: int) -> list[str]:
    """Unseen classes whose colour, texture and shape each remain in some seen class.

    Greedy over the classes from the most to the least frequent (so the unseen classes have positives to
    rank), skipping the most frequent one (it stays a seen class); a class is held out when, with it
    removed, each of its three attributes is still carried by a seen class.

    Args:
        class_names: ``colour_texture_shape`` names, (C,).
        frequency: (C,) class frequency (any monotone count) in the training labels.
    Returns:
        ``num_unseen`` names, in ``class_names`` order.
    Raises:
        ValueError: fewer than ``num_unseen`` classes can be held out under the rule.
    """
    parts = {n: tuple(n.split("_")) for n in class_names}
    order = [class_names[i] for i in np.argsort(-np.asarray(frequency, dtype=np.float64), kind="stable")]
    unseen: list[str] = []
    for name in order[1:]:
        if len(unseen) == num_unseen:
            break
        rest = [parts[n] for n in class_names if n != name and n not in unseen]
        if all(any(p[k] == a for p in rest) for k, a in enumerate(parts[name])):
            unseen.append(name)
    if len(unseen) < num_unseen:
        raise ValueError(f"expected {num_unseen} classes whose attributes stay seen, but found {len(unseen)}")
    return [n for n in class_names if n in unseen]


def chance_map(targets: np.ndarray) -> float:
    """Expected mAP (percent) of scores that rank at random: a class's expected AP is its prevalence
    among the ranked images (classes without a positive count 0, as the zero-shot metrics count them)."""
    t = np.asarray(targets)
    return float(100.0 * (t == 1).mean(axis=0).mean())


def run_zero_shot_block(base: Any, out: Path, settings: ZeroShotDemoSettings = ZeroShotDemoSettings(), *,
                        progress: bool = False, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Extract token features, write the split, train one run per (source, seed); returns what the notes need.

    Args:
        base: the demo's :class:`plbench.demo.DemoSettings` (data, backbone, image size, seeds).
        out: the demo's output folder (the synthetic data is under ``out/data/synthetic``).
    Returns:
        ``{"split": ZSLSplit, "runs": [run folder paths], "summaries": {(source, seed): summary},
        "chance": {"zsl": percent, "gzsl": percent}, "tokens": L}``.
    """
    say = say or log.info
    from plbench.config import TrainConfig
    from plbench.datasets import load_dataset
    from plbench.engine.features import extract_split
    from plbench.engine.train import train
    from plbench.zsl.splits import split_from_unseen, write_split_file

    data_root = out / "data" / "synthetic"
    features = out / "features" / f"zero-shot-{base.backbone}-{base.image_size}-tokens"
    for split in ("train", "val"):
        if not (features / split / "features.json").is_file():
            extract_split("synthetic", data_root, split, features, backbone=base.backbone, image_size=base.image_size,
                          pretrained=True, tokens=True, device="cpu", progress=progress)
    train_split = load_dataset("synthetic", data_root, "train")
    names = train_split.class_names
    freq = (train_split.labels.to_dense() == 1).mean(axis=0)
    split = split_from_unseen(names, held_out_conjunctions(names, freq, settings.num_unseen), "demo")
    split_file = out / "zero-shot" / "split.json"
    write_split_file(split_file, split)
    runs, summaries = [], {}
    for source in SOURCES:
        for seed in base.seeds:
            cfg = TrainConfig(
                dataset="synthetic", data_root=str(data_root), features=str(features), backbone=base.backbone,
                pretrained=True, image_size=base.image_size, head="ml-decoder", head_options=dict(settings.head_options),
                mode="negative", epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=seed,
                device="cpu", out_dir=str(out / "runs"), zsl_split=str(split_file), class_embeddings=source,
                run_name=f"synthetic-zero-shot-{source}-s{seed}")
            result = train(cfg, progress=progress)
            runs.append(result.run_dir)
            summaries[(source, seed)] = result.summary
            zs = result.summary["zero_shot"]
            say(f"zero-shot {source} seed {seed}: ZSL mAP {zs['zsl']['map']:.1f}, GZSL mAP {zs['gzsl']['map']:.1f}")
    val = load_dataset("synthetic", data_root, "val").labels.to_dense()
    cols = [names.index(c) for c in split.classes]
    targets = val[:, cols]
    chance = {"zsl": chance_map(targets[:, split.num_seen:]), "gzsl": chance_map(targets)}
    store_tokens = _num_tokens(features)
    return {"split": split, "runs": runs, "summaries": summaries, "chance": chance, "tokens": store_tokens}


def _num_tokens(features: Path) -> int | None:
    from plbench.artifacts.features import FeatureStore

    return FeatureStore.open(features / "train").num_tokens


def _fmt(values: Sequence[float], digits: int = 1) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.{digits}f}" if len(v) < 2 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def zero_shot_numbers(block: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """``{source: {"zsl": [mAP per seed], "gzsl": [...]}}`` in seed order."""
    out: dict[str, dict[str, list[float]]] = {}
    for (source, _seed), s in sorted(block["summaries"].items(), key=lambda kv: (kv[0][0], kv[0][1])):
        for task in ("zsl", "gzsl"):
            out.setdefault(source, {}).setdefault(task, []).append(float(s["zero_shot"][task]["map"]))
    return out


def zero_shot_note(block: dict[str, Any], settings: ZeroShotDemoSettings = ZeroShotDemoSettings()) -> str:
    """The report paragraph, computed from the finished runs."""
    split = block["split"]
    nums = zero_shot_numbers(block)
    n = len(next(iter(nums.values()))["zsl"])
    lines = []
    for task, what in (("zsl", f"ZSL (the {split.num_unseen} unseen classes)"),
                       ("gzsl", f"GZSL (all {len(split.classes)} classes)")):
        g, r = nums["glove"][task], nums["random"][task]
        d = [a - b for a, b in zip(g, r)]
        lines.append(f"{what}: GloVe {_fmt(g)} mAP, random embeddings {_fmt(r)}, chance {block['chance'][task]:.1f}; "
                     f"GloVe − random = {_fmt(d)} points ({sum(x > 0 for x in d)}/{len(d)} seeds positive)")
    return (f"Zero-shot block: {split.num_unseen} conjunctions held out ({', '.join(f'`{c}`' for c in split.unseen)}), "
            f"each of whose colour, texture and shape occurs in a seen class. An ML-Decoder head in zero-shot mode "
            f"(queries = ReLU(Linear(class embedding)), one shared classifier; decoder width "
            f"{dict(settings.head_options)['embed_dim']}) is trained on the frozen backbone's "
            f"{block['tokens']} spatial tokens per image with the seen classes only (Negative mode, {settings.epochs} "
            f"epochs, lr {settings.lr:g}), once with GloVe 6B 50-d name embeddings (mean of the three words) and once "
            f"with random 50-d vectors per name, {n} seeds each; then every class's embedding is given to the same "
            f"head. Mean ± sample std over seeds: " + "; ".join(lines) + ". Chance is a random ranking's expected mAP "
            "(the mean class prevalence among the validation images).")
