"""Report tables from hand-written run folders with known numbers (summary.json / metrics.jsonl / config.json
as the engine writes them), checked against values computed by hand and with numpy."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from plbench.artifacts.runs import RunFolder, find_runs
from plbench.errors import InputError
from plbench.report import build_tables, load_published, load_records, paired_differences, write_report
from plbench.report.published import parse_published
from plbench.report.records import column_label, labels_sort_key, parse_labels
from plbench.report.render import cell_text, table_csv, table_markdown
from plbench.report.tables import resolve_reference

CLASSES = [f"class{i}" for i in range(6)]
TRUE_FREQ = [0.5, 0.3, 0.2, 0.1, 0.05, 0.01]


def write_run(root: Path, name: str, *, epochs_metrics: int = 0, config: dict | None = None, **fields) -> Path:
    """A finished run folder: summary.json with the engine's fields (overridable), optional metrics.jsonl."""
    seed = fields.get("seed", 0)
    summary = {
        "run": name, "dataset": "coco", "labels": "fpc1000", "mode": "selective", "loss": "pasl",
        "recipe": "csl", "protocol": "fine-tuned", "backbone": "tresnet_m", "head": "gap", "image_size": 448,
        "epochs": 30, "seed": seed, "train_images": 1000, "val_images": 200, "num_classes": len(CLASSES),
        "train_annotated_fraction": 0.1, "val_map": 50.0, "val_map_plain": 49.0, "val_map_ema": 50.0,
        "best_val_map": 51.0, "authors_map": 52.0, "evaluation_protocol": "final epoch, EMA model",
        "class_names": CLASSES, "ap_per_class": [60.0, 55.0, 50.0, 45.0, 40.0, None],
        "train_true_frequency_per_class": TRUE_FREQ, "prior_path": None,
        "simulation": {"scheme": "fpc", "param": 1000, "seed": seed},
        "train_seconds": 100.0, "wall_seconds": 120.0,
        "provenance": {"plbench_version": "0.1.0", "git_commit": "0123456789abcdef0123", "hardware": "2 CPU cores",
                       "command": f"plbench train --seed {seed}", "torch_version": "2.14.1",
                       "started_at": "2026-11-28T09:00:00Z", "finished_at": "2026-11-28T09:02:00Z"},
    }
    summary.update(fields)
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(summary))
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    if epochs_metrics:
        last = epochs_metrics - 1
        lines = [json.dumps({"epoch": e, "train_loss": 1.0 / (e + 1), "val_map": summary["val_map"] - (last - e),
                             "val_map_ema": summary["val_map"] - 0.5 * (last - e)}) for e in range(epochs_metrics)]
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return d


# (labels, loss, mode, seed -> val_map) of the COCO TResNet-M table
COCO = {
    ("fpc1000", "bce", "ignore"): {0: 70.0, 1: 72.0, 2: 74.0},
    ("fpc1000", "bce", "negative"): {0: 80.0, 1: 81.0, 2: 82.0},
    ("fpc1000", "asl", "negative"): {0: 81.0, 1: 82.0, 2: 83.0},
    ("fpc1000", "pasl", "selective"): {0: 83.0, 1: 84.0, 2: 85.5},
    ("rps0.5", "bce", "ignore"): {0: 84.0, 1: 86.0},
    ("rps0.5", "pasl", "selective"): {0: 85.0},
    ("full", "pasl", "negative"): {0: 90.0},
}
# single-positive COCO, ResNet-50, losses without modes
SPL = {"an": {0: 60.0, 1: 62.0}, "ll_r": {0: 65.0, 1: 69.0}}


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for (labels, loss, mode), by_seed in COCO.items():
        scheme, param = parse_labels(labels)
        for seed, v in by_seed.items():
            write_run(root / "coco", f"coco-{labels}-{loss}-{mode}-s{seed}", labels=labels, loss=loss, mode=mode,
                      seed=seed, val_map=v, authors_map=v + 1.0, epochs_metrics=3,
                      simulation=None if scheme is None else {"scheme": scheme, "param": param, "seed": seed})
    for loss, by_seed in SPL.items():
        for seed, v in by_seed.items():
            write_run(root / "spl", f"coco-spl-{loss}-s{seed}", labels="spl", loss=loss, mode=None, seed=seed,
                      val_map=v, backbone="resnet50", simulation={"scheme": "spl", "param": None, "seed": seed})
    return root


