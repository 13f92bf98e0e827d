"""Analytic inverses: a network is a chain of affine maps and activations, so invert each piece.

- ``Linear``: subtract the bias, then apply the Moore-Penrose pseudo-inverse ``W^+``. For a
  square invertible ``W`` that is the exact inverse; for a narrowing layer (fewer outputs than
  inputs) ``W^+ y`` is the *minimum-norm* pre-image: of all ``x`` with ``W x = y`` the one with no
  component in the null space of ``W``. Optionally a Gaussian prior (mean ``mu``, covariance
  ``Sigma`` of the layer's inputs) replaces "smallest norm" by "most likely under the data":
  ``x = mu + Sigma W^T (W Sigma W^T + lambda I)^{-1} (y - b - W mu)``, still a pre-image.
- Activations: ``LeakyReLU^{-1}`` (divide negatives by the slope), ``Sigmoid^{-1} = logit``,
  ``Tanh^{-1} = atanh``, ``ReLU`` by its identity pre-image (zeros stay zero).
- ``Flatten`` by ``Unflatten``; ``Identity`` and ``Dropout`` (eval mode) by identity.

When the analytic chain fails (an input far from the network's range), :func:`inversion_trace`
shows where, and ``optimise.optimise_preimage`` finds a pre-image by gradient descent instead.

Domain handling. An activation inverse is defined on an open interval (logit on (0, 1), atanh on
(-1, 1), leaky ReLU on the reals, ReLU's pre-image on [0, inf)). Finite values outside
``[lo + eps, hi - eps]`` (an infinite end becomes ``-/+ 1/eps``) are clamped into it and *counted*,
per layer: ``domain_counts(inverse)`` reports them. NaN or inf in what is inverted is an error (no
finite image can honestly come of it), and so is an ``eps`` too small for the tensor's dtype (in
float32, ``1 - 1e-9`` rounds to 1 and its logit is inf). ``eps`` defaults to :data:`DEFAULT_EPS` = 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .metrics import clip_images, psnr

__all__ = [
    "DEFAULT_EPS",
    "UnsupportedLayerError",
    "InverseLinear",
    "InverseActivation",
    "invert",
    "prior_inverse",
    "choose_damping",
    "domain_counts",
    "reset_domain_counts",
    "linear_input_stats",
    "pinv",
    "inversion_trace",
]

#: Distance kept from the edge of an activation inverse's domain (see the module docstring).
DEFAULT_EPS = 1e-6


class UnsupportedLayerError(TypeError):
    """A layer has no analytic inverse here (convolutions, pooling, ...)."""


def pinv(weight: torch.Tensor, rcond: float = 1e-10) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse computed in float64 (SVD), returned in ``weight``'s dtype.

    Singular values below ``rcond * largest`` are treated as zero (rank deficiency).
    """
    return torch.linalg.pinv(weight.double(), rtol=rcond).to(weight.dtype)


