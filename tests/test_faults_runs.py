"""Fault matrix, run folders, images and experiments: ``report``, ``export model``, ``export fiftyone``,
``predict``, ``evaluate`` on missing or damaged run files; corrupt and truncated JPEGs (strict: an error naming
the file; default: skipped and counted); ``sweep`` on bad experiment files; ``train --features`` on a bad
features folder. Each fault: exit 2, a message naming the file or option, no traceback, nothing written.

The engine's own faults (run-folder lock, damaged last.pt with --resume-from best, NaN loss, Ctrl-C) are in
tests/test_engine_recipe.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
pytest.register_assert_rewrite("faults_support")  # its asserts report values, as in a test module

from faults_support import TRAIN_FAST, damaged_run, expect_user_error, invoke, rewrite

pytest_plugins = ["faults_support"]  # the session fixture `trained`

# ---------------------------------------------------------------------------------------------- run folders


def _truncate(name):
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        rewrite(folder / name, data[: len(data) // 3])
    return damage


def _empty(name):
    return lambda folder: rewrite(folder / name, b"")


def _remove(name):
    return lambda folder: (folder / name).unlink()


def _not_json(name):
    return lambda folder: rewrite(folder / name, b"{oops")


RUN_DAMAGE = {
    "last.pt truncated": (_truncate("last.pt"), "last.pt"),
    "last.pt empty": (_empty("last.pt"), "last.pt"),
    "last.pt missing": (_remove("last.pt"), "last"),
    "config.json missing": (_remove("config.json"), "config.json"),
    "config.json not JSON": (_not_json("config.json"), "config.json"),
    "summary.json not JSON": (_not_json("summary.json"), "summary.json"),
    "predictions.npz truncated": (_truncate("predictions.npz"), "predictions.npz"),
    "predictions.npz missing": (_remove("predictions.npz"), "predictions.npz"),
}

#: which damage each command must notice (a command that does not read a file is not asked about it)
READS = {
    "export model": ["last.pt truncated", "last.pt empty", "last.pt missing", "config.json missing",
                     "config.json not JSON"],
    "predict": ["last.pt truncated", "last.pt empty", "last.pt missing", "config.json missing",
                "config.json not JSON"],
    "evaluate": ["last.pt truncated", "last.pt empty", "config.json not JSON"],
    # read before FiftyOne is imported or its database started: these run without MongoDB
    "export fiftyone": ["predictions.npz truncated", "predictions.npz missing", "config.json missing",
                        "config.json not JSON"],
    # report reads summary.json only (config.json is optional to it, predictions.npz unused)
    "report": ["summary.json not JSON"],
}


def _call(command: str, t: dict, run: Path, out: Path) -> list:
    syn = t["syn"]
    return {
        "export model": ["export", "model", run, "--format", "torchscript", "--no-check", "--out", out / "m.pt"],
        "predict": ["predict", run, syn / "val2017" / min(os.listdir(syn / "val2017")), "--device", "cpu",
                    "--out", out / "p.csv"],
        "evaluate": ["evaluate", run, "--dataset", "synthetic", "--data-root", syn, "--split", "val", "--device", "cpu",
                     "--out", out / "ev"],
        "report": ["report", run, "--out", out / "rep"],
        "export fiftyone": ["export", "fiftyone", run, "--fo-dataset", f"plbench-faults-{run.name}"],
    }[command]


CASES = [(c, d) for c, ds in READS.items() for d in ds]


@pytest.mark.parametrize("command, damage", CASES, ids=[f"{c}: {d}" for c, d in CASES])
def test_damaged_run_folder(trained, tmp_path, command, damage):
    fn, name = RUN_DAMAGE[damage]
    run = damaged_run(trained, damage.replace(" ", "-"), fn)
    expect_user_error(_call(command, trained, run, tmp_path), [name], [tmp_path, run])


@pytest.mark.parametrize("command", ["export model", "predict", "evaluate", "report"])
def test_missing_run_folder(trained, tmp_path, command):
    missing = tmp_path / "no-such-run"
    expect_user_error(_call(command, trained, missing, tmp_path), ["no-such-run"], [tmp_path])


@pytest.mark.parametrize("command", ["export model", "predict", "evaluate", "report"])
def test_folder_that_is_not_a_run(trained, tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_user_error(_call(command, trained, empty, tmp_path / "out"), ["empty"], [tmp_path])


def test_run_file_where_a_run_folder_is_expected(trained, tmp_path):
    expect_user_error(_call("predict", trained, trained["run"] / "config.json", tmp_path), ["config.json"],
                      [tmp_path, trained["run"]])


# ------------------------------------------------------------------------------------------------- options


def _option_cases(t: dict, out: Path) -> dict:
    run, syn = t["run"], t["syn"]
    image = syn / "val2017" / min(os.listdir(syn / "val2017"))
    bad_published = out.parent / "published.csv"
    return {
        "predict top-k 0": (["predict", run, image, "--top-k", "0"], ["--top-k"]),
        "predict threshold 1.5": (["predict", run, image, "--threshold", "1.5"], ["--threshold"]),
        "predict out .txt": (["predict", run, image, "--out", out / "p.txt"], ["p.txt"]),
        "predict missing image": (["predict", run, out / "nothing.jpg", "--device", "cpu"], ["nothing.jpg"]),
        "export unknown format": (["export", "model", run, "--format", "tflite"], ["--format", "tflite"]),
        "export opset 3": (["export", "model", run, "--format", "onnx", "--opset", "3"], ["--opset"]),
        "export fiftyone top-k -1": (["export", "fiftyone", run, "--top-k", "-1"], ["--top-k"]),
        "export fiftyone threshold 2": (["export", "fiftyone", run, "--threshold", "2"], ["--threshold"]),
        "evaluate unknown dataset": (["evaluate", run, "--dataset", "cocoa", "--data-root", syn, "--split", "val"],
                                     ["cocoa"]),
        "evaluate unknown split": (["evaluate", run, "--dataset", "synthetic", "--data-root", syn, "--split", "test",
                                    "--device", "cpu", "--out", out / "ev"], ["test"]),
        "report bad published": (["report", run, "--out", out / "rep", "--published", bad_published],
                                 ["published.csv"]),
    }


OPTION_CASES = ["predict top-k 0", "predict threshold 1.5", "predict out .txt", "predict missing image",
                "export unknown format", "export opset 3", "export fiftyone top-k -1", "export fiftyone threshold 2",
                "evaluate unknown dataset", "evaluate unknown split", "report bad published"]


@pytest.mark.parametrize("case", OPTION_CASES)
def test_bad_option(trained, tmp_path, case):
    (tmp_path / "published.csv").write_text("not,the,published,columns\n1,2,3,4\n")
    out = tmp_path / "out"
    args, words = _option_cases(trained, out)[case]
    expect_user_error(args, words, [out, trained["run"]])


def test_evaluate_on_a_dataset_without_the_run_classes(trained, tmp_path):
    """A dataset sharing no class name with the run cannot be scored: exit 2 naming the classes."""
    from faults_support import synthetic_root

    other = synthetic_root(tmp_path / "other", train=2, val=4, classes=12, seed=1)
    import json

    for split in ("train", "val"):  # rename every class: no name in common with the run
        path = other / "annotations" / f"instances_{split}2017.json"
        data = json.loads(path.read_text())
        for c in data["categories"]:
            c["name"] = f"renamed_{c['id']}"
        path.write_text(json.dumps(data))
    expect_user_error(["evaluate", trained["run"], "--dataset", "synthetic", "--data-root", other, "--split", "val",
                       "--device", "cpu", "--out", tmp_path / "ev"], ["class"], [tmp_path / "ev", trained["run"]])


# ------------------------------------------------------------------------------------------- corrupt JPEGs


@pytest.fixture(scope="module")
def broken_images(trained, tmp_path_factory):
    """The synthetic data with one truncated and one garbage JPEG among the validation images."""
    root = tmp_path_factory.mktemp("broken") / "syn"
    shutil.copytree(trained["syn"], root)
    names = sorted(os.listdir(root / "val2017"))
    truncated, garbage = root / "val2017" / names[0], root / "val2017" / names[1]
    truncated.write_bytes(truncated.read_bytes()[:300])
    garbage.write_bytes(b"this is not a JPEG" * 10)
    return root, [truncated.name, garbage.name]


def _image_calls(t: dict, root: Path, out: Path) -> dict:
    data = ["--dataset", "synthetic", "--data-root", root, "--split", "val"]
    return {
        "data cache": ["data", "cache", *data, "--size", "32", "--workers", "1", "--out", out / "cache"],
        "predict": ["predict", t["run"], root / "val2017", "--device", "cpu", "--out", out / "p.csv"],
        "evaluate": ["evaluate", t["run"], *data, "--device", "cpu", "--out", out / "ev"],
        "features extract": ["features", "extract", *data, "--image-size", "32", "--device", "cpu",
                             "--out", out / "feat"],
    }


@pytest.mark.parametrize("command", ["data cache", "predict", "evaluate", "features extract"])
def test_corrupt_jpeg_strict_is_an_error_naming_it(trained, broken_images, tmp_path, command):
    root, names = broken_images
    args = _image_calls(trained, root, tmp_path)[command] + ["--strict"]
    out = expect_user_error(args, [], [tmp_path, trained["run"], root])
    assert any(n in out for n in names), out


@pytest.mark.parametrize("command, counted", [("data cache", "could not be decoded"),
                                              ("predict", "2 unreadable image(s) skipped"),
                                              ("evaluate", "2 unreadable image(s) skipped"),
                                              ("features extract", "2")])
def test_corrupt_jpeg_default_is_skipped_and_counted(trained, broken_images, tmp_path, command, counted):
    root, names = broken_images
    result = invoke(_image_calls(trained, root, tmp_path)[command])
    assert result.exit_code == 0, result.output
    assert counted in result.output, result.output
    if command != "features extract":
        assert any(n in result.output for n in names) or command == "data cache", result.output


# ---------------------------------------------------------------------------------------------------- sweep

SWEEP = """[sweep]
name = "t"