@pytest.fixture()
def drawn(monkeypatch) -> dict[str, list]:
    """The matplotlib Figure behind each PNG the report writes, listed under the figure function that drew it,
    so a test reads the plotted numbers instead of only finding a PNG file."""
    import sys

    from plbench.report import figures

    seen: dict[str, list] = {}
    real = figures._png

    def capture(fig):
        seen.setdefault(sys._getframe(1).f_code.co_name, []).append(fig)
        return real(fig)

    monkeypatch.setattr(figures, "_png", capture)
    return seen


def _bars(ax) -> list[tuple[list[float], list[tuple[float, float]]]]:
    """Per bar series of an axes: the bar heights and each bar's error-bar ends (lo, hi)."""
    from matplotlib.container import BarContainer

    out = []
    for c in ax.containers:
        if isinstance(c, BarContainer):
            segments = c.errorbar.lines[2][0].get_segments() if c.errorbar is not None else []
            out.append(([float(p.get_height()) for p in c], [(float(s[0][1]), float(s[1][1])) for s in segments]))
    return out


def _table(tables, backbone):
    (t,) = [t for t in tables if t.key["backbone"] == backbone]
    return t


def test_cells_mean_sample_std_and_n(runs):
    tables = build_tables(load_records([runs]), "val_map", load_published())
    assert [t.key["backbone"] for t in tables] == ["resnet50", "tresnet_m"]  # one table per backbone
    t = _table(tables, "tresnet_m")
    assert t.rows == ["full", "fpc1000", "rps0.5"]
    assert t.columns == ["bce:ignore", "bce:negative", "asl:negative", "pasl:negative", "pasl:selective"]
    c = t.cells[("fpc1000", "pasl:selective")]
    assert c.n == 3 and c.values == (83.0, 84.0, 85.5)
    assert c.mean == pytest.approx((83 + 84 + 85.5) / 3)
    assert c.std == pytest.approx(np.std([83, 84, 85.5], ddof=1))  # sample std, as papers report
    assert t.cells[("fpc1000", "bce:ignore")].std == pytest.approx(2.0)  # 70, 72, 74 by hand
    assert math.isnan(t.cells[("rps0.5", "pasl:selective")].std)  # one seed: no spread
    assert cell_text(t.cells[("fpc1000", "bce:ignore")]) == ("72.00 ± 2.00", "n=3")
    assert cell_text(t.cells[("rps0.5", "pasl:selective")]) == ("85.00", "n=1")


def test_bold_best_per_row_and_markdown(runs):
    t = _table(build_tables(load_records([runs]), "val_map", []), "tresnet_m")
    assert t.best("fpc1000") == {"pasl:selective"}
    assert t.best("rps0.5") == {"bce:ignore", "pasl:selective"}  # (84 + 86) / 2 = 85.00 ties with 85.00
    md = table_markdown(t)
    header = md.splitlines()[0]
    assert header == ("| labels | annotated | Ignore CE | Negative CE | Negative ASL | Negative P-ASL | "
                      "Selective P-ASL |")
    fpc = next(line for line in md.splitlines() if line.startswith("| fpc1000 |"))
    assert fpc == ("| fpc1000 | 10.0% | 72.00 ± 2.00 (n=3) | 81.00 ± 1.00 (n=3) | 82.00 ± 1.00 (n=3) |  | "
                   f"**84.17 ± {np.std([83, 84, 85.5], ddof=1):.2f}** (n=3) |")
    full = next(line for line in md.splitlines() if line.startswith("| full |"))
    assert "**" not in full  # a single cell is not "best of the row"


