"""Fault matrix, inputs: every command that reads a dataset, a simulation or a prior, given bad files or
out-of-range options, exits 2 with a message naming the file / field / value and the fix, prints no
traceback, and creates or changes no file (the output folders and the inputs are snapshotted around the call).

Cases are (command x fault); ``tests/test_faults_outputs.py`` covers outputs (existing, unwritable, full disk),
``tests/test_faults_runs.py`` the commands that read run folders, ``tests/test_faults_kill.py`` SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
pytest.register_assert_rewrite("faults_support")  # its asserts report values, as in a test module

from faults_support import (
    OI_FILES,
    TRAIN_FAST,
    expect_user_error,
    invoke,
    lvis_root,
    openimages_root,
    synthetic_root,
)

# ------------------------------------------------------------------------------------------------ the data


def _edit_json(key=None, fn=None):
    def mutate(path: Path) -> None:
        data = json.loads(path.read_text())
        fn(data)
        path.write_text(json.dumps(data))
    return mutate


def _drop(key):
    return _edit_json(fn=lambda d: d.pop(key))


def _dup(key):
    return _edit_json(fn=lambda d: d[key].append(dict(d[key][0])))


def _set_ann(field, value):
    return _edit_json(fn=lambda d: d["annotations"][0].__setitem__(field, value))


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


#: (case id, mutation of the train annotations file, words the message must hold besides the file name)
JSON_FAULTS = [
    ("not-json", lambda p: p.write_text("{not json"), ["not valid JSON", "Fix:"]),
    ("empty", lambda p: p.write_text(""), ["not valid JSON"]),
    ("truncated", _truncate, ["not valid JSON"]),
    ("no-images", _drop("images"), ["images", "missing top-level key"]),
    ("no-annotations", _drop("annotations"), ["annotations", "missing top-level key"]),
    ("no-categories", _drop("categories"), ["categories", "missing top-level key"]),
    ("duplicate-image-id", _dup("images"), ["images", "unique"]),
    ("duplicate-category-id", _dup("categories"), ["categories", "unique"]),
    ("unknown-image", _set_ann("image_id", 987654), ["image", "987654"]),
    ("unknown-category", _set_ann("category_id", 999), ["categor", "999"]),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic data (COCO layout), an LVIS and an OpenImages excerpt, simulations and priors."""
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.simulate import simulate

    base = tmp_path_factory.mktemp("faults")
    w = {"base": base, "syn": synthetic_root(base / "syn")}
    w["other"] = synthetic_root(base / "other", seed=7)  # same classes, other images: another fingerprint
    w["four"] = synthetic_root(base / "four", classes=4)  # another class list
    w["lvis"] = lvis_root(w["syn"], base / "lvis")
    w["oi"] = openimages_root(w["syn"], base / "oi")
    own = load_dataset("synthetic", w["syn"], "train").fingerprint
    for name in ("syn", "other", "four"):
        split = load_dataset("synthetic", w[name], "train")
        # "four" keeps this dataset's fingerprint, so that its class list is what differs
        w[f"sim-{name}"] = save_simulation(base / "sims" / f"{name}.parquet", simulate(split.labels, "rps", 0.5, 0),
                                           dataset="synthetic", fingerprint=own if name == "four" else
                                           split.fingerprint, scheme="rps", param=0.5, seed=0)
    names = split_names = load_dataset("synthetic", w["syn"], "train").labels.class_names
    priors = base / "priors"
    priors.mkdir()
    w["names"] = names

    def prior(name, rows, header="Classes,avg_pred"):
        path = priors / f"{name}.csv"
        path.write_text("\n".join([header, *rows]) + "\n")
        return path

    w["prior-ok"] = prior("ok", [f"{n},0.2" for n in split_names])
    w["priors"] = {
        "missing-class": (prior("missing", [f"{n},0.2" for n in names[:-1]]), [names[-1]]),
        "extra-class": (prior("extra", [f"{n},0.2" for n in names] + ["not_a_class,0.1"]), ["not_a_class"]),
        "duplicate-class": (prior("dup", [f"{n},0.2" for n in names] + [f"{names[0]},0.3"]),
                            ["duplicates", names[0]]),
        "above-one": (prior("above", [f"{names[0]},1.5"] + [f"{n},0.2" for n in names[1:]]), ["[0, 1]", "1.5"]),
        "negative": (prior("negative", [f"{names[0]},-0.1"] + [f"{n},0.2" for n in names[1:]]), ["[0, 1]", "-0.1"]),
        "nan": (prior("nan", [f"{names[0]},nan"] + [f"{n},0.2" for n in names[1:]]), ["nan"]),
        "not-a-number": (prior("word", [f"{names[0]},high"] + [f"{n},0.2" for n in names[1:]]), ["high"]),
        "bad-header": (prior("header", [f"{n},0.2" for n in names], header="class,prior"), ["Classes,avg_pred"]),
        "empty": (prior("empty", [], header=""), ["Classes,avg_pred"]),
        "other-dataset": (prior("four", [f"{n},0.2" for n in
                                         load_dataset("synthetic", w["four"], "train").labels.class_names]), ["class"]),
    }
    return w


