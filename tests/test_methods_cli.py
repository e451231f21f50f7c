"""``plbench methods list / show`` and installed plug-ins: the example package of examples/ installed with pip
into a temporary folder (its entry points found through sys.path), and a broken installed plug-in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plbench.cli import app
from plbench.losses import LOSSES
from plugin_support import install_example

runner = CliRunner()


@pytest.fixture(scope="session")
def installed_example(tmp_path_factory):
    """The example package installed into a fresh folder (plugin_support.install_example)."""
    return install_example(tmp_path_factory.mktemp("example"))


@pytest.fixture
def on_path(monkeypatch):
    """Put folders on sys.path for one test (entry points and imports), forgetting the modules afterwards."""
    before = set(sys.modules)

    def add(folder):
        monkeypatch.syspath_prepend(str(folder))

    yield add
    for name in set(sys.modules) - before:
        if name.startswith(("plbench_example_method", "plug_")):
            del sys.modules[name]


def _invoke(*args):
    return runner.invoke(app, list(args))


def test_list_shows_every_builtin_method_with_a_summary():
    result = _invoke("methods", "list")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line and not line.startswith(" ")}
    for name in [*LOSSES, "role", "em", "em_apl", "ll_ct", "ll_cp", "hill", "splc", "gr_loss"]:
        assert name in rows, name
        assert len(rows[name].split(None, 1)) == 2  # a summary follows the name
    assert "ROLE: a learnable N x C matrix" in rows["role"]
    count = int(result.output.strip().splitlines()[-1].split()[0])
    assert count >= 16


def test_show_gives_options_defaults_paper_and_needs():
    result = _invoke("methods", "show", "pasl")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Ben-Baruch et al." in out and "needs:      mode, prior" in out and "default selective" in out
    assert "gamma_neg       = 3.0" in out and "likelihood_topk = 5" in out
    assert "plbench.losses.modules:PartialAsymmetricLoss" in out
    role = _invoke("methods", "show", "role").output
    assert "lr_mult:    10.0 x" in role and "needs:      per_image_state" in role
    assert "expected_num_pos = by dataset (below)" in role
    assert "    option            voc  coco  nuswide  cub\n    expected_num_pos  1.5  2.9   1.9      31.4\n" in role


def test_show_gives_the_per_dataset_defaults_of_em_and_em_apl():
    """Their defaults are the authors' main.py settings of the run's dataset: a table, not None."""
    em_apl = _invoke("methods", "show", "em_apl").output
    assert "= None" not in em_apl.split("settings")[0]  # every dataset-dependent option points at the table
    table = em_apl.split("defaults by the run's dataset (an option given overrides its row):\n")[1]
    assert table.splitlines()[:6] == [
        "    option          voc   coco  nuswide  cub",
        "    alpha           0.2   0.1   0.1      0.01",
        "    beta            0.02  0.9   0.2      0.4",
        "    neg_proportion  0.9   0.9   0.9      0.9",
        "    warmup_epoch    5     5     4        3",
        "  another dataset: give these options, or settings=DATASET to take a column",
    ]
    em = _invoke("methods", "show", "em").output
    assert "    alpha    = by dataset (below)\n    settings = None\n" in em
    assert "    option  voc  coco  nuswide  cub\n    alpha   0.2  0.1   0.1      0.01\n" in em
    assert "defaults by the run's dataset" not in _invoke("methods", "show", "an").output


def test_show_of_an_unknown_or_broken_method_exits_2_without_traceback(on_path, tmp_path):
    result = _invoke("methods", "show", "nonesuch")
    assert result.exit_code == 2
    assert "unknown method 'nonesuch'; available: an, an_ls" in result.output
    (tmp_path / "plug_broken.py").write_text("import numpy\nraise ImportError('needs a GPU library')\n")
    on_path(tmp_path)
    result = _invoke("methods", "show", "plug_broken:Thing")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "importing module 'plug_broken' of method 'plug_broken:Thing' raised ImportError: needs a GPU library" \
        in result.output


def test_the_installed_example_is_listed_shown_and_resolved_by_name(installed_example, on_path):
    from plbench.methods.provenance import method_provenance
    from plbench.heads import resolve_head
    from plbench.methods.registry import resolve_method

    on_path(installed_example)
    result = _invoke("methods", "list")
    line = next(row for row in result.output.splitlines() if row.startswith("soft_targets"))
    assert "[plbench-example-method 0.1.0]" in line and "running mean prediction" in line
    shown = _invoke("methods", "show", "soft_targets").output
    assert "momentum      = 0.9" in shown and "warmup_epochs = 1" in shown
    cls = resolve_method("soft_targets")
    assert cls is resolve_method("plbench_example_method:SoftTargets")
    assert Path(sys.modules[cls.__module__].__file__).is_relative_to(installed_example)
    rec = method_provenance(cls, "soft_targets")
    assert (rec["package"], rec["version"]) == ("plbench-example-method", "0.1.0")
    head = resolve_head("max")(8, 3)
    import torch

    assert head(torch.ones(2, 8, 4, 4)).shape == (2, 3)


def test_a_failed_plugin_install_fails_the_test_instead_of_skipping_it(tmp_path, monkeypatch):
    import plugin_support

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("[project\n")  # not TOML: pip's build fails
    monkeypatch.setattr(plugin_support, "EXAMPLE", broken)
    monkeypatch.setattr(plugin_support, "_installed", [])
    with pytest.raises(pytest.fail.Exception, match="pip could not install the example plug-in .*--no-deps"):
        plugin_support.install_example(tmp_path / "base")
    assert plugin_support._installed == []  # nothing cached: a later call tries again


def test_the_example_installs_offline_when_setuptools_is_here(tmp_path, monkeypatch):
    import importlib.metadata

    import plugin_support

    offline = plugin_support.pip_install_args(tmp_path / "src", tmp_path / "site", offline=True)
    assert {"--no-deps", "--no-build-isolation", "--no-index"} <= set(offline)
    online = plugin_support.pip_install_args(tmp_path / "src", tmp_path / "site", offline=False)
    assert "--no-deps" in online and "--no-index" not in online and "--no-build-isolation" not in online
    monkeypatch.setattr(plugin_support.importlib.util, "find_spec", lambda name: object())
    for found, expected in (("84.2.1", True), ("63.4", False)):
        monkeypatch.setattr(importlib.metadata, "version", lambda name, v=found: v)
        assert plugin_support._setuptools_here() is expected
    monkeypatch.setattr(plugin_support.importlib.util, "find_spec", lambda name: None)
    assert plugin_support._setuptools_here() is False


def test_a_broken_installed_plugin_is_listed_with_its_error_and_refused_by_name(on_path, tmp_path):
    """A distribution whose entry point names a module that is not there (an uninstalled dependency)."""
    from plbench.errors import InputError
    from plbench.methods.registry import resolve_method

    info = tmp_path / "broken_plugin-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[plbench.methods]\nbroken = plug_absent.sub:Method\n"
                                           "an = plug_absent:Shadow\n")
    on_path(tmp_path)
    listing = _invoke("methods", "list")
    assert listing.exit_code == 0
    rows = [r for r in listing.output.splitlines() if r.startswith(("broken", "an "))]
    assert any("broken" in r and "cannot be used" in r and "broken-plugin 1.2" in r for r in rows), rows
    assert any("shadowed by the built-in 'an'" in r for r in rows), rows
    with pytest.raises(InputError, match="the method 'broken' registered by broken-plugin 1.2 \\(entry point "
                                         "'plug_absent.sub:Method' in group plbench.methods\\) cannot be loaded: "
                                         "ModuleNotFoundError.*Fix: reinstall or upgrade that package"):
        resolve_method("broken")
