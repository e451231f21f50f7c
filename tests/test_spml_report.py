"""The report's per-run table shows the mAP at the selected epoch beside the final epoch, and names how the
epoch was chosen: on a held-out selection split ("test mAP at the epoch chosen on SPLIT"), or on the evaluation
split itself ("selected on the evaluation split"); a test-selected number is never called held-out."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

from plbench.report import render, write_report
from test_report import write_run


def _record(**summary):
    return SimpleNamespace(name="run", labels="spl", loss="an", mode=None, seed=0, val_map=64.123, best_val_map=66.5,
                           val_map_plain=64.123, val_map_ema=None, authors_map=66.5, summary={"cf1": 50.0, **summary},
                           selected_map=summary.get("selected_map"),  # as load_record reads it from the summary
                           evaluation_protocol="final epoch, plain model (fixed before training)")


def test_without_a_selection_split_the_best_epoch_is_labelled_as_selected_on_the_evaluation_split():
    header, row = render.RUNS_HEADER, render.runs_rows([_record()])[0]
    assert len(header) == len(row)
    i = header.index("headline mAP (final epoch)")
    assert header[i + 1:i + 3] == ("mAP at the selected epoch", "epoch selection")
    assert row[i:i + 3] == [render.fmt(64.123), render.fmt(66.5), "selected on the evaluation split"]


def test_with_a_selection_split_the_test_mAP_at_the_chosen_epoch_is_shown():
    r = _record(selection_split="train2014-spml-val", selected_epoch=3, selected_map=65.25, selection_map=70.0)
    header, row = render.RUNS_HEADER, render.runs_rows([r])[0]
    i = header.index("mAP at the selected epoch")
    assert row[i:i + 2] == ["65.25", "test mAP at the epoch chosen on train2014-spml-val"]  # not best_val_map 66.5
    # a run whose selection split gave no number (no epoch scored) shows a dash, still labelled by its split
    r = _record(selection_split="train2014-spml-val", selected_epoch=None, selected_map=None)
    assert render.runs_rows([r])[0][i:i + 2] == ["–", "test mAP at the epoch chosen on train2014-spml-val"]


def test_report_of_runs_with_and_without_held_out_selection(tmp_path):
    held = dict(labels="spl", loss="an", mode=None, simulation={"scheme": "spl", "param": None, "seed": 0},
                best_val_map=61.0, val_map=60.0)
    write_run(tmp_path / "runs", "held-out", **held, selection_split="train2014-spml-val", selected_epoch=4,
              selected_map=59.5, selection_map=70.0)
    write_run(tmp_path / "runs", "test-selected", **{**held, "seed": 1})
    paths = write_report([tmp_path / "runs"], tmp_path / "report")
    md = paths["md"].read_text()
    runs = md.split("## Runs", 1)[1].split("## Provenance", 1)[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in runs.splitlines()
            if line.startswith(("| held-out", "| test-selected"))}
    assert "59.50 | test mAP at the epoch chosen on train2014-spml-val" in rows["held-out"]
    assert "61.00 | selected on the evaluation split" in rows["test-selected"]
    assert "validation split" not in runs  # the old label called test-selected numbers validation-selected
    table = {r["run"]: r for r in csv.DictReader(io.StringIO(paths["csv"].read_text()))}
    assert (table["held-out"]["selection_split"], table["held-out"]["selected_epoch"],
            table["held-out"]["selected_map"]) == ("train2014-spml-val", "4", "59.5")
    assert (table["test-selected"]["selection_split"], table["test-selected"]["selected_map"]) == ("", "")


def test_held_out_selected_numbers_get_a_table_of_their_own(tmp_path):
    """The table of the single-positive papers' protocol: mean ± std of selected_map over the runs that have a
    selection split (the test-selected run is left out); no such table when no run has one."""
    import numpy as np

    held = dict(labels="spl", loss="an", mode=None, simulation={"scheme": "spl", "param": None, "seed": 0})
    for seed, value in ((0, 59.5), (1, 62.0)):
        write_run(tmp_path / "runs", f"held-out-s{seed}", **{**held, "seed": seed}, selection_split="spml-val",
                  selected_epoch=2, selected_map=value, selection_map=70.0)
    write_run(tmp_path / "runs", "test-selected", **{**held, "seed": 2})
    paths = write_report([tmp_path / "runs"], tmp_path / "report")
    md = paths["md"].read_text()
    heading = "### mAP (%) on the evaluation split at the epoch chosen on the held-out selection split"
    assert md.count(heading) == 1
    section = md.split(heading, 1)[1].split("###", 1)[0]
    mean, std = np.mean([59.5, 62.0]), np.std([59.5, 62.0], ddof=1)
    assert f"{mean:.2f} ± {std:.2f} (n=2)" in section and "spml-val; never the evaluation split" in section
    (csv_file,) = (tmp_path / "report").glob("table-*-selected.csv")
    assert csv_file.is_file()
    plain = write_report([tmp_path / "runs" / "test-selected"], tmp_path / "plain")["md"].read_text()
    assert "held-out selection split" not in plain