class InverseLinear(nn.Module):
    """Inverse of ``y = W x + b`` as one affine map ``x = A y + c``, precomputed once.

    Without a prior ``A = W^+`` and ``c = -W^+ b`` (minimum-norm pre-image). With a Gaussian prior
    ``(mean, cov)`` over the layer's inputs ``A = Sigma W^T (W Sigma W^T + lambda I)^{-1}`` and
    ``c = mu - A (b + W mu)`` (the pre-image nearest the data mean in the Mahalanobis metric; with
    ``lambda = damping * trace(W Sigma W^T) / out_features``). For square invertible ``W`` both are
    ``W^{-1}`` up to rounding.
    """

    def __init__(
        self,
        linear: nn.Linear,
        prior: tuple[torch.Tensor, torch.Tensor] | None = None,
        damping: float = 1e-6,
        rcond: float = 1e-10,
    ) -> None:
        super().__init__()
        weight = linear.weight.detach()
        w = weight.double()
        b = linear.bias.detach().double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
        if prior is None:
            a = torch.linalg.pinv(w, rtol=rcond)
            c = -a @ b
        else:
            mean, cov = (t.detach().double().to(w.device) for t in prior)
            if mean.shape != (w.shape[1],) or cov.shape != (w.shape[1], w.shape[1]):
                raise ValueError(
                    f"Prior for Linear({w.shape[1]}, {w.shape[0]}) needs mean ({w.shape[1]},) and cov "
                    f"({w.shape[1]}, {w.shape[1]}), got {tuple(mean.shape)} and {tuple(cov.shape)}."
                )
            wsw = w @ cov @ w.T
            lam = damping * torch.trace(wsw) / w.shape[0]
            a = torch.linalg.solve(wsw + lam * torch.eye(w.shape[0], dtype=w.dtype, device=w.device), w @ cov).T
            c = mean - a @ (b + w @ mean)
        self.register_buffer("A", a.to(weight.dtype))
        self.register_buffer("c", c.to(weight.dtype))
        self.with_prior = prior is not None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-1] != self.A.shape[1]:
            raise ValueError(f"this inverse of Linear({self.A.shape[0]}, {self.A.shape[1]}) takes {self.A.shape[1]} "
                             f"features per sample, got shape {tuple(y.shape)}")
        _require_finite(y, "Linear")
        return y @ self.A.T + self.c

    def extra_repr(self) -> str:
        kind = "gaussian-prior pre-image" if self.with_prior else "pseudo-inverse"
        return f"{self.A.shape[0]} <- {self.A.shape[1]}, {kind}"


def _require_finite(y: torch.Tensor, layer: str) -> None:
    bad = int((~torch.isfinite(y)).sum())
    if bad:
        raise ValueError(f"the input of the inverse of {layer} holds {bad} NaN/inf values of {y.numel()}: no finite "
                         f"pre-image exists; check the features passed in (and the layer that produced them)")