def test_ties_are_all_bold(tmp_path):
    for i, (mode, v) in enumerate([("ignore", 80.001), ("negative", 79.996), ("selective", 70.0)]):
        write_run(tmp_path, f"r{i}", mode=mode, val_map=v)
    (t,) = build_tables(load_records([tmp_path]), "val_map", [])
    assert t.best("fpc1000") == {"pasl:ignore", "pasl:negative"}  # both show 80.00


def test_paired_differences_default_and_explicit_reference(runs):
    t = _table(build_tables(load_records([runs]), "val_map", []), "tresnet_m")
    p = paired_differences(t)  # default: the Ignore column
    assert p.reference == "bce:ignore"
    d = p.cells[("fpc1000", "bce:negative")]
    assert d.diffs == (10.0, 9.0, 8.0) and d.mean == pytest.approx(9.0) and d.std == pytest.approx(1.0)
    assert d.wins == 3 and d.n == 3
    # rps0.5: Selective has seed 0 only, Ignore seeds 0 and 1: one pair, 85 - 84
    d = p.cells[("rps0.5", "pasl:selective")]
    assert d.diffs == (1.0,) and d.n == 1 and math.isnan(d.std)
    assert ("full", "pasl:negative") not in p.cells  # no Ignore run on full labels
    p2 = paired_differences(t, "selective")
    assert p2.reference == "pasl:selective"
    assert p2.cells[("fpc1000", "bce:ignore")].diffs == (-13.0, -12.0, -11.5)
    assert paired_differences(t, "epr").reference is None


def test_paired_reference_without_ignore_falls_back_to_an(runs):
    t = _table(build_tables(load_records([runs]), "val_map", []), "resnet50")
    assert t.columns == ["an", "ll_r"] and [column_label(c) for c in t.columns] == ["AN", "LL-R"]
    p = paired_differences(t)
    assert p.reference == "an"
    d = p.cells[("spl", "ll_r")]
    assert d.diffs == (5.0, 7.0) and d.std == pytest.approx(math.sqrt(2.0))


def test_pairs_need_the_same_simulated_labels(tmp_path):
    """Same training seed but a different simulation seed is not a pair."""
    for name, mode, v, sim_seed in (("a", "ignore", 70.0, 0), ("b", "negative", 75.0, 1)):
        write_run(tmp_path, name, mode=mode, val_map=v, seed=0,
                  simulation={"scheme": "fpc", "param": 1000, "seed": sim_seed})
    (t,) = build_tables(load_records([tmp_path]), "val_map", [])
    assert paired_differences(t).cells == {}


def test_published_numbers_matched_by_dataset_labels_and_column(runs):
    numbers = load_published()
    t = _table(build_tables(load_records([runs]), "val_map", numbers), "tresnet_m")
    (setting, row), = t.published_rows("fpc1000")
    assert setting == "Ben-Baruch et al. 2022, TResNet-M, 448 px"
    assert {c: p.map for c, p in row.items()} == {"bce:ignore": 76.46, "bce:negative": 81.24, "asl:negative": 81.64,
                                                  "pasl:selective": 83.44}
    (_, row), = t.published_rows("rps0.5")
    assert {c: p.map for c, p in row.items()} == {"bce:ignore": 84.90, "bce:negative": 81.21, "asl:negative": 81.91,
                                                  "pasl:selective": 85.21}
    # matched on dataset, labels and column only; the backbone is in the row label for the reader to judge
    assert [(k, list(v)) for k, v in t.published_rows("full")] == [("Cole et al. 2021, ResNet-50, 448 px",
                                                                     ["bce:negative"])]
    md = table_markdown(t)
    assert ("| *fpc1000, published: Ben-Baruch et al. 2022, TResNet-M, 448 px* |  | *76.46* | *81.24* | *81.64* |  "
            "| *83.44* |") in md
    spl = _table(build_tables(load_records([runs]), "val_map", numbers), "resnet50")
    rows = dict(spl.published_rows("spl"))  # one published row per source
    assert {s: {c: p.map for c, p in r.items()} for s, r in rows.items()} == {
        "Cole et al. 2021, ResNet-50, 448 px": {"an": 64.1}, "Kim et al. 2022, ResNet-50, 448 px": {"ll_r": 71.0}}
    assert [(p.method, p.map) for p in spl.unmatched_published("spl")] == [
        ("ROLE", 66.3), ("WAN", 64.8), ("AN-LS (LSAN)", 66.9), ("EPR", 63.3), ("LL-Ct", 70.5), ("LL-Cp", 70.7),
        ("EM", 70.7), ("EM + APL", 70.87), ("LL-R + BoostLU", 72.89), ("LL-Ct + BoostLU", 71.78),
        ("LL-Cp + BoostLU", 71.41), ("GR-Loss", 73.17)]  # linear-init rows: another protocol, never listed


