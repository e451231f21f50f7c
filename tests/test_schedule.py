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
