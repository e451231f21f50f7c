"""Text renderings of result tables: markdown, HTML fragments and CSV (one format function per output)."""

from __future__ import annotations

import csv
import html
import io
import math
from typing import Any, Sequence

from plbench.report.records import RunRecord, column_label
from plbench.report.tables import METRICS, CellStats, PairedDiff, PairedTable, ResultTable

SPREAD_NOTE = ("Cells: mean ± sample standard deviation (ddof = 1) over seeds, n = number of seeds; "
               "the best mean of each row (ours, at the shown precision) is bold.")


def fmt(x: float | None, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _spread_text(mean: float, std: float, n: int, signed: bool = False) -> str:
    """``"83.44 ± 0.12"``; a single value has no spread: ``"83.44"``."""
    return fmt(mean, signed=signed) if n < 2 else f"{fmt(mean, signed=signed)} ± {fmt(std)}"


def cell_text(c: CellStats) -> tuple[str, str]:
    """``("83.44 ± 0.12", "n=3")``; a single seed has no spread: ``("83.44", "n=1")``."""
    return _spread_text(c.mean, c.std, c.n), f"n={c.n}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _annotated(table: ResultTable, row: str) -> str:
    f = table.annotated.get(row)
    return "" if f is None else f"{f * 100:.1f}%"


def protocol_text(table: ResultTable) -> str:
    """What the numbers are: the metric's meaning and the evaluation protocol of the runs."""
    protocols = "; ".join(table.protocols())
    if table.metric == "val_map":
        return f"Evaluation protocol: {protocols}. No model selection on the evaluation split."
    if table.metric == "selected_map":
        splits = ", ".join(sorted({str(r.summary.get("selection_split")) for r in table.records}))
        return (f"Evaluation protocol: the headline model at {METRICS[table.metric]} ({splits}; never the "
                f"evaluation split); runs without a selection split are left out. Headline protocol: {protocols}.")
    return (f"Evaluation protocol: {METRICS[table.metric]}; optimistic, shown because the published numbers "
            f"were selected this way. Headline protocol of these runs: {protocols}.")


def published_notes(table: ResultTable) -> list[str]:
    """One line per published source shown in (or matching a row of) the table."""
    lines = []
    for row in table.rows:
        for setting, numbers in table.published_rows(row):
            p = next(iter(numbers.values()))
            lines.append(f"Published, {row}: {setting} — model selection: {p.selection}. Source: {p.source}.")
        for p in table.unmatched_published(row):
            size = f", {p.image_size} px" if p.image_size else ""
            lines.append(f"Also published for {row} (no column here): {p.method} {p.map:.2f} ({p.backbone}{size}; "
                         f"model selection: {p.selection}. Source: {p.source}).")
    return lines


# -- markdown ------------------------------------------------------------------------------------------


def table_markdown(table: ResultTable) -> str:
    """Markdown table: a row per label setting (ours), then its published rows in italics."""
    labels = [column_label(c) for c in table.columns]
    lines = ["| labels | annotated | " + " | ".join(labels) + " |", "|---|---:|" + "---:|" * len(labels)]
    for row in table.rows:
        best = table.best(row)
        cells = []
        for c in table.columns:
            stats = table.cells.get((row, c))
            if stats is None:
                cells.append("")
                continue
            main, n = cell_text(stats)
            cells.append(f"**{main}** ({n})" if c in best else f"{main} ({n})")
        lines.append(f"| {_md_escape(row)} | {_annotated(table, row)} | " + " | ".join(cells) + " |")
        for setting, numbers in table.published_rows(row):
            pub = [f"*{numbers[c].map:.2f}*" if c in numbers else "" for c in table.columns]
            lines.append(f"| *{_md_escape(row)}, published: {_md_escape(setting)}* |  | " + " | ".join(pub) + " |")
    return "\n".join(lines)


def _paired_columns(paired: PairedTable) -> list[str]:
    """The columns with at least one paired difference (none without a reference)."""
    if paired.reference is None:
        return []
    return [c for c in paired.columns if any((r, c) in paired.cells for r in paired.table.rows)]


def paired_markdown(paired: PairedTable) -> str:
    cols = _paired_columns(paired)
    if not cols:
        return ""
    lines = ["| labels | " + " | ".join(f"{column_label(c)} − {column_label(paired.reference)}" for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for row in paired.table.rows:
        cells = []
        for c in cols:
            d = paired.cells.get((row, c))
            cells.append("" if d is None else f"{_diff_text(d)} ({d.wins}/{d.n} seeds better)")
        if any(cells):
            lines.append(f"| {_md_escape(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _diff_text(d: PairedDiff) -> str:
    return _spread_text(d.mean, d.std, d.n, signed=True)


RUNS_HEADER = ("run", "labels", "loss", "mode", "seed", "headline mAP (final epoch)", "mAP at the selected epoch",
               "epoch selection", "plain", "EMA", "authors' selection", "CF1", "OF1", "evaluation protocol")
#: the epoch selection of a run without a selection split: its best epoch on the split it is evaluated on
EVALUATION_SELECTION = "selected on the evaluation split"
PROVENANCE_HEADER = ("run", "wall s", "train s", "plbench", "git commit", "hardware", "torch", "started", "command")


def _summary_number(r: RunRecord, key: str, digits: int = 2) -> str:
    """A number of the run's summary, formatted; "–" where it is missing or not a number."""
    v = r.summary.get(key)
    return fmt(float(v), digits) if isinstance(v, (int, float)) else "–"


def epoch_selection(r: RunRecord) -> tuple[float | None, str]:
    """The run's mAP at its selected epoch and how that epoch was chosen: with a selection split (summary
    ``selection_split``), the evaluation mAP at the epoch chosen there (``selected_map``); without one, the
    best epoch on the evaluation split itself (``best_val_map``, optimistic). A test-selected number is never
    labelled as chosen on held-out data."""
    split = r.summary.get("selection_split")
    if split:
        return r.selected_map, f"test mAP at the epoch chosen on {split}"
    return r.best_val_map, EVALUATION_SELECTION


def runs_rows(records: Sequence[RunRecord]) -> list[list[Any]]:
    """The per-run table: mAP values (percent) under each protocol, CF1/OF1 (percent) where the run has them."""
    rows = []
    for r in records:
        selected, selection = epoch_selection(r)
        rows.append([r.name, r.labels, r.loss, r.mode or "–", "–" if r.seed is None else r.seed, fmt(r.val_map),
                     fmt(selected), selection, fmt(r.val_map_plain), fmt(r.val_map_ema), fmt(r.authors_map),
                     _summary_number(r, "cf1"), _summary_number(r, "of1"), r.evaluation_protocol])
    return rows


def short_commit(commit: str) -> str:
    """12 hex digits, keeping a ``+dirty`` mark (uncommitted changes when the run started)."""
    if commit == "–":
        return commit
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def provenance_rows(records: Sequence[RunRecord]) -> list[dict[str, str]]:
    """Per run: wall and training seconds, plbench version, git commit, hardware, torch, start time, command."""
    out = []
    for r in records:
        p = r.summary.get("provenance") or {}
        out.append({
            "run": r.name,
            "wall_seconds": _summary_number(r, "wall_seconds", 0),
            "train_seconds": _summary_number(r, "train_seconds", 0),
            "plbench_version": str(p.get("plbench_version") or r.summary.get("plbench_version") or "–"),
            "git_commit": str(p.get("git_commit") or "–"),
            "hardware": str(p.get("hardware") or "–"),
            "torch_version": str(p.get("torch_version") or "–"),
            "started_at": str(p.get("started_at") or "–"),
            "command": str(p.get("command") or "–"),
        })
    return out


def provenance_table(records: Sequence[RunRecord]) -> tuple[list[str], list[list[Any]]]:
    rows = [[p["run"], p["wall_seconds"], p["train_seconds"], p["plbench_version"], short_commit(p["git_commit"]),
             p["hardware"], p["torch_version"], p["started_at"], p["command"]] for p in provenance_rows(records)]
    return list(PROVENANCE_HEADER), rows


def split_constant(header: Sequence[str], rows: Sequence[Sequence[Any]], keep: Sequence[str] = ("run",)
                   ) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
    """Columns with one value in every row (of two rows or more) leave the table; returns the narrower
    table and ``{column: value}`` of those columns, to print once above it."""
    if len(rows) < 2:
        return list(header), [list(r) for r in rows], {}
    constant = [i for i, h in enumerate(header) if h not in keep and len({str(r[i]) for r in rows}) == 1]
    shared = {header[i]: rows[0][i] for i in constant}
    cols = [i for i in range(len(header)) if i not in constant]
    return [header[i] for i in cols], [[r[i] for i in cols] for r in rows], shared


def shared_text(shared: dict[str, Any]) -> str:
    return "Same for every run: " + "; ".join(f"{k}: {v}" for k, v in shared.items()) + "." if shared else ""


def plain_markdown(header: Sequence[str], rows: Sequence[Sequence[Any]], code: Sequence[str] = ()) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"`{v}`" if h in code and v != "–" else str(v) for h, v in zip(header, r)]
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    return "\n".join(lines)


# -- HTML ----------------------------------------------------------------------------------------------


def _h(text: Any) -> str:
    return html.escape(str(text))


def table_html(table: ResultTable) -> str:
    head = "".join(f"<th>{_h(column_label(c))}</th>" for c in table.columns)
    out = [f"<table class='results'><thead><tr><th>labels</th><th>annotated</th>{head}</tr></thead><tbody>"]
    for row in table.rows:
        best = table.best(row)
        tds = []
        for c in table.columns:
            stats = table.cells.get((row, c))
            if stats is None:
                tds.append("<td></td>")
                continue
            main, n = cell_text(stats)
            main = f"<b>{_h(main)}</b>" if c in best else _h(main)
            tds.append(f"<td>{main} <span class='n'>({_h(n)})</span></td>")
        out.append(f"<tr><th class='row'>{_h(row)}</th><td>{_annotated(table, row)}</td>{''.join(tds)}</tr>")
        for setting, numbers in table.published_rows(row):
            pub = "".join(f"<td>{numbers[c].map:.2f}</td>" if c in numbers else "<td></td>" for c in table.columns)
            out.append(f"<tr class='published'><th class='row'>{_h(row)}, published: {_h(setting)}</th><td></td>"
                       f"{pub}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def paired_html(paired: PairedTable) -> str:
    cols = _paired_columns(paired)
    if not cols:
        return ""
    ref = column_label(paired.reference)
    head = "".join(f"<th>{_h(column_label(c))} − {_h(ref)}</th>" for c in cols)
    out = [f"<table class='results'><thead><tr><th>labels</th>{head}</tr></thead><tbody>"]
    for row in paired.table.rows:
        cells = [paired.cells.get((row, c)) for c in cols]
        if not any(cells):
            continue
        tds = "".join("<td></td>" if d is None else
                      f"<td>{_h(_diff_text(d))} <span class='n'>({d.wins}/{d.n} seeds better)</span></td>"
                      for d in cells)
        out.append(f"<tr><th class='row'>{_h(row)}</th>{tds}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def rows_html(header: Sequence[str], rows: Sequence[Sequence[Any]], code: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{_h(h)}</th>" for h in header)
    body = []
    for r in rows:
        tds = "".join(f"<td class='code'><code>{_h(v)}</code></td>" if h in code and v != "–"
                      else f"<td>{_h(v)}</td>" for h, v in zip(header, r))
        body.append(f"<tr>{tds}</tr>")
    return f"<table class='plain'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- CSV -----------------------------------------------------------------------------------------------


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(round(float(x), 6))


TABLE_CSV_HEADER = ("labels", "source", "column", "column_label", "metric", "mean", "std_ddof1", "n", "best",
                    "values", "seeds")


def table_csv(table: ResultTable) -> str:
    """Long format: one line per cell (``source`` = ``plbench``) and per published number (``source`` = citation)."""
    rows = []
    for row in table.rows:
        best = table.best(row)
        for c in table.columns:
            s = table.cells.get((row, c))
            if s is not None:
                rows.append([row, "plbench", c, column_label(c), table.metric, _num(s.mean), _num(s.std), s.n,
                             int(c in best), ";".join(_num(v) for v in s.values),
                             ";".join(str(k[1] if k[0] is None else f"{k[0]}/{k[1]}") for k in s.keys)])
        for p in table.published.get(row, []):
            rows.append([row, p.source, p.column, p.method, f"published ({p.selection})", _num(p.map), "", "", "",
                         "", ""])
    return _csv(TABLE_CSV_HEADER, rows)


def paired_csv(paired: PairedTable) -> str:
    rows = []
    for (row, c), d in sorted(paired.cells.items(), key=lambda kv: (paired.table.rows.index(kv[0][0]),
                                                                    paired.table.columns.index(kv[0][1]))):
        rows.append([row, c, paired.reference, _num(d.mean), _num(d.std), d.n, d.wins,
                     ";".join(_num(v) for v in d.diffs)])
    return _csv(("labels", "column", "reference", "mean_difference", "std_ddof1", "n", "wins", "differences"), rows)


RESULTS_CSV_HEADER = ("run", "dataset", "protocol", "backbone", "head", "image_size", "recipe", "epochs", "labels",
                      "loss", "mode", "seed", "simulation_seed", "val_map", "val_map_plain", "val_map_ema",
                      "best_val_map", "authors_map", "train_annotated_fraction", "evaluation_protocol",
                      "selection_split", "selected_epoch", "selected_map")


def results_csv(records: Sequence[RunRecord]) -> str:
    """One line per run; ``selected_epoch`` counts from 0 (metrics.jsonl's ``epoch``), empty without a
    selection split."""
    def cell(value: Any) -> str:
        return "" if value is None else str(value)

    rows = [[r.name, r.dataset, r.protocol, r.backbone, r.head, r.image_size, r.recipe, r.epochs, r.labels, r.loss,
             r.mode or "", "" if r.seed is None else r.seed, "" if r.simulation_seed is None else r.simulation_seed,
             _num(r.val_map), _num(r.val_map_plain), _num(r.val_map_ema), _num(r.best_val_map), _num(r.authors_map),
             _num(r.summary.get("train_annotated_fraction")), r.evaluation_protocol,
             cell(r.summary.get("selection_split")), cell(r.summary.get("selected_epoch")),
             _num(r.selected_map)] for r in records]
    return _csv(RESULTS_CSV_HEADER, rows)


def provenance_csv(records: Sequence[RunRecord]) -> str:
    rows = provenance_rows(records)
    header = list(rows[0]) if rows else ["run"]
    return _csv(header, [[p[h] for h in header] for p in rows])
