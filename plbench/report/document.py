"""The report folder: ``report.md``, a self-contained ``report.html`` (figures as data URIs), each figure as
PNG and each table as CSV. Orchestration only: tables, renderings and figures come from the sibling modules.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from plbench import __version__
from plbench.artifacts.atomic import write_bytes, write_text
from plbench.artifacts.runs import RunFolder
from plbench.errors import InputError
from plbench.report import figures, render, zero_shot
from plbench.report.published import PublishedNumber, load_published
from plbench.report.records import RunRecord, column_label, column_sort_key, labels_sort_key, load_records
from plbench.report.tables import METRICS, ResultTable, build_tables, paired_differences

CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;max-width:75em;margin:1.5em auto;padding:0 1em;color:#222;
line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
.scroll{overflow-x:auto;margin:.4em 0}
table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right;white-space:nowrap}
th.row{text-align:left;font-weight:normal;white-space:normal;min-width:7em;max-width:17em}
thead th:first-child{text-align:left}
thead th{background:#f3f3f3}
tr.published{color:#555;font-style:italic;background:#fafafa}
table.plain td,table.plain th{text-align:left}
td.code{white-space:normal;min-width:18em;max-width:36em;word-break:break-all}
span.n{color:#777;font-size:.85em}
p.protocol,ul.notes{font-size:.88em;color:#444}
figure{margin:1em 0}figure img{max-width:100%;height:auto}figcaption{font-size:.88em;color:#444}
code{background:#f4f4f4;padding:0 .2em}
nav{font-size:.9em;background:#fafafa;border:1px solid #eee;padding:.4em 1em}nav ul{margin:.3em 0}
"""


