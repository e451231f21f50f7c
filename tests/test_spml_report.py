"""The report's per-run table names the best-epoch number as the validation split's, beside the final epoch."""

from __future__ import annotations

from types import SimpleNamespace

from plbench.report import render


def test_best_epoch_column_beside_the_final_epoch():
    r = SimpleNamespace(name="run", labels="spl", loss="an", mode=None, seed=0, val_map=64.123, best_val_map=66.5,
                        val_map_plain=64.123, val_map_ema=None, authors_map=66.5, summary={"cf1": 50.0},
                        evaluation_protocol="final epoch, plain model (fixed before training)")
    header, row = render.RUNS_HEADER, render.runs_rows([r])[0]
    assert len(header) == len(row)
    i = header.index("headline mAP (final epoch)")
    assert header[i + 1] == "best epoch on the validation split"
    assert (row[i], row[i + 1]) == (render.fmt(64.123), render.fmt(66.5))