def _variant(world, name: str, mutate) -> Path:
    """A copy of the synthetic root whose train annotations went through ``mutate`` (images hard-linked)."""
    root = world["base"] / "variants" / name
    if not root.exists():
        shutil.copytree(world["syn"], root, copy_function=os.link)
        path = root / "annotations" / "instances_train2017.json"
        text = path.read_text()
        path.unlink()  # break the hard link before editing
        path.write_text(text)
        mutate(path)
    return root


def _out(world, name: str) -> Path:
    return world["base"] / "outputs" / name


def _command(world, command: str, root: Path, dataset: str = "coco") -> tuple[list, list[Path]]:
    """The CLI call of ``command`` reading the train split of ``root``; the paths it must leave alone."""
    out = _out(world, command.replace(" ", "-"))
    data = ["--dataset", dataset, "--data-root", root]
    calls = {
        "data info": ["data", "info", *data, "--split", "train"],
        "data cache": ["data", "cache", *data, "--split", "train", "--size", "32", "--out", out / "cache",
                       "--workers", "1"],
        "simulate": ["simulate", *data, "--scheme", "rps", "--param", "0.5", "--seed", "0", "--out", out / "s.parquet"],
        "estimate-prior": ["estimate-prior", *data, *TRAIN_FAST, "--out", out / "p.csv"],
        "train": ["train", *data, *TRAIN_FAST, "--mode", "ignore", "--out", out / "runs"],
        "features extract": ["features", "extract", *data, "--split", "train", "--image-size", "32", "--device", "cpu",
                             "--out", out / "feat"],
    }
    return calls[command], [out, root]


COMMANDS = ["data info", "data cache", "simulate", "estimate-prior", "train", "features extract"]


# --------------------------------------------------------------------------------------- COCO / LVIS JSON


@pytest.mark.parametrize("case, mutate, words", JSON_FAULTS, ids=[c[0] for c in JSON_FAULTS])
@pytest.mark.parametrize("command", ["data info", "simulate"])
def test_coco_json_fault(world, command, case, mutate, words):
    root = _variant(world, case, mutate)
    args, watch = _command(world, command, root)
    expect_user_error(args, ["instances_train2017.json", *words], watch)


# every other command reads the dataset through the same loader: two faults each are enough to show the boundary
@pytest.mark.parametrize("case", ["not-json", "unknown-category"])
@pytest.mark.parametrize("command", ["data cache", "estimate-prior", "train", "features extract"])
def test_coco_json_fault_other_commands(world, command, case):
    _, mutate, words = next(c for c in JSON_FAULTS if c[0] == case)
    args, watch = _command(world, command, _variant(world, case, mutate))
    expect_user_error(args, ["instances_train2017.json", *words], watch)