@dataclass
class _Doc:
    """Markdown and HTML built side by side, plus the files to write."""

    md: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    sections: list[tuple[str, str]] = field(default_factory=list)  # (anchor, title) of each h2, for the contents

    def heading(self, level: int, text: str) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        if level == 2:
            anchor = f"s{len(self.sections) + 1}"
            self.sections.append((anchor, text))
            self.html.append(f"<h2 id='{anchor}'>{html.escape(text)}</h2>")
        else:
            self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def contents_html(self) -> str:
        items = "".join(f"<li><a href='#{a}'>{html.escape(t)}</a></li>" for a, t in self.sections)
        return f"<nav><b>Contents</b><ul>{items}</ul></nav>"

    def para(self, text: str, cls: str = "") -> None:
        self.md.append(f"{text}\n")
        attr = f" class='{cls}'" if cls else ""
        self.html.append(f"<p{attr}>{html.escape(text)}</p>")

    def notes(self, lines: Sequence[str]) -> None:
        if lines:
            self.md.append("\n".join(f"- {line}" for line in lines) + "\n")
            self.html.append("<ul class='notes'>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>")

    def table(self, md: str, fragment: str, csv_name: str | None = None, csv_text: str | None = None) -> None:
        self.md.append(md + "\n")
        self.html.append(f"<div class='scroll'>{fragment}</div>")
        if csv_name and csv_text is not None:
            self.files[csv_name] = csv_text.encode()
            self.md.append(f"(CSV: [{csv_name}]({csv_name}))\n")

    def figure(self, name: str, png: bytes | None, caption: str) -> None:
        if png is None:
            return
        self.files[name] = png
        self.md.append(f"![{caption}]({name})\n\n*{caption}*\n")
        data = base64.b64encode(png).decode("ascii")
        self.html.append(f"<figure><img alt='{html.escape(caption, quote=True)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _metric_heading(metric: str) -> str:
    if metric == "val_map":
        return "mAP (%) on the evaluation split: final epoch, model fixed before training (headline)"
    if metric == "selected_map":
        return "mAP (%) on the evaluation split at the epoch chosen on the held-out selection split"
    return "mAP (%) selected on the evaluation split (as in the authors' code): best epoch, best of plain and EMA"


def _result_table(doc: _Doc, table: ResultTable, csv_name: str) -> None:
    """A result table (markdown, HTML, CSV) and the paragraph on what its numbers are."""
    doc.table(render.table_markdown(table), render.table_html(table), csv_name, render.table_csv(table))
    doc.para(render.protocol_text(table) + " " + render.SPREAD_NOTE, "protocol")


def _table_section(doc: _Doc, table: ResultTable, authors: ResultTable | None, reference: str | None,
                   colors: dict[str, str], selected: ResultTable | None = None) -> None:
    doc.heading(2, table.title)
    doc.heading(3, _metric_heading("val_map"))
    _result_table(doc, table, f"table-{table.slug}.csv")
    doc.notes(render.published_notes(table))
    doc.figure(f"map-{table.slug}.png", figures.map_bars(table, colors),
               f"{table.title}: mean mAP per label setting (error bars: sample std over seeds; diamonds: published)")

    paired = paired_differences(table, reference)
    if paired.reference is not None and paired.cells:
        doc.heading(3, f"Paired differences against {column_label(paired.reference)} (percentage points)")
        doc.table(render.paired_markdown(paired), render.paired_html(paired), f"paired-{table.slug}.csv",
                  render.paired_csv(paired))
        doc.para("Each seed's run is compared with the reference run of the same seed (same simulated labels, "
                 "same training seed); cells: mean difference ± sample standard deviation (ddof = 1) of the "
                 "differences across seeds, and the number of seeds on which the column beats the reference.",
                 "protocol")
    elif reference is not None and paired.reference is None:
        doc.para(f"No paired differences: no column of this table matches the reference {reference!r}.", "protocol")

    if selected is not None:
        doc.heading(3, _metric_heading("selected_map"))
        _result_table(doc, selected, f"table-{table.slug}-selected.csv")

    if authors is not None:
        doc.heading(3, _metric_heading("authors_map"))
        _result_table(doc, authors, f"table-{table.slug}-authors.csv")
        fallback = sum(bool(r.notes) for r in authors.records)
        if fallback:
            doc.para(f"{fallback} run(s) predate authors_map: their best-epoch mAP is shown (no EMA then).", "protocol")

    doc.figure(f"annotation-{table.slug}.png", figures.annotation_curves(table, colors),
               f"{table.title}: mAP against the annotation level (error bars: sample std over seeds)")
    doc.figure(f"per-class-ap-{table.slug}.png", figures.per_class_ap(table, colors, reference),
               f"{table.title}: per-class AP against class frequency (mean over seeds)")
    doc.figure(f"curves-{table.slug}.png", figures.training_curves(table, colors),
               f"{table.title}: validation mAP per epoch, mean over seeds: plain model (solid; shaded: range "
               "over seeds) and EMA model (dashed, where used)")
    doc.figure(f"lvis-{table.slug}.png", figures.lvis_groups(table, colors),
               f"{table.title}: mAP per LVIS frequency group (error bars: sample std over seeds)")


def _zero_shot_section(doc: _Doc, table: zero_shot.ZeroShotTable) -> None:
    """A zero-shot table in the papers' form (rows: method x task; mAP, F1 at K = 3 and 5)."""
    doc.heading(2, table.title)
    rows = zero_shot.table_rows(table)
    doc.table(render.plain_markdown(zero_shot.HEADER, rows), render.rows_html(zero_shot.HEADER, rows),
              f"table-{table.slug}.csv", zero_shot.table_csv(table))
    doc.para(zero_shot.PROTOCOL_TEXT, "protocol")
    doc.notes(table.notes)


def _runs_table(doc: _Doc, header: Sequence[str], rows: list[list], csv_name: str, csv_text: str,
                code: Sequence[str] = ()) -> None:
    """A table with a row per run; columns equal in every row are said once, above it."""
    header, rows, shared = render.split_constant(header, rows)
    if shared:
        doc.para(render.shared_text(shared))
    doc.table(render.plain_markdown(header, rows, code), render.rows_html(header, rows, code), csv_name, csv_text)


def _setting_summary(records: Sequence[RunRecord]) -> str:
    def uniq(attr: str) -> str:
        return ", ".join(sorted({str(getattr(r, attr)) for r in records}))

    return (f"{len(records)} runs; datasets: {uniq('dataset')}; label settings: "
            f"{', '.join(sorted({r.labels for r in records}, key=labels_sort_key))}; columns: "
            f"{', '.join(column_label(c) for c in sorted({r.column for r in records}, key=column_sort_key))}; "
            f"backbones: {uniq('backbone')}; heads: {uniq('head')}; protocols: {uniq('protocol')}.")


def write_report(
    runs: Sequence[RunFolder | str | Path],
    out_dir: str | Path,
    *,
    title: str = "plbench report",
    command: str | None = None,
    notes: str = "",
    reference: str | None = None,
    published: Sequence[PublishedNumber] | str | Path | None = None,
) -> dict[str, Path]:
    """Write the report folder for ``runs``.

    Args:
        runs: run folders (``RunFolder`` or paths), or folders of run folders (searched with ``find_runs``).
        out_dir: the report folder (created).
        title: the report's heading.
        command: the command line that regenerates the report (shown at the top).
        notes: free text appended as a "Notes" section (paragraphs separated by blank lines).
        reference: column of the paired differences: a column key (``"bce:ignore"``), a mode
            (``"ignore"``) or a loss (``"an"``); None = Ignore, else AN, else the first column.
        published: published numbers to compare with (a CSV path or parsed rows); None = the shipped file.
    Returns:
        ``{"md", "html", "csv" (results.csv), "png" (first figure)}`` plus every written file under its
        file name (``"table-<slug>.csv"``, ``"map-<slug>.png"``, ...).
    Raises:
        InputError: no finished run, or a damaged run folder.
    """
    out_dir = Path(out_dir)
    records = load_records(runs)
    if not records:
        raise InputError(None, "RUNS", "expected at least one finished run, but got none",
                         "train first, or point at the runs/ folder")
    records.sort(key=lambda r: (r.dataset, labels_sort_key(r.labels), column_sort_key(r.column), str(r.seed), r.name))
    numbers = load_published(published) if published is None or isinstance(published, (str, Path)) else list(published)
    tables = build_tables(records, "val_map", numbers)
    authors = {t.slug: t for t in build_tables(records, "authors_map", numbers)}
    selected = {t.slug: t for t in build_tables(records, "selected_map", numbers)}
    colors = figures.column_colors(sorted({r.column for r in records}, key=column_sort_key))

    doc = _Doc()
    doc.heading(1, title)
    if command:
        doc.md.append(f"Regenerate with: `{command}`\n")
        doc.html.append(f"<p>Regenerate with: <code>{html.escape(command)}</code></p>")
    doc.para(_setting_summary(records))
    doc.para("Rows: how the training labels were made (full = all labels, natural = the dataset's own partial "
             "labels, fpcN = N positives and N negatives kept per class, rpsP = each label hidden with "
             "probability P, spl = one positive per image); columns: the loss and how it treats unannotated "
             "labels (mode). Tables are separate per dataset, protocol, backbone, head and training setting.")
    contents_at = len(doc.html)  # the table of contents goes after the title, command line and intro
    for t in tables:
        _table_section(doc, t, authors.get(t.slug), reference, colors, selected.get(t.slug))
    for zt in zero_shot.build_zero_shot_tables(records, numbers):
        _zero_shot_section(doc, zt)

    prior_png, prior_notes = figures.prior_scatter(records)
    if prior_png is not None or prior_notes:
        doc.heading(2, "Class priors")
        doc.figure("priors.png", prior_png, "Estimated class prior (the prior CSV of the Selective runs) against "
                   "the true class frequency of the training set; dashed: equality")
        doc.notes(prior_notes)

    doc.heading(2, "Runs")
    _runs_table(doc, render.RUNS_HEADER, render.runs_rows(records), "results.csv", render.results_csv(records))
    doc.para("headline mAP: final epoch, model fixed before training. mAP at the selected epoch: for a run with "
             "a selection split (--select-split, e.g. the single-positive papers' 20 % of train2014 held out), "
             "the evaluation mAP at the epoch with the best mAP on that split (\"test mAP at the epoch chosen on "
             "SPLIT\"); otherwise the best epoch on the evaluation split itself (\"selected on the evaluation "
             "split\"), which is optimistic, as is the authors' selection. CF1/OF1: per-class and overall F1 (%) "
             "at threshold 0.5.", "protocol")

    doc.heading(2, "Provenance")
    _runs_table(doc, *render.provenance_table(records), "provenance.csv", render.provenance_csv(records),
                code=("command",))
    doc.para(f"Report written by plbench {__version__}.", "protocol")

    if notes.strip():
        doc.heading(2, "Notes")
        for p in notes.split("\n\n"):
            if p.strip():
                doc.para(p.strip())

    body = doc.html[:contents_at] + [doc.contents_html()] + doc.html[contents_at:]
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "\n</body></html>\n")
    paths: dict[str, Path] = {}
    for name, data in doc.files.items():
        write_bytes(out_dir / name, data)
        paths[name] = out_dir / name
    write_text(out_dir / "report.md", "\n".join(doc.md))
    write_text(out_dir / "report.html", page)
    pngs = [p for n, p in paths.items() if n.endswith(".png")]
    paths.update({"md": out_dir / "report.md", "html": out_dir / "report.html", "csv": out_dir / "results.csv"})
    if pngs:
        paths["png"] = pngs[0]
    return paths


__all__ = ["METRICS", "write_report"]