def test_published_file_has_every_number_of_the_issue_with_a_source():
    numbers = load_published()
    got = {(p.dataset, p.labels, p.column, p.backbone): p.map for p in numbers if p.protocol != "linear-init"}
    # the CSL README's OpenImages table names the mode only; experiments/csl_openimages.toml runs P-ASL in each
    assert got[("openimages", "natural", "pasl:ignore", "TResNet-M")] == 85.38
    assert got[("openimages", "natural", "pasl:negative", "TResNet-M")] == 85.85
    assert got[("openimages", "natural", "pasl:selective", "TResNet-M")] == 86.72
    assert got[("openimages", "natural", "pasl:selective", "TResNet-L")] == 87.34
    assert got[("coco", "full", "bce:negative", "ResNet-50")] == 78.0  # the single-positive grid's full-label row
    # CSL COCO 8, CSL OpenImages 4; single positive on VOC, COCO, CUB (NUS-WIDE's are not counted here): 70
    assert len([p for p in numbers if p.dataset != "nuswide"]) == 82
    assert all(p.source and p.selection for p in numbers)
    assert all(re.search(r"arXiv:\d{4}\.\d{5}", p.source) for p in numbers)


def test_openimages_rows_show_both_published_backbones(tmp_path):
    for mode, v in (("ignore", 84.0), ("negative", 85.0), ("selective", 86.0)):
        write_run(tmp_path, mode, dataset="openimages", labels="natural", simulation=None, mode=mode, val_map=v,
                  image_size=224)
    (t,) = build_tables(load_records([tmp_path]), "val_map", load_published())
    rows = dict(t.published_rows("natural"))
    assert {k: {c: p.map for c, p in v.items()} for k, v in rows.items()} == {
        "Ben-Baruch et al. 2022, TResNet-M, 224 px": {"pasl:ignore": 85.38, "pasl:negative": 85.85,
                                                      "pasl:selective": 86.72},
        "Ben-Baruch et al. 2022, TResNet-L, 224 px": {"pasl:selective": 87.34}}


def test_published_rows_do_not_cross_protocols(runs, tmp_path):
    write_run(tmp_path / "lin", "lin", protocol="linear", mode="selective", val_map=70.0)
    (t,) = build_tables(load_records([tmp_path / "lin"]), "val_map", load_published())
    assert t.published_rows("fpc1000") == [] and t.unmatched_published("fpc1000") == []


def test_parse_published_rejects_bad_rows():
    with pytest.raises(InputError, match="missing"):
        parse_published("dataset,labels\ncoco,fpc1000\n")
    header = "dataset,labels,protocol,column,map,method,backbone,image_size,selection,source\n"
    with pytest.raises(InputError, match="row 2"):
        parse_published(header + "coco,fpc1000,fine-tuned,an,high,AN,R50,448,x,y\n")


