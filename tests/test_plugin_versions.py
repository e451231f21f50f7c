"""Which code a plug-in's numbers came from is used, not only recorded: a sweep re-runs the training stages of
an edited plug-in method or head (its source sha256 is in the stage hash; built-in stages keep theirs), and a
report shows two versions of one plug-in method as two columns (and one version as the plain column)."""

from __future__ import annotations

import copy
import os
import sys

import pytest
from test_report import write_run

from plbench.report import build_tables, load_records
from plbench.report.records import column_label, plugin_version
from plbench.report.render import table_markdown
from plbench.sweep import StageKind
from plbench.sweep.plan import expand, plugin_code
from plbench.sweep.spec import parse_spec
from sweep_support import changed, stages_of
from test_sweep_methods import BASE as METHODS_BASE

BASE = changed(METHODS_BASE, sweep={"name": "v"})  # a tiny single-positive grid on frozen features

PLUGIN = '''
import torch.nn.functional as F
from torch import nn
from plbench.methods.api import Method


class Soft(Method):
    """Assume-negative BCE (a plug-in whose file the test edits)."""

    def loss(self, logits, targets, batch):
        return F.binary_cross_entropy_with_logits(logits, (targets == 1).float())


class Head(nn.Module):
    needs_spatial_features = False

    def __init__(self, in_features, num_classes):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features):
        return self.fc(features.flatten(1, -2).mean(1) if features.ndim == 3 else features)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A plug-in module ``plug_versions`` on sys.path; ``edit()`` changes its source (a comment only)."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    path = folder / "plug_versions.py"
    path.write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))

    def edit() -> None:
        path.write_text(PLUGIN + "\n# edited\n")
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new mtime even on coarse clocks
        sys.modules.pop("plug_versions", None)

    yield edit
    sys.modules.pop("plug_versions", None)


def _train_stages(tmp_path, methods, heads=None):
    data = copy.deepcopy(BASE)
    data["methods"] = methods
    if heads is not None:
        data["heads"] = heads
    return {s.name.split("-")[3] + "/" + s.settings["config"]["head"]: s
            for s in stages_of(expand(parse_spec(data), tmp_path / "out"), StageKind.TRAIN)}


def test_an_edited_plugin_method_gets_a_new_stage_hash_and_built_ins_keep_theirs(plugin, tmp_path):
    methods = [{"loss": "an"}, {"method": "role", "loss_options": {"expected_num_pos": 1.0}},
               {"method": "plug_versions:Soft"}]
    before = _train_stages(tmp_path, methods)
    assert sorted(before) == ["an/gap", "plug_versions.Soft/gap", "role/gap"]
    alone = _train_stages(tmp_path, [{"loss": "an"}])
    assert alone["an/gap"].hash == before["an/gap"].hash  # a plug-in beside it changes nothing of AN's stage
    plugin()
    after = _train_stages(tmp_path, methods)
    assert after["plug_versions.Soft/gap"].hash != before["plug_versions.Soft/gap"].hash  # re-run
    assert after["plug_versions.Soft/gap"].name != before["plug_versions.Soft/gap"].name  # a new run folder
    assert after["an/gap"].hash == before["an/gap"].hash and after["role/gap"].hash == before["role/gap"].hash


def test_an_edited_plugin_head_gets_a_new_stage_hash(plugin, tmp_path):
    heads = [{"name": "gap"}, {"name": "plug_versions:Head"}]
    before = _train_stages(tmp_path, [{"loss": "an"}], heads)
    plugin()
    after = _train_stages(tmp_path, [{"loss": "an"}], heads)
    assert after["an/plug_versions:Head"].hash != before["an/plug_versions:Head"].hash
    assert after["an/gap"].hash == before["an/gap"].hash


def test_plugin_code_fingerprints_plugins_only(plugin, tmp_path):
    from plbench.config import TrainConfig
    from plbench.methods.provenance import source_sha256

    import plug_versions

    base = TrainConfig(data_root=str(tmp_path), out_dir=str(tmp_path))
    assert plugin_code(base.replace(method="role")) == {}
    assert plugin_code(base.replace(method="plbench.methods.builtin:RoleMethod")) == {}  # plbench's own code
    code = plugin_code(base.replace(method="plug_versions:Soft", head="plug_versions:Head"))
    digest = source_sha256(plug_versions.Soft)[1]
    assert len(digest) == 64
    assert code == {"method": {"import_path": "plug_versions:Soft", "version": None, "source_sha256": digest},
                    "head": {"import_path": "plug_versions:Head", "version": None, "source_sha256": digest}}


# -- the report ----------------------------------------------------------------------------------------------
def _method(sha: str | None, version: str | None = None, import_path: str = "plug_versions:Soft") -> dict:
    return {"spec": import_path, "import_path": import_path, "package": None if version is None else "plug",
            "version": version, "source_file": "/x/plug_versions.py", "source_sha256": sha}


def _spl_run(root, name, loss, seed, val_map, method):
    return write_run(root, name, labels="spl", loss=loss, mode=None, seed=seed, val_map=val_map,
                     backbone="resnet50", simulation={"scheme": "spl", "param": None, "seed": seed}, method=method)


def test_plugin_version_of_a_summary():
    assert plugin_version({"method": _method("ab" * 32)}) == "abababab"
    assert plugin_version({"method": _method(None, "0.2.0")}) == "v0.2.0"
    assert plugin_version({"method": _method(None)}) == "unrecorded"
    assert plugin_version({"method": _method("ab" * 32, import_path="plbench.methods.builtin:RoleMethod")}) is None
    assert plugin_version({}) is None  # written before methods had records


def test_two_versions_of_a_plugin_are_two_columns(tmp_path):
    root = tmp_path / "runs"
    an = _method("0" * 64, import_path="plbench.methods.loss_method:AssumeNegativeLossMethod")
    for seed, v in ((0, 60.0), (1, 62.0)):
        _spl_run(root, f"an-s{seed}", "an", seed, v, an)
        _spl_run(root, f"soft-old-s{seed}", "Soft", seed, 64.0 + seed, _method("a" * 64))
    _spl_run(root, "soft-new-s0", "Soft", 0, 70.0, _method("b" * 64))
    # built-in runs of two plbench versions are one column: their version is plbench's
    _spl_run(root, "an-other-plbench-s2", "an", 2, 61.0, {**an, "source_sha256": "1" * 64})
    (table,) = build_tables(load_records([root]), "val_map")
    assert table.columns == ["an", "Soft@aaaaaaaa", "Soft@bbbbbbbb"]
    assert table.cells[("spl", "an")].n == 3
    assert table.cells[("spl", "Soft@aaaaaaaa")].values == (64.0, 65.0)
    assert table.cells[("spl", "Soft@bbbbbbbb")].values == (70.0,)
    assert column_label("Soft@aaaaaaaa") == "SOFT @aaaaaaaa"
    assert column_label("ll_r@v0.2.0_boostlu") == "LL-R @v0.2.0 + BoostLU"
    assert column_label("pasl@abcd0123:negative") == "Negative P-ASL @abcd0123"
    assert "| SOFT @aaaaaaaa | SOFT @bbbbbbbb |" in table_markdown(table)


def test_one_version_of_a_plugin_keeps_the_plain_column(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        _spl_run(root, f"soft-s{seed}", "Soft", seed, 64.0 + seed, _method("a" * 64))
    _spl_run(root, "soft-by-version", "Other", 0, 50.0, _method(None, "0.1.0", "plug_other:Other"))
    (table,) = build_tables(load_records([root]), "val_map")
    assert table.columns == ["Other", "Soft"]
    assert table.cells[("spl", "Soft")].n == 2
    # versions told apart by package version where no source hash was recorded
    _spl_run(root, "other-0.2", "Other", 1, 52.0, _method(None, "0.2.0", "plug_other:Other"))
    (table,) = build_tables(load_records([root]), "val_map")
    assert table.columns == ["Other@v0.1.0", "Other@v0.2.0", "Soft"]
