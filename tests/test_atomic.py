import os
import stat

import pytest

from plbench.artifacts.atomic import atomic_path, write_json, write_text


def test_replace_and_permissions(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "x": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def _strict(text):
    """json.loads that refuses NaN / Infinity, as jq and browsers do."""
    import json

    def refuse(name):
        raise ValueError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_write_json_is_strict_json_with_null_for_missing_numbers(tmp_path):
    import math

    import numpy as np

    p = tmp_path / "s.json"
    write_json(p, {"nan": float("nan"), "inf": [float("inf"), -math.inf, 1.5], "np": np.float32(np.nan),
                   "np_ok": np.float64(0.25), "arr": np.array([1.0, np.nan]), "nested": {"t": (2, float("nan"))}})
    assert _strict(p.read_text()) == {"nan": None, "inf": [None, None, 1.5], "np": None, "np_ok": 0.25,
                                      "arr": [1.0, None], "nested": {"t": [2, None]}}
