"""The user files a run names only by path (backbone checkpoint, zero-shot split file, class-embedding file):
``TrainConfig.input_files`` lists them; a run records their sha256 in ``inputs.json`` and its summary, warns
when one changed on resume and when predict / evaluate / export load it; a sweep's training stage hashes their
contents, so an edited split file is a new stage."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plbench.artifacts.runs import RunFolder
from plbench.cli import app
from plbench.config import TrainConfig
from plbench.engine.provenance import changed_inputs, input_digests, track_inputs
from test_zero_shot_runs import zs_run  # noqa: F401  (the module fixture: a 1-epoch zero-shot run)

runner = CliRunner()


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cfg(**kw):
    return TrainConfig(dataset="synthetic", data_root="d", head="ml-decoder", **kw)


@pytest.mark.parametrize("kw, want", [
    ({}, ()),
    ({"checkpoint": "w.pt"}, ("w.pt",)),
    ({"zsl_split": "nuswide", "class_embeddings": "glove"}, ()),
    ({"zsl_split": "nuswide", "class_embeddings": "minilm"}, ()),
    ({"zsl_split": "split.json", "class_embeddings": "random"}, ("split.json",)),
    ({"checkpoint": "w.pt", "zsl_split": "u.txt", "class_embeddings": "clip:ViT.bin"}, ("w.pt", "u.txt", "ViT.bin")),
    ({"zsl_split": "u.txt", "class_embeddings": "wordvec_array.pth"}, ("u.txt", "wordvec_array.pth")),
])
def test_input_files_are_the_files_the_config_names(kw, want):
    assert _cfg(**kw).input_files() == want


def test_track_inputs_records_once_and_warns_on_change(tmp_path, caplog):
    f, gone = tmp_path / "split.txt", tmp_path / "gone.txt"
    f.write_text("a\nb\n")
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    assert run.inputs() is None
    assert track_inputs(run, [str(f), str(gone)]) == {str(f): _sha(f), str(gone): None}
    assert run.inputs() == {str(f): _sha(f), str(gone): None}
    with caplog.at_level(logging.WARNING):
        track_inputs(run, [str(f), str(gone)])
    assert not caplog.records  # unchanged: silent
    f.write_text("a\nc\n")
    with caplog.at_level(logging.WARNING):
        recorded = track_inputs(run, [str(f)])
    assert recorded[str(f)] != _sha(f)  # the start's digest stays recorded
    assert len(caplog.records) == 1 and f"input file {f} changed since the run started" in caplog.text
    assert changed_inputs(recorded, "x") == [str(f)]
    assert input_digests([str(gone)]) == {str(gone): None}


def test_a_zero_shot_run_records_its_files_and_evaluate_warns_after_an_edit(zs_run, caplog):  # noqa: F811
    run = RunFolder(zs_run)
    config = run.config()
    split, emb = config["zsl_split"], config["class_embeddings"]
    assert run.inputs() == {split: _sha(split), emb: _sha(emb)}
    assert run.summary()["input_files"] == run.inputs()
    before = Path(split).read_text()
    try:
        Path(split).write_text("# the same classes, another file\n" + before)
        with caplog.at_level(logging.WARNING, logger="plbench.engine.provenance"):
            result = runner.invoke(app, ["evaluate", str(zs_run), "--classes", "unseen",
                                         "--out", str(Path(zs_run) / "eval-edited")])
        assert result.exit_code == 0, result.output
        assert f"input file {split} changed since the run started" in caplog.text
        assert emb not in caplog.text  # only the edited file is named
    finally:
        Path(split).write_text(before)


def test_a_sweep_stage_hashes_the_split_file_contents(tmp_path):
    from plbench.sweep import StageKind, expand, parse_spec, read_experiment

    root = Path(__file__).resolve().parents[1]
    data = read_experiment(root / "experiments" / "zsl_synthetic.toml")
    split = tmp_path / "unseen.txt"
    split.write_text((root / data["zero_shot"]["splits"][0]).read_text())
    data["zero_shot"]["splits"] = [str(split)]

    def train_hashes():
        plan = expand(parse_spec(data), tmp_path / "out")
        return sorted(s.hash for s in plan.stages if s.kind is StageKind.TRAIN)

    first = train_hashes()
    assert first == train_hashes()  # stable
    split.write_text(split.read_text() + "# edited\n")
    second = train_hashes()
    assert not set(first) & set(second)  # every training stage on that split is new
