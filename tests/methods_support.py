"""Fixed inputs shared by the method parity tests (tests/test_methods_*.py).

The reference numbers in those tests were computed by running the authors' code (commits named in
each test) on exactly these inputs in float64, in a scratch folder outside this repository.
"""

from __future__ import annotations

import torch

# (B, C) = (4, 5) logits; one observed positive per row (single-positive setting)
LOGITS = [[2.1, -0.7, 0.3, -2.4, 1.2], [-1.5, 0.9, -0.2, 3.0, -3.3],
          [0.4, -2.8, 1.7, -0.9, 0.05], [-0.6, 1.4, -1.1, 2.6, -1.9]]
# ROLE label-estimate logits of the same 4 images
EST = [[1.3, 0.2, -0.5, 0.8, -1.1], [-0.3, -1.7, 0.6, 2.2, 0.1],
       [0.9, -0.4, 1.5, -2.0, 0.7], [-1.2, 0.5, 0.3, -0.8, 1.9]]
POS_COL = [0, 3, 2, 1]


def spl_targets() -> torch.Tensor:
    """float64 (4, 5): 1 at POS_COL, -1 (unannotated) elsewhere."""
    t = torch.full((4, 5), -1.0, dtype=torch.float64)
    for i, c in enumerate(POS_COL):
        t[i, c] = 1.0
    return t


def value_and_grads(fn, *leaves):
    """(float value, [grad tensors]) of fn applied to float64 leaf tensors built from ``leaves``."""
    xs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in leaves]
    value = fn(*xs)
    value.backward()
    return float(value.detach()), [x.grad for x in xs]


def assert_parity(got, value, grads, atol=1e-12):
    """Compare value_and_grads output with reference numbers; returns (value diff, max grad diff)."""
    v, gs = got
    dv = abs(v - value)
    dg = max(float((g - torch.tensor(r, dtype=torch.float64)).abs().max()) for g, r in zip(gs, grads))
    assert dv <= atol and dg <= atol, f"value diff {dv:.3g}, max grad diff {dg:.3g} (atol {atol})"
    return dv, dg