def test_authors_selection_table_and_legacy_fallbacks(tmp_path):
    """Older summaries (no mode/loss/recipe/protocol/authors_map/EMA fields) still make a table."""
    old = {"run": "old", "dataset": "synthetic", "labels": "fpc5", "mode": "ignore", "backbone": "resnet10t",
           "head": "gap", "image_size": 64, "epochs": 2, "seed": 0, "train_images": 100, "val_images": 20,
           "num_classes": 3, "train_annotated_fraction": 0.1, "val_map": 40.0, "best_val_map": 45.0,
           "train_seconds": 3.0, "plbench_version": "0.0.9"}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text(json.dumps(old))
    (r,) = load_records([tmp_path])
    assert (r.loss, r.mode, r.protocol, r.recipe) == ("pasl", "ignore", "fine-tuned", "light")
    assert r.val_map_plain == 40.0 and r.val_map_ema is None and r.authors_map == 45.0
    assert r.evaluation_protocol.startswith("final epoch, plain model")
    (t,) = build_tables([r], "authors_map", [])
    assert t.cells[("fpc5", "pasl:ignore")].values == (45.0,)


def test_authors_map_table_uses_authors_numbers(runs):
    t = _table(build_tables(load_records([runs]), "authors_map", []), "tresnet_m")
    assert t.cells[("fpc1000", "bce:ignore")].values == (71.0, 73.0, 75.0)


def test_runs_differing_in_a_setting_get_separate_tables(tmp_path):
    write_run(tmp_path, "a", val_map=50.0)
    write_run(tmp_path, "b", val_map=60.0, head="ml-decoder")
    write_run(tmp_path, "c", val_map=70.0, epochs=40)
    tables = build_tables(load_records([tmp_path]), "val_map", [])
    assert sorted(t.cells[("fpc1000", "pasl:selective")].values[0] for t in tables) == [50.0, 60.0, 70.0]
    assert len({t.slug for t in tables}) == 3


def test_table_csv_long_format(runs):
    t = _table(build_tables(load_records([runs]), "val_map", load_published()), "tresnet_m")
    lines = table_csv(t).splitlines()
    assert lines[0] == "labels,source,column,column_label,metric,mean,std_ddof1,n,best,values,seeds"
    sel = next(line for line in lines if line.startswith("fpc1000,plbench,pasl:selective,"))
    std = float(np.std([83, 84, 85.5], ddof=1))
    assert sel.split(",")[5:9] == [repr(round((83 + 84 + 85.5) / 3, 6)), repr(round(std, 6)), "3", "1"]
    assert any(line.startswith("fpc1000,\"Ben-Baruch et al. 2022") and ",83.44," in line for line in lines)


def test_column_names_and_order_come_from_the_loss_classes(monkeypatch):
    from plbench.losses import LOSSES, PartialLoss
    from plbench.report.records import column_sort_key

    keys = ["ll_r", "pasl:selective", "an", "bce:negative", "zzz", "asl:ignore", "pasl:ignore", "epr", "an_ls",
            "bce:ignore", "wan", "pasl:ignore_normalized", "pasl:negative"]
    expected = ["bce:ignore", "bce:negative", "asl:ignore", "pasl:ignore", "pasl:ignore_normalized", "pasl:negative",
                "pasl:selective", "an", "an_ls", "wan", "epr", "ll_r", "zzz"]
    assert sorted(keys, key=column_sort_key) == expected
    assert [column_label(k) for k in expected] == [
        "Ignore CE", "Negative CE", "Ignore ASL", "Ignore P-ASL", "Ignore-normalized P-ASL", "Negative P-ASL",
        "Selective P-ASL", "AN", "AN-LS", "WAN", "EPR", "LL-R", "ZZZ"]

    class NewLoss(PartialLoss):  # a loss registered later: its own label and position, nothing in the report
        label = "New"
        column_order = 15

    monkeypatch.setitem(LOSSES, "new", NewLoss)
    assert column_label("new") == "New" and not NewLoss.has_modes
    assert sorted(["ll_r", "an_ls", "new", "an"], key=column_sort_key) == ["an", "new", "an_ls", "ll_r"]