def test_annotations_folder_where_a_file_is_expected(world):
    root = _variant(world, "folder", _folder)
    args, watch = _command(world, "simulate", root)
    expect_user_error(args, ["instances_train2017.json", "--data-root"], watch)


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_data_root(world, command):
    args, watch = _command(world, command, world["base"] / "no-such-root")
    expect_user_error(args, ["no-such-root"], watch)


def test_unreadable_annotations(world):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading (the folder case covers it)")
    root = _variant(world, "unreadable", lambda p: None)
    path = root / "annotations" / "instances_train2017.json"
    path.chmod(0)
    try:
        args, watch = _command(world, "data info", root)
        expect_user_error(args, ["instances_train2017.json"], watch)
    finally:
        path.chmod(0o644)


LVIS_FAULTS = [
    ("not-json", lambda p: p.write_text("[1, 2"), ["not valid JSON"]),
    ("no-categories", _drop("categories"), ["categories"]),
    ("duplicate-image-id", _dup("images"), ["images", "unique"]),
    ("duplicate-category-id", _dup("categories"), ["categories", "unique"]),
    ("unknown-image", _set_ann("image_id", 987654), ["image"]),
    ("unknown-category", _set_ann("category_id", 999), ["categor"]),
]


@pytest.mark.parametrize("case, mutate, words", LVIS_FAULTS, ids=[c[0] for c in LVIS_FAULTS])
def test_lvis_json_fault(world, case, mutate, words):
    root = world["base"] / "lvis-variants" / case
    if not root.exists():
        shutil.copytree(world["lvis"], root, copy_function=os.link)
        path = root / "lvis_v1_train.json"
        text = path.read_text()
        path.unlink()
        path.write_text(text)
        mutate(path)
    args, watch = _command(world, "simulate", root, dataset="lvis")
    expect_user_error(args, ["lvis_v1_train.json", *words], watch)


def test_lvis_excerpt_loads(world):
    """The LVIS excerpt the faults start from is valid (otherwise every fault case would pass vacuously)."""
    result = invoke(["data", "info", "--dataset", "lvis", "--data-root", world["lvis"], "--split", "train"])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------------------- OpenImages CSV


def _oi_variant(world, name: str, text_fn) -> Path:
    root = world["base"] / "oi-variants" / name
    if not root.exists():
        shutil.copytree(world["oi"], root, copy_function=os.link)
        path = root / OI_FILES["train"]
        text = path.read_text()
        path.unlink()
        path.write_text(text_fn(text))
    return root


OI_FAULTS = [
    ("wrong-columns", lambda t: t.replace("ImageID,Source,LabelName,Confidence", "Image,Source,Label,Conf", 1),
     ["header", "ImageID"]),
    ("confidence-0.5", lambda t: t.replace(",1\n", ",0.5\n", 1), ["Confidence", "0.5"]),
    ("confidence-2", lambda t: t.replace(",1\n", ",2\n", 1), ["Confidence", "2"]),
    ("empty-cell", lambda t: t.replace(",1\n", ",\n", 1), ["Confidence", "empty"]),
    ("empty-file", lambda t: "", ["header"]),
]


@pytest.mark.parametrize("case, fn, words", OI_FAULTS, ids=[c[0] for c in OI_FAULTS])
def test_openimages_csv_fault(world, case, fn, words):
    args, watch = _command(world, "simulate", _oi_variant(world, case, fn), dataset="openimages")
    expect_user_error(args, [OI_FILES["train"], *words], watch)


def test_openimages_excerpt_loads(world):
    result = invoke(["data", "info", "--dataset", "openimages", "--data-root", world["oi"], "--split", "train"])
    assert result.exit_code == 0, result.output


