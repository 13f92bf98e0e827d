"""The compact-form L-BFGS follows torch.optim.LBFGS iterate for iterate, and the faster form is
chosen by size."""

import pytest
import torch

from reversenet_utils import lbfgs
from reversenet_utils.lbfgs import CompactLBFGS, TwoLoopLBFGS, make_lbfgs


def _problem(seed: int = 0, n: int = 40, dtype: torch.dtype = torch.float64):
    """A smooth non-convex least-squares problem in ``n`` unknowns, and its closure."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(60, n, generator=g, dtype=dtype), torch.randn(60, generator=g, dtype=dtype)
    x = torch.zeros(n, dtype=dtype, requires_grad=True)

    def closure() -> torch.Tensor:
        x.grad = None
        value = (torch.tanh(a @ x) - 0.5 * b).pow(2).sum()
        value.backward()
        return value

    return x, closure


@pytest.mark.parametrize("history", [100, 3])  # 3: the ring of pairs wraps round many times
def test_compact_form_follows_torch_lbfgs(history):
    """Same iterates as torch's two-loop recursion (to rounding), over calls that resume where the
    last stopped."""
    x1, c1 = _problem()
    x2, c2 = _problem()
    torch_form, compact = (
        TwoLoopLBFGS(x1, history, max_eval=75),
        CompactLBFGS(x2, history, max_eval=75),
    )
    for chunk in (1, 4, 15, 40):
        torch_form.step(c1, chunk)
        compact.step(c2, chunk)
        assert compact.n_iter == torch_form.n_iter
        assert torch.allclose(x1, x2, rtol=0, atol=1e-9), (x1 - x2).abs().max()
    assert c2().item() < 0.5 * _problem()[1]().item()  # and it descended


def test_compact_form_in_float32_follows_torch_lbfgs():
    """In float32 the pairs' inner products are solved in float64; the iterates stay near the
    recursion's."""
    x1, c1 = _problem(dtype=torch.float32)
    x2, c2 = _problem(dtype=torch.float32)
    TwoLoopLBFGS(x1, 10, max_eval=20).step(c1, 12)
    CompactLBFGS(x2, 10, max_eval=20).step(c2, 12)
    assert torch.allclose(x1, x2, rtol=0, atol=1e-4), (x1 - x2).abs().max()


def test_stops_at_a_stationary_point_and_on_its_evaluation_budget():
    x = torch.zeros(5, dtype=torch.float64, requires_grad=True)

    def flat() -> torch.Tensor:  # a loss that does not depend on x: no gradient, nothing to do
        x.grad = None
        value = torch.ones((), requires_grad=True) * 2.0
        value.backward()
        return value

    opt = CompactLBFGS(x, 5, max_eval=10)
    opt.step(flat, 10)
    assert opt.n_iter == 0 and torch.equal(x, torch.zeros(5, dtype=torch.float64))
    y, closure = _problem()
    budget = CompactLBFGS(y, 5, max_eval=3)
    budget.step(closure, 50)
    assert 1 <= budget.n_iter < 50  # out of evaluations before out of iterations


def test_make_lbfgs_chooses_the_form_by_the_size_of_the_pairs(monkeypatch):
    small = torch.zeros(100, requires_grad=True)
    assert isinstance(make_lbfgs(small, 10, 10), CompactLBFGS)
    monkeypatch.setattr(lbfgs, "COMPACT_MAX_BYTES", 2 * 10 * 100 * 4 - 1)  # one byte short
    assert isinstance(make_lbfgs(small, 10, 10), TwoLoopLBFGS)


@pytest.mark.parametrize(
    "kwargs, message", [({"history": 0}, "history"), ({"max_eval": 1.5}, "max_eval")]
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CompactLBFGS(torch.zeros(3, requires_grad=True), **kwargs)


def test_param_must_be_a_trainable_float_tensor():
    with pytest.raises(TypeError, match="requires grad"):
        CompactLBFGS(torch.zeros(3))
    with pytest.raises(TypeError, match="floating-point"):
        CompactLBFGS(torch.zeros(3, dtype=torch.long))