def test_label_order_and_parsing():
    assert parse_labels("fpc1000") == ("fpc", 1000.0) and parse_labels("rps0.5") == ("rps", 0.5)
    assert parse_labels("spl") == ("spl", None) and parse_labels("natural") == (None, None)
    tags = ["rps0.9", "custom", "spl", "fpc10", "full", "rps0.1", "natural", "fpc1000"]
    assert sorted(tags, key=labels_sort_key) == ["full", "natural", "fpc1000", "fpc10", "rps0.1", "rps0.9", "spl",
                                                 "custom"]
    assert resolve_reference(["bce:ignore", "pasl:ignore"], "ignore") == "bce:ignore"
    assert resolve_reference(["bce:ignore", "pasl:ignore"], "pasl:ignore") == "pasl:ignore"
    assert resolve_reference(["pasl:negative", "pasl:selective"], None) == "pasl:negative"


def test_write_report_files_and_self_contained_html(runs, tmp_path, drawn):
    folders = find_runs([runs])
    paths = write_report(folders, tmp_path / "rep", title="T <x>", command="plbench report runs", notes="N1\n\nN2")
    out = tmp_path / "rep"
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "results.csv", "provenance.csv", "table-coco-tresnet-m-gap-fine-tuned.csv",
            "table-coco-tresnet-m-gap-fine-tuned-authors.csv", "paired-coco-tresnet-m-gap-fine-tuned.csv",
            "map-coco-tresnet-m-gap-fine-tuned.png", "per-class-ap-coco-tresnet-m-gap-fine-tuned.png",
            "curves-coco-tresnet-m-gap-fine-tuned.png"} <= names
    assert not any(n.startswith(("lvis-", "annotation-")) for n in names)  # no LVIS groups, one level per scheme
    assert not list(out.glob(".*tmp*"))
    for name in names:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the mAP bars: per column (in table order) the seed mean of each row that has runs, error bars mean ± std
    rows = ["full", "fpc1000", "rps0.5"]
    columns = [("bce", "ignore"), ("bce", "negative"), ("asl", "negative"), ("pasl", "negative"), ("pasl", "selective")]
    (bars,) = [f.axes[0] for f in drawn["map_bars"] if [t.get_text() for t in f.axes[0].get_xticklabels()] == rows]
    expected = []
    for col in columns:
        values = [np.array(list(COCO[(row, *col)].values())) for row in rows if (row, *col) in COCO]
        expected.append(([v.mean() for v in values],
                         [(v.mean() - s, v.mean() + s) for v in values for s in [v.std(ddof=1) if len(v) > 1 else 0]]))
    got = _bars(bars)
    assert len(got) == len(expected)
    for (heights, ends), (want_heights, want_ends) in zip(got, expected):
        np.testing.assert_allclose(heights, want_heights)
        np.testing.assert_allclose(ends, want_ends)
    # the training curves: per label setting and column the seed mean of each epoch (plain solid, EMA dashed)
    curves = {ax.get_title(): ax for f in drawn["training_curves"] for ax in f.axes if ax.get_visible()}
    lines = [(l.get_linestyle(), l.get_ydata().tolist()) for l in curves["fpc1000"].lines]
    v = np.array(list(COCO[("fpc1000", "pasl", "selective")].values()))
    assert ("-", pytest.approx([v.mean() - 2, v.mean() - 1, v.mean()])) in lines
    assert ("--", pytest.approx([v.mean() - 1, v.mean() - 0.5, v.mean()])) in lines
    md = paths["md"].read_text()
    assert md.startswith("# T <x>\n\nRegenerate with: `plbench report runs`")
    assert "Paired differences against Ignore CE" in md and "+9.00 ± 1.00 (3/3 seeds better)" in md
    assert "selected on the evaluation split (as in the authors' code)" in md
    assert "Evaluation protocol: final epoch, EMA model" in md and "ddof = 1" in md
    assert "0123456789ab" in md and "`plbench train --seed 2`" in md  # provenance
    assert "N1" in md and "N2" in md
    assert len(paths["csv"].read_text().splitlines()) == 1 + sum(len(v) for v in COCO.values()) + 4
    html = paths["html"].read_text()
    assert "T &lt;x&gt;" in html and "<b>84.17" in html
    assert html.count("data:image/png;base64,") == sum(n.endswith(".png") for n in names)
    # self-contained: no resource is fetched from anywhere
    targets = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", html, re.I)
    assert targets and all(t.startswith(("data:image/png;base64,", "#")) for t in targets), targets[:3]
    assert not re.search(r"https?://", html)  # no URL at all, not even in text
    assert "@import" not in html and "url(" not in html


