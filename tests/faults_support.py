"""Helpers of the fault-matrix tests (tests/test_faults_*.py): a CLI call that must fail as a user error
(exit 2, a message naming what is wrong, no traceback) without creating or changing any file, and small
datasets in the COCO, LVIS and OpenImages layouts built from the synthetic images."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plbench.cli import app

runner = CliRunner()

_BOX = re.compile(r"[\s│╭╮╰╯─┃━]+")


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under ``roots`` (the roots included) -> (kind, size, mtime_ns); absent roots too."""
    out: dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            out[str(root)] = ("absent",)
            continue
        for p in [root, *root.rglob("*")]:
            st = p.lstat()
            out[str(p)] = ("dir",) if p.is_dir() else ("file", st.st_size, st.st_mtime_ns)
    return out


def flat(text: str) -> str:
    """Output with line wrapping and box drawing removed (typer wraps usage errors in a panel)."""
    return _BOX.sub(" ", text)


def invoke(args: list) -> object:
    return runner.invoke(app, [str(a) for a in args])


def expect_user_error(args: list, needles: list[str], watch: list[Path]) -> str:
    """Run ``plbench ARGS``; assert exit 2, every needle in the message, no traceback, ``watch`` unchanged."""
    before = snapshot(*watch)
    result = invoke(args)
    out = flat(result.output)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    for needle in needles:
        assert flat(needle) in out, f"{needle!r} not in: {out}"
    assert snapshot(*watch) == before, "a file was created or changed"
    return out


# ---------------------------------------------------------------------------------------------------------- data


def synthetic_root(root: Path, train: int = 16, val: int = 8, classes: int = 3, seed: int = 0) -> Path:
    from plbench.datasets.synthetic import write_synthetic_coco

    write_synthetic_coco(root, train=train, val=val, num_classes=classes, image_size=32, seed=seed)
    return root


def simulation_file(root: Path, path: Path, scheme: str = "spl", param: float | None = None, seed: int = 0) -> Path:
    """Simulated partial labels of the synthetic training split at ``root``, saved to ``path`` (a --simulation file)."""
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.simulate import simulate

    split = load_dataset("synthetic", root, "train")
    save_simulation(path, simulate(split.labels, scheme, param, seed), dataset="synthetic",
                    fingerprint=split.fingerprint, scheme=scheme, param=param, seed=seed)
    return path


def lvis_root(syn: Path, root: Path) -> Path:
    """A two-split LVIS v1 excerpt (the synthetic classes, frequency groups, negatives) on the synthetic images."""
    root.mkdir(parents=True)
    for split in ("train", "val"):
        coco = json.loads((syn / "annotations" / f"instances_{split}2017.json").read_text())
        shutil.copytree(syn / f"{split}2017", root / f"{split}2017")
        cats = [{"id": i + 1, "name": c["name"], "frequency": "rcf"[i % 3], "synset": c["name"]}
                for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))]
        remap = {c["id"]: i + 1 for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
        images = [{"id": im["id"], "coco_url": f"http://images.cocodataset.org/{split}2017/{im['file_name']}",
                   "neg_category_ids": [], "not_exhaustive_category_ids": []} for im in coco["images"]]
        anns = [{"id": a["id"], "image_id": a["image_id"], "category_id": remap[a["category_id"]]}
                for a in coco["annotations"]]
        (root / f"lvis_v1_{split}.json").write_text(json.dumps(
            {"info": {"version": "1.0"}, "images": images, "annotations": anns, "categories": cats}))
    return root


OI_MIDS = ("/m/0aaaa", "/m/0bbbb", "/m/0cccc")
OI_FILES = {"train": "oidv6-train-annotations-human-imagelabels.csv",
            "val": "validation-annotations-human-imagelabels.csv"}


def openimages_root(syn: Path, root: Path) -> Path:
    """An OpenImages V6 excerpt: three MIDs, train and validation label files, the synthetic images."""
    root.mkdir(parents=True)
    (root / "oidv6-class-descriptions.csv").write_text(
        "LabelName,DisplayName\n" + "".join(f"{m},Class {i}\n" for i, m in enumerate(OI_MIDS)))
    for split, folder in (("train", "train"), ("val", "validation")):
        (root / folder).mkdir()
        rows = ["ImageID,Source,LabelName,Confidence"]
        for k, jpg in enumerate(sorted((syn / f"{split}2017").glob("*.jpg"))):
            shutil.copy(jpg, root / folder / f"{split}{k:04d}.jpg")
            rows += [f"{split}{k:04d},verification,{OI_MIDS[(k + j) % 3]},{j % 2}" for j in range(2)]
        (root / OI_FILES[split]).write_text("\n".join(rows) + "\n")
    return root


# ----------------------------------------------------------------------------------------------- a trained run

TRAIN_FAST = ["--image-size", "32", "--batch-size", "8", "--epochs", "1", "--device", "cpu"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A synthetic dataset (16 train, 8 val images of 32 px, 3 classes) and one finished 1-epoch run on it.

    Shared by the fault tests of the commands that read runs and of the outputs (import it into the module).
    """
    base = tmp_path_factory.mktemp("trained")
    syn = synthetic_root(base / "syn")
    result = invoke(["train", "--dataset", "synthetic", "--data-root", syn, *TRAIN_FAST, "--mode", "ignore",
                     "--out", base / "runs", "--run-name", "r"])
    assert result.exit_code == 0, result.output
    return {"base": base, "syn": syn, "run": base / "runs" / "r"}


def damaged_run(trained: dict, name: str, damage) -> Path:
    """A copy of the trained run (files hard-linked) where ``damage(folder)`` replaced or removed some files.

    ``damage`` must unlink a file before writing it (the original run shares the inode otherwise).
    """
    folder = trained["base"] / "damaged" / name
    if not folder.exists():
        shutil.copytree(trained["run"], folder, copy_function=os.link)
        damage(folder)
    return folder


def rewrite(path: Path, data: bytes) -> None:
    """Replace a (hard-linked) file by ``data`` without touching the file it was linked to."""
    path.unlink()
    path.write_bytes(data)