class InverseActivation(nn.Module):
    """Inverse of an elementwise activation with domain clamping and counting.

    ``kind`` is one of ``"leaky_relu"``, ``"relu"``, ``"sigmoid"``, ``"tanh"``.
    """

    DOMAINS: Mapping[str, tuple[float, float]] = {
        "leaky_relu": (-math.inf, math.inf),
        "relu": (0.0, math.inf),
        "sigmoid": (0.0, 1.0),
        "tanh": (-1.0, 1.0),
    }

    def __init__(self, kind: str, negative_slope: float = 0.01, eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        if kind not in self.DOMAINS:
            raise ValueError(f"Unknown activation {kind!r}; known: {list(self.DOMAINS)}")
        if kind == "leaky_relu" and negative_slope <= 0:
            raise UnsupportedLayerError(f"LeakyReLU with slope {negative_slope} is not invertible (slope must be > 0).")
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.kind, self.negative_slope, self.eps = kind, negative_slope, eps
        self.clamped = 0  # values moved into the domain since the last reset
        self.seen = 0  # values inverted since the last reset

    def clamp_to_domain(self, y: torch.Tensor) -> torch.Tensor:
        """Move out-of-domain values to ``[lo + eps, hi - eps]`` and count them; NaN/inf is an error."""
        _require_finite(y, self.kind)
        lo, hi = self.DOMAINS[self.kind]
        if math.isfinite(hi) and y.is_floating_point() and self.eps < torch.finfo(y.dtype).eps:
            raise ValueError(
                f"eps={self.eps:g} is below {y.dtype}'s resolution near {hi:g} ({torch.finfo(y.dtype).eps:.1e}): "
                f"{hi:g} - eps rounds to {hi:g} and the {self.kind} inverse would be infinite. Use eps >= "
                f"{torch.finfo(y.dtype).eps:.0e}, or invert in float64."
            )
        lo_in = lo + self.eps if math.isfinite(lo) else -1.0 / self.eps
        hi_in = hi - self.eps if math.isfinite(hi) else 1.0 / self.eps
        if self.kind == "relu":  # zero is ReLU's own output: in the domain, no eps needed
            lo_in = 0.0
        outside = (y < lo_in) | (y > hi_in)
        self.clamped += int(outside.sum())
        self.seen += y.numel()
        return y.clamp(lo_in, hi_in)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = self.clamp_to_domain(y)
        if self.kind == "leaky_relu":
            return torch.where(y >= 0, y, y / self.negative_slope)
        if self.kind == "relu":
            return y
        if self.kind == "sigmoid":
            return torch.logit(y)
        return torch.atanh(y)

    def extra_repr(self) -> str:
        slope = f", slope={self.negative_slope}" if self.kind == "leaky_relu" else ""
        return f"{self.kind}^-1{slope}, eps={self.eps}"


def _invert_layer(
    module: nn.Module, index: int, prior: tuple[torch.Tensor, torch.Tensor] | None, eps: float, damping: float
) -> nn.Module:
    if isinstance(module, nn.Linear):
        return InverseLinear(module, prior=prior, damping=damping)
    if isinstance(module, nn.LeakyReLU):
        return InverseActivation("leaky_relu", module.negative_slope, eps)
    if isinstance(module, nn.ReLU):
        return InverseActivation("relu", eps=eps)
    if isinstance(module, nn.Sigmoid):
        return InverseActivation("sigmoid", eps=eps)
    if isinstance(module, nn.Tanh):
        return InverseActivation("tanh", eps=eps)
    if isinstance(module, nn.Flatten):
        if module.end_dim != -1:
            raise UnsupportedLayerError(f"layer {index} ({module!r}): only Flatten(start_dim, -1) is supported")
        return _Unflatten(module.start_dim)
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return nn.Identity()
    raise UnsupportedLayerError(
        f"Layer {index} ({module!r}) has no analytic inverse here. Supported: Linear, LeakyReLU, ReLU, "
        f"Sigmoid, Tanh, Flatten, Identity, Dropout. Invert the part of the model before it "
        f"(e.g. model[:{index}]) or use a learned inverse (reversenet_utils.progressive)."
    )


class _Unflatten(nn.Module):
    """Inverse of ``Flatten(start_dim)``: restores the shape recorded from the last forward input."""

    def __init__(self, start_dim: int) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.shape: tuple[int, ...] | None = None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            return y  # no shape known: a flat vector is all one can return
        return y.reshape(*y.shape[: self.start_dim], *self.shape)


def invert(
    model: nn.Sequential,
    input_shape: tuple[int, ...] | None = (1, 28, 28),
    priors: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    eps: float = DEFAULT_EPS,
    damping: float = 1e-6,
) -> nn.Sequential:
    """The analytic inverse of ``model``, an ``nn.Sequential`` of supported layers, as an ``nn.Sequential``.

    ``invert(model)(model(x))`` maps outputs back to inputs; the inverse of ``model[:k]`` inverts
    from the output of layer ``k - 1``. Its layers run in reverse order, in ``model``'s dtype.

    Args:
        model: the chain to invert (not modified).
        input_shape: the shape of one input without the batch dimension; ``Flatten`` is undone to
            it. ``None`` leaves the reconstruction flat.
        priors: optional ``{layer index: (mean, cov)}`` of the inputs of ``Linear`` layers, e.g.
            from :func:`linear_input_stats`; those layers get the Gaussian-prior pre-image.
        eps: margin kept inside each activation inverse's domain.
        damping: relative ridge ``lambda`` of the prior pre-image.

    Raises:
        UnsupportedLayerError: naming the first layer that cannot be inverted and what to do.
    """
    if not isinstance(model, nn.Sequential):
        raise UnsupportedLayerError(f"invert() takes an nn.Sequential chain, got {type(model).__name__}.")
    priors = dict(priors or {})
    linear = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    misplaced = sorted(i for i in priors if i not in linear)
    if misplaced:
        raise ValueError(f"priors given for layers {misplaced}, which are not Linear layers of the model; its Linear "
                         f"layers are at {linear} (a prior describes the input of a Linear layer)")
    inverses = []
    for index, module in enumerate(model):
        inv = _invert_layer(module, index, priors.pop(index, None), eps, damping)
        if isinstance(inv, _Unflatten) and input_shape is not None and index == 0:
            inv.shape = tuple(input_shape[module.start_dim - 1 :])
        inverses.append(inv)
    return nn.Sequential(*reversed(inverses))


def prior_inverse(
    model: nn.Sequential,
    priors: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
    damping: float,
    input_shape: tuple[int, ...] | None = (1, 28, 28),
    eps: float = DEFAULT_EPS,
) -> nn.Sequential:
    """The Gaussian-prior inverse of ``model``, a prefix ``net[:d]`` of the network that ``priors``
    (from :func:`linear_input_stats` of ``net``) describe; priors of layers beyond the prefix are dropped."""
    kept = {i: p for i, p in priors.items() if i < len(model)}
    return invert(model, input_shape=input_shape, priors=kept, eps=eps, damping=damping)


@torch.no_grad()
def choose_damping(
    model: nn.Sequential,
    priors: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
    held_out: torch.Tensor,
    grid: Sequence[float],
) -> tuple[float, dict[float, float]]:
    """The ridge ``lambda`` of ``grid`` whose prior pre-image inverts ``model(held_out)`` best.

    ``held_out`` are images the priors were *not* computed from (e.g. the last 5 000 training
    images). Returns the best value and the mean PSNR (dB, clipped reconstructions) of every value.
    """
    if not grid:
        raise ValueError("grid of damping values is empty")
    features, shape = model(held_out), tuple(held_out.shape[1:])
    sweep = {lam: psnr(clip_images(prior_inverse(model, priors, lam, shape)(features)), held_out) for lam in grid}
    return max(sweep, key=sweep.get), sweep


def domain_counts(inverse: nn.Module) -> dict[str, dict[str, int]]:
    """``{layer name: {"clamped": n, "seen": m}}`` for every activation inverse in ``inverse``."""
    return {
        name: {"clamped": m.clamped, "seen": m.seen}
        for name, m in inverse.named_modules()
        if isinstance(m, InverseActivation)
    }


def reset_domain_counts(inverse: nn.Module) -> None:
    """Zero the clamping counters of every activation inverse in ``inverse``."""
    for m in inverse.modules():
        if isinstance(m, InverseActivation):
            m.clamped = m.seen = 0


@torch.no_grad()
def linear_input_stats(
    model: nn.Sequential, images: torch.Tensor, batch_size: int = 4096
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Mean and covariance (float64) of the input of every ``Linear`` layer of ``model`` over ``images``.

    The result feeds ``invert(model, priors=...)``. Accumulated in batches in float64.
    """
    index_of = {i: m for i, m in enumerate(model) if isinstance(m, nn.Linear)}
    sums: dict[int, torch.Tensor] = {}
    outer: dict[int, torch.Tensor] = {}
    n = 0
    device = next(model.parameters()).device
    for start in range(0, len(images), batch_size):
        h = images[start : start + batch_size].to(device)
        for i, module in enumerate(model):
            if i in index_of:
                flat = h.reshape(len(h), -1).double()
                sums[i] = sums.get(i, 0) + flat.sum(0)
                outer[i] = outer.get(i, 0) + flat.T @ flat
            h = module(h)
        n += len(images[start : start + batch_size])
    stats = {}
    for i in index_of:
        mean = sums[i] / n
        stats[i] = (mean.cpu(), (outer[i] / n - torch.outer(mean, mean)).cpu())
    return stats


@torch.no_grad()
def inversion_trace(model: nn.Sequential, inverse: nn.Sequential, y: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """Run ``inverse = invert(model)`` on ``y`` one step at a time and report what each step did.

    - a ``Linear`` step solves ``W x + b = h`` by least squares: its relative residual
      ``||W x + b - h|| / ||h||`` is 0 when ``h`` lies in the layer's range and grows as ``h`` leaves it;
    - an activation step reports the share of values it had to clamp into its domain.

    Returns the reconstruction and one dict per step (``step``, ``residual`` or ``clamped``).
    """
    rows: list[dict] = []
    h = y
    for i, inv in enumerate(inverse):
        layer = model[len(model) - 1 - i]
        name = f"{i}: {type(layer).__name__}^-1"
        if isinstance(inv, InverseActivation):
            before = inv.clamped
            out = inv(h)
            rows.append({"step": name, "clamped": (inv.clamped - before) / h.numel()})
        elif isinstance(inv, InverseLinear):
            out = inv(h)
            rows.append({"step": name, "residual": ((layer(out) - h).norm() / h.norm().clamp_min(1e-30)).item()})
        else:
            out = inv(h)
        h = out
    return h, rows