def test_write_report_accepts_paths_and_figures_only_with_data(tmp_path):
    """A run folder path (as the demo passes), one run: no paired table, no curves, no annotation figure."""
    d = write_run(tmp_path / "runs", "one", ap_per_class=None, train_true_frequency_per_class=None)
    paths = write_report([d], tmp_path / "rep")
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert [n for n in names if n.endswith(".png")] == ["map-coco-tresnet-m-gap-fine-tuned.png"]
    assert "png" in paths and "Paired" not in paths["md"].read_text()


def test_prior_figure_reads_the_prior_csv(tmp_path, monkeypatch, drawn):
    from plbench.priors import write_prior_csv

    prior = np.array([0.6, 0.3, 0.25, 0.1, 0.02, 0.01])
    write_prior_csv(tmp_path / "prior.csv", CLASSES[::-1], prior[::-1])  # rows in another order: matched by name
    write_run(tmp_path / "runs", "sel", prior_path=str(tmp_path / "prior.csv"))
    write_run(tmp_path / "runs", "missing", prior_path="nowhere/prior.csv", mode="ignore")
    paths = write_report([tmp_path / "runs"], tmp_path / "rep")
    assert (tmp_path / "rep" / "priors.png").is_file()
    # one panel (the missing prior is skipped): each class at (true frequency, its prior), mean |error| in the title
    (fig,) = drawn["prior_scatter"]
    (ax,) = [a for a in fig.axes if a.get_visible()]
    (points,) = ax.collections
    np.testing.assert_allclose(points.get_offsets(), np.column_stack([TRUE_FREQ, prior]))
    assert ax.get_title().endswith(f"mean |error| = {np.mean(np.abs(prior - TRUE_FREQ)):.3f}")  # 0.030
    md = paths["md"].read_text()
    assert "## Class priors" in md and "prior nowhere/prior.csv of run missing not found" in md
    # a relative prior path is found above the run folder (where the training was started)
    (tmp_path / "runs" / "rel").mkdir()
    write_run(tmp_path / "runs" / "rel", "r", prior_path="prior.csv")
    monkeypatch.chdir(tmp_path / "runs")
    md = write_report([tmp_path / "runs" / "rel"], tmp_path / "rep2")["md"].read_text()
    assert (tmp_path / "rep2" / "priors.png").is_file() and "not found" not in md


def test_annotation_level_figure_needs_two_levels(runs, tmp_path, drawn):
    write_run(runs / "coco", "fpc100", labels="fpc100", simulation={"scheme": "fpc", "param": 100, "seed": 0},
              mode="selective", val_map=70.0)
    write_report([runs], tmp_path / "rep")
    assert (tmp_path / "rep" / "annotation-coco-tresnet-m-gap-fine-tuned.png").is_file()
    # one panel (FPC; RPS has one level): Selective P-ASL at n = 100 and 1000 with its seed means
    (fig,) = drawn["annotation_curves"]
    (ax,) = [a for a in fig.axes if a.get_visible()]
    lines = [(l.get_xdata().tolist(), l.get_ydata().tolist()) for l in ax.lines if len(l.get_xdata()) > 1]
    selective = np.mean(list(COCO[("fpc1000", "pasl", "selective")].values()))
    assert ([100.0, 1000.0], pytest.approx([70.0, selective])) in lines
    assert ax.get_xscale() == "log"


