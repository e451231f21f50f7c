import json

import pytest

from plbench.errors import InputError
from plbench.report import build_table, find_runs, table_markdown, write_report


def _summary(run, labels, mode, val_map, best=None, frac=1.0):
    return {
        "run": run, "dataset": "synthetic", "labels": labels, "mode": mode, "loss": "pasl", "backbone": "resnet10t",
        "head": "gap", "image_size": 64, "epochs": 2, "seed": 0, "train_images": 100, "val_images": 20,
        "num_classes": 3, "train_annotated_fraction": frac, "val_map": val_map,
        "best_val_map": best if best is not None else val_map, "cf1": 10.0, "of1": 20.0, "train_seconds": 3.0,
    }


@pytest.fixture()
def runs(tmp_path):
    rows = [
        ("a", "full", "negative", 80.0, 1.0),
        ("b", "fpc5", "negative", 40.0, 0.1),
        ("c", "fpc5", "ignore", 50.0, 0.1),
        ("d", "fpc5", "selective", 55.5, 0.1),
        ("e", "fpc5", "selective", 54.5, 0.1),  # second seed of the same cell: averaged
    ]
    for run, labels, mode, m, frac in rows:
        d = tmp_path / "runs" / run
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(_summary(run, labels, mode, m, frac=frac)))
    return tmp_path / "runs"


def test_table_pivot_and_average(runs):
    from plbench.report import load_summaries

    table = build_table(load_summaries(find_runs([runs])))
    assert table.rows == ["full", "fpc5"]
    assert table.cols == ["negative", "ignore", "selective"]
    assert table.cells[("fpc5", "selective")] == pytest.approx(55.0)
    assert ("full", "ignore") not in table.cells
    md = table_markdown(table)
    assert "| fpc5 | 10.0% | 40.00 | 50.00 | **55.00** |" in md
    assert "| full | 100.0% | 80.00 |  |  |" in md


def test_write_report_files(runs, tmp_path):
    paths = write_report(find_runs([runs]), tmp_path / "rep", title="T", command="plbench demo", notes="N1")
    md = paths["md"].read_text()
    assert md.startswith("# T\n\nRegenerate with: `plbench demo`")
    assert "**55.00**" in md and "N1" in md
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "<b>55.00</b>" in html
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(paths["csv"].read_text().splitlines()) == 6
    assert not list((tmp_path / "rep").glob(".*tmp"))


def test_find_runs_errors(tmp_path):
    with pytest.raises(InputError, match="no finished run"):
        find_runs([tmp_path])
    with pytest.raises(InputError, match="not a run folder"):
        find_runs([tmp_path / "missing"])


def test_runs_of_different_settings_are_not_averaged(runs):
    from plbench.report import load_summaries

    extra = runs / "f"
    extra.mkdir()
    other = _summary("f", "fpc5", "selective", 10.0, frac=0.1)
    other["backbone"] = "resnet50"
    (extra / "summary.json").write_text(json.dumps(other))
    table = build_table(load_summaries(find_runs([runs])))
    assert table.cells[("fpc5 (backbone=resnet10t)", "selective")] == pytest.approx(55.0)
    assert table.cells[("fpc5 (backbone=resnet50)", "selective")] == pytest.approx(10.0)
    assert table.rows[0] == "full (backbone=resnet10t)"
