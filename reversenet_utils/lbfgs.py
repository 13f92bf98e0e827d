"""L-BFGS whose search direction takes a handful of matrix products: the compact form of the
inverse Hessian.

``torch.optim.LBFGS`` finds the direction ``-H g`` by the two-loop recursion: two dot products and
two vector updates per stored pair, about 400 small kernels per iteration at a history of 100. For
the problems here (one batch of images, 10 000 to 50 000 unknowns) launching them costs more than
the arithmetic: on this project's 2-core CPU the recursion took 4.0 ms per iteration for 16 images
in float64, against 2 to 5 ms for the network's forward and backward pass. The compact
representation of Byrd, Nocedal & Schnabel (1994, "Representations of quasi-Newton matrices and
their use in limited memory methods", eq. 3.1 with ``H_0 = gamma I``) gives the same product from
the stored pairs ``S``, ``Y`` and their inner products::

    H g = gamma g + S p + gamma Y q,   q = -R^-1 S'g, p = R^-T ((D + gamma Y'Y) R^-1 S'g - gamma
    Y'g)

with ``R`` the upper triangle of ``S'Y`` (pairs in the order they were stored) and ``D`` its
diagonal: four matrix-vector products over the history and two triangular solves of its size, plus
three products to keep ``S'Y`` and ``Y'Y`` up to date. In exact arithmetic the direction is the
recursion's; in floating point the two round differently, so a long search lands on the same optimum
by another path (the last digits of a float-precision recovery, or another point of a plateau,
differ as they do between two CPUs).

Everything else follows ``torch.optim.LBFGS`` with ``line_search_fn="strong_wolfe"``: its line
search (``torch.optim.lbfgs._strong_wolfe``), the first step's length, the curvature test that skips
a pair (``y's <= 1e-10``), ``gamma = y's / y'y``, the budget of function evaluations per call, and
its stopping tests with zero tolerances (a zero gradient, no descent direction, a zero step).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lbfgs import _strong_wolfe

from .checks import whole_number

__all__ = ["CompactLBFGS", "TwoLoopLBFGS", "make_lbfgs", "COMPACT_MAX_BYTES"]

#: pairs with less curvature than this (``y's``) are not stored: torch's test
MIN_CURVATURE = 1e-10

#: the compact form reads the stored pairs about twice as often as the recursion (its products keep
#: ``S'Y`` and ``Y'Y``), so it wins where launching kernels costs more than reading memory: while
#: the pairs fit in the CPU's cache. Measured per direction on this project's 2-core CPU (32 MB of
#: L3), history 100: 8 images in float64 (10 MB of pairs) 2.24 -> 0.91 ms, 16 in float32 2.19 ->
#: 0.92, 32 in float32 (20 MB) 3.85 -> 2.49, 64 in float32 (40 MB) 4.55 -> 5.68 ms.
#: :func:`make_lbfgs` takes the compact form up to this many bytes of pairs.
COMPACT_MAX_BYTES = 24_000_000


def make_lbfgs(param: torch.Tensor, history: int, max_eval: int) -> CompactLBFGS | TwoLoopLBFGS:
    """The faster of the two forms for ``param``'s size (:data:`COMPACT_MAX_BYTES`); the same
    algorithm either way."""
    pairs = 2 * history * param.numel() * param.element_size()
    return (CompactLBFGS if pairs <= COMPACT_MAX_BYTES else TwoLoopLBFGS)(param, history, max_eval)


class CompactLBFGS:
    """L-BFGS with a strong Wolfe line search on one tensor ``param``, keeping the last ``history``
    pairs.

    ``step(closure, max_iter)`` runs at most ``max_iter`` iterations and may be called again to go
    on from where it stopped (as ``torch.optim.LBFGS.step``, each call evaluates the closure once
    more at its start and may use at most ``max_eval`` evaluations). ``closure`` zeroes
    ``param.grad``, computes the loss, calls ``backward`` and returns the loss. ``n_iter`` counts
    the iterations of all calls.
    """

    def __init__(self, param: torch.Tensor, history: int = 100, max_eval: int = 125) -> None:
        whole_number(history, "history")
        whole_number(max_eval, "max_eval")
        if (
            not isinstance(param, torch.Tensor)
            or not param.is_floating_point()
            or not param.requires_grad
        ):
            raise TypeError(
                "param must be a floating-point tensor that requires grad (the unknowns)"
            )
        self.param, self.history, self.max_eval = param, history, max_eval
        self.n_iter = 0
        n, like = param.numel(), dict(dtype=param.dtype, device=param.device)
        self._s, self._y = torch.zeros(history, n, **like), torch.zeros(history, n, **like)
        small = dict(dtype=torch.float64, device=param.device)
        self._sy, self._yy = (
            torch.zeros(history, history, **small),
            torch.zeros(history, history, **small),
        )
        self._slots: list[int] = []  # rows of the buffers, oldest pair first
        self._gamma = 1.0
        self._d = self._t = self._prev_grad = None

    def _evaluate(self, closure: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
        with torch.enable_grad():
            loss = float(closure().detach())
        grad = self.param.grad
        return loss, (torch.zeros_like(self.param) if grad is None else grad).reshape(-1).clone()

    def _store(self, s: torch.Tensor, y: torch.Tensor, ys: float) -> None:
        """Keep the pair ``(s, y)``, dropping the oldest when the history is full, and its inner
        products."""
        slot = self._slots.pop(0) if len(self._slots) == self.history else len(self._slots)
        self._s[slot], self._y[slot] = s, y
        self._slots.append(slot)
        used = max(self._slots) + 1
        self._sy[slot, :used] = (self._y[:used] @ s).double()  # s_slot . y_i
        self._sy[:used, slot] = (self._s[:used] @ y).double()  # s_i . y_slot
        self._yy[slot, :used] = self._yy[:used, slot] = (self._y[:used] @ y).double()
        self._sy[slot, slot] = ys
        self._gamma = ys / float(y.dot(y))

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        """``-H g`` by the compact form (``-gamma g`` while no pair is stored)."""
        if not self._slots:
            return grad.neg().mul_(self._gamma)
        used, order = max(self._slots) + 1, torch.tensor(self._slots, device=grad.device)
        s, y, gamma = self._s[:used], self._y[:used], self._gamma
        s_g, y_g = (s @ grad).double()[order], (y @ grad).double()[order]
        sy = self._sy[order][:, order]
        r = sy.triu()
        u = torch.linalg.solve_triangular(r, s_g[:, None], upper=True)
        inner = (
            sy.diagonal()[:, None] * u
            + gamma * (self._yy[order][:, order] @ u)
            - gamma * y_g[:, None]
        )
        p = torch.linalg.solve_triangular(r.mT, inner, upper=False)
        coef_s = torch.zeros(used, dtype=torch.float64, device=grad.device).index_copy_(
            0, order, p[:, 0]
        )
        coef_y = torch.zeros_like(coef_s).index_copy_(0, order, -gamma * u[:, 0])
        h_g = grad * gamma + coef_s.to(grad.dtype) @ s + coef_y.to(grad.dtype) @ y
        return h_g.neg_()

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor], max_iter: int) -> None:
        """At most ``max_iter`` iterations from the current ``param``."""
        loss, grad = self._evaluate(closure)
        evals = 1
        if grad.abs().max() <= 0:  # a stationary point
            return
        flat = self.param.view(-1)
        for it in range(1, max_iter + 1):
            self.n_iter += 1
            if self.n_iter > 1:
                y, s = grad - self._prev_grad, self._d * self._t
                ys = float(y.dot(s))
                if ys > MIN_CURVATURE:
                    self._store(s, y, ys)
            d = self._direction(grad)
            self._prev_grad = grad.clone()
            t = min(1.0, 1.0 / grad.abs().sum()) if self.n_iter == 1 else 1.0
            gtd = grad.dot(d)
            if gtd > 0:  # not a descent direction
                break
            x0 = self.param.detach().clone()

            def along(
                x: torch.Tensor, step: float, direction: torch.Tensor
            ) -> tuple[float, torch.Tensor]:
                flat.add_(direction, alpha=step)
                value = self._evaluate(closure)
                self.param.copy_(x)
                return value

            loss, grad, t, used = _strong_wolfe(
                along, x0, t, d, loss, grad, gtd, max_ls=self.max_eval - evals
            )
            flat.add_(d, alpha=t)
            self._d, self._t = d, t
            evals += used
            if (
                it == max_iter
                or evals >= self.max_eval
                or grad.abs().max() <= 0
                or (d * t).abs().max() <= 0
            ):
                break


class TwoLoopLBFGS:
    """``torch.optim.LBFGS`` (strong Wolfe, zero tolerances) behind :class:`CompactLBFGS`'s
    interface: the two-loop recursion, for problems whose stored pairs do not fit in the cache
    (:data:`COMPACT_MAX_BYTES`)."""

    def __init__(self, param: torch.Tensor, history: int = 100, max_eval: int = 125) -> None:
        self.param = param
        self._opt = torch.optim.LBFGS(
            [param],
            lr=1,
            max_iter=1,
            max_eval=max_eval,
            history_size=history,
            line_search_fn="strong_wolfe",
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )

    @property
    def n_iter(self) -> int:
        return self._opt.state[self.param].get("n_iter", 0)

    def step(self, closure: Callable[[], torch.Tensor], max_iter: int) -> None:
        """At most ``max_iter`` iterations from the current ``param``."""
        self._opt.param_groups[0]["max_iter"] = max_iter
        self._opt.step(closure)
