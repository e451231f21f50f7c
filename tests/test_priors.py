"""Prior CSV: byte-exact round trip of the CSL authors' file, matching by name, errors, pandas format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from plbench.errors import InputError
from plbench.priors import (
    PriorTable,
    format_prior_csv,
    match_prior,
    read_prior_csv,
    read_prior_table,
    write_prior_csv,
)

OFFICIAL = "prior_coco_fpc1000_official.csv"


def test_official_file_round_trips_byte_for_byte(real_fixtures, tmp_path):
    src = real_fixtures / OFFICIAL
    table = read_prior_table(src)
    assert len(table.class_names) == 80
    assert table.class_names[:3] == ["person", "bicycle", "car"] and table.class_names[-1] == "toothbrush"
    assert table.values[0] == pytest.approx(0.542279) and table.values[-1] == pytest.approx(0.050358422)
    assert table.trailer == "1542867"  # the authors' file ends with a single-number line
    out = tmp_path / "prior.csv"
    write_prior_csv(out, table.class_names, table.values, trailer=table.trailer)
    assert out.read_bytes() == src.read_bytes()
    # float32 values (as the authors' GPU averages are) give the same bytes
    write_prior_csv(out, table.class_names, torch.tensor(table.values, dtype=torch.float32), trailer=table.trailer)
    assert out.read_bytes() == src.read_bytes()


def test_official_file_matched_by_name_not_position(real_fixtures):
    table = read_prior_table(real_fixtures / OFFICIAL)
    names = list(reversed(table.class_names))
    prior = read_prior_csv(real_fixtures / OFFICIAL, names)
    assert prior.dtype == np.float64 and prior.shape == (80,)
    np.testing.assert_array_equal(prior, table.values[::-1])
    assert prior[names.index("person")] == pytest.approx(0.542279)


def test_missing_and_extra_classes_are_named(real_fixtures):
    path = real_fixtures / OFFICIAL
    names = read_prior_table(path).class_names
    with pytest.raises(InputError) as e:
        read_prior_csv(path, names[:-1] + ["tooth brush"])
    msg = str(e.value)
    assert str(path) in msg and "Classes" in msg
    assert "lacks 1 of the dataset's classes: 'tooth brush'" in msg
    assert "did you mean 'toothbrush'" in msg
    assert "has 1 classes the dataset does not: 'toothbrush'" in msg
    with pytest.raises(InputError, match="lacks 1 of the dataset's classes: 'zebra crossing'"):
        read_prior_csv(path, names + ["zebra crossing"])
    with pytest.raises(InputError, match=r"has 2 classes the dataset does not: 'hair drier', 'toothbrush'"):
        read_prior_csv(path, names[:-2])


def test_write_matches_pandas_float32_format(tmp_path):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(40), [0.0, 1.0, 1e-5, 3.2e-7, 0.5, 0.1]]).astype(np.float32)
    names = [f"class {i}" for i in range(values.size)]
    names[0], names[1], names[2] = 'a, "quoted" name', "comma, inside", "naïve café"
    ours = format_prior_csv(names, values)
    buf = pd.DataFrame({"Classes": names, "avg_pred": values}).to_csv(index=False, lineterminator="\n")
    assert ours == buf
    path = tmp_path / "p.csv"
    write_prior_csv(path, names, values)
    back = read_prior_table(path)
    assert back.class_names == names and back.trailer is None
    np.testing.assert_array_equal(back.values.astype(np.float32), values)
    # pandas reads what we write
    df = pd.read_csv(path)
    assert list(df.Classes) == names


def test_float64_precision_round_trips(tmp_path):
    values = np.array([0.1234567890123, 1 / 3])
    path = tmp_path / "p.csv"
    write_prior_csv(path, ["a", "b"], values, precision="float64")
    np.testing.assert_array_equal(read_prior_csv(path, ["b", "a"]), values[::-1])


@pytest.mark.parametrize(
    "text, match",
    [
        ("Class,avg_pred\na,0.1\n", "expected the header 'Classes,avg_pred', but got 'Class,avg_pred'"),
        ("", "but got 'an empty file'"),
        ("Classes,avg_pred\na,0.1,3\nb,0.2\n", r"line 2: expected 2 fields \(Classes,avg_pred\), but got 3"),
        ("Classes,avg_pred\na,high\n", "avg_pred on line 2: expected a number, but got 'high'"),
        ("Classes,avg_pred\na,1.5\n", r"expected a probability in \[0, 1\], but got 1.5"),
        ("Classes,avg_pred\na,nan\n", r"expected a probability in \[0, 1\], but got nan"),
        ("Classes,avg_pred\na,0.1\na,0.2\n", r"expected each class once, but got duplicates: \['a'\]"),
        ("Classes,avg_pred\n", "expected at least one class row"),
        ("Classes,avg_pred\na,0.1\nb\n", r"line 3: expected 2 fields"),  # a non-numeric last line is no trailer
    ],
)
def test_malformed_files(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as e:
        read_prior_table(path)
    assert str(path) in str(e.value) and "Fix:" in str(e.value)


def test_format_errors():
    with pytest.raises(ValueError, match=r"one prior per class \(2\), but got 3"):
        format_prior_csv(["a", "b"], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        format_prior_csv(["a"], [1.2])
    with pytest.raises(ValueError, match="duplicates"):
        format_prior_csv(["a", "a"], [0.1, 0.2])
    with pytest.raises(ValueError, match="trailer"):
        format_prior_csv(["a"], [0.1], trailer="1,2")


def test_match_prior_without_path():
    table = PriorTable(["x", "y"], np.array([0.2, 0.7]))
    np.testing.assert_array_equal(match_prior(table, ["y", "x"]), [0.7, 0.2])
    with pytest.raises(InputError, match="lacks 1 of the dataset's classes: 'z'"):
        match_prior(table, ["x", "y", "z"])


def test_default_prior_path_names_the_label_setting():
    from plbench.priors import default_prior_path

    assert default_prior_path("coco", "simulations/coco-fpc1000-s0.parquet", "resnet50", 1) == \
        Path("priors/coco-fpc1000-s0-resnet50-s1.csv")
    assert default_prior_path("lvis", None, "hf-hub:timm/vit_b", 0, root="out") == \
        Path("out/lvis-natural-hf-hub:timm_vit_b-s0.csv")
