"""The single-positive papers' published numbers in plbench/data/published.csv."""

from __future__ import annotations

from plbench.report.published import load_published


def _spl_rows():
    return [p for p in load_published() if p.labels == "spl" or (p.labels == "full" and p.backbone == "ResNet-50")]


def test_issue_anchors_and_table_values():
    got = {(p.dataset, p.protocol, p.column): p.map for p in _spl_rows()}
    anchors = {"bce:negative": 78.0, "an": 64.1, "role": 66.3, "em_apl": 70.87, "ll_r": 71.0, "ll_r_boostlu": 72.89,
               "gr_loss": 73.17}
    assert {c: got[("coco", "fine-tuned", c)] for c in anchors} == anchors
    # Kim et al. 2022's table, LinearInit. columns (COCO and CUB), and Kim et al. 2023's NUS-WIDE column
    assert got[("coco", "linear-init", "ll_r")] == 71.9 and got[("cub", "linear-init", "ll_ct")] == 21.8
    assert got[("nuswide", "fine-tuned", "ll_r_boostlu")] == 49.59 and got[("voc", "fine-tuned", "em")] == 89.09


def test_every_row_names_its_table_or_says_it_was_not_checked():
    rows = _spl_rows()
    assert len({(p.dataset, p.protocol, p.column) for p in rows}) == len(rows)  # one number per cell
    for p in rows:
        assert "imgs/quant" in p.source or "table not checked" in p.source, p
    unchecked = [p.column for p in rows if "imgs/quant" not in p.source]  # read from no table image
    assert unchecked == ["gr_loss"]