def test_lvis_group_figure(tmp_path, drawn):
    write_run(tmp_path / "runs", "lvis", dataset="lvis", labels="natural", simulation=None, map_rare=10.0,
              map_common=20.0, map_frequent=30.0)
    write_report([tmp_path / "runs"], tmp_path / "rep")
    assert (tmp_path / "rep" / "lvis-lvis-tresnet-m-gap-fine-tuned.png").is_file()
    # bars rare, common, frequent, all (the run's val_map 50) in that order
    (fig,) = drawn["lvis_groups"]
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["rare", "common", "frequent", "all"]
    assert [heights for heights, _ in _bars(ax)] == [[10.0, 20.0, 30.0, 50.0]]


def test_records_read_through_run_folder(tmp_path):
    d = write_run(tmp_path, "r", config={"features": "feats/", "loss": "an"}, protocol=None, loss=None, mode=None)
    (r,) = load_records([RunFolder(d)])
    assert r.protocol == "linear" and r.loss == "an" and r.column == "an"


def test_no_runs_and_damaged_summary(tmp_path):
    with pytest.raises(InputError, match="no finished run"):
        write_report([tmp_path], tmp_path / "rep")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    with pytest.raises(InputError):
        write_report([tmp_path], tmp_path / "rep")


def test_cli_report(runs, tmp_path):
    from plbench.cli import app

    res = CliRunner().invoke(app, ["report", str(runs), "--out", str(tmp_path / "rep"), "--reference", "selective"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Paired differences against Selective P-ASL" in md
    assert f"`plbench report {runs} --out {tmp_path / 'rep'} --reference selective`" in md
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a run folder" in res.output


def test_class_frequency_falls_back_to_the_predictions(tmp_path):
    from plbench.report.figures import class_frequency

    d = write_run(tmp_path, "r", train_true_frequency_per_class=None)
    targets = np.array([[1, 0, -1], [1, 1, 0], [0, -1, 0], [1, 0, 0]], dtype=np.int8)
    RunFolder(d).write_predictions(np.zeros((4, 3), np.float32), targets, ["a", "b", "c", "d"], np.arange(4),
                                   ["x", "y", "z"])
    (r,) = load_records([d])
    freq, what = class_frequency([r])
    np.testing.assert_allclose(freq, [3 / 4, 1 / 3, 0 / 3])  # positives among the annotated entries
    assert "evaluation split" in what


def test_html_contents_links_to_every_section(runs, tmp_path):
    html = write_report([runs], tmp_path / "rep")["html"].read_text()
    anchors = re.findall(r"<a href='#(s\d+)'>", html)
    assert anchors and all(f"<h2 id='{a}'>" in html for a in anchors)
    assert html.count("<h2 ") == len(anchors)


def test_training_curves_use_the_plain_model_with_a_fallback_for_older_metrics():
    from plbench.report.figures import _plain_map

    assert _plain_map({"val_map": 80.0, "val_map_plain": 78.0, "val_map_ema": 80.0}) == 78.0  # csl: headline = EMA
    assert _plain_map({"val_map": 70.0}) == 70.0  # metrics.jsonl written before val_map_plain existed


def test_the_fields_methods_are_labelled_by_their_class_and_follow_the_losses():
    from plbench.report.records import column_sort_key

    keys = ["zz_unknown", "role", "gr_loss", "an", "em_apl", "ll_ct", "pasl:ignore"]
    ordered = sorted(keys, key=column_sort_key)
    assert [column_label(k) for k in ordered] == ["Ignore P-ASL", "AN", "EM+APL", "GR-Loss", "LL-Ct", "ROLE",
                                                   "ZZ_UNKNOWN"]
