"""Zero-shot report tables: papers' form (method x task; mAP, F1@3, F1@5), mean ± sample std over seeds,
published rows with their F1 and source, and the section in the written report."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from plbench.errors import InputError
from plbench.report import load_published, load_records, write_report
from plbench.report.published import parse_published
from plbench.report.tables import build_tables
from plbench.report.zero_shot import HEADER, build_zero_shot_tables, table_csv, table_rows
from test_report import write_run

# seed -> (zsl map, f1@3, f1@5, gzsl map, f1@3, f1@5)
GLOVE = {0: (20.0, 30.0, 28.0, 8.0, 12.0, 14.0), 1: (22.0, 31.0, 27.0, 9.0, 13.0, 15.0),
         2: (24.0, 35.0, 29.0, 10.0, 14.0, 19.0)}


def _zs_run(root: Path, name: str, seed: int, values: tuple, embeddings: str = "glove", **fields) -> Path:
    zsl = dict(zip(("map", "f1@3", "f1@5"), values[:3]))
    gzsl = dict(zip(("map", "f1@3", "f1@5"), values[3:]))
    block = {"split": "nuswide", "num_seen": 925, "num_unseen": 81, "embeddings": embeddings, "prompt": None,
             "images": {"zsl": 100, "gzsl": 120}, "dropped_train_images": 7, "zsl": zsl, "gzsl": gzsl}
    return write_run(root, name, dataset="nuswide", labels="full", head="ml-decoder", seed=seed,
                     simulation=None, zero_shot=block, **fields)


@pytest.fixture()
def zs_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed, v in GLOVE.items():
        _zs_run(root, f"glove-s{seed}", seed, v)
    _zs_run(root, "random-s0", 0, (5.0, 6.0, 7.0, 1.0, 2.0, 3.0), embeddings="random")
    write_run(root, "plain-coco", seed=0)  # not zero-shot: no table of its own here
    return root


def test_rows_mean_sample_std_per_task_and_setting(zs_runs):
    tables = build_zero_shot_tables(load_records([zs_runs]), [])
    assert [t.dataset for t in tables] == ["nuswide"]
    rows = tables[0].rows
    glove = [r for r in rows if "glove queries" in r.method]
    assert [r.task for r in glove] == ["zsl", "gzsl"]
    for row, offset in zip(glove, (0, 3)):
        for j, metric in enumerate(("map", "f1@3", "f1@5")):
            vals = [GLOVE[s][offset + j] for s in (0, 1, 2)]
            cell = row.values[metric]
            assert cell.n == 3
            assert cell.mean == pytest.approx(np.mean(vals))
            assert cell.std == pytest.approx(np.std(vals, ddof=1))
    random_rows = [r for r in rows if "random queries" in r.method]
    assert len(random_rows) == 2 and random_rows[0].values["map"].n == 1  # another embedding source: own rows
    text = table_rows(tables[0])
    assert text[0][2:6] == ["22.00 ± 2.00", "32.00 ± 2.65", "28.00 ± 1.00", "3"]
    assert [r[2] for r in text if "random" in r[0]] == ["5.00", "1.00"]  # one seed: no spread
    assert "925 seen and 81 unseen classes" in tables[0].notes[0] and "7 training images" in tables[0].notes[0]


def test_published_rows_carry_f1_and_source(zs_runs):
    tables = build_zero_shot_tables(load_records([zs_runs]), load_published())
    pub = {(r.method.split(" ·")[0], r.task): r for r in tables[0].rows if r.published}
    assert pub[("CONSE", "zsl")].values == {"map": 9.4, "f1@3": 21.6, "f1@5": 20.2}  # ML-Decoder's table
    assert pub[("Fast0Tag", "gzsl")].values == {"map": 3.7, "f1@3": 11.5, "f1@5": 13.5}
    assert pub[("Attention per Cluster", "gzsl")].values == {"map": 2.6, "f1@3": 6.4}  # F1@5 cut off: absent
    assert pub[("ML-Decoder (word queries)", "zsl")].values == {"map": 31.1}
    assert all("arXiv:2111.12933" in r.source for r in pub.values())
    rows = table_rows(tables[0])
    ml = next(r for r in rows if r[0].startswith("ML-Decoder"))
    assert ml[2:5] == ["31.1", "–", "–"] and ml[0].endswith("(published)")
    # machine-readable: one line per (row, metric); published lines flagged, no n
    lines = list(csv.DictReader(io.StringIO(table_csv(tables[0]))))
    conse = [x for x in lines if x["method"].startswith("CONSE") and x["task"] == "gzsl"]
    assert [(x["metric"], x["mean"], x["published"]) for x in conse] == [
        ("map", "2.1", "1"), ("f1@3", "7.0", "1"), ("f1@5", "8.1", "1")]
    ours = [x for x in lines if x["published"] == "0" and x["metric"] == "f1@3" and "glove" in x["method"]]
    assert [float(x["std_ddof1"]) for x in ours] == pytest.approx([np.std([30, 31, 35], ddof=1), 1.0])


def test_optional_f1_columns_parse_and_reject_text():
    head = "dataset,labels,protocol,column,map,method,backbone,image_size,selection,source"
    rows = parse_published(f"{head}\nnuswide,zsl,linear,x,1.5,X,VGG,224,s,src\n")
    assert rows[0].f1_3 is None and rows[0].f1_5 is None  # a file without the optional columns
    rows = parse_published(f"{head},f1_3,f1_5\nnuswide,zsl,linear,x,1.5,X,VGG,224,s,src,2.5,\n")
    assert (rows[0].f1_3, rows[0].f1_5) == (2.5, None)
    with pytest.raises(InputError, match="f1_3"):
        parse_published(f"{head},f1_3,f1_5\nnuswide,zsl,linear,x,1.5,X,VGG,224,s,src,abc,\n")


def test_report_has_the_zero_shot_section(zs_runs, tmp_path):
    paths = write_report([zs_runs], tmp_path / "report")
    md = paths["md"].read_text()
    assert "## nuswide · zero-shot (ZSL: unseen classes; GZSL: seen + unseen)" in md
    assert "| " + " | ".join(HEADER) + " |" in md
    assert "22.00 ± 2.00" in md and "CONSE · VGG-19 224 px · linear (published)" in md
    assert (tmp_path / "report" / "table-zero-shot-nuswide.csv").is_file()
    assert "zero-shot" in paths["html"].read_text()


def test_no_zero_shot_run_no_section(tmp_path):
    write_run(tmp_path / "runs", "plain", seed=0)
    paths = write_report([tmp_path / "runs"], tmp_path / "report")
    assert "zero-shot" not in paths["md"].read_text()


def test_zero_shot_runs_stay_out_of_the_map_tables(zs_runs, tmp_path):
    """A zero-shot run's val_map covers its seen classes only: it is in the zero-shot table, never in a
    mAP table beside runs of all classes (a plain nuswide run keeps its table)."""
    write_run(zs_runs, "plain-nuswide", dataset="nuswide", labels="full", head="ml-decoder", seed=0, simulation=None)
    records = load_records([zs_runs])
    tables = build_tables(records, "val_map")
    in_tables = {r.name for t in tables for r in t.records}
    assert {r.name for r in records} - in_tables == {"glove-s0", "glove-s1", "glove-s2", "random-s0"}
    assert {"plain-coco", "plain-nuswide"} <= in_tables
    md = write_report([zs_runs], tmp_path / "report")["md"].read_text()
    assert md.count("## nuswide") == 2  # the plain run's table and the zero-shot section
