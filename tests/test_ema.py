"""Model EMA against hand-computed two-step updates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plbench.engine.ema import CSL_EMA_DECAY, ModelEma


def _net(value: float, batches: int = 0) -> nn.Sequential:
    """Linear(2, 1) + BatchNorm1d(1) in float64 with every floating entry set to ``value``."""
    net = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1)).double()
    _set(net, value, batches)
    return net


def _set(net: nn.Module, value: float, batches: int) -> None:
    with torch.no_grad():
        for v in net.state_dict().values():
            v.fill_(value if v.is_floating_point() else batches)


def _floats(ema: ModelEma) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ema.module.state_dict().items() if v.is_floating_point()}


def test_two_steps_by_hand_decay_half():
    model = _net(1.0)
    ema = ModelEma(model, decay=0.5)
    _set(model, 3.0, batches=4)
    ema.update(model)  # 0.5 * 1 + 0.5 * 3 = 2
    _set(model, 7.0, batches=9)
    ema.update(model)  # 0.5 * 2 + 0.5 * 7 = 4.5
    floats = _floats(ema)
    assert set(floats) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"}
    for k, v in floats.items():
        assert torch.equal(v, torch.full_like(v, 4.5)), k  # parameters and BatchNorm buffers alike
    assert int(ema.module.state_dict()["1.num_batches_tracked"]) == 9  # integer buffer copied
    assert ema.updates == 2


def test_two_steps_by_hand_csl_decay():
    model = _net(1.0)
    ema = ModelEma(model)
    assert ema.decay == CSL_EMA_DECAY == 0.9997
    _set(model, 3.0, 1)
    ema.update(model)  # 0.9997 * 1 + 0.0003 * 3 = 1.0006
    _set(model, 7.0, 2)
    ema.update(model)  # 0.9997 * 1.0006 + 0.0003 * 7 = 1.00029982 + 0.0021 = 1.00239982
    for k, v in _floats(ema).items():
        assert torch.allclose(v, torch.full_like(v, 1.00239982), rtol=0, atol=1e-12), (k, v)


def test_copy_is_independent_eval_and_frozen():
    model = _net(1.0)
    model.train()
    ema = ModelEma(model, decay=0.5)
    assert not ema.module.training and model.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    _set(model, 5.0, 1)  # changing the model does not reach the copy until update()
    assert torch.equal(ema.module[0].weight, torch.ones(1, 2, dtype=torch.float64))
    ema.update(model)
    assert torch.equal(model[0].weight, torch.full((1, 2), 5.0, dtype=torch.float64))  # model untouched


def test_state_dict_round_trip():
    model = _net(1.0)
    ema = ModelEma(model, decay=0.5)
    _set(model, 3.0, 6)
    ema.update(model)
    saved = ema.state_dict()
    assert saved["decay"] == 0.5 and saved["updates"] == 1

    other = ModelEma(_net(-1.0), decay=0.5)
    module = other.module
    other.load_state_dict(saved)
    assert other.module is module and other.updates == 1
    for k, v in ema.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[k], v), k
    _set(model, 7.0, 7)
    other.update(model)  # continues from the restored average: 0.5 * 2 + 0.5 * 7
    assert torch.equal(other.module[1].running_var, torch.full((1,), 4.5, dtype=torch.float64))

    with pytest.raises(ValueError, match="decay 0.9"):
        ModelEma(_net(0.0), decay=0.9).load_state_dict(saved)
    with pytest.raises(RuntimeError):
        ModelEma(nn.Linear(3, 1), decay=0.5).load_state_dict(saved)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1, 1.5])
def test_decay_outside_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="expected an EMA decay in \\(0, 1\\)"):
        ModelEma(nn.Linear(2, 1), decay=decay)


def test_float32_model_tracks_the_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = ModelEma(model, decay=0.9)
    reference = {k: v.clone().double() for k, v in model.state_dict().items() if v.is_floating_point()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        model(torch.randn(2, 3, 5, 5)).square().mean().backward()  # also moves the BatchNorm statistics
        opt.step()
        opt.zero_grad()
        ema.update(model)
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                reference[k] = 0.9 * reference[k] + 0.1 * v.double()
    for k, v in _floats(ema).items():
        assert torch.allclose(v.double(), reference[k], atol=1e-6), k
    assert int(ema.module[1].num_batches_tracked) == 3


def _adam_run(steps: int, *emas_of):
    """A small conv net with BatchNorm trained by Adam; after each step every EMA is updated and a float64
    average of the same formula is kept beside them. Returns (exact float64 average, EMAs)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    emas = [make(model) for make in emas_of]
    exact = {k: v.double().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        model(torch.randn(4, 3, 6, 6)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        for e in emas:
            e.update(model)
        state = model.state_dict()
        for k in exact:
            exact[k].mul_(CSL_EMA_DECAY).add_(state[k].double(), alpha=1 - CSL_EMA_DECAY)
    return exact, emas


def _max_error(module: nn.Module, exact: dict[str, torch.Tensor]) -> float:
    state = module.state_dict()
    return max((state[k].double() - exact[k]).abs().max().item() for k in exact)


def test_parity_with_timm_model_ema_v3_and_the_csl_authors_arithmetic():
    from timm.utils import ModelEmaV2, ModelEmaV3

    exact, (ours, v3, v2) = _adam_run(
        300, lambda m: ModelEma(m), lambda m: ModelEmaV3(m, decay=CSL_EMA_DECAY),
        lambda m: ModelEmaV2(m, decay=CSL_EMA_DECAY))  # V2 = the CSL authors' ModelEma arithmetic
    for k, v in ours.module.state_dict().items():  # timm's V3 is the arithmetic, bit for bit
        assert torch.equal(v, v3.module.state_dict()[k]), k
    # both are the EMA of the definition up to float32 rounding; lerp (V3) rounds less than the authors'
    # decay * ema + (1 - decay) * model (here 5.2e-7 vs 3.3e-6; 1.5e-6 vs 1.7e-5 after 3000 steps of a larger net)
    ours_err, authors_err = _max_error(ours.module, exact), _max_error(v2.module, exact)
    assert ours_err < 1e-6 and 2 * ours_err < authors_err < 1e-5, (ours_err, authors_err)
    assert int(ours.module[1].num_batches_tracked) == 300  # copied; V2 averages it down to 0
    assert int(v2.module[1].num_batches_tracked) == 0
