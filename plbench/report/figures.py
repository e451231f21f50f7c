"""Report figures as PNG bytes (matplotlib ``Figure`` objects, no pyplot state). Each function returns None
when its data does not exist in the runs, so the report draws only what it can.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from plbench.errors import InputError
from plbench.priors import read_prior_csv
from plbench.report.records import RunRecord, column_label, labels_sort_key
from plbench.report.tables import ResultTable, resolve_reference

DPI = 110
MAX_WIDTH_IN = 10.5  # the HTML page is ~1150 px wide: wider figures get scaled down and their text shrinks
LVIS_GROUPS = ("rare", "common", "frequent")
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
            "#bcbd22")


def column_colors(columns: Sequence[str]) -> dict[str, str]:
    """A fixed colour per column key, so a mode has the same colour in every figure of a report."""
    return {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(columns)}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # "tight" grows the canvas to whatever lies outside it (a legend wider than a narrow figure)
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1, metadata={"Software": None})
    return buf.getvalue()


def _grid(n: int, max_cols: int = 3, w: float = 4.2, h: float = 3.4) -> tuple[Figure, list[Any]]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    w = min(w, MAX_WIDTH_IN / cols)
    fig = Figure(figsize=(w * cols, h * rows + 0.6), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.12, hspace=0.06)  # room between a panel's x label and the next title
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig: Figure, handles: list, labels: list[str], markerscale: float = 1.0,
            order: Sequence[str] = ()) -> None:
    """One legend below the panels, entries in ``order`` (then first seen), as many per line as fit."""
    uniq = dict(zip(labels, handles))
    rank = {label: i for i, label in enumerate(order)}
    uniq = dict(sorted(uniq.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    width_in = fig.get_figwidth()
    per_entry_in = 0.45 + 0.085 * max(len(x) for x in uniq)  # handle + text at the default 10 pt font
    ncol = max(1, min(len(uniq), int(width_in // per_entry_in)))
    fig.legend(list(uniq.values()), list(uniq), loc="outside lower center", ncol=ncol, frameon=False,
               markerscale=markerscale)


def _log_axis(axis: Any, lo: float, hi: float) -> None:
    """Log scale with plain-number labels (0.01, 0.02, 0.05 ...); 1-2-5 ticks when the data span under
    two decades, one tick per decade otherwise, and no minor-tick labels (they overlap on short ranges)."""
    decades = math.log10(max(hi, lo * 1.0001) / lo) if lo > 0 else 3.0
    subs = (1.0, 2.0, 5.0) if decades < 2 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, alpha=0.25, linewidth=0.6)


def map_bars(table: ResultTable, colors: dict[str, str]) -> bytes:
    """Grouped bars: mean mAP per label setting and column, error bars = sample std over seeds, published
    numbers of the same setting as black markers on the bar of their column."""
    n_rows, n_cols = len(table.rows), len(table.columns)
    fig = Figure(figsize=(min(MAX_WIDTH_IN, max(5.0, 0.4 * n_rows * max(1, n_cols) + 2.0)), 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, n_cols)
    handles, labels = [], []
    pub_handle = None
    for j, c in enumerate(table.columns):
        xs, ys, es = [], [], []
        for i, row in enumerate(table.rows):
            s = table.cells.get((row, c))
            if s is None:
                continue
            xs.append(i + (j - (n_cols - 1) / 2) * width)
            ys.append(s.mean)
            es.append(0.0 if math.isnan(s.std) else s.std)
        bars = ax.bar(xs, ys, width=width, yerr=es, capsize=2, color=colors[c], error_kw={"linewidth": 0.8})
        handles.append(bars)
        labels.append(column_label(c))
        for i, row in enumerate(table.rows):
            for _, numbers in table.published_rows(row):
                if c in numbers:
                    pub_handle = ax.scatter([i + (j - (n_cols - 1) / 2) * width], [numbers[c].map], marker="D",
                                            s=22, color="black", zorder=3)
    ax.set_xticks(range(n_rows), table.rows)
    ax.set_ylabel(f"{'mAP' if table.metric == 'val_map' else 'selected mAP'} (%)")
    ax.set_xlabel("training labels")
    _style(ax)
    ax.grid(False, axis="x")
    if pub_handle is not None:
        handles.append(pub_handle)
        labels.append("published (see table)")
    _legend(fig, handles, labels)
    return _png(fig)


def annotation_curves(table: ResultTable, colors: dict[str, str]) -> bytes | None:
    """mAP against the annotation level, one line per column: RPS against p (hidden fraction), FPC against
    n (log scale). None unless some scheme has two levels or more."""
    by_scheme: dict[str, dict[float, str]] = defaultdict(dict)
    for r in table.records:
        if r.scheme in ("rps", "fpc") and r.param is not None:
            by_scheme[r.scheme][r.param] = r.labels
    schemes = [s for s in ("fpc", "rps") if len(by_scheme.get(s, {})) >= 2]
    if not schemes:
        return None
    fig, axes = _grid(len(schemes), max_cols=2, w=5.0, h=3.6)
    handles, labels = [], []
    for ax, scheme in zip(axes, schemes):
        levels = sorted(by_scheme[scheme].items())
        for c in table.columns:
            pts = [(p, table.cells[(tag, c)]) for p, tag in levels if (tag, c) in table.cells]
            if not pts:
                continue
            x = [p for p, _ in pts]
            y = [s.mean for _, s in pts]
            e = [0.0 if math.isnan(s.std) else s.std for _, s in pts]
            h = ax.errorbar(x, y, yerr=e, marker="o", ms=4, capsize=2, color=colors[c], linewidth=1.4)
            handles.append(h)
            labels.append(column_label(c))
        if scheme == "fpc":
            ax.set_xscale("log")  # before the ticks: a new scale resets them
            ax.minorticks_off()
            ax.set_xlabel("FPC: positives and negatives kept per class (n)")
        else:
            ax.set_xlabel("RPS: probability p that a label is hidden")
        ax.set_xticks([p for p, _ in levels], [f"{p:g}" for p, _ in levels])
        ax.set_ylabel("mAP (%)")
        _style(ax)
    _legend(fig, handles, labels)
    return _png(fig)


def _mean_ap(records: Sequence[RunRecord]) -> np.ndarray | None:
    rows = [r.summary.get("ap_per_class") for r in records]
    rows = [np.array([math.nan if v is None else float(v) for v in a]) for a in rows if a]
    if not rows or len({len(a) for a in rows}) != 1:
        return None
    with np.errstate(all="ignore"):
        stack = np.vstack(rows)
        out = np.full(stack.shape[1], np.nan)
        ok = ~np.isnan(stack).all(axis=0)
        out[ok] = np.nanmean(stack[:, ok], axis=0)
    return out


def class_frequency(records: Sequence[RunRecord]) -> tuple[np.ndarray, str] | None:
    """Per-class positive frequency and what it is: the true training frequency when the runs know it, else
    the validation positives per image (from the summary, or the predictions' targets)."""
    for r in records:
        f = r.summary.get("train_true_frequency_per_class")
        if f:
            return np.array([math.nan if v is None else float(v) for v in f]), "class frequency in the training set"
    for r in records:
        pos, n = r.summary.get("val_positives_per_class"), r.summary.get("val_images")
        if pos and n:
            return np.asarray(pos, dtype=float) / float(n), "class frequency in the evaluation split"
    for r in records:
        if r.folder.file("predictions.npz").is_file():
            t = r.folder.predictions()["targets"]
            known = (t >= 0).sum(axis=0)
            with np.errstate(all="ignore"):
                return (t == 1).sum(axis=0) / np.maximum(known, 1), "class frequency in the evaluation split"
    return None


def per_class_ap(table: ResultTable, colors: dict[str, str], reference: str | None = None) -> bytes | None:
    """Per-class AP against class frequency, one subplot per label setting. With a reference column and
    others beside it, the y axis is the AP difference to the reference (where each mode wins or loses).
    None without per-class APs or frequencies."""
    panels = []
    for row in table.rows:
        runs_by_col = {c: [r for r in table.records if r.labels == row and r.column == c] for c in table.columns}
        aps = {c: _mean_ap(rs) for c, rs in runs_by_col.items() if rs}
        aps = {c: a for c, a in aps.items() if a is not None}
        freq = class_frequency([r for rs in runs_by_col.values() for r in rs])
        if aps and freq is not None and all(len(a) == len(freq[0]) for a in aps.values()):
            panels.append((row, aps, freq))
    if not panels:
        return None
    fig, axes = _grid(len(panels), max_cols=3, w=4.4, h=3.5)
    handles, labels = [], []
    for ax, (row, aps, (freq, what)) in zip(axes, panels):
        ref = resolve_reference(list(aps), reference)
        diff = ref is not None and len(aps) > 1
        x = np.clip(freq, 1e-4, None)
        for c, ap in aps.items():
            if diff and c == ref:
                continue
            y = ap - aps[ref] if diff else ap
            h = ax.scatter(x, y, s=10, alpha=0.75, color=colors[c], linewidths=0)
            handles.append(h)
            labels.append(column_label(c))
        if diff:
            ax.axhline(0.0, color="black", linewidth=0.8)
            ax.set_ylabel(f"AP − AP of {column_label(ref)} (points)")
        else:
            ax.set_ylabel("AP (%)")
        ax.set_xscale("log")
        _log_axis(ax.xaxis, float(np.nanmin(x)), float(np.nanmax(x)))
        ax.set_xlabel(what)
        ax.set_title(row, fontsize=10)
        _style(ax)
    _legend(fig, handles, labels, markerscale=2.0, order=[column_label(c) for c in table.columns])
    return _png(fig)


def _prior_file(r: RunRecord, name: str) -> Path | None:
    """The prior CSV a run names: as given (absolute, or relative to the current folder), else relative to
    one of the run folder's parents (the folder the training was started from, for a relative path)."""
    p = Path(name)
    candidates = [p] if p.is_absolute() else [p, *(parent / p for parent in r.folder.path.resolve().parents[:4])]
    return next((c.resolve() for c in candidates if c.is_file()), None)


def prior_scatter(records: Sequence[RunRecord]) -> tuple[bytes | None, list[str]]:
    """Estimated class prior (the CSV a run used) against the true class frequency of its training set,
    one panel per prior file. Returns the PNG (None when no run has both) and notes on skipped priors."""
    notes: list[str] = []
    panels: dict[Path, tuple[np.ndarray, np.ndarray, str]] = {}
    for r in records:
        name = r.summary.get("prior_path") or r.config.get("prior")
        truth = r.summary.get("train_true_frequency_per_class")
        if not name or not truth:
            continue
        path = _prior_file(r, str(name))
        if path is None:
            notes.append(f"prior {name} of run {r.name} not found (a relative path is looked for in the current "
                         "folder and above the run folder)")
            continue
        if path in panels:
            continue
        try:
            est = read_prior_csv(path, r.summary.get("class_names") or [])
        except InputError as e:
            notes.append(f"prior {path} of run {r.name} skipped: {e.problem}")
            continue
        true = np.array([math.nan if v is None else float(v) for v in truth])
        if len(true) != len(est):
            notes.append(f"prior {path}: {len(est)} classes, but run {r.name} has {len(true)}")
            continue
        panels[path] = (true, est, textwrap.fill(f"{r.labels}: {path.name}", 42))
    if not panels:
        return None, notes
    fig, axes = _grid(len(panels), max_cols=3, w=4.0, h=3.8)
    for ax, (true, est, title) in zip(axes, panels.values()):
        ok = ~np.isnan(true)
        lo = max(1e-4, float(min(true[ok].min(), est[ok].min())))
        ax.scatter(np.clip(true[ok], lo, None), np.clip(est[ok], lo, None), s=12, alpha=0.8, color=_PALETTE[0],
                   linewidths=0)
        ax.plot([lo, 1.0], [lo, 1.0], color="black", linewidth=0.8, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_axis(ax.xaxis, lo, 1.0)
        _log_axis(ax.yaxis, lo, 1.0)
        ax.set_xlabel("true class frequency (training set)")
        ax.set_ylabel("estimated prior")
        err = float(np.mean(np.abs(est[ok] - true[ok])))
        ax.set_title(f"{title}\nmean |error| = {err:.3f}", fontsize=9)
        _style(ax)
    return _png(fig), notes


def _plain_map(record: dict[str, Any]) -> float:
    v = record.get("val_map_plain")
    return float(record["val_map"] if v is None else v)


def training_curves(table: ResultTable, colors: dict[str, str]) -> bytes | None:
    """Validation mAP per epoch (``metrics.jsonl``), one panel per label setting: per column the plain model's
    mean over seeds (solid; ``val_map_plain``, else ``val_map`` in older runs), its range over seeds (shaded),
    and the EMA model's mean where recorded (dashed). None unless some run has two epochs or more."""
    curves: dict[tuple[str, str], list[dict[int, dict[str, Any]]]] = defaultdict(list)
    for r in table.records:
        m = {int(h["epoch"]): h for h in r.folder.metrics() if "epoch" in h and h.get("val_map") is not None}
        if len(m) >= 2:
            curves[(r.labels, r.column)].append(m)
    if not curves:
        return None
    rows = sorted({row for row, _ in curves}, key=labels_sort_key)
    fig, axes = _grid(len(rows), max_cols=3, w=4.2, h=3.2)
    handles, labels = [], []
    for ax, row in zip(axes, rows):
        for col in table.columns:
            runs = curves.get((row, col))
            if not runs:
                continue
            epochs = sorted(set.intersection(*(set(m) for m in runs)))
            vals = np.array([[_plain_map(m[e]) for e in epochs] for m in runs], dtype=float)
            x = [e + 1 for e in epochs]
            (h,) = ax.plot(x, vals.mean(axis=0), color=colors[col], linewidth=1.4)
            if len(runs) > 1:
                ax.fill_between(x, vals.min(axis=0), vals.max(axis=0), color=colors[col], alpha=0.18, linewidth=0)
            ema = [[m[e].get("val_map_ema") for e in epochs] for m in runs]
            if all(v is not None for seq in ema for v in seq):
                ax.plot(x, np.mean(np.array(ema, dtype=float), axis=0), color=colors[col], linewidth=1.0,
                        linestyle="--")
            handles.append(h)
            labels.append(column_label(col))
        ax.set_title(row, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation mAP (%)")
        _style(ax)
    _legend(fig, handles, labels, order=[column_label(c) for c in table.columns])
    return _png(fig)


def lvis_groups(table: ResultTable, colors: dict[str, str]) -> bytes | None:
    """mAP per LVIS frequency group (rare / common / frequent, and all classes), bars per column, one panel
    per label setting. None unless the runs have ``map_rare``/``map_common``/``map_frequent``."""
    keys = [f"map_{g}" for g in LVIS_GROUPS]
    runs = [r for r in table.records if all(isinstance(r.summary.get(k), (int, float)) for k in keys)]
    if not runs:
        return None
    rows = sorted({r.labels for r in runs}, key=labels_sort_key)
    fig, axes = _grid(len(rows), max_cols=2, w=5.2, h=3.6)
    handles, labels = [], []
    groups = list(LVIS_GROUPS) + ["all"]
    for ax, row in zip(axes, rows):
        cols = [c for c in table.columns if any(r.labels == row and r.column == c for r in runs)]
        width = 0.8 / max(1, len(cols))
        for j, c in enumerate(cols):
            rs = [r for r in runs if r.labels == row and r.column == c]
            vals = np.array([[float(r.summary[k]) for k in keys] + [r.val_map] for r in rs])
            mean = np.nanmean(vals, axis=0)
            std = np.nanstd(vals, axis=0, ddof=1) if len(rs) > 1 else np.zeros(len(groups))
            xs = np.arange(len(groups)) + (j - (len(cols) - 1) / 2) * width
            bars = ax.bar(xs, mean, width=width, yerr=std, capsize=2, color=colors[c], error_kw={"linewidth": 0.8})
            handles.append(bars)
            labels.append(column_label(c))
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel("mAP (%)")
        ax.set_title(row, fontsize=10)
        _style(ax)
        ax.grid(False, axis="x")
    _legend(fig, handles, labels, order=[column_label(c) for c in table.columns])
    return _png(fig)
