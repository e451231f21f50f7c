"""Run checkpoints are loaded with torch.load(weights_only=True): predict, evaluate and export never run
code pickled into a run folder's last.pt / best.pt, and refuse such a file with an InputError (exit 2)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from plbench.artifacts.runs import RunFolder
from plbench.cli import app
from plbench.errors import InputError

runner = CliRunner()


class _RunsCode:
    """Unpickling this calls exec: a checkpoint holding it would write ``marker`` when loaded unsafely."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pickled code ran')",)


class Foreign:
    """A custom class from another program (harmless, but not a tensor, number, string or container)."""


def _run_folder(tmp_path, payload):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"dataset": "synthetic", "backbone": "resnet10t", "head": "gap",
                                                 "image_size": 32, "batch_size": 4}))
    torch.save({"model": {}, "epoch": 0, "extra": payload}, run / "last.pt")
    return run


@pytest.mark.parametrize("command", [
    ["predict", "{run}", "{tmp}"],
    ["evaluate", "{run}", "--dataset", "synthetic", "--data-root", "{tmp}", "--split", "val"],
    ["export", "model", "{run}", "--format", "torchscript"],
])
def test_pickled_code_in_a_checkpoint_never_runs(command, tmp_path):
    marker = tmp_path / "marker.txt"
    run = _run_folder(tmp_path, _RunsCode(marker))
    result = runner.invoke(app, [a.format(run=run, tmp=tmp_path) for a in command])
    assert not marker.exists(), "loading the checkpoint ran pickled code"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "last.pt" in result.stderr and "not only tensors, numbers and strings" in result.stderr


def test_a_foreign_object_is_a_clear_input_error(tmp_path):
    run = _run_folder(tmp_path, Foreign())
    with pytest.raises(InputError, match="not only tensors, numbers and strings") as info:
        RunFolder(run).load_checkpoint("last")
    assert "Foreign" in str(info.value)  # the message names what it refused


def test_tensors_numbers_strings_load(tmp_path):
    run = _run_folder(tmp_path, {"rng": torch.get_rng_state(), "lr": 0.1, "names": ["a"], "opt": (0.9, 0.99),
                                 "none": None})
    state = RunFolder(run).load_checkpoint("last")
    assert state["extra"]["opt"] == (0.9, 0.99) and torch.equal(state["extra"]["rng"], torch.get_rng_state())
