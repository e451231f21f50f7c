"""Methods through the engine and ``plbench train``: kill-and-resume equality for methods with per-image state
(ROLE: a learnable N x C parameter; EM + APL: epoch-end pseudo-labels), the method's learning-rate multiplier,
the example plug-in from ``module:Name`` and from its installed entry point, and refusals before any write."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from faults_support import expect_user_error, invoke, simulation_file, synthetic_root
from plbench.artifacts.runs import RunFolder
from plbench.config import TrainConfig
from plbench.engine import method_run
from plbench.engine import train as engine
from plbench.engine.train import TrainingInterrupted, train
from plugin_support import EXAMPLE, install_example

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def forget_plugins():
    """Each test imports the plug-in from where it puts it (a folder on sys.path or an installed copy)."""
    yield
    for name in [n for n in sys.modules if n.startswith(("plbench_example_method", "plug_"))]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("methods") / "synthetic", train=24, val=12, classes=4, seed=5)


@pytest.fixture(scope="module")
def spl(tiny):
    """Single-positive training labels of ``tiny`` (one observed positive per image, the rest unannotated)."""
    return str(simulation_file(tiny, tiny.parent / "spl.parquet"))


def _config(root, out, **kw):
    base = dict(dataset="synthetic", data_root=str(root), backbone="resnet10t", head="gap", image_size=32,
                batch_size=8, epochs=3, lr=1e-3, seed=3, device="cpu", preload=True, out_dir=str(out), mode=None)
    base.update(kw)
    return TrainConfig(**base)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _interrupted_then_resumed(cfg, monkeypatch, after_steps):
    checks = {"n": 0}

    def stop(self, device):
        checks["n"] += 1
        return checks["n"] == after_steps

    with monkeypatch.context() as m:
        m.setattr(engine.InterruptFlag, "is_set", stop)
        with pytest.raises(TrainingInterrupted):
            train(cfg, progress=False)
    state = RunFolder(next(p for p in Path(cfg.out_dir).iterdir())).load_checkpoint("last")
    return state, train(cfg, progress=False)


#: (method, options, stop_at): runs of 3 epochs of 3 steps each, stopped inside epoch 2
RESUMED = [
    ("role", {"expected_num_pos": 1.5}, 4),  # after epoch 2's first step
    ("em_apl", {"warmup_epoch": 1, "settings": "coco"}, 5),  # pseudo-labels written after epoch 1; stopped inside epoch 2
]


@pytest.mark.parametrize("method, options, stop_at", RESUMED)
def test_kill_and_resume_equals_uninterrupted(tiny, spl, tmp_path, monkeypatch, method, options, stop_at):
    full = train(_config(tiny, tmp_path / "full", method=method, loss_options=options, simulation=spl),
                 progress=False)
    cfg = _config(tiny, tmp_path / "cut", method=method, loss_options=options, simulation=spl)
    state, resumed = _interrupted_then_resumed(cfg, monkeypatch, stop_at)
    assert state["partial"]["batches_done"] == stop_at - 3
    saved = state["extra"]["method"]
    if method == "role":
        assert saved["role.estimator.logits"].shape == (24, 4)
    else:
        assert saved["apl.pseudo_mask"].any()  # the epoch-end pseudo-labels travel in last.pt
    assert all(torch.equal(a, b) for a, b in zip(_weights(full.model).values(), _weights(resumed.model).values()))
    for key in ("val_map", "ap_per_class", "best_val_map"):
        assert full.summary[key] == resumed.summary[key], key
    last_full = RunFolder(full.run_dir).load_checkpoint("last")["extra"]["method"]
    last_resumed = RunFolder(resumed.run_dir).load_checkpoint("last")["extra"]["method"]
    assert all(torch.equal(last_full[k], last_resumed[k]) for k in last_full)


@pytest.mark.parametrize("method, options, stop_at", RESUMED)
def test_resume_without_the_method_state_would_differ(tiny, spl, tmp_path, monkeypatch, method, options, stop_at):
    """The control of the resume test: dropping the method's saved state on resume (ROLE's estimates, EM + APL's
    pseudo-labels) changes the result, so the equality above rests on that state."""
    full = train(_config(tiny, tmp_path / "full", method=method, loss_options=options, simulation=spl),
                 progress=False)
    monkeypatch.setattr(method_run.MethodTrainer, "load_extra_state", lambda self, state: None)
    state, resumed = _interrupted_then_resumed(
        _config(tiny, tmp_path / "cut", method=method, loss_options=options, simulation=spl), monkeypatch, stop_at)
    saved = state["extra"]["method"]
    assert any(v.any() for v in saved.values())  # there was state to drop
    assert any(not torch.equal(a, b) for a, b in zip(_weights(full.model).values(), _weights(resumed.model).values()))
    last_full = RunFolder(full.run_dir).load_checkpoint("last")["extra"]["method"]
    last_resumed = RunFolder(resumed.run_dir).load_checkpoint("last")["extra"]["method"]
    assert any(not torch.equal(last_full[k], last_resumed[k]) for k in last_full)  # and so does the final state


def test_role_estimates_train_at_ten_times_the_learning_rate(tiny, tmp_path):
    result = train(_config(tiny, tmp_path, method="role", loss_options={"expected_num_pos": 1.5}), progress=False)
    state = RunFolder(result.run_dir).load_checkpoint("last")
    groups = state["optimizer"]["param_groups"]
    assert [g.get("lr_mult", 1.0) for g in groups] == [1.0, 1.0, 10.0]
    assert groups[2]["lr"] == pytest.approx(10 * groups[0]["lr"], rel=1e-12) and groups[0]["lr"] > 0
    assert groups[2]["weight_decay"] == 0.0
    assert result.summary["loss"] == "role" and result.summary["method"]["import_path"] == \
        "plbench.methods.builtin:RoleMethod"


def test_a_loss_given_as_method_trains_as_the_loss(tiny, tmp_path):
    a = train(_config(tiny, tmp_path / "a", loss="an", epochs=1), progress=False)
    b = train(_config(tiny, tmp_path / "b", method="an", epochs=1), progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a.model).values(), _weights(b.model).values()))
    assert a.summary["loss"] == b.summary["loss"] == "an"
    assert a.summary["method"]["wraps"]["import_path"] == "plbench.losses.modules:AssumeNegativeLoss"


def _cli_args(tiny, out, *extra):
    return ["train", "--dataset", "synthetic", "--data-root", tiny, "--backbone", "resnet10t", "--image-size", "32",
            "--batch-size", "8", "--epochs", "2", "--lr", "1e-3", "--device", "cpu", "--preload", "--out", out, *extra]


def test_the_example_plugin_trains_from_module_colon_name(tiny, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    result = invoke(_cli_args(tiny, tmp_path, "--method", "plbench_example_method:SoftTargets",
                              "--loss-option", "momentum=0.5"))
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.iterdir()
    assert "-plbench_example_method.SoftTargets-" in run.name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["loss"] == "SoftTargets"
    rec = summary["method"]
    assert rec["import_path"] == "plbench_example_method:SoftTargets" and rec["package"] is None
    running = RunFolder(run).load_checkpoint("last")["extra"]["method"]["running"]
    assert running.shape == (24, 4) and (running > 0).all()  # every image's running mean was written


def test_the_installed_plugin_trains_by_its_entry_point_name(tiny, tmp_path, tmp_path_factory, monkeypatch):
    site = install_example(tmp_path_factory.mktemp("site"))
    monkeypatch.syspath_prepend(str(site))
    result = invoke(_cli_args(tiny, tmp_path / "runs", "--method", "soft_targets"))
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    rec = json.loads((run / "summary.json").read_text())["method"]
    assert (rec["spec"], rec["package"], rec["version"]) == ("soft_targets", "plbench-example-method", "0.1.0")
    assert rec["source_file"].startswith(str(site))


def test_refusals_come_before_anything_is_written(tiny, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    expect_user_error(_cli_args(tiny, out, "--method", "nonesuch"), ["unknown method 'nonesuch'"], [out])
    expect_user_error(_cli_args(tiny, out, "--method", "role", "--mode", "ignore"),
                      ["method 'role' takes no partial-label mode"], [out])
    expect_user_error(_cli_args(tiny, out, "--method", "role"),
                      ["method 'role' cannot run on this training set: expected_num_pos has no default for dataset "
                       "'synthetic'"], [out])
    expect_user_error(_cli_args(tiny, out, "--method", "hill", "--loss-option", "gamma_neg=4"),
                      ["method 'hill' does not take gamma_neg"], [out])
    (tmp_path / "plug_maps.py").write_text(
        "from plbench.methods.api import Method, Needs\n"
        "class Maps(Method):\n    needs = Needs(spatial_maps=True)\n"
        "    def loss(self, logits, targets, batch):\n        return batch.maps.mean()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    expect_user_error(_cli_args(tiny, out, "--method", "plug_maps:Maps"),
                      ["method 'plug_maps:Maps' needs the head's spatial class maps", "the gap head has no class_maps()"],
                      [out])


@pytest.mark.parametrize("spec, source, needles", [
    ("plug_absent_xyz:Thing", None, ["cannot import module 'plug_absent_xyz' of method 'plug_absent_xyz:Thing'",
                                     "PYTHONPATH"]),
    ("plug_needs_dep:Thing", "import plug_dependency_xyz\n",
     ["cannot import module 'plug_needs_dep'", "it imports 'plug_dependency_xyz', which is missing"]),
    ("plug_raises:Thing", "raise RuntimeError('broken at import')\n",
     ["importing module 'plug_raises' of method 'plug_raises:Thing' raised RuntimeError: broken at import",
      "fix the error in plug_raises"]),
    ("plug_attr:Missing", "from plbench.methods.api import Method\n\n\nclass Present(Method):\n"
                          "    def loss(self, logits, targets, batch):\n        return logits.mean()\n",
     ["module 'plug_attr' has no attribute 'Missing'; it defines: Present", "check the name after the colon"]),
    ("plug_object:thing", "thing = 42\n",
     ["'plug_object:thing' is a int, not a subclass of plbench.methods.api.Method", "subclass plbench.methods.api"]),
    ("plug_plain:Plain", "class Plain:\n    pass\n", ["'plug_plain:Plain' is the class Plain, not a subclass"]),
    ("plug_noloss:NoLoss", "from plbench.methods.api import Method\n\n\nclass NoLoss(Method):\n    pass\n",
     ["method 'plug_noloss:NoLoss' (NoLoss) does not implement loss()"]),
])
def test_a_method_by_module_name_that_cannot_be_used_exits_2_writing_nothing(tiny, tmp_path, monkeypatch, spec,
                                                                             source, needles):
    """``plbench train --method module:Name`` end to end: exit 2, the message names what failed and the fix,
    no traceback, neither the output folder nor the data root touched."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    if source is not None:
        (plugins / f"{spec.split(':')[0]}.py").write_text(source)
    monkeypatch.syspath_prepend(str(plugins))
    out = tmp_path / "runs"
    expect_user_error(_cli_args(tiny, out, "--method", spec), ["--method", *needles], [out, tiny])