def test_openimages_unknown_class_in_labels_is_counted_not_fatal(world):
    """Label rows of MIDs outside the class set are the normal case at full scale (20k MIDs in the train file,
    9,605 trainable): they are skipped and counted, as the loader documents, never an error."""
    from plbench.datasets import load_dataset

    root = _oi_variant(world, "unknown-mid", lambda t: t + "train0000,verification,/m/0zzzz,1\n")
    split = load_dataset("openimages", root, "train")
    assert split.labels.num_classes == 3 and len(split) == 16


# ----------------------------------------------------------------------------------- simulations and priors


@pytest.mark.parametrize("command", ["train", "estimate-prior"])
@pytest.mark.parametrize("sim, words", [("sim-other", ["fingerprint"]), ("sim-four", ["class"])])
def test_simulation_of_another_dataset(world, command, sim, words):
    args, watch = _command(world, command, world["syn"], dataset="synthetic")
    expect_user_error([*args, "--simulation", world[sim]], [world[sim].name, *words], watch + [world[sim]])


@pytest.mark.parametrize("fault", ["empty", "truncated", "not-parquet", "folder"])
def test_damaged_simulation_file(world, fault):
    path = world["base"] / "damaged-sims" / f"{fault}.parquet"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        good = world["sim-syn"].read_bytes()
        if fault == "folder":
            path.mkdir()
        else:
            path.write_bytes({"empty": b"", "truncated": good[: len(good) // 2], "not-parquet": b"a,b\n1,2\n"}[fault])
    args, watch = _command(world, "train", world["syn"], dataset="synthetic")
    expect_user_error([*args, "--simulation", path], [path.name], watch)


def test_good_simulation_and_prior_are_accepted_by_the_checks(world):
    """The reference files of the cases above pass the same checks (so each case fails for its own reason)."""
    from plbench.artifacts.simulations import load_simulation
    from plbench.datasets import load_dataset
    from plbench.priors import read_prior_csv

    split = load_dataset("synthetic", world["syn"], "train")
    load_simulation(world["sim-syn"], expected_fingerprint=split.fingerprint,
                    expected_class_names=split.labels.class_names)
    assert read_prior_csv(world["prior-ok"], world["names"]).shape == (3,)


PRIOR_CASES = ["missing-class", "extra-class", "duplicate-class", "above-one", "negative", "nan", "not-a-number",
               "bad-header", "empty", "other-dataset"]


@pytest.mark.parametrize("case", PRIOR_CASES)
def test_bad_prior_leaves_no_run_folder(world, case):
    """``train --mode selective --prior P.csv`` with a bad prior: exit 2 and NO run folder (issue #14)."""
    path, words = world["priors"][case]
    args, watch = _command(world, "train", world["syn"], dataset="synthetic")
    args = [a if a != "ignore" else "selective" for a in args]
    expect_user_error([*args, "--prior", path], [path.name, *words], watch + [path])
    assert not _out(world, "train").exists()


# ------------------------------------------------------------------------------ out-of-range parameters

SIM = ["simulate", "--dataset", "synthetic", "--seed", "0"]


def _param_cases(world):
    syn, out = world["syn"], _out(world, "params")
    train = ["train", "--dataset", "synthetic", "--data-root", syn, *TRAIN_FAST, "--out", out / "runs"]
    feats = ["features", "extract", "--dataset", "synthetic", "--data-root", syn, "--device", "cpu",
             "--out", out / "feat"]
    return {
        "simulate rps p>1": ([*SIM, "--data-root", syn, "--scheme", "rps", "--param", "1.5", "--out", out / "a.parquet"],
                             ["--param", "1.5"]),
        "simulate rps p<0": ([*SIM, "--data-root", syn, "--scheme", "rps", "--param", "-0.1", "--out",
                              out / "a.parquet"], ["--param", "-0.1"]),
        "simulate fpc n=0": ([*SIM, "--data-root", syn, "--scheme", "fpc", "--param", "0", "--out", out / "a.parquet"],
                             ["--param", "0"]),
        "simulate fpc n=2.5": ([*SIM, "--data-root", syn, "--scheme", "fpc", "--param", "2.5", "--out",
                                out / "a.parquet"], ["--param", "2.5"]),
        "simulate no param": ([*SIM, "--data-root", syn, "--scheme", "rps", "--out", out / "a.parquet"], ["--param"]),
        "simulate unknown scheme": ([*SIM, "--data-root", syn, "--scheme", "xyz", "--out", out / "a.parquet"],
                                    ["--scheme", "xyz"]),
        "simulate unknown dataset": (["simulate", "--dataset", "cocoa", "--data-root", syn, "--scheme", "spl",
                                      "--seed", "0", "--out", out / "a.parquet"], ["cocoa"]),
        "data info top<0": (["data", "info", "--dataset", "synthetic", "--data-root", syn, "--top", "-1"], ["--top"]),
        "data synthetic classes=0": (["data", "synthetic", "--out", out / "syn", "--classes", "0"], ["--classes"]),
        "data synthetic image-size=0": (["data", "synthetic", "--out", out / "syn", "--image-size", "0"],
                                        ["--image-size"]),
        "data cache size=0": (["data", "cache", "--dataset", "synthetic", "--data-root", syn, "--size", "0",
                               "--out", out / "cache"], ["--size"]),
        "train image-size=0": ([*train, "--image-size", "0"], ["--image-size"]),
        "train unknown backbone": ([*train, "--backbone", "resnet_nope"], ["resnet_nope"]),
        "train unknown mode": ([*train, "--mode", "sometimes"], ["--mode", "sometimes"]),
        "train unknown head": ([*train, "--head", "hat"], ["--head", "hat"]),
        "train unknown loss": ([*train, "--loss", "l3"], ["--loss", "l3"]),
        "train unknown loss option": ([*train, "--loss-option", "gamma_nope=1"], ["gamma_nope"]),
        "train unknown recipe": ([*train, "--recipe", "heavy"], ["--recipe", "heavy"]),
        "train epochs=0": ([*train, "--epochs", "0"], ["--epochs"]),
        "train ema-decay=1": ([*train, "--ema-decay", "1"], ["--ema-decay"]),
        "train unknown device": ([*train, "--device", "tpu"], ["tpu"]),
        "train selective without prior file": ([*train, "--mode", "selective", "--prior", out / "none.csv"],
                                               ["--prior"]),
        "train mode with modeless loss": ([*train, "--loss", "an", "--mode", "ignore"], ["--mode", "an"]),
        "estimate-prior unknown backbone": (["estimate-prior", "--dataset", "synthetic", "--data-root", syn,
                                             *TRAIN_FAST, "--backbone", "resnet_nope", "--out", out / "p.csv"],
                                            ["resnet_nope"]),
        "features image-size=0": ([*feats, "--image-size", "0"], ["--image-size"]),
        "features unknown backbone": ([*feats, "--backbone", "resnet_nope"], ["resnet_nope"]),
        "features batch-size=0": ([*feats, "--batch-size", "0"], ["--batch-size"]),
        "features unknown split": ([*feats, "--split", "holdout"], ["holdout"]),
    }


PARAM_CASES = ["simulate rps p>1", "simulate rps p<0", "simulate fpc n=0", "simulate fpc n=2.5", "simulate no param",
               "simulate unknown scheme", "simulate unknown dataset", "data info top<0", "data synthetic classes=0",
               "data synthetic image-size=0", "data cache size=0", "train image-size=0", "train unknown backbone",
               "train unknown mode", "train unknown head", "train unknown loss", "train unknown loss option",
               "train unknown recipe", "train epochs=0", "train ema-decay=1", "train unknown device",
               "train selective without prior file", "train mode with modeless loss",
               "estimate-prior unknown backbone", "features image-size=0", "features unknown backbone",
               "features batch-size=0", "features unknown split"]


@pytest.mark.parametrize("case", PARAM_CASES)
def test_out_of_range_parameter(world, case):
    args, words = _param_cases(world)[case]
    expect_user_error(args, words, [_out(world, "params"), world["syn"]])
