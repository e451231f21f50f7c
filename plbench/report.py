"""Tables and plots of run results, as markdown and self-contained HTML.

Input: run folders written by :func:`plbench.engine.train.train` (their ``summary.json``).
Output folder: ``report.md``, ``report.html`` (plots embedded), ``map.png``, ``results.csv``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from plbench.artifacts.atomic import write_bytes, write_text
from plbench.errors import InputError

MODE_ORDER = ["negative", "ignore", "ignore_normalized", "selective"]


@dataclass
class ReportTable:
    """mAP table: ``rows`` label settings, ``cols`` modes, ``cells[(row, col)]`` = mAP in percent."""

    rows: list[str]
    cols: list[str]
    cells: dict[tuple[str, str], float]
    annotated: dict[str, float]


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders among ``paths``: each path is a run folder or a folder of run folders."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / "summary.json").is_file():
            runs.append(p)
        elif p.is_dir():
            runs.extend(sorted(q.parent for q in p.glob("*/summary.json")))
        else:
            raise InputError(p, "RUNS", "not a run folder nor a folder of runs", "pass folders written by `plbench train`")
    if not runs:
        raise InputError(None, "RUNS", f"no finished run (summary.json) under {', '.join(map(str, paths))}",
                         "train first, or point at the runs/ folder")
    return runs


def load_summaries(runs: Sequence[Path]) -> list[dict[str, Any]]:
    out = []
    for r in runs:
        path = r / "summary.json"
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise InputError(path, "json", f"not valid JSON ({e})", "re-run the training to rewrite it") from None
    return out


def _label_sort_key(tag: str) -> tuple[int, str]:
    return (0 if tag.split(" ")[0] == "full" else 1, tag)


#: run settings that make two runs different experiments (the seed does not: seeds are averaged)
SETTING_FIELDS = ("dataset", "backbone", "head", "loss", "image_size", "epochs", "train_images")


def varying_settings(summaries: Sequence[dict[str, Any]]) -> list[str]:
    """The setting fields whose value differs between runs."""
    return [f for f in SETTING_FIELDS if len({str(s.get(f)) for s in summaries}) > 1]


def row_label(summary: dict[str, Any], varying: Sequence[str]) -> str:
    """The table row of a run: its label setting, plus the settings that vary across the report."""
    extra = ", ".join(f"{f}={summary.get(f)}" for f in varying)
    return f"{summary['labels']} ({extra})" if extra else summary["labels"]


def build_table(summaries: Sequence[dict[str, Any]], metric: str = "val_map") -> ReportTable:
    """Pivot summaries into label-setting x mode; only the seeds of one experiment are averaged.

    Runs that differ in a :data:`SETTING_FIELDS` value get rows of their own, labelled with it.
    """
    varying = varying_settings(summaries)
    acc: dict[tuple[str, str], list[float]] = {}
    annotated: dict[str, float] = {}
    for s in summaries:
        row = row_label(s, varying)
        acc.setdefault((row, s["mode"]), []).append(float(s[metric]))
        annotated[row] = float(s.get("train_annotated_fraction", float("nan")))
    rows = sorted({k[0] for k in acc}, key=_label_sort_key)
    present = {k[1] for k in acc}
    cols = [m for m in MODE_ORDER if m in present] + sorted(present - set(MODE_ORDER))
    cells = {k: sum(v) / len(v) for k, v in acc.items()}
    return ReportTable(rows, cols, cells, annotated)


def table_markdown(table: ReportTable) -> str:
    """Markdown table; the best mode of each row is bold."""
    head = "| labels | annotated | " + " | ".join(table.cols) + " |"
    sep = "|---|---:|" + "---:|" * len(table.cols)
    lines = [head, sep]
    for r in table.rows:
        vals = [table.cells.get((r, c)) for c in table.cols]
        best = max((v for v in vals if v is not None and not math.isnan(v)), default=None)
        cells = []
        for v in vals:
            if v is None:
                cells.append("")
            else:
                txt = f"{v:.2f}"
                cells.append(f"**{txt}**" if v == best and len([x for x in vals if x is not None]) > 1 else txt)
        frac = table.annotated.get(r, float("nan"))
        lines.append(f"| {r} | {frac * 100:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_html(table: ReportTable) -> str:
    out = ["<table>", "<tr><th>labels</th><th>annotated</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in table.cols) + "</tr>"]
    for r in table.rows:
        vals = [table.cells.get((r, c)) for c in table.cols]
        best = max((v for v in vals if v is not None and not math.isnan(v)), default=None)
        tds = "".join(
            "<td></td>" if v is None else (f"<td><b>{v:.2f}</b></td>" if v == best else f"<td>{v:.2f}</td>")
            for v in vals
        )
        frac = table.annotated.get(r, float("nan"))
        out.append(f"<tr><td>{html.escape(r)}</td><td>{frac * 100:.1f}%</td>{tds}</tr>")
    out.append("</table>")
    return "\n".join(out)


def plot_table(table: ReportTable) -> bytes:
    """Grouped bar chart of the table, PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(table.rows) + 1.5), 3.2), dpi=110)
    width = 0.8 / max(1, len(table.cols))
    for j, c in enumerate(table.cols):
        xs = [i + (j - (len(table.cols) - 1) / 2) * width for i in range(len(table.rows))]
        ys = [table.cells.get((r, c), float("nan")) for r in table.rows]
        ax.bar(xs, ys, width=width, label=c)
    ax.set_xticks(range(len(table.rows)), table.rows)
    ax.set_ylabel("mAP (%)")
    ax.set_xlabel("training labels")
    ax.legend(fontsize=8, frameon=False, ncol=min(4, len(table.cols)))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def runs_markdown(summaries: Sequence[dict[str, Any]]) -> str:
    lines = ["| run | labels | mode | final mAP | best-epoch mAP | CF1 | OF1 | epochs | train s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in sorted(summaries, key=lambda s: (_label_sort_key(s["labels"]), s["mode"])):
        lines.append(
            f"| {s['run']} | {s['labels']} | {s['mode']} | {s['val_map']:.2f} | {s['best_val_map']:.2f} | "
            f"{s.get('cf1', float('nan')):.2f} | {s.get('of1', float('nan')):.2f} | {s['epochs']} | "
            f"{s.get('train_seconds', float('nan')):.0f} |"
        )
    return "\n".join(lines)


def write_report(
    runs: Sequence[Path],
    out_dir: str | Path,
    *,
    title: str = "plbench report",
    command: str | None = None,
    notes: str = "",
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``map.png`` and ``results.csv`` for the given run folders."""
    out_dir = Path(out_dir)
    summaries = load_summaries(runs)
    table = build_table(summaries)
    png = plot_table(table)
    write_bytes(out_dir / "map.png", png)
    csv_lines = ["run,labels,mode,val_map,best_val_map,train_annotated_fraction"]
    csv_lines += [
        f"{s['run']},{s['labels']},{s['mode']},{s['val_map']:.4f},{s['best_val_map']:.4f},"
        f"{s.get('train_annotated_fraction', float('nan')):.6f}"
        for s in summaries
    ]
    write_text(out_dir / "results.csv", "\n".join(csv_lines) + "\n")
    first, varying = summaries[0], set(varying_settings(summaries))
    parts = [
        ("dataset", f"dataset `{first['dataset']}`"), ("backbone", f"backbone `{first['backbone']}`"),
        ("head", f"head `{first['head']}`"), ("loss", f"loss `{first['loss']}`"),
        ("image_size", f"{first['image_size']} px"), ("epochs", f"{first['epochs']} epochs"),
        ("train_images", f"{first['train_images']} training images"),
    ]
    setting = ", ".join(text for field, text in parts if field not in varying)
    setting += f", {first['val_images']} validation images, {first['num_classes']} classes"
    if varying:
        setting += f" (varying across runs, shown in the row labels: {', '.join(sorted(varying))})"
    regen = f"Regenerate with: `{command}`\n\n" if command else ""
    md = (
        f"# {title}\n\n{regen}Setting: {setting}.\n\n"
        "## mAP (%) on the validation split, final epoch\n\n"
        "Rows: how the training labels were made (`full` = all labels, `fpcN` = N positives and N negatives "
        "per class, `rpsP` = each label hidden with probability P); columns: how unannotated labels are "
        "treated. The best mode of each row is bold.\n\n"
        f"{table_markdown(table)}\n\n![mAP per setting and mode](map.png)\n\n"
        f"## Runs\n\n{runs_markdown(summaries)}\n\n"
        "`final mAP` is the headline number (the last epoch, no selection on validation data); "
        "`best-epoch mAP` is selected on the validation split and therefore optimistic.\n"
        + (f"\n## Notes\n\n{notes}\n" if notes else "")
    )
    write_text(out_dir / "report.md", md)
    img = base64.b64encode(png).decode()
    body_notes = "".join(f"<p>{html.escape(p)}</p>" for p in notes.split("\n\n") if p.strip())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
        "code{background:#f4f4f4}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + (f"<p>Regenerate with: <code>{html.escape(command)}</code></p>" if command else "")
        + f"<p>Setting: {html.escape(setting.replace('`', ''))}.</p><h2>mAP (%) on the validation split, final epoch</h2>"
        f"{table_html(table)}<p><img alt='mAP chart' src='data:image/png;base64,{img}'></p>"
        + (f"<h2>Notes</h2>{body_notes}" if body_notes else "")
        + "</body></html>\n"
    )
    write_text(out_dir / "report.html", page)
    return {"md": out_dir / "report.md", "html": out_dir / "report.html", "png": out_dir / "map.png",
            "csv": out_dir / "results.csv"}