MAPS_PLUGIN = '''
import torch
import torch.nn.functional as F
from plbench.methods.api import Method, Needs

SEEN = []  # per step: maps shape, batch size, whether the maps' mean is the step's logits


class Maps(Method):
    """Records the class maps each step is given."""

    needs = Needs(spatial_maps=True)

    def loss(self, logits, targets, batch):
        pooled = batch.maps.flatten(2).mean(2)  # BoostLU's logits are the mean of its (boosted) maps
        SEEN.append((tuple(batch.maps.shape), int(batch.indices.shape[0]),
                     bool(torch.allclose(pooled, logits, atol=1e-5)), batch.maps.requires_grad))
        return F.binary_cross_entropy_with_logits(logits, (targets == 1).float())
'''


@pytest.fixture
def maps_plugin(tmp_path, monkeypatch):
    """The module ``plug_maps_seen`` (:data:`MAPS_PLUGIN`) on sys.path; returns the list its method fills."""
    (tmp_path / "plug_maps_seen.py").write_text(MAPS_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import plug_maps_seen

    return plug_maps_seen.SEEN


def test_a_method_needing_maps_gets_the_heads_class_maps_in_a_fine_tuned_run(tiny, tmp_path, maps_plugin):
    # 64 px through resnet10t (stride 32): (B, 512, 2, 2) feature maps, so (B, C, 2, 2) class maps
    args = _cli_args(tiny, tmp_path / "runs", "--method", "plug_maps_seen:Maps", "--head", "boostlu")
    args[args.index("--image-size") + 1], args[args.index("--epochs") + 1] = "64", "1"
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert maps_plugin == [((8, 4, 2, 2), 8, True, True)] * 3  # 24 images, batches of 8; maps carry gradients


def test_a_method_needing_maps_gets_token_maps_from_a_tokens_feature_store(tiny, tmp_path, maps_plugin):
    import timm

    from plbench.engine.features import extract_split

    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    torch.save(timm.create_model("resnet10t", num_classes=0, global_pool="").state_dict(), weights)
    for split in ("train", "val"):  # 64 px: 2 x 2 = 4 tokens per image
        extract_split("synthetic", tiny, split, tmp_path / "features", backbone="resnet10t", image_size=64,
                      checkpoint=weights, batch_size=8, device="cpu", tokens=True)
    result = invoke(["train", "--dataset", "synthetic", "--data-root", tiny, "--features", tmp_path / "features",
                     "--checkpoint", weights, "--batch-size", "8", "--epochs", "1", "--device", "cpu",
                     "--method", "plug_maps_seen:Maps", "--head", "boostlu", "--out", tmp_path / "runs"])
    assert result.exit_code == 0, result.output
    assert maps_plugin == [((8, 4, 4), 8, True, True)] * 3  # (B, C, L) maps of the stored tokens
