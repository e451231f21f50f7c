"""``plbench demo``: a small but real partial-label experiment on the built-in synthetic data.

The default ("linear") demo follows the frozen-feature protocol of Cole et al. (CVPR 2021): an
ImageNet-pretrained ``tf_efficientnet_lite0`` (offline weights, never a silent fall-back to random ones)
turns the synthetic images into features once; then, for each of 3 seeds, every label setting (full labels,
FPC, RPS, single positive) and method (P-ASL in Negative / Ignore / Selective mode, the Selective prior from
the Ignore-mode model of the same labels and seed; on single positives the losses AN, AN-LS, WAN, EPR, LL-R
and the methods ROLE, EM + APL, LL-Ct and GR-Loss, :data:`SPL_METHODS`) trains only the classifier. It runs
as a sweep (:func:`plbench.sweep.run.run_sweep`; the same grid as ``experiments/demo.toml``), and the
report gives mean +- std over seeds, paired differences (single positives: against AN), and notes computed
from the results (prior estimate against the true class frequencies). Beside the sweep, in a second process,
a zero-shot block trains on seen classes and scores unseen ones from their names
(:mod:`plbench.demo_zero_shot`; ``zero_shot=None`` in :class:`DemoSettings` leaves it out).

``plbench demo --protocol fine-tuned`` keeps the earlier demo: a small backbone trained from scratch on the
images, one seed (:func:`run_fine_tuned_demo`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from plbench.choices import Protocol
from plbench.config import TrainConfig
from plbench.demo_zero_shot import ZeroShotDemoSettings

log = logging.getLogger(__name__)

SPL_LOSSES: tuple[str, ...] = ("an", "an_ls", "wan", "epr", "ll_r")  # Cole et al. 2021; LL-R: Kim et al. 2022
#: single-positive methods (``plbench methods list``) with their papers' defaults: ROLE (Cole et al. 2021), EM + APL
#: (Zhou et al. 2022), LL-Ct (Kim et al. 2022), GR-Loss (Chen et al. 2024)
SPL_METHODS: tuple[str, ...] = ("role", "em_apl", "ll_ct", "gr_loss")
#: methods that take the expected number of positives per image (measured on the complete training labels)
NEEDS_NUM_POS: tuple[str, ...] = ("epr", "role")
MODES: tuple[str, ...] = ("negative", "ignore", "selective")


@dataclass(frozen=True)
class DemoSettings:
    """The linear-protocol demo; the defaults are ``experiments/demo.toml`` (a test keeps them equal).

    Sizes were chosen so that the experiment is informative and fits in 5 minutes on a 2-core CPU: with
    full labels a linear probe on these features reaches about 55 mAP (well below 100), and every partial
    setting stays well below that. Annotation levels are those of the papers' settings: FPC keeps 2.5 % of
    the labels (CSL's COCO FPC(1000): 2.4 %), RPS 10 % (Durand et al. 2019 vary 10-100 %), single positive
    one label per image (Cole et al. 2021).
    """

    out: str = "."  # writes out/data, out/features, out/simulations, out/priors, out/runs, out/reports/demo
    train_images: int = 2000
    val_images: int = 500
    num_classes: int = 20
    data_image_size: int = 96  # size of the generated JPEGs, pixels
    image_size: int = 96  # backbone input size, pixels
    backbone: str = "tf_efficientnet_lite0"  # ImageNet weights from timm's cache or the offline package
    head: str = "gap"
    epochs: int = 10  # a linear head on fixed features has converged: 20 epochs changed full-label mAP by < 1
    batch_size: int = 64
    lr: float = 1e-2  # peak of the one-cycle schedule: a fresh linear head on fixed features, not CSL's 2e-4
    fpc: int = 25  # positives and negatives kept per class (2.5 % of the labels at 2,000 images)
    rps: float = 0.9  # probability of hiding each label (10 % kept)
    seeds: tuple[int, ...] = (0, 1, 2)  # simulation and training seeds; the data seed is fixed (0)
    data_seed: int = 0
    # the zero-shot block (not part of the sweep; in a second process beside it); None leaves it out
    zero_shot: ZeroShotDemoSettings | None = ZeroShotDemoSettings()

    def command(self) -> str:
        """The ``plbench demo`` command line that runs these settings (options that differ from the defaults)."""
        names = ("out", "train_images", "val_images", "num_classes", "epochs")
        parts = ["plbench demo", *_changed_options(self, names)]
        if self.seeds != DemoSettings.seeds:
            parts.append(f"--seeds {len(self.seeds)}")
        return " ".join(parts)


def _changed_options(settings: Any, names: Sequence[str]) -> list[str]:
    """``--name value`` for each of ``names`` whose value differs from the settings class's default."""
    defaults = type(settings)()
    return [f"--{name.replace('_', '-')} {getattr(settings, name)}" for name in names
            if getattr(settings, name) != getattr(defaults, name)]


def demo_spec(s: DemoSettings, expected_num_pos: float, *, labels: Sequence[str] = ("full", "fpc", "rps", "spl"),
              notes: str = "") -> dict[str, Any]:
    """The demo as a sweep experiment (the parsed form of ``experiments/demo.toml``).

    Args:
        expected_num_pos: EPR's and ROLE's expected number of positives per image (Cole et al. give both this
            statistic of the complete training labels).
        labels: the label settings to include (the demo runs ``full`` first, to have the data to measure
            ``expected_num_pos`` on).
    """
    settings = {"full": {"scheme": "full"}, "fpc": {"scheme": "fpc", "params": [s.fpc]},
                "rps": {"scheme": "rps", "params": [s.rps]}, "spl": {"scheme": "spl"}}
    partial = [x for x in ("fpc", "rps", "spl") if x in labels]
    methods: list[dict[str, Any]] = [{"loss": "pasl", "mode": "negative"}]
    if partial:
        methods.append({"loss": "pasl", "mode": ["ignore", "selective"], "schemes": partial})
    if "spl" in labels:
        for loss in SPL_LOSSES:
            m: dict[str, Any] = {"loss": loss, "schemes": ["spl"]}
            if loss == "epr":
                m["loss_options"] = {"expected_num_pos": round(float(expected_num_pos), 3)}
            methods.append(m)
        for name in SPL_METHODS:
            m = {"method": name, "schemes": ["spl"]}
            if name in NEEDS_NUM_POS:
                m["loss_options"] = {"expected_num_pos": round(float(expected_num_pos), 3)}
            if name == "em_apl":  # no synthetic settings exist: the authors' COCO ones, named
                m["loss_options"] = {"settings": "coco", **({} if _apl_warmup(s) is None
                                                           else {"warmup_epoch": _apl_warmup(s)})}
            methods.append(m)
    return {
        "backbones": [{"name": s.backbone, "pretrained": True}],
        "heads": [s.head],
        "seeds": list(s.seeds),
        "protocols": [Protocol.LINEAR.value],
        "sweep": {"name": "demo", "title": "plbench demo: partial labels on synthetic data (linear protocol)",
                  "reference": "ignore", **({"notes": notes} if notes else {})},
        "datasets": [{"name": "synthetic", "data_root": "{out}/data/synthetic", "cache": False,
                      "synthetic": {"train": s.train_images, "val": s.val_images, "num_classes": s.num_classes,
                                    "image_size": s.data_image_size, "seed": s.data_seed}}],
        "labels": [settings[x] for x in labels],
        "methods": methods,
        "training": {"recipe": "light", "image_size": s.image_size, "epochs": s.epochs, "batch_size": s.batch_size,
                     "lr": s.lr, "device": "cpu"},
    }


def _apl_warmup(s: DemoSettings) -> int | None:
    """EM + APL's warm-up for a demo too short for its COCO value (5 epochs; it must be below the run's
    epochs): half the run, its authors' ratio of 5 in 10. None when the default fits."""
    from plbench.methods.entropy import APL_SETTINGS

    default = APL_SETTINGS["coco"].warmup_epoch
    return None if s.epochs > default else s.epochs // 2


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads. On a 2-core CPU shared with other work, two OpenMP threads that wait
    for each other are slower than one: measured 20 ms vs 1 ms per step of a linear head, and 39 vs 100
    images/s for the feature extraction."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fmt(values: Sequence[float], digits: int = 1) -> str:
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return f"{v.mean():.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def run_demo(settings: DemoSettings, *, progress: bool = True, say: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Run the linear-protocol demo; returns the report paths. ``say`` receives one line per stage
    (default: logging).

    Raises:
        InputError: the pretrained weights are unavailable (the message names the package to install).
    """
    say = say or log.info
    from plbench.datasets import load_dataset
    from plbench.report import write_report
    from plbench.sweep.run import run_sweep

    t0 = time.perf_counter()
    out = Path(settings.out)

    def sweep_say(text: str) -> None:
        say(f"{text}  ({time.perf_counter() - t0:.0f} s)")

    with _torch_threads(1):
        say(f"[1/4] synthetic data, {settings.backbone} features, full-label runs  (0 s)")
        run_sweep(demo_spec(settings, 0.0, labels=("full",)), out=out, progress=progress, say=sweep_say,
                  command=settings.command())
        train = load_dataset("synthetic", out / "data" / "synthetic", "train")
        dense = train.labels.to_dense()
        expected_num_pos = float((dense == 1).sum(axis=1).mean())
        job, skipped = None, ""
        if settings.zero_shot is not None:
            from plbench.demo_zero_shot import BackgroundZeroShot, held_out_conjunctions

            try:  # the rule the block applies; checked here so that the block cannot fail on it after the sweep
                held_out_conjunctions(train.class_names, (dense == 1).mean(axis=0), settings.zero_shot.num_unseen)
            except ValueError as error:
                skipped = (f"No zero-shot block: with {settings.num_classes} classes, {error} (each unseen "
                           "conjunction's colour, texture and shape must occur in a seen class).")
                say(f"zero-shot block skipped: {error}")
            else:
                job = BackgroundZeroShot(settings, out, settings.zero_shot)
        zs_say = lambda text: say(f"  zero-shot: {text}  ({time.perf_counter() - t0:.0f} s)")  # noqa: E731
        say(f"[2/4] partial-label runs (FPC, RPS, single positive; {len(settings.seeds)} seeds)"
            + ("; the zero-shot block in a second process" if job else "") + f"  ({time.perf_counter() - t0:.0f} s)")

        def poll_say(text: str) -> None:
            if job is not None:
                job.poll(zs_say)
            sweep_say(text)

        try:
            result = run_sweep(demo_spec(settings, expected_num_pos), out=out, progress=progress, say=poll_say,
                               command=settings.command())
        except BaseException:
            if job is not None:
                job.cancel()
            raise
        block = None
        if job is not None:
            say(f"[3/4] waiting for the zero-shot block  ({time.perf_counter() - t0:.0f} s)")
            block = job.result(zs_say)
    say(f"[4/4] report  ({time.perf_counter() - t0:.0f} s)")
    seconds = time.perf_counter() - t0
    notes = demo_notes(settings, result, dense, expected_num_pos, seconds, zero_shot=block)
    if skipped:
        notes += "\n\n" + skipped
    runs = list(result.runs) + (list(block["runs"]) if block else [])  # zero-shot runs: their own section
    paths = write_report(runs, out / "reports" / "demo", title=result.plan.spec.title,
                         command=settings.command(), notes=notes, reference="ignore")
    say(f"done in {time.perf_counter() - t0:.0f} s: {paths['md']} and {paths['html']}")
    return paths


def _runs_table(result: Any) -> list[dict[str, Any]]:
    from plbench.artifacts.runs import RunFolder

    rows = []
    for path in result.runs:
        s = RunFolder(path).summary()
        rows.append({"labels": s["labels"], "mode": s.get("mode"), "loss": s.get("loss"), "seed": s["seed"],
                     "map": float(s["val_map"]), "annotated": float(s.get("train_annotated_fraction", float("nan"))),
                     "negatives": float(s.get("train_negatives", float("nan"))),
                     "seconds": float(s.get("wall_seconds") or s.get("train_seconds") or float("nan"))})
    return rows


def _priors(result: Any, class_names: list[str]) -> dict[str, dict[int, np.ndarray]]:
    """labels tag -> seed -> the Selective prior estimated by the sweep (the Ignore-mode model's mean score)."""
    from plbench.priors import read_prior_csv
    from plbench.sweep.stages import StageKind

    out: dict[str, dict[int, np.ndarray]] = {}
    for stage in result.plan.stages:
        if stage.kind is StageKind.PRIOR and Path(stage.output).is_file():
            cfg = stage.settings["config"]
            out.setdefault(cfg["tag"], {})[int(cfg["seed"])] = read_prior_csv(stage.output, class_names)
    return out


def _feature_meta(result: Any) -> dict[str, Any]:
    from plbench.artifacts.features import FeatureStore
    from plbench.sweep.stages import StageKind

    for stage in result.plan.stages:
        if stage.kind is StageKind.FEATURES:
            return FeatureStore.open(Path(stage.output) / "train").meta
    return {}


def demo_notes(s: DemoSettings, result: Any, dense: np.ndarray, expected_num_pos: float,
               seconds: float, zero_shot: dict[str, Any] | None = None) -> str:
    """The report's notes, computed from the finished runs (nothing here is written before the results).

    Args:
        zero_shot: :func:`plbench.demo_zero_shot.run_zero_shot_block`'s result, or None (no zero-shot block).
    """
    import os

    from plbench.prior_quality import score_prior

    rows = _runs_table(result)
    meta = _feature_meta(result)
    true_freq = (dense == 1).mean(axis=0)
    n_runs = len(rows)
    head_s = np.nanmedian([r["seconds"] for r in rows])
    paras = []
    weights = (meta.get("weights") or {}).get("source", "?")
    paras.append(
        f"What ran: {n_runs} head-only trainings (linear protocol, Cole et al. 2021). `{s.backbone}` with ImageNet "
        f"weights ({weights}) turned the {s.train_images} training and {s.val_images} validation images "
        f"({s.num_classes} classes, {s.data_image_size}-px synthetic JPEGs, input {s.image_size} px, normalised "
        f"with mean {meta.get('preprocessing', {}).get('mean')} and std {meta.get('preprocessing', {}).get('std')}) "
        f"into {meta.get('num_features', '?')}-dimensional features once; each run trains a linear GAP head on "
        f"them for {s.epochs} epochs (Adam, one-cycle peak lr {s.lr:g}, batch {s.batch_size}; median "
        f"{head_s:.1f} s per run). Seeds {', '.join(map(str, s.seeds))} draw the label simulation, the head's "
        f"initialisation and the batch order; the images and features are the same for all seeds. The "
        f"headline is the final epoch on the validation split's complete labels. Feature extraction took "
        f"{meta.get('seconds', float('nan')):.0f} s for the training split; this `plbench demo` took {seconds:.0f} s "
        f"on {os.cpu_count()} CPU core(s) (stages already finished in its --out folder are reused, not timed).")
    annotated = {}
    for r in rows:
        annotated.setdefault(r["labels"], []).append(r["annotated"])
    levels = ", ".join(f"`{tag}` {100 * float(np.mean(v)):.1f} %" for tag, v in annotated.items() if tag != "full")
    paras.append(
        f"Annotation levels (fraction of the {s.num_classes} x {s.train_images} training labels known): {levels}. "
        "For scale: CSL's COCO FPC(1000) keeps 2.4 % of the labels, Durand et al. (2019) vary the known "
        "proportion from 10 % to 100 %, and single positive labels (Cole et al.) keep one positive per image. "
        f"EPR and ROLE are given the expected number of positives per image of the complete training labels, "
        f"{expected_num_pos:.2f}, as Cole et al. give them the dataset's statistic.")

    def maps(tag: str, mode: str | None, loss: str = "pasl") -> dict[int, float]:
        return {r["seed"]: r["map"] for r in rows if r["labels"] == tag and r["mode"] == mode and r["loss"] == loss}

    full = maps("full", "negative")
    lines = [f"Full labels reach {_fmt(list(full.values()))} mAP (mean ± sample std over {len(full)} seeds)."]
    for tag in [t for t in annotated if t != "full"]:
        sel = maps(tag, "selective")
        parts = []
        for ref in ("ignore", "negative"):
            other = maps(tag, ref)
            seeds = sorted(set(sel) & set(other))
            if seeds:
                d = [sel[k] - other[k] for k in seeds]
                wins = sum(x > 0 for x in d)
                parts.append(f"Selective − {ref.capitalize()} = {_fmt(d, 2)} points ({wins}/{len(d)} seeds positive)")
        cells = {}
        for r in rows:
            if r["labels"] == tag:
                name = r["mode"] if r["loss"] == "pasl" else r["loss"]
                cells.setdefault(name, []).append(r["map"])
        ranked = sorted(cells.items(), key=lambda kv: -np.mean(kv[1]))
        lines.append(f"`{tag}`: best {ranked[0][0]} {_fmt(ranked[0][1])}, worst {ranked[-1][0]} {_fmt(ranked[-1][1])}"
                     + (f"; paired: {'; '.join(parts)}" if parts else "") + ".")
    paras.append("Results (paired differences use the same labels and initial head per seed, so seed-to-seed "
                 "variation in the labels cancels): " + " ".join(lines))

    spl = _single_positive_note(rows, s)
    if spl:
        paras.append(spl)

    priors = _priors(result, _class_names(result))
    if priors:
        prow = ["| labels | mean estimated prior | mean true frequency | Spearman | MAE | classes > 0.5 (est. / true) |",
                "|---|---:|---:|---:|---:|---:|"]
        for tag, by_seed in priors.items():
            scores = [score_prior(p, true_freq) for p in by_seed.values()]
            means = [float(p.mean()) for p in by_seed.values()]
            above = [int((p > 0.5).sum()) for p in by_seed.values()]
            prow.append(f"| {tag} | {_fmt(means, 3)} | {true_freq.mean():.3f} | "
                        f"{_fmt([x.spearman for x in scores], 2)} | {_fmt([x.mae for x in scores], 3)} | "
                        f"{_fmt(above, 1)} / {int((true_freq > 0.5).sum())} |")
        paras.append(
            "The Selective prior against the true class frequencies of the training images (one estimate per "
            "seed: the mean score of the Ignore-mode model of the same labels and seed; mean ± std over seeds). "
            "Selective ignores the unannotated labels of classes whose prior exceeds 0.5 and treats the "
            "others as negatives (less the most likely positives of each batch):\n\n" + "\n".join(prow))
        negs = {}
        for r in rows:
            negs.setdefault(r["labels"], []).append(r["negatives"] / dense.shape[1])
        paras.append(_prior_explanation(priors, true_freq, {k: float(np.mean(v)) for k, v in negs.items()}))
    paras.append(
        "How far this is from the papers: CSL and Cole et al. use MS-COCO (82k training images, 80 classes), "
        "larger pretrained backbones at 224-448 px and, for their headline numbers, fine-tuning on GPUs. This "
        f"demo probes a small ImageNet backbone's fixed features of {s.data_image_size}-px synthetic shapes, so absolute mAP is not "
        "comparable to any paper; what carries over is the procedure and the relative behaviour under each "
        "label setting, with its seed-to-seed spread. `plbench demo --protocol fine-tuned` runs the earlier "
        "end-to-end demo (a small network trained from scratch on the images).")
    if zero_shot is not None:
        from plbench.demo_zero_shot import zero_shot_note

        paras.append(zero_shot_note(zero_shot, s.zero_shot or ZeroShotDemoSettings()))
    return "\n\n".join(paras)


def _method_label(name: str, mode: str | None) -> str:
    """The display name of a loss (with its mode) or method: the class's ``label`` (``EM+APL``)."""
    from plbench.methods.registry import builtin_methods
    from plbench.report.records import column_key, column_label

    cls = builtin_methods().get(name)
    if mode is None and cls is not None and getattr(cls, "label", None):
        return str(cls.label)
    return column_label(column_key(name, mode))


def _single_positive_note(rows: list[dict[str, Any]], s: DemoSettings) -> str:
    """The single-positive block: every column's mAP and its paired difference against AN (same labels and
    initial head per seed), then a reading chosen by the numbers; empty without AN runs."""
    cells: dict[tuple[str, str | None], dict[int, float]] = {}
    for r in rows:
        if r["labels"] == "spl":
            cells.setdefault((r["loss"], r["mode"]), {})[r["seed"]] = r["map"]
    an = cells.get(("an", None))
    if not an:
        return ""
    from plbench.methods.entropy import APL_SETTINGS

    apl = APL_SETTINGS["coco"]  # EMAPLMethod's fall-back for a dataset without settings of its own
    table = ["| method | mAP | − AN (paired) | seeds above AN |", "|---|---:|---:|---:|"]
    above, below, mixed = [], [], []
    for key, by_seed in sorted(cells.items(), key=lambda kv: -np.mean(list(kv[1].values()))):
        label = _method_label(*key)
        seeds = sorted(set(by_seed) & set(an))
        if key == ("an", None):
            table.append(f"| {label} (reference) | {_fmt(list(by_seed.values()))} | | |")
            continue
        d = [by_seed[k] - an[k] for k in seeds]
        wins = sum(x > 0 for x in d)
        table.append(f"| {label} | {_fmt(list(by_seed.values()))} | {_fmt(d, 2)} | {wins}/{len(d)} |")
        if key[0] in SPL_METHODS:
            (above if wins == len(d) else below if wins == 0 else mixed).append(f"{label} ({_fmt(d, 2)})")
    reading = []
    if above:
        reading.append(f"above AN on every seed: {', '.join(above)}")
    if below:
        reading.append(f"below AN on every seed: {', '.join(below)}")
    if mixed:
        reading.append(f"on both sides of AN across seeds: {', '.join(mixed)}")
    return (
        f"Single positive labels, every column against AN (Cole et al.'s baseline: unannotated = negative); mAP "
        f"mean ± sample std over {len(an)} seeds, differences in points, paired by seed (same labels and initial "
        "head):\n\n" + "\n".join(table) + "\n\n"
        "The four methods run with their papers' defaults (`plbench methods show NAME`): ROLE with the estimator "
        f"learning at 10x the head's lr and EPR's expected positives; EM + APL with its COCO settings (no synthetic "
        f"ones exist: entropy weight {apl.alpha:g}, pseudo-negatives weight {apl.beta:g} from epoch "
        f"{(_apl_warmup(s) if _apl_warmup(s) is not None else apl.warmup_epoch) + 1} of {s.epochs}, tuned by its authors for fine-tuning at lr {apl.lr:g}, here the demo's linear-head lr {s.lr:g} as for every column); LL-Ct "
        f"with delta_rel 0.002; GR-Loss with its schedules spread over the run's {s.epochs} epochs (its paper: 8). "
        "Of the four, " + "; ".join(reading) + ". Nothing was tuned per method: these are the defaults, on a "
        f"linear probe of {s.train_images:,} synthetic images, so a method below AN here says that its defaults do not carry "
        "over to this setting, not that it is worse on the papers' benchmarks.")



def _class_names(result: Any) -> list[str]:
    from plbench.artifacts.runs import RunFolder

    return list(RunFolder(result.runs[0]).summary()["class_names"])


def _prior_explanation(priors: dict[str, dict[int, np.ndarray]], true_freq: np.ndarray,
                       negatives_per_class: dict[str, float]) -> str:
    """One sentence per label setting, chosen by the numbers (never written before the results)."""
    parts = []
    for tag, by_seed in priors.items():
        mean = float(np.mean([p.mean() for p in by_seed.values()]))
        above = float(np.mean([(p > 0.5).sum() for p in by_seed.values()]))
        negs = negatives_per_class.get(tag, float("nan"))
        if above >= len(true_freq):
            parts.append(f"`{tag}`: the Ignore-mode model saw positives only, so it predicts {mean:.2f} on "
                         "average; every class passes the threshold, Selective ignores every unannotated label "
                         "and is the Ignore run to the last digit.")
        elif mean > 2 * float(true_freq.mean()):
            parts.append(f"`{tag}`: the Ignore-mode model learns from annotations that hold as many negatives "
                         f"as positives per class, so its mean score ({mean:.2f}) reflects that balance rather "
                         f"than the class frequencies; {above:.1f} classes pass the threshold and Selective uses "
                         f"the unannotated labels of the others as negatives, which Ignore leaves out (only "
                         f"{negs:.0f} annotated negatives per class here).")
        else:
            parts.append(f"`{tag}`: the estimate averages {mean:.2f} against a true {true_freq.mean():.2f} and "
                         f"ranks the classes well; with {negs:.0f} annotated negatives per class, Ignore already "
                         "sees many negatives, so Selective's extra ones matter less.")
    return ("Why the priors look like this (and what it does to Selective; explanations consistent with the "
            "numbers above, not separately tested): " + " ".join(parts))


# -- the fine-tuned demo (earlier default) ------------------------------------------------------------


@dataclass(frozen=True)
class FineTunedDemoSettings:
    """The fine-tuned demo (``plbench demo --protocol fine-tuned``): a small backbone trained from scratch
    on images, one seed; the defaults finish in about 5 minutes on a 2-core CPU."""

    out: str = "."  # writes out/data, out/simulations, out/priors, out/runs, out/reports/demo
    train_images: int = 1600
    val_images: int = 400
    num_classes: int = 20
    data_image_size: int = 96  # size of the generated JPEGs, pixels
    image_size: int = 64  # training input size, pixels
    backbone: str = "resnet10t"
    head: str = "gap"
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3  # from scratch on tiny images a higher peak LR than CSL's 2e-4 (pretrained) works
    fpc: int = 50  # positives and negatives kept per class
    rps: float = 0.9  # probability of hiding each label
    seed: int = 0
    modes: tuple[str, ...] = ("negative", "ignore", "selective")

    def command(self) -> str:
        """The ``plbench demo --protocol fine-tuned`` command line that runs these settings."""
        names = ("out", "train_images", "val_images", "num_classes", "epochs", "seed")
        return " ".join(["plbench demo --protocol fine-tuned", *_changed_options(self, names)])


def paper_gap_note(s: FineTunedDemoSettings) -> str:
    return (
        "How far this is from the CSL paper's setting: the paper trains on MS-COCO 2014 (82,081 training images, "
        "80 classes) and OpenImages/LVIS, with an ImageNet-pretrained TResNet backbone at 224-448 px for many epochs "
        f"on GPUs. This demo trains a randomly initialised `{s.backbone}` on {s.train_images} synthetic "
        f"{s.data_image_size}-px images ({s.num_classes} classes) resized to {s.image_size} px, for {s.epochs} epochs "
        "on a CPU, so absolute mAP values are not comparable to the paper; the demo shows the pipeline and the "
        "relative behaviour of the modes. Single seed: differences of a point or two are within seed noise.\n\n"
        "The Selective mode's class prior is the mean prediction of the Ignore-mode run over the training images "
        "(the CSL procedure). The authors' COCO FPC(1000) prior, from a pretrained model, averages about 0.10, close "
        "to the true class frequencies; a small model trained from scratch on a few balanced FPC labels predicts "
        "far higher values, so more classes pass the prior threshold and Selective moves towards Ignore. With rare "
        "classes, most unannotated labels are true negatives, which makes Negative a strong baseline in this regime."
    )


def run_fine_tuned_demo(settings: FineTunedDemoSettings, *, progress: bool = True,
                        say: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Run the fine-tuned demo; returns the report paths. ``say`` receives one line per stage (default: logging)."""
    say = say or log.info
    from plbench.artifacts.simulations import default_simulation_path, save_simulation
    from plbench.datasets import load_dataset
    from plbench.datasets.images import build_image_cache, cache_folder
    from plbench.datasets.synthetic import write_synthetic_coco
    from plbench.engine.prior import prior_from_model
    from plbench.engine.train import train
    from plbench.priors import default_prior_path, write_prior_csv
    from plbench.report import write_report
    from plbench.simulate import simulate

    t0 = time.perf_counter()
    out = Path(settings.out)
    data_root = out / "data" / "synthetic"
    schemes = [("fpc", settings.fpc), ("rps", settings.rps)]
    total = 2 + len(schemes) * (2 + len(settings.modes)) + 1
    stage = 0

    def step(text: str) -> None:
        nonlocal stage
        stage += 1
        say(f"[{stage}/{total}] {text}  ({time.perf_counter() - t0:.0f} s)")

    step(f"writing synthetic data to {data_root} and caching it at {settings.image_size} px")
    write_synthetic_coco(
        data_root, train=settings.train_images, val=settings.val_images, num_classes=settings.num_classes,
        image_size=settings.data_image_size, seed=settings.seed, progress=progress,
    )
    split = load_dataset("synthetic", data_root, "train")
    # decode and resize every image once; all trainings then read the memory-mapped cache
    cache_root = data_root / "plbench_cache"
    for name, paths in (("train", split.image_paths), ("val", load_dataset("synthetic", data_root, "val").image_paths)):
        build_image_cache(paths, settings.image_size, cache_folder(cache_root, "synthetic", name, settings.image_size),
                          workers=1)
    base = TrainConfig(
        dataset="synthetic", data_root=str(data_root), backbone=settings.backbone, head=settings.head,
        image_size=settings.image_size, batch_size=settings.batch_size, epochs=settings.epochs, lr=settings.lr,
        seed=settings.seed, device="cpu", cache_dir=str(cache_root), out_dir=str(out / "runs"),
    )
    runs = []
    step("training the fully-labelled upper bound")
    runs.append(train(base.replace(mode="negative", tag="full"), progress=progress).run_dir)
    for scheme, param in schemes:
        step(f"simulating {scheme}({param:g})")
        labels = simulate(split.labels, scheme, param, settings.seed)
        sim_path = default_simulation_path("synthetic", scheme, param, settings.seed, root=out / "simulations")
        save_simulation(sim_path, labels, dataset="synthetic", fingerprint=split.fingerprint, scheme=scheme,
                        param=param, seed=settings.seed)
        cfg = base.replace(simulation=str(sim_path))
        prior_path = default_prior_path("synthetic", sim_path, settings.backbone, settings.seed, root=out / "priors")
        # Ignore mode first: that run is the CSL prior model, so it is not trained twice
        prior_ready = False
        for mode in sorted(settings.modes, key=lambda m: m != "ignore"):
            step(f"training {scheme}({param:g}) in {mode} mode")
            if mode == "selective" and not prior_ready:
                raise ValueError("selective mode needs the Ignore-mode run for its prior: add 'ignore' to modes")
            mode_cfg = cfg.replace(mode=mode, prior=str(prior_path) if mode == "selective" else None)
            result = train(mode_cfg, progress=progress)
            runs.append(result.run_dir)
            if mode == "ignore":
                step(f"estimating class priors for {scheme}({param:g}) from the Ignore-mode model")
                names, prior = prior_from_model(cfg, result.model, progress=progress)
                write_prior_csv(prior_path, names, prior)
                prior_ready = True
    step("writing the report")
    paths = write_report(
        runs, out / "reports" / "demo", title="plbench demo: partial labels on synthetic data",
        command=settings.command(), notes=paper_gap_note(settings),
    )
    say(f"done in {time.perf_counter() - t0:.0f} s: {paths['md']} and {paths['html']}")
    return paths
