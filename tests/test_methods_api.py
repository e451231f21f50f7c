"""The method API (plbench.methods.api / registry / provenance / sync): today's losses as methods with
unchanged numbers, the hosts of the field's methods against their modules, declared needs, plug-in
imports and their errors, provenance, per-image state round trips, and the torchrun helpers (gloo)."""

from __future__ import annotations

import hashlib
import os
import sys
import textwrap

import pytest
import torch

import plbench
from plbench.errors import InputError
from plbench.losses import LOSSES, create_loss
from plbench.methods.api import REQUIRED, BatchInfo, Method, MethodContext, Needs, RunSupport, TrainingSetPass, \
    check_method_class, check_needs, resolve_method_mode
from plbench.methods.provenance import method_provenance
from plbench.heads import resolve_head
from plbench.methods.registry import METHODS, builtin_methods, create_method, resolve_method

N, C = 6, 5


def _targets(seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(-1, 2, (N, C), generator=g).to(torch.int8)
    t[:, 0] = 1  # every image has a positive (EPR, ROLE)
    return t


def _context(mode=None, prior=None, **kw):
    t = _targets()
    return MethodContext(targets=t, class_names=tuple(f"c{i}" for i in range(C)), mode=mode, prior=prior,
                         **{"seed": 0, "epochs": 4, "steps_per_epoch": 2, "dataset": "coco", **kw})


def _batch(rows, epoch=0):
    g = torch.Generator().manual_seed(epoch + 10)
    logits = torch.randn(len(rows), C, generator=g, dtype=torch.float64).float().requires_grad_()
    return logits, _targets()[rows], BatchInfo(torch.tensor(rows), epoch=epoch, step=epoch * 2)


def _f(t):
    return float(t.detach())


def _built(name, ctx, **options):
    m = create_method(name, options)
    m.setup(ctx)
    return m


# -- today's losses as methods ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_is_a_method_with_the_same_value_and_gradient(name):
    options = {"expected_num_pos": 2.0} if name == "epr" else {}
    has_modes = LOSSES[name].has_modes
    prior = torch.linspace(0.1, 0.9, C) if has_modes else None
    mode = "selective" if has_modes else None
    method = _built(name, _context(mode=mode, prior=prior), **options)
    assert type(method.criterion) is LOSSES[name]  # the loss itself, wrapped, not a copy
    reference = create_loss(name, **options, **({"mode": mode, "prior": prior} if has_modes else {}))
    for epoch in (0, 3):  # ll_r's rejection schedule starts at the second epoch
        method.on_epoch_start(epoch)
        reference.set_epoch(epoch)
        logits, targets, batch = _batch([0, 2, 3, 5], epoch)
        got = method.loss(logits, targets, batch)
        (g_got,) = torch.autograd.grad(got, logits)
        want = reference(logits, targets)
        (g_want,) = torch.autograd.grad(want, logits)
        assert float(got.detach()) == float(want.detach())
        assert torch.equal(g_got, g_want)
    assert method.reduction == LOSSES[name].reduction
    assert method.parameter_groups() == [] and method.state_dict() == {}


def test_loss_methods_declare_what_their_loss_class_declares():
    for name, cls in LOSSES.items():
        m = resolve_method(name)
        assert m.needs.mode == cls.has_modes and m.needs.prior == cls.has_modes
        assert m.default_mode == (cls.default_mode.value if cls.has_modes else None)
        assert m.options() == {k: (REQUIRED if v is __import__("inspect").Parameter.empty else v)
                               for k, v in cls.options().items()}
    assert resolve_method("pasl").default_mode == "selective" and resolve_method("asl").default_mode == "negative"
    assert resolve_method("epr").options() == {"expected_num_pos": None}  # None is refused by EPR itself


def test_builtin_names_cover_losses_and_the_fields_methods():
    names = set(builtin_methods())
    assert set(LOSSES) <= names
    assert {"role", "em", "em_apl", "ll_ct", "ll_cp", "hill", "splc", "gr_loss"} <= names
    assert len(names) >= 16


# -- hosts of the field's methods --------------------------------------------------------------------
def test_role_host_owns_the_estimator_at_ten_times_the_lr_and_saves_it():
    from plbench.methods.role import ROLE

    ctx = _context()
    m = _built("role", ctx)
    (group,) = m.parameter_groups()
    assert group["lr_mult"] == 10.0 and group["weight_decay"] == 0.0
    assert [p.shape for p in group["params"]] == [torch.Size([N, C])]
    ref = ROLE(ctx.targets, expected_num_pos=2.9, seed=0)  # coco's expected_num_pos
    logits, targets, batch = _batch([1, 4])
    assert _f(m.loss(logits, targets, batch)) == _f(ref(logits, targets, batch.indices))
    assert _built("role", ctx, lr_mult=3).parameter_groups()[0]["lr_mult"] == 3.0
    with pytest.raises(ValueError, match="expected_num_pos has no default for dataset 'synthetic'"):
        _built("role", _context(dataset="synthetic"))


def test_em_and_em_apl_refuse_a_dataset_without_author_settings_unless_named_or_given():
    from plbench.methods.entropy import APL_SETTINGS

    synthetic = _context(dataset="synthetic")
    with pytest.raises(ValueError, match=r"EM \+ APL has no settings for dataset 'synthetic' .*settings=coco.*"
                                         r"or give beta, neg_proportion, warmup_epoch"):
        _built("em_apl", synthetic, alpha=0.3)
    with pytest.raises(ValueError, match="EM has no settings for dataset 'synthetic'.*or give alpha"):
        _built("em", synthetic)
    with pytest.raises(ValueError, match="settings='mars' names no dataset"):
        _built("em", _context(), settings="mars")
    assert _built("em", synthetic, settings="voc").em.alpha == APL_SETTINGS["voc"].alpha
    assert _built("em", synthetic, alpha=0.05).em.alpha == 0.05
    assert _built("em", _context(dataset="cub")).em.alpha == APL_SETTINGS["cub"].alpha
    named = _built("em_apl", synthetic, settings="nuswide", warmup_epoch=2).apl.settings
    assert (named.alpha, named.beta, named.warmup_epoch, named.num_epochs) == (0.1, 0.2, 2, 4)
    given = _built("em_apl", synthetic, alpha=0.3, beta=0.4, neg_proportion=0.5, warmup_epoch=1).apl.settings
    assert (given.alpha, given.beta, given.neg_proportion, given.warmup_epoch) == (0.3, 0.4, 0.5, 1)


def test_em_apl_host_pseudo_labels_from_the_training_set_pass_after_warmup():
    from plbench.methods.entropy import APL_SETTINGS, EMAPL

    ctx = _context()
    m = _built("em_apl", ctx, warmup_epoch=2, neg_proportion=1.0)
    probs = torch.rand(N, C, generator=torch.Generator().manual_seed(3))
    calls = []

    def compute(augment):
        calls.append(augment)
        return probs

    m.on_epoch_end(0, TrainingSetPass(compute, N))  # epoch 1 of warm-up 2: not yet
    assert calls == [] and not m.apl.pseudo_mask.any()
    m.on_epoch_end(1, TrainingSetPass(compute, N))
    ref = EMAPL(ctx.targets, APL_SETTINGS["coco"].__class__(**{**APL_SETTINGS["coco"].__dict__, "num_epochs": 4,
                                                             "warmup_epoch": 2, "neg_proportion": 1.0}))
    ref.pseudo_label(probs, ctx.targets)
    assert calls == [False] and m.apl.pseudo_mask.any()
    assert torch.equal(m.apl.pseudo_mask, ref.pseudo_mask) and torch.equal(m.apl.pseudo_targets, ref.pseudo_targets)


def test_ll_cp_host_equals_the_module_and_writes_back_through_write_rows():
    from plbench.methods.large_loss import LargeLossPermanentCorrection

    ctx = _context()
    m = _built("ll_cp", ctx, delta_rel=0.2)
    ref = LargeLossPermanentCorrection(N, C, delta_rel=0.2)
    for epoch in (0, 1, 2):
        m.on_epoch_start(epoch)
        ref.set_epoch(epoch)
        logits, targets, batch = _batch([0, 3, 4], epoch)
        assert _f(m.loss(logits, targets, batch)) == _f(ref(logits, targets, batch.indices))
        assert torch.equal(m.ll.corrected, ref.corrected)
    assert m.ll.corrected.any()  # corrections were written (epochs 1 and 2)


def test_the_field_hosts_give_their_modules_numbers():
    from plbench.methods.grloss import GRLoss
    from plbench.methods.hill_splc import SPLC, Hill
    from plbench.methods.large_loss import LargeLossCorrection

    ctx = _context()
    logits, targets, batch = _batch([0, 1, 2, 5], epoch=2)
    for name, ref in (("hill", Hill()), ("splc", SPLC()), ("ll_ct", LargeLossCorrection()),
                      ("gr_loss", GRLoss(num_epochs=4))):
        m = _built(name, ctx)
        m.on_epoch_start(2)
        if hasattr(ref, "set_epoch"):
            ref.set_epoch(2)
        assert _f(m.loss(logits, targets, batch)) == _f(ref(logits, targets)), name
    assert resolve_method("hill").reduction == resolve_method("splc").reduction == "sum"


# -- per-image state --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["role", "em_apl", "ll_cp"])
def test_per_image_state_round_trips_through_a_weights_only_checkpoint(name, tmp_path):
    ctx = _context()
    options = {"warmup_epoch": 2} if name == "em_apl" else {}  # coco's warm-up (5) exceeds the 4 epochs
    m = _built(name, ctx, **options)
    m.on_epoch_start(1)
    logits, targets, batch = _batch([0, 2, 5], epoch=1)
    m.loss(logits, targets, batch).backward()
    with torch.no_grad():
        for p in m.parameters():
            p -= 0.5 * p.grad
    if name == "em_apl":
        m.apl.pseudo_mask[1, 2] = True
    torch.save({"method": m.state_dict()}, tmp_path / "last.pt")
    again = _built(name, ctx, **options)
    state = torch.load(tmp_path / "last.pt", weights_only=True)["method"]
    assert state and all(v.shape[0] == N for k, v in state.items() if v.ndim == 2)
    again.load_state_dict(state)
    for (k, a), (_, b) in zip(m.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    fresh = _built(name, ctx, **options).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in state.items())  # the state did change


# -- needs -----------------------------------------------------------------------------------------
class _Maps(Method):
    needs = Needs(spatial_maps=True)

    def loss(self, logits, targets, batch):
        return batch.maps.mean()


class _Prior(Method):
    needs = Needs(prior_required=True, mode=True)
    default_mode = "selective"

    def loss(self, logits, targets, batch):
        return logits.sum()


def test_check_needs_refuses_what_a_run_cannot_give_and_accepts_the_rest():
    an, pasl, apl = resolve_method("an"), resolve_method("pasl"), resolve_method("em_apl")
    check_needs(an, "an", RunSupport())
    check_needs(pasl, "pasl", RunSupport(mode="ignore", prior=True))
    check_needs(apl, "em_apl", RunSupport())
    check_needs(_Maps, "m", RunSupport(spatial_maps_missing=None))
    cases = [
        (pasl, RunSupport(), "--mode: method 'x' needs a partial-label mode"),
        (an, RunSupport(mode="ignore"), "--mode: method 'x' takes no partial-label mode, but got --mode ignore"),
        (an, RunSupport(prior=True), "--prior: method 'x' does not use a class prior"),
        (_Prior, RunSupport(mode="selective"), "--prior: method 'x' needs a class prior, but none was given"),
        (_Maps, RunSupport(spatial_maps_missing="pooled features"), "needs the head's spatial class maps, but "
         "this run has none \\(pooled features\\)"),
        (apl, RunSupport(train_pass_missing="no training images"), "needs a pass over the training set"),
    ]
    for cls, support, message in cases:
        with pytest.raises(InputError, match=message):
            check_needs(cls, "x", support)


def test_resolve_method_mode_gives_the_default_or_refuses():
    assert resolve_method_mode(resolve_method("pasl"), "pasl", None) == "selective"
    assert resolve_method_mode(resolve_method("asl"), "asl", "ignore") == "ignore"
    assert resolve_method_mode(resolve_method("role"), "role", None) is None
    with pytest.raises(ValueError, match="takes no partial-label mode"):
        resolve_method_mode(resolve_method("role"), "role", "ignore")
    with pytest.raises(ValueError, match="expected a mode in"):
        resolve_method_mode(resolve_method("pasl"), "pasl", "sometimes")


# -- malformed methods, imports ---------------------------------------------------------------------
class _NoLoss(Method):
    pass


class _BadAttrs(Method):
    reduction = "max"
    lr_mult = -1.0
    needs = {"mode": True}
    default_mode = "always"

    def loss(self, logits, targets, batch):
        return logits.sum()


def test_malformed_methods_are_refused_naming_the_fault():
    with pytest.raises(InputError, match="'x' is a int, not a subclass of plbench.methods.api.Method"):
        check_method_class(3, "x")
    with pytest.raises(InputError, match="'x' is the class dict, not a subclass"):
        check_method_class(dict, "x")
    with pytest.raises(InputError, match="does not implement loss"):
        check_method_class(_NoLoss, "x")
    with pytest.raises(InputError) as e:
        check_method_class(_BadAttrs, "x")
    for part in ("needs is a dict", "reduction is 'max'", "lr_mult is -1.0", "default_mode: expected a mode"):
        assert part in e.value.problem


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path where tests write plug-in modules (removed from sys.modules afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("plug_"):
            del sys.modules[name]


GOOD = '''
import torch.nn.functional as F
from plbench.methods.api import Method

class Plain(Method):
    """Assume-negative BCE, written outside plbench."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def loss(self, logits, targets, batch):
        return self.weight * F.binary_cross_entropy_with_logits(logits, (targets == 1).float())
'''


def test_module_colon_name_imports_a_method_from_any_importable_module(plugin_dir):
    (plugin_dir / "plug_good.py").write_text(GOOD)
    cls = resolve_method("plug_good:Plain")
    assert cls.__name__ == "Plain" and cls.one_line() == "Assume-negative BCE, written outside plbench."
    m = create_method("plug_good:Plain", {"weight": 2.0})
    logits, targets, batch = _batch([0, 1])
    want = 2.0 * torch.nn.functional.binary_cross_entropy_with_logits(logits, (targets == 1).float())
    assert _f(m(logits, targets, batch)) == _f(want)
    assert "plug_good:Plain" not in METHODS  # imports do not register


@pytest.mark.parametrize("source, spec, message", [
    (None, "plug_missing:Plain", "cannot import module 'plug_missing' of method 'plug_missing:Plain'.*Fix: install "
     "the package that provides it.*PYTHONPATH"),
    ("import plug_not_there\n", "plug_dep:Plain", "cannot import module 'plug_dep'.*it imports 'plug_not_there', "
     "which is missing"),
    ("raise RuntimeError('boom at import')\n", "plug_raises:Plain", "importing module 'plug_raises' of method "
     "'plug_raises:Plain' raised RuntimeError: boom at import.*Fix: fix the error in plug_raises"),
    (GOOD, "plug_attr:Plane", "module 'plug_attr' has no attribute 'Plane'; it defines: Plain"),
    ("x = 3\n", "plug_notcls:x", "'plug_notcls:x' is a int, not a subclass"),
    (None, "plug bad:Name", "expected a method as package.module:Name, but got 'plug bad:Name'"),
    (None, "nonesuch", "unknown method 'nonesuch'; available: an, an_ls, asl"),
])
def test_unimportable_or_malformed_plugins_are_input_errors(plugin_dir, source, spec, message):
    if source is not None:
        (plugin_dir / f"{spec.split(':')[0]}.py").write_text(source)
    with pytest.raises(InputError, match=message) as e:
        resolve_method(spec)
    assert e.value.field == "--method"


def test_bad_options_are_input_errors_listing_the_options():
    with pytest.raises(InputError, match="method 'hill' does not take gamma_neg; it takes: lamb=1.5, margin=1.0, "
                                         "gamma=2.0"):
        create_method("hill", {"gamma_neg": 4})
    with pytest.raises(InputError, match="method 'epr' refuses its options: .*expected_num_pos"):
        create_method("epr")

    class Needy(Method):
        def __init__(self, k: int):
            super().__init__()

        def loss(self, logits, targets, batch):
            return logits.sum()

    assert Needy.options() == {"k": REQUIRED}
    with pytest.raises(InputError, match="method 'Needy' needs k.*--loss-option k=VALUE"):
        create_method(Needy)
    with pytest.raises(InputError, match="method 'll_ct' refuses its options: expected delta_rel in \\[0, 1\\]"):
        create_method("ll_ct", {"delta_rel": 2.0})


def test_heads_resolve_like_methods(plugin_dir):
    from plbench.heads import GAPHead
    from plbench.heads.boostlu import BoostLUHead

    assert resolve_head("gap") is GAPHead and resolve_head("boostlu") is BoostLUHead
    (plugin_dir / "plug_head.py").write_text("from torch import nn\nHead = nn.Linear\nnot_callable = 3\n")
    assert resolve_head("plug_head:Head") is torch.nn.Linear
    with pytest.raises(InputError, match="unknown head 'nope'; available: boostlu, gap, ml-decoder"):
        resolve_head("nope")
    with pytest.raises(InputError, match="head 'plug_head:not_callable' is a int, not a callable"):
        resolve_head("plug_head:not_callable")


# -- provenance ------------------------------------------------------------------------------------
def test_provenance_names_import_path_version_and_source_hash(plugin_dir):
    rec = method_provenance(resolve_method("role"), "role")
    import plbench.methods.builtin as builtin

    assert rec["import_path"] == "plbench.methods.builtin:RoleMethod"
    assert (rec["package"], rec["version"]) == ("plbench", plbench.__version__)
    assert rec["source_sha256"] == hashlib.sha256(open(builtin.__file__, "rb").read()).hexdigest()
    pasl = method_provenance(resolve_method("pasl"), "pasl")
    assert pasl["wraps"]["import_path"] == "plbench.losses.modules:PartialAsymmetricLoss"

    path = plugin_dir / "plug_versions.py"
    path.write_text(GOOD)
    first = method_provenance(resolve_method("plug_versions:Plain"), "plug_versions:Plain")
    assert (first["package"], first["version"]) == (None, None)  # on sys.path, not installed
    assert first["source_file"] == str(path.resolve())
    assert first["source_sha256"] == hashlib.sha256(GOOD.encode()).hexdigest()
    del sys.modules["plug_versions"]
    path.write_text(GOOD.replace("weight: float = 1.0", "weight: float = 0.5"))
    os.utime(path, ns=(1, 1))  # another mtime as well as other bytes
    second = method_provenance(resolve_method("plug_versions:Plain"), "plug_versions:Plain")
    assert second["source_sha256"] != first["source_sha256"]


# -- the training-set pass --------------------------------------------------------------------------
def test_training_set_pass_computes_once_per_transform_and_checks_its_shape():
    calls = []

    def compute(augment):
        calls.append(augment)
        return torch.full((N, C), 0.5, dtype=torch.float64)

    p = TrainingSetPass(compute, N)
    assert p.probabilities().dtype == torch.float32 and torch.equal(p.logits(), torch.zeros(N, C))
    p.probabilities(augment=True)
    p.probabilities()
    assert calls == [False, True]
    with pytest.raises(ValueError, match=r"expected training-set scores of shape \(7, C\), but got \(6, 5\)"):
        TrainingSetPass(compute, 7).probabilities()


# -- torchrun helpers (gloo, 2 processes) -----------------------------------------------------------
SYNC_WORKER = textwrap.dedent('''
    import sys, torch, torch.distributed as dist
    from torch import nn
    from plbench.methods import sync
    rank, init, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    res = {}
    # unequal batch sizes: rank 0 writes rows 1 and 4, rank 1 writes row 2
    idx = torch.tensor([1, 4]) if rank == 0 else torch.tensor([2])
    rows = torch.tensor([[True, False], [False, True]]) if rank == 0 else torch.tensor([[True, True]])
    state = torch.zeros(6, 2, dtype=torch.bool)
    sync.write_rows(state, idx, rows)
    res["state"] = state
    # gradients: rank 0 has (2, 4), rank 1 (6, 8) for p; q has a gradient on rank 1 only; r on neither
    p, q, r = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    p.grad = torch.tensor([2.0, 4.0]) if rank == 0 else torch.tensor([6.0, 8.0])
    if rank == 1:
        q.grad = torch.tensor([1.0, -3.0])
    sync.average_gradients([p, q, r])
    res["p"], res["q"], res["r"] = p.grad, q.grad, r.grad
    scores = torch.tensor([[0.5, 1.5]]) * (rank + 1)
    res["scores"] = sync.gather_scores(torch.tensor([rank * 2]), scores, 4)
    same = nn.Module(); same.register_buffer("s", torch.arange(4.0))
    sync.check_replicas(same)
    other = nn.Module(); other.register_buffer("s", torch.arange(4.0) + rank)
    try:
        sync.check_replicas(other)
        res["diverged"] = None
    except RuntimeError as e:
        res["diverged"] = str(e)
    torch.save(res, out)
    dist.barrier()  # both processes done with every collective before the group goes
    dist.destroy_process_group()
''')


@pytest.mark.slow
def test_sync_helpers_under_two_gloo_processes(tmp_path):
    import subprocess

    script = tmp_path / "worker.py"
    script.write_text(SYNC_WORKER)
    init = f"file://{tmp_path / 'rendezvous'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), init, str(tmp_path / f"r{r}.pt")], env=env,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    results = [torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in (0, 1)]
    want_state = torch.zeros(6, 2, dtype=torch.bool)
    want_state[1] = torch.tensor([True, False])
    want_state[4] = torch.tensor([False, True])
    want_state[2] = True
    want_scores = torch.full((4, 2), float("nan"))
    want_scores[0] = torch.tensor([0.5, 1.5])
    want_scores[2] = torch.tensor([1.0, 3.0])
    for res in results:  # identical on both processes
        assert torch.equal(res["state"], want_state)
        assert torch.equal(res["p"], torch.tensor([4.0, 6.0]))
        assert torch.equal(res["q"], torch.tensor([0.5, -1.5]))  # the missing gradient counts as zero
        assert res["r"] is None
        assert torch.equal(res["scores"].isnan(), want_scores.isnan())
        assert torch.equal(res["scores"].nan_to_num(-1), want_scores.nan_to_num(-1))
        assert "state differs between torchrun processes (s)" in res["diverged"]


def test_sync_helpers_are_plain_writes_in_one_process():
    from plbench.methods import sync

    state = torch.zeros(4, 2)
    sync.write_rows(state, torch.tensor([3, 0]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert torch.equal(state, torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"expected indices \(B,\) and rows \(B, ...\), but got \(2,\) and \(1, 2\)"):
        sync.gather_rows(torch.tensor([0, 1]), torch.zeros(1, 2))
