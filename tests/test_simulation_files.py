"""Simulation parquet files (round trips, metadata, mismatch errors) and the ``plbench simulate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import plbench
from plbench.artifacts.simulations import default_simulation_path, load_simulation, save_simulation
from plbench.cli import app
from plbench.datasets import load_dataset
from plbench.errors import InputError
from plbench.labels import NEG, POS, UNK, PartialLabels
from plbench.simulate import simulate

FP = "f" * 64


def partial_labels(ids=None) -> PartialLabels:
    rng = np.random.default_rng(0)
    m = np.where(rng.random((30, 5)) < 0.3, POS, NEG).astype(np.int8)
    m[rng.random((30, 5)) < 0.5] = UNK
    m[4] = UNK  # an image with no annotation at all
    ids = np.arange(1000, 1030) if ids is None else ids
    return PartialLabels.from_dense(m, ids, ["person", "bicycle", "car, red", 'say "hi"', "éclair"])


def save(path: Path, labels: PartialLabels, **kw) -> Path:
    args = dict(dataset="coco", fingerprint=FP, scheme="fpc", param=10, seed=3)
    args.update(kw)
    return save_simulation(path, labels, **args)


@pytest.mark.parametrize("sparse", [False, True])
def test_round_trip_and_metadata(tmp_path, sparse):
    labels = partial_labels()
    labels = labels.to_sparse() if sparse else labels
    path = save(tmp_path / "sub" / "x.parquet", labels, extra={"split": "train"})
    assert [p.name for p in path.parent.iterdir()] == ["x.parquet"]  # no temp file left behind
    back, meta = load_simulation(path, expected_fingerprint=FP, expected_class_names=labels.class_names)
    assert back.is_sparse and back == labels
    assert back.to_dense().tobytes() == labels.to_dense().tobytes()
    assert back.image_ids.tolist() == list(range(1000, 1030))
    assert meta["image_ids"] is back.image_ids
    expected = {
        "format": "plbench-simulation", "format_version": 1, "dataset": "coco", "fingerprint": FP,
        "class_names": labels.class_names, "scheme": "fpc", "param": 10, "seed": 3,
        "plbench_version": plbench.__version__, "complete": False, "num_images": 30, "num_classes": 5,
        "extra": {"split": "train"},
    }
    assert {k: meta[k] for k in expected} == expected


def test_file_layout_is_one_row_per_image(tmp_path):
    labels = partial_labels(ids=np.array([f"img{i:03d}" for i in range(30)], dtype=object))
    path = save(tmp_path / "x.parquet", labels)
    table = pq.read_table(path)
    assert table.schema.field("image_id").type == pa.string()
    assert table.schema.field("class_index").type == pa.list_(pa.int32())
    assert table.schema.field("label").type == pa.list_(pa.int8())
    df = pd.read_parquet(path)
    m = labels.matrix
    for i in (0, 4, 29):
        assert df.image_id[i] == f"img{i:03d}"
        np.testing.assert_array_equal(df.class_index[i], np.flatnonzero(m[i] != UNK))
        np.testing.assert_array_equal(df.label[i], m[i][m[i] != UNK])
    meta = json.loads(table.schema.metadata[b"plbench"])
    assert meta["class_names"][3] == 'say "hi"'
    back, _ = load_simulation(path)
    assert back.image_ids.tolist() == labels.image_ids.tolist()


def test_complete_labels_round_trip(tmp_path):
    m = np.array([[1, 0], [0, 0], [1, 1]], np.int8)
    labels = PartialLabels.from_dense(m, [1, 2, 3], ["a", "b"], complete=True)
    back, meta = load_simulation(save(tmp_path / "c.parquet", labels, scheme="full", param=None))
    assert meta["complete"] is True and back.complete and meta["param"] is None
    np.testing.assert_array_equal(back.to_dense(), m)


def test_overwrite_replaces_file(tmp_path):
    path = tmp_path / "x.parquet"
    save(path, partial_labels(), seed=1)
    save(path, partial_labels(), seed=2)
    assert load_simulation(path)[1]["seed"] == 2
    assert len(list(tmp_path.iterdir())) == 1


def test_fingerprint_mismatch_is_a_clear_error(tmp_path):
    path = save(tmp_path / "x.parquet", partial_labels())
    with pytest.raises(InputError) as err:
        load_simulation(path, expected_fingerprint="0" * 64)
    e = err.value
    assert e.path == path and e.field == "fingerprint"
    assert "expected the source fingerprint 0000000000000000" in e.message
    assert "ffffffffffffffff" in e.message and "plbench simulate" in e.message
    assert str(path) in e.message


def test_class_list_mismatch_names_first_difference(tmp_path):
    labels = partial_labels()
    path = save(tmp_path / "x.parquet", labels)
    other = list(labels.class_names)
    other[2] = "truck"
    with pytest.raises(InputError) as err:
        load_simulation(path, expected_fingerprint=FP, expected_class_names=other)
    assert err.value.field == "class_names"
    assert "class 2 is 'car, red' in the file but 'truck' in the dataset" in err.value.message
    with pytest.raises(InputError, match="the file has 5 classes but the dataset has 6"):
        load_simulation(path, expected_class_names=labels.class_names + ["extra"])


def test_bad_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_simulation(tmp_path / "missing.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(InputError, match="expected a parquet file"):
        load_simulation(junk)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), plain)
    with pytest.raises(InputError, match="expected plbench metadata"):
        load_simulation(plain)
    # a class index beyond the class list
    path = save(tmp_path / "x.parquet", partial_labels())
    table = pq.read_table(path)
    bad = table.set_column(1, "class_index", pa.array([[7]] + [[]] * 29, type=pa.list_(pa.int32())))
    bad = bad.set_column(2, "label", pa.array([[1]] + [[]] * 29, type=pa.list_(pa.int8())))
    pq.write_table(bad.replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(InputError, match=r"class indices must lie in \[0, 5\)"):
        load_simulation(path)


def test_default_simulation_path():
    assert default_simulation_path("coco", "fpc", 1000, 0) == Path("simulations/coco-fpc1000-s0.parquet")
    assert default_simulation_path("coco", "rps", 0.5, 2, root="x") == Path("x/coco-rps0.5-s2.parquet")
    assert default_simulation_path("lvis", "spl", None, 1, split="val") == Path("simulations/lvis-val-spl-s1.parquet")


# -- the command -----------------------------------------------------------------------------------
def write_tiny_coco(root: Path) -> Path:
    """4 images, 3 categories with non-contiguous ids; image 4 has no instance."""
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    images = [{"id": 10 + i, "file_name": f"{i}.jpg", "width": 8, "height": 8} for i in range(4)]
    for img in images:
        (root / "train2017" / img["file_name"]).write_bytes(b"")
    cats = [{"id": 1, "name": "person"}, {"id": 5, "name": "bus"}, {"id": 9, "name": "kite"}]
    anns = [(10, 1), (10, 5), (11, 1), (11, 1), (12, 5), (12, 1)]
    data = {
        "images": images, "categories": cats,
        "annotations": [{"id": k, "image_id": i, "category_id": c, "iscrowd": 0, "bbox": [0, 0, 1, 1], "area": 1}
                        for k, (i, c) in enumerate(anns)],
    }
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    return root


def test_cli_simulate_writes_file_and_summary(tmp_path):
    root = write_tiny_coco(tmp_path / "coco")
    out = tmp_path / "sim.parquet"
    args = ["simulate", "--dataset", "coco", "--data-root", str(root), "--scheme", "fpc", "--param", "1",
            "--seed", "4", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    split = load_dataset("coco", root, "train")
    labels, meta = load_simulation(out, expected_fingerprint=split.fingerprint,
                                   expected_class_names=["person", "bus", "kite"])
    assert labels == simulate(split.labels, "fpc", 1, 4)
    assert (meta["scheme"], meta["param"], meta["seed"]) == ("fpc", 1, 4)
    assert meta["extra"] == {"split": "train", "dataset_options": {"strict": False}}
    assert labels.counts().positives.tolist() == [1, 1, 0]
    assert labels.counts().negatives.tolist() == [1, 1, 1]
    assert "annotated fraction: 0.416667" in result.output  # 5 of 12 entries
    assert "positives kept:     2 of 5 (40.00%)" in result.output
    assert "negatives kept:     3 of 7 (42.86%)" in result.output
    assert "classes with no positive left: 1 of 3 (1 had none before)" in result.output
    assert "  kite" in result.output


def test_cli_default_path_and_spl(tmp_path, monkeypatch):
    root = write_tiny_coco(tmp_path / "coco")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["simulate", "--dataset", "coco", "--data-root", str(root),
                                      "--scheme", "spl", "--seed", "0"])
    assert result.exit_code == 0, result.output
    labels, meta = load_simulation(tmp_path / "simulations" / "coco-spl-s0.parquet")
    assert labels.counts().positives.sum() == 3 and meta["param"] is None


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scheme", "rps", "--param", "1.5"], "RPS expects a probability in [0, 1], but got 1.5"),
        (["--scheme", "fpc", "--param", "2.5"], "FPC expects a positive integer"),
        (["--scheme", "fpc"], "expected a parameter for scheme fpc"),
        (["--scheme", "rps", "--param", "0.5", "--split", "val"], "no COCO instances file for split 'val'"),
    ],
)
def test_cli_errors_exit_2(tmp_path, extra, message):
    root = write_tiny_coco(tmp_path / "coco")
    result = CliRunner().invoke(app, ["simulate", "--dataset", "coco", "--data-root", str(root), "--seed", "0",
                                      "--out", str(tmp_path / "x.parquet"), *extra])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.parquet").exists()


def test_cli_unknown_dataset_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--dataset", "nope", "--data-root", str(tmp_path),
                                      "--scheme", "spl", "--seed", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--dataset: expected one of coco, fiftyone, lvis, nuswide, openimages, synthetic, but got 'nope'" in result.output


def test_cli_passes_dataset_options(tmp_path):
    root = write_tiny_coco(tmp_path / "coco")
    out = tmp_path / "x.parquet"
    base = ["simulate", "--dataset", "coco", "--data-root", str(root), "--scheme", "spl", "--seed", "0",
            "--out", str(out)]
    result = CliRunner().invoke(app, base + ["--strict"])
    assert result.exit_code == 0, result.output
    assert load_simulation(out)[1]["extra"] == {"split": "train", "dataset_options": {"strict": True}}
    # --strict reaches the loader: a missing image file is now an error, not a dropped row
    (root / "train2017" / "3.jpg").unlink()
    out.unlink()
    result = CliRunner().invoke(app, base + ["--strict"])
    assert result.exit_code == 2 and "1 of 4 images listed in instances_train2017.json are missing" in result.output
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 0 and "images x classes:   3 x 3" in result.output
    # an option the coco loader does not take is refused, never silently dropped
    class_list = tmp_path / "classes.txt"
    class_list.write_text("/m/01\n")
    out.unlink()
    result = CliRunner().invoke(app, base + ["--class-list", str(class_list)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and not out.exists()
    assert "expected options the coco loader accepts (include_crowd, strict), but got class_list" in flat
    result = CliRunner().invoke(app, base + ["--fo-field", "gt"])
    assert result.exit_code == 2 and "but got fo_field" in " ".join(result.output.split())


def test_cli_on_real_coco_sample(real_fixtures, tmp_path):
    root = real_fixtures / "coco2017_sample"
    out = tmp_path / "rps.parquet"
    result = CliRunner().invoke(app, ["simulate", "--dataset", "coco", "--data-root", str(root), "--scheme", "rps",
                                      "--param", "0.5", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    split = load_dataset("coco", root, "train")
    labels, meta = load_simulation(out, expected_fingerprint=split.fingerprint, expected_class_names=split.class_names)
    assert labels.shape == (32, 80) and meta["dataset"] == "coco"
    kept = labels.num_explicit
    assert 1280 - 5 * 40 < kept < 1280 + 5 * 40  # Binomial(2560, 0.5): sd = 25.3


def test_many_row_groups_load_the_same(tmp_path):
    labels = partial_labels()
    path = save(tmp_path / "x.parquet", labels)
    table = pq.read_table(path)
    pq.write_table(table, tmp_path / "chunked.parquet", row_group_size=7)
    assert pq.ParquetFile(tmp_path / "chunked.parquet").num_row_groups == 5
    back, _ = load_simulation(tmp_path / "chunked.parquet")
    assert back == labels
