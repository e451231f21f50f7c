import pytest
import torch

from plbench.engine.schedule import one_cycle_lr


@pytest.mark.parametrize("total,warm", [(100, 0.2), (37, 0.3), (10, 0.2)])
def test_one_cycle_matches_torch(total, warm):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total, pct_start=warm)
    for step in range(total):
        assert one_cycle_lr(step, total, 0.1, warm) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        sched.step()


def test_one_cycle_shape():
    lrs = [one_cycle_lr(s, 50, 1.0) for s in range(50)]
    assert lrs[0] == pytest.approx(1 / 25)
    assert max(lrs) == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(1 / 25 / 1e4)


def _torch_one_cycle(total: int, peak: float, warm: float) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=peak)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=total, pct_start=warm)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_one_cycle_is_torchs_bit_for_bit_on_a_csl_length_run():
    # the CSL recipe: Adam 2e-4, pct_start 0.2, stepped every batch; 5000 steps (a COCO run has 38,490)
    expected = _torch_one_cycle(5000, 2e-4, 0.2)
    assert [one_cycle_lr(s, 5000, 2e-4, 0.2) for s in range(5000)] == expected


def test_one_cycle_differs_from_torch_only_on_runs_too_short_to_warm_up():
    # pct_start * total < 2: torch's warm-up ends before step 1, ours lasts one step
    ours, theirs = [one_cycle_lr(s, 7, 2e-4, 0.2) for s in range(7)], _torch_one_cycle(7, 2e-4, 0.2)
    assert ours[0] == theirs[0] == pytest.approx(2e-4 / 25)
    assert ours[1] == pytest.approx(2e-4) and theirs[1] < 0.99 * 2e-4  # torch never reaches the peak after step 0
    assert one_cycle_lr(0, 1, 2e-4) == 2e-4 and _torch_one_cycle(1, 2e-4, 0.2)[0] == pytest.approx(2e-4 / 25 / 1e4)
    assert [one_cycle_lr(s, 10, 2e-4, 0.2) for s in range(10)] == pytest.approx(_torch_one_cycle(10, 2e-4, 0.2),
                                                                               rel=1e-12)
