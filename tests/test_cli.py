"""Commands through typer's CliRunner: exit codes, messages, files."""

import json

import numpy as np
import pytest

from plbench.errors import InputError
from typer.testing import CliRunner

from plbench.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("simulate", "estimate-prior", "train", "report", "demo", "data", "export"):
        assert name in result.output


def test_train_missing_dataset_is_exit_2_without_traceback(tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "coco", "--data-root", str(tmp_path), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "annotations" in result.output and "--data-root" in result.output


def test_train_unknown_backbone_is_exit_2(real_fixtures, tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "coco", "--data-root", str(real_fixtures / "coco2017_sample"),
                                 "--backbone", "resnet_nope", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 2
    assert "unknown timm model 'resnet_nope'" in result.output


def test_train_estimate_prior_report(tmp_path):
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path / "data"
    write_synthetic_coco(root, train=40, val=20, num_classes=4, image_size=32, seed=0)
    common = ["--dataset", "synthetic", "--data-root", str(root), "--image-size", "32", "--batch-size", "16",
              "--epochs", "1", "--device", "cpu"]
    prior = tmp_path / "prior.csv"
    r = runner.invoke(app, ["estimate-prior", *common, "--out", str(prior)])
    assert r.exit_code == 0, r.output
    lines = prior.read_text().splitlines()
    assert lines[0] == "Classes,avg_pred" and len(lines) == 5
    r = runner.invoke(app, ["train", *common, "--mode", "selective", "--prior", str(prior), "--out", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    assert "final mAP" in r.output
    (run,) = (tmp_path / "runs").iterdir()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["mode"] == "selective" and cfg["prior"] == str(prior)
    summary = json.loads((run / "summary.json").read_text())
    r = runner.invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    # the run is reported under its mode's column with its own mAP (the run name alone says "selective")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| labels | annotated | Selective P-ASL |\n|---|---:|---:|\n" \
        f"| full | 100.0% | {summary['val_map']:.2f} (n=1) |" in md
    # the saved config reproduces the run through --config (a finished run is returned, not retrained): no
    # epoch is trained and no file of the run is rewritten (writes are atomic replaces: a new inode and time)
    files = {name: (run / name).stat() for name in ("last.pt", "best.pt", "metrics.jsonl", "summary.json")}
    r = runner.invoke(app, ["train", "--config", str(run / "config.json")])
    assert r.exit_code == 0, r.output
    assert "epoch 1/1" not in r.output and f"final mAP {summary['val_map']:.2f}" in r.output
    for name, before in files.items():
        after = (run / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), name


@pytest.mark.parametrize("args, message", [
    (["--device", "gpu"], "expected auto, cpu, cuda or cuda:N, but got 'gpu'"),
    (["--loss-option", "gamma_neg"], "expected KEY=VALUE, but got 'gamma_neg'"),
    (["--loss", "epr"], "expected_num_pos"),
    (["--loss-option", "gamma_nope=1"], "gamma_nope"),
])
def test_bad_training_options_exit_2(real_fixtures, tmp_path, args, message):
    base = ["train", "--dataset", "coco", "--data-root", str(real_fixtures / "coco2017_sample"),
            "--epochs", "1", "--image-size", "32", "--out", str(tmp_path)]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_negative_seed_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["train", "--seed", "-1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "greater than or equal to 0" in result.output


def test_loss_options_reach_the_config(tmp_path):
    from plbench.cli.train_cmd import parse_key_values

    assert parse_key_values(["gamma_neg=4", "clip=0.05", "name=x", "flag=true"], "--loss-option") == \
        {"gamma_neg": 4, "clip": 0.05, "name": "x", "flag": True}


def test_config_with_wrong_type_is_named(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"epochs": "3"}))
    result = runner.invoke(app, ["train", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "epochs: expected int, but got '3'" in result.output


def test_cli_modes_are_the_loss_modes():
    from plbench.choices import Mode
    from plbench.cli.train_cmd import default_mode
    from plbench.losses import functional

    assert functional.Mode is Mode  # one enum for the CLI, the config and the losses
    assert default_mode("pasl", None) == "selective" and default_mode("asl", None) == "negative"
    assert default_mode("an", None) is None
    with pytest.raises(InputError, match="loss 'an' has no partial-label modes"):
        default_mode("an", Mode.SELECTIVE)
