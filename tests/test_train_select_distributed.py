"""torchrun with two CPU processes (gloo) and a selection split: the split is sharded and gathered as the
validation split is, so every held-out image is scored once and the per-epoch selection mAP, the selected
epoch and ``selected_map`` equal one process's (tolerance as tests/test_distributed.py: GroupNorm backbone,
only the order of floating-point sums differs; mAP to 0.01 points)."""

from __future__ import annotations

import pytest

from distributed_support import PLBENCH, TORCHRUN, run, train_args
from faults_support import synthetic_root
from plbench.artifacts.runs import RunFolder

pytestmark = pytest.mark.slow


def test_torchrun_selection_split_equals_one_process(tmp_path):
    # 47 listed images: 9 held out (round(0.2 * 47)), an odd count that leaves the two shards uneven
    data = synthetic_root(tmp_path / "synthetic", train=47, val=9, classes=4, seed=5)
    extra = ("--mode", "ignore", "--train-split", "train-spml-train", "--select-split", "train-spml-val")
    run([*PLBENCH, *train_args(data, tmp_path / "one", *extra)], tmp_path)
    two = run([*TORCHRUN, *train_args(data, tmp_path / "two", *extra)], tmp_path)
    assert two.stdout.count("at the epoch chosen on train-spml-val") == 1  # rank 0 reports
    a, b = RunFolder(tmp_path / "one" / "r"), RunFolder(tmp_path / "two" / "r")
    sa, sb = a.summary(), b.summary()
    assert sb["provenance"]["world_size"] == 2
    assert sa["selection_images"] == sb["selection_images"] == 9
    ma, mb = a.metrics(), b.metrics()
    assert [m["select_map"] for m in mb] == pytest.approx([m["select_map"] for m in ma], abs=0.01)
    assert sb["selected_epoch"] == sa["selected_epoch"]
    assert sb["selected_map"] == pytest.approx(sa["selected_map"], abs=0.01)
    assert sb["selected_map"] == mb[sb["selected_epoch"]]["val_map"]