[[datasets]]
name = "synthetic"
data_root = "{data}"

[[labels]]
scheme = "fpc"
params = [5]

[[methods]]
loss = "pasl"
mode = "negative"

[training]
epochs = 1
image_size = 32
device = "cpu"
"""


def _sweep_cases(t: dict) -> dict:
    good = SWEEP.replace("{data}", str(t["syn"]))
    return {
        "missing file": (None, ["missing.toml"]),
        "empty file": ("", ["sweep"]),
        "not TOML": ("[sweep\nname = ", ["t.toml"]),
        "unknown key": (good + "\nepochz = 3\n", ["epochz"]),
        "fpc n=0": (good.replace("params = [5]", "params = [0]"), ["labels[0].params[0]"]),
        "rps p=1.5": (good.replace('scheme = "fpc"', 'scheme = "rps"').replace("[5]", "[1.5]"),
                      ["labels[0].params[0]"]),
        "image size 0": (good.replace("image_size = 32", "image_size = 0"), ["image_size"]),
        "unknown mode": (good.replace('mode = "negative"', 'mode = "sometimes"'), ["sometimes"]),
        "unknown head": (good.replace('name = "t"', 'name = "t"\nheads = ["hat"]'), ["hat"]),
        "unknown loss": (good.replace('loss = "pasl"', 'loss = "l3"'), ["l3"]),
    }


SWEEP_CASES = ["missing file", "empty file", "not TOML", "unknown key", "fpc n=0", "rps p=1.5", "image size 0",
               "unknown mode", "unknown head", "unknown loss"]


@pytest.mark.parametrize("case", SWEEP_CASES)
def test_bad_experiment_file(trained, tmp_path, case):
    text, words = _sweep_cases(trained)[case]
    path = tmp_path / ("missing.toml" if text is None else "t.toml")
    if text is not None:
        path.write_text(text)
    out = tmp_path / "sweep"
    expect_user_error(["sweep", path, "--out", out], words, [out, trained["syn"]])


def test_sweep_unknown_backbone_is_named_before_any_stage(trained, tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('backbones = ["resnet_nope"]\n' + SWEEP.replace("{data}", str(trained["syn"])))
    out = tmp_path / "sweep"
    expect_user_error(["sweep", path, "--out", out], ["resnet_nope"], [out, trained["syn"]])


# ------------------------------------------------------------------------------------------- features folder


@pytest.mark.parametrize("fault", ["empty folder", "metadata not JSON", "other dataset"])
def test_train_on_a_bad_features_folder(trained, tmp_path_factory, tmp_path, fault):
    root = tmp_path_factory.mktemp("feat")
    feat = root / "feat"
    syn = trained["syn"]
    if fault != "empty folder":
        r = invoke(["features", "extract", "--dataset", "synthetic", "--data-root", syn, "--split", "train", "--split",
                    "val", "--image-size", "32", "--device", "cpu", "--out", feat])
        assert r.exit_code == 0, r.output
    else:
        feat.mkdir()
    data = syn
    if fault == "metadata not JSON":
        (feat / "train" / "features.json").write_text("{oops")
    if fault == "other dataset":
        from faults_support import synthetic_root

        data = synthetic_root(root / "other", seed=9)
    out = tmp_path / "runs"
    expect_user_error(["train", "--dataset", "synthetic", "--data-root", data, *TRAIN_FAST, "--mode", "ignore",
                       "--features", feat, "--out", out], ["feat"], [out, feat])


def test_corrupt_jpeg_in_training(trained, broken_images, tmp_path):
    """train: strict stops with exit 2 naming the image; default skips it and counts it in summary.json.

    Known limit: images are decoded while training, after the run folder (config.json) is written, so a strict
    failure leaves that folder (resumable).
    """
    root, names = broken_images
    # the broken images are in val: train on it too (the first 8 images, the truncated one among them)
    base = ["train", "--dataset", "synthetic", "--data-root", root, *TRAIN_FAST, "--max-train-images", "8",
            "--mode", "ignore", "--train-split", "val", "--val-split", "val"]
    strict = invoke([*base, "--strict", "--out", tmp_path / "strict"])
    assert strict.exit_code == 2 and "Traceback" not in strict.output, strict.output
    assert any(n in strict.output for n in names) and "--strict" in strict.output, strict.output
    lenient = invoke([*base, "--out", tmp_path / "lenient"])
    assert lenient.exit_code == 0, lenient.output
    (summary,) = (tmp_path / "lenient").glob("*/summary.json")
    s = json.loads(summary.read_text())
    assert s["val_images_skipped"] == 2 and s["val_images"] == 6, s
    assert s["train_images_skipped"] == 2, s  # the same 8 images are the training images: both broken ones
