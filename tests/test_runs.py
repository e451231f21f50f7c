"""RunFolder: the one owner of a run folder's files."""

import json

import numpy as np
import pytest
import torch

from plbench.artifacts.runs import RunFolder, find_runs
from plbench.errors import InputError


def test_open_refuses_another_config_and_names_the_field(tmp_path):
    run = RunFolder(tmp_path / "r")
    run.open({"lr": 1e-3, "seed": 0})
    run.open({"lr": 1e-3, "seed": 0})  # the same run: fine
    with pytest.raises(InputError, match=r"different configuration \(differs in: lr\)"):
        run.open({"lr": 2e-3, "seed": 0})
    assert run.config() == {"lr": 1e-3, "seed": 0}


def test_metrics_never_hold_an_epoch_twice(tmp_path):
    run = RunFolder(tmp_path / "r")
    for e in (0, 1, 2):
        run.append_metrics({"epoch": e, "val_map": float(e)})
    run.append_metrics({"epoch": 1, "val_map": 10.0})  # a resumed run redoes epoch 1
    assert run.metrics() == [{"epoch": 0, "val_map": 0.0}, {"epoch": 1, "val_map": 10.0}]


def test_checkpoints_round_trip_and_damaged_files_are_input_errors(tmp_path):
    run = RunFolder(tmp_path / "r")
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 4, "best_map": 1.0}
    run.save_epoch(state, {"epoch": 4}, is_best=True)
    assert torch.equal(run.load_checkpoint("best")["model"]["w"], torch.arange(3.0))
    assert run.load_checkpoint("last")["epoch"] == 4
    (run.path / "last.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(InputError, match="cannot be read"):
        run.load_checkpoint("last")
    torch.save({"weights": 1}, run.path / "last.pt")
    with pytest.raises(InputError, match="not a plbench checkpoint"):
        run.load_checkpoint("last")
    with pytest.raises(InputError, match="no such checkpoint"):
        RunFolder(tmp_path / "none").load_checkpoint("best")
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def test_predictions_round_trip_with_string_ids(tmp_path):
    run = RunFolder(tmp_path / "r")
    scores = np.array([[0.1, 0.9], [0.5, 0.2]], np.float32)
    run.write_predictions(scores, np.array([[0, 1], [-1, 0]]), ["a.jpg", "b.jpg"],
                          np.array(["x1", "x2"], dtype=object), ["cat", "dog"])
    p = run.predictions()
    np.testing.assert_array_equal(p["scores"], scores)
    assert p["targets"].dtype == np.int8 and list(p["class_names"]) == ["cat", "dog"]
    assert list(p["image_ids"]) == ["x1", "x2"]


def test_find_runs_recursive_without_evaluation_folders(tmp_path):
    for name in ("a", "group/b"):
        run = RunFolder(tmp_path / name)
        run.open({"name": name})
        run.write_summary({"run": name})
    ev = RunFolder(tmp_path / "a" / "eval-coco-val-last")
    ev.write_summary({"kind": "evaluation"})
    assert [r.name for r in find_runs([tmp_path])] == ["a", "b"]
    assert len(find_runs([tmp_path], evaluations=True)) == 3
    assert find_runs([tmp_path / "a"])[0].summary() == {"run": "a"}
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="no finished run"):
        find_runs([tmp_path / "empty_dir"])
    with pytest.raises(InputError, match="not a run folder"):
        find_runs([tmp_path / "missing"])
    (tmp_path / "a" / "summary.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        RunFolder(tmp_path / "a").summary()
    assert json.loads((tmp_path / "group" / "b" / "config.json").read_text()) == {"name": "group/b"}


def _strict(text):
    def refuse(name):
        raise ValueError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_summary_and_metrics_are_strict_json_and_old_files_still_read(tmp_path):
    run = RunFolder(tmp_path / "r")
    run.open({"seed": 0})
    # an empty LVIS frequency group has no mAP; a run without epochs has no authors' mAP or best epoch
    run.append_metrics({"epoch": 0, "val_map": 12.5, "map_rare": float("nan"), "val_map_ema": None})
    run.write_summary({"val_map": 12.5, "map_rare": float("nan"), "best_val_map": float("-inf"),
                       "ap_per_class": [float("nan"), 50.0]})
    assert _strict(run.file("summary.json").read_text()) == {"val_map": 12.5, "map_rare": None,
                                                             "best_val_map": None, "ap_per_class": [None, 50.0]}
    lines = run.file("metrics.jsonl").read_text().splitlines()
    assert [_strict(line) for line in lines] == [{"epoch": 0, "val_map": 12.5, "map_rare": None, "val_map_ema": None}]
    # files written before this fix hold bare NaN: still read
    run.file("metrics.jsonl").write_text('{"epoch": 0, "map_rare": NaN}\n')
    run.file("summary.json").write_text('{"map_rare": NaN}\n')
    assert np.isnan(run.metrics()[0]["map_rare"]) and np.isnan(run.summary()["map_rare"])
