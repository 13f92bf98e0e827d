"""The inverse of each kind of PyTorch layer: the pieces that :func:`analytic.invert` chains.

A layer is inverted exactly where it is injective, and by its minimum-norm pre-image (the input
with no component the layer cannot see) where it is linear but narrows:

- **affine maps** (:class:`InverseAffine`): every layer whose output is ``M x + b`` for a fixed
  matrix ``M``: convolutions of any kernel, stride, padding (any padding mode), dilation and
  groups (depthwise included), in 1, 2 or 3 dimensions; transposed convolutions; average pooling,
  adaptive included; upsampling (nearest, linear, bilinear, bicubic, trilinear); pixel
  (un)shuffle, channel shuffle and padding layers. ``M`` is read off the layer itself (its response
  to every unit input, :func:`affine_matrix`) and checked against it on a random input, so what is
  inverted is what the layer computes. ``Linear`` has its own class (:class:`InverseLinear`), which
  also takes a Gaussian prior;
- **batch normalisation** in eval mode (:class:`InverseBatchNorm`): a per-channel affine map;
- **elementwise activations** (:class:`InverseActivation`), with the domain of each inverse
  handled as notebook 02 does: values outside it are clamped in and counted, NaN or inf is an
  error. Invertible: LeakyReLU, PReLU, RReLU (eval), ELU, CELU, SELU, Sigmoid, Tanh, Softsign,
  Softplus, LogSigmoid, Tanhshrink. Inverted by their identity pre-image, the information they
  drop said so: ReLU (negatives become 0), ReLU6 and Hardtanh (values beyond the clip ends),
  Hardsigmoid (beyond +-3);
- **softmax** and log-softmax (:class:`InverseSoftmax`): injective up to a constant per sample,
  inverted to the pre-image with zero mean;
- **reshapes** (``Flatten``, ``Unflatten``: :class:`InverseReshape`) and the identity maps
  (``Identity``, every ``Dropout`` in eval mode).

The rest is refused by :func:`layer_inverse` with an :class:`UnsupportedLayerError` that names the
layer and the way forward: max-pooling keeps no positions (given the pooling indices,
``analytic.invert_conv_relu_pool`` inverts a convolution block), SiLU, GELU, Mish, Hardswish and
the shrink functions are not injective, layer/group/instance norms normalise each sample by its own
statistics, a layer in training mode is not a fixed map. Feature matching
(``optimise.match_features``) and learned inverses (``progressive``) only run a layer forward, and
so take any of them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "DEFAULT_EPS",
    "MAX_MATRIX_ENTRIES",
    "UnsupportedLayerError",
    "CountingInverse",
    "pinv",
    "pinv_and_rank",
    "require_finite",
    "InverseLinear",
    "affine_matrix",
    "InverseAffine",
    "InverseBatchNorm",
    "InverseActivation",
    "InverseSoftmax",
    "InverseReshape",
    "AFFINE_LAYERS",
    "check_invertible",
    "layer_inverse",
]

#: Distance kept from the open edge of an activation inverse's domain (``analytic``'s docstring).
DEFAULT_EPS = 1e-6

#: the most entries (inputs x outputs) the matrix of an affine layer may have: 3 x 32 x 32 inputs
#: to 64 x 32 x 32 outputs is 2e8 entries, 1.6 GB in float64
MAX_MATRIX_ENTRIES = 2 * 10**8


class UnsupportedLayerError(TypeError):
    """A layer has no analytic inverse here (max-pooling, a non-injective activation, ...)."""


def pinv(weight: torch.Tensor, rcond: float = 1e-10) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse computed in float64 (SVD), returned in ``weight``'s dtype.

    Singular values below ``rcond * largest`` are treated as zero (rank deficiency).
    """
    return pinv_and_rank(weight, rcond)[0].to(weight.dtype)


def pinv_and_rank(matrix: torch.Tensor, rcond: float = 1e-10) -> tuple[torch.Tensor, int]:
    """The pseudo-inverse (float64) of ``matrix`` and its numerical rank, from one thin SVD.

    ``V diag(1/s) U^T`` over the singular values ``s > rcond * s_max`` (``torch.linalg.pinv``'s rule
    with ``rtol=rcond``). The same numbers as ``torch.linalg.pinv``, whose CPU path takes seconds
    for a 100 x 784 matrix where the thin SVD takes milliseconds (measured: 2.2 s against 0.03 s
    with this build's MKL).
    """
    u, sv, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    keep = sv > rcond * sv.max() if sv.numel() else sv.bool()
    inverse = (vh[keep].T / sv[keep]) @ u[:, keep].T
    return inverse, int(keep.sum())


def require_finite(y: torch.Tensor, layer: str) -> None:
    """NaN or inf in what an inverse is given is an error: no finite pre-image exists."""
    bad = int((~torch.isfinite(y)).sum())
    if bad:
        raise ValueError(
            f"the input of the inverse of {layer} holds {bad} NaN/inf values of {y.numel()}: no "
            f"finite pre-image exists; check the features passed in (and the layer that produced "
            f"them)"
        )


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
        b = (
            linear.bias.detach().double()
            if linear.bias is not None
            else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        )
        if prior is None:
            a = pinv_and_rank(w, rcond)[0]
            c = -a @ b
        else:
            a, c = _prior_map(w, b, prior, damping)
        self.register_buffer("A", a.to(weight.dtype))
        self.register_buffer("c", c.to(weight.dtype))
        self.with_prior = prior is not None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-1] != self.A.shape[1]:
            raise ValueError(
                f"this inverse of Linear({self.A.shape[0]}, {self.A.shape[1]}) takes "
                f"{self.A.shape[1]} features per sample, got shape {tuple(y.shape)}"
            )
        require_finite(y, "Linear")
        return y @ self.A.T + self.c

    def extra_repr(self) -> str:
        kind = "gaussian-prior pre-image" if self.with_prior else "pseudo-inverse"
        return f"{self.A.shape[0]} <- {self.A.shape[1]}, {kind}"


def _prior_map(
    w: torch.Tensor, b: torch.Tensor, prior: Any, damping: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, c)`` of the Gaussian-prior pre-image of ``y = w x + b`` (:class:`InverseLinear`)."""
    pair = isinstance(prior, (tuple, list)) and len(prior) == 2
    if not (pair and all(isinstance(t, torch.Tensor) for t in prior)):
        raise TypeError(
            f"a prior is a pair of tensors (mean, cov), e.g. from linear_input_stats; got "
            f"{type(prior).__name__}"
        )
    mean, cov = (t.detach().double().to(w.device) for t in prior)
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        raise ValueError(
            f"the prior of Linear({w.shape[1]}, {w.shape[0]}) holds NaN or inf: its mean and cov "
            f"must be finite (recompute them with linear_input_stats on finite inputs)"
        )
    if mean.shape != (w.shape[1],) or cov.shape != (w.shape[1], w.shape[1]):
        raise ValueError(
            f"Prior for Linear({w.shape[1]}, {w.shape[0]}) needs mean ({w.shape[1]},) and cov "
            f"({w.shape[1]}, {w.shape[1]}), got {tuple(mean.shape)} and {tuple(cov.shape)}."
        )
    wsw = w @ cov @ w.T
    lam = damping * torch.trace(wsw) / w.shape[0]
    eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
    a = torch.linalg.solve(wsw + lam * eye, w @ cov).T
    return a, mean - a @ (b + w @ mean)


#: the layers whose output is ``M x + b`` for a fixed ``M`` (in eval mode): :class:`InverseAffine`
#: reads ``M`` off the layer and checks it
AFFINE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.ChannelShuffle,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReflectionPad3d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.ReplicationPad3d,
    nn.CircularPad1d,
    nn.CircularPad2d,
    nn.CircularPad3d,
)


@torch.no_grad()
def affine_matrix(
    layer: nn.Module, in_shape: tuple[int, ...], chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """``(M, b, out_shape)`` in float64 with ``layer(x).flatten() = M x.flatten() + b`` for inputs
    of per-sample shape ``in_shape``: ``b`` is the response to zero, column ``j`` of ``M`` the
    response to the ``j``-th unit input less ``b`` (run on a float64 copy, ``chunk`` unit inputs at
    a time).

    Raises:
        ValueError: the layer does not take inputs of ``in_shape``, or ``M`` would exceed
            :data:`MAX_MATRIX_ENTRIES`.
        UnsupportedLayerError: the layer is not affine: on a random input its output differs from
            ``M x + b`` (a layer in training mode, say).
    """
    param = next(layer.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    twin = _float64_copy(layer)
    n = math.prod(in_shape)
    zero = torch.zeros(1, *in_shape, dtype=torch.float64, device=device)
    try:
        bias = twin(zero)
    except RuntimeError as exc:
        raise ValueError(
            f"{layer!r} does not take inputs of shape {tuple(in_shape)} ({exc})"
        ) from None
    out_shape, m = tuple(bias.shape[1:]), bias[0].numel()
    if n * m > MAX_MATRIX_ENTRIES:
        raise ValueError(
            f"{layer!r} on inputs of shape {tuple(in_shape)}: its matrix would hold {m} x {n} = "
            f"{m * n:.1e} entries (at most {MAX_MATRIX_ENTRIES:.0e}). Invert it on smaller inputs, "
            f"or use feature matching (optimise.match_features) or a learned inverse "
            f"(reversenet_utils.progressive), which only run it forward."
        )
    bias = bias.flatten()
    columns = []
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk), device=device)
        basis = torch.zeros(len(idx), n, dtype=torch.float64, device=device)
        basis[torch.arange(len(idx)), idx] = 1.0
        columns.append(twin(basis.reshape(-1, *in_shape)).flatten(1) - bias)
    matrix = torch.cat(columns).T
    # its own generator: building an inverse never moves the global one (a model initialised
    # after it stays the same)
    probe = torch.randn(
        2, *in_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    ).to(device)
    expected = twin(probe).flatten(1)
    got = probe.flatten(1) @ matrix.T + bias
    if not torch.allclose(got, expected, rtol=1e-9, atol=1e-9 * (1 + expected.abs().max())):
        raise UnsupportedLayerError(
            f"{layer!r} is not an affine map of its input here (on a random input its output "
            f"differs from M x + b by {(got - expected).abs().max():.2e}): call model.eval() first "
            f"if it is in training mode; otherwise use feature matching or a learned inverse."
        )
    return matrix, bias, out_shape


def _float64_copy(layer: nn.Module) -> nn.Module:
    return copy.deepcopy(layer).double()


class InverseAffine(nn.Module):
    """Inverse of an affine layer (:data:`AFFINE_LAYERS`) on inputs of per-sample shape
    ``in_shape``: the pseudo-inverse of its matrix (:func:`affine_matrix`), applied after taking off
    its response to zero. Exact where the layer is injective (full column rank), the minimum-norm
    pre-image where it narrows (a strided or pooling layer); one precomputed matrix product per
    batch. ``rank`` records the matrix's numerical rank."""

    def __init__(self, layer: nn.Module, in_shape: tuple[int, ...], rcond: float = 1e-10) -> None:
        super().__init__()
        matrix, bias, self.out_shape = affine_matrix(layer, tuple(in_shape))
        self.in_shape, self.layer_name = tuple(in_shape), type(layer).__name__
        param = next(layer.parameters(), None)
        # a layer without weights runs in its input's dtype: keep float64 and cast when applied
        dtype = param.dtype if param is not None else torch.float64
        inverse, self.rank = pinv_and_rank(matrix, rcond)  # one SVD: the inverse and the rank
        self.register_buffer("A", inverse.to(dtype))
        self.register_buffer("b", bias.to(dtype))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[1:]) != self.out_shape:
            raise ValueError(
                f"this inverse of {self.layer_name} takes features of shape {self.out_shape} per "
                f"sample, got {tuple(y.shape)}"
            )
        require_finite(y, self.layer_name)
        a, b = self.A.to(y.dtype), self.b.to(y.dtype)  # a layer without weights has no dtype
        return ((y.flatten(1) - b) @ a.T).reshape(len(y), *self.in_shape)

    @property
    def exact(self) -> bool:
        """Whether the layer is injective, so the inverse is exact (full column rank)."""
        return self.rank == math.prod(self.in_shape)

    def extra_repr(self) -> str:
        n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
        kind = (
            "exact (injective)"
            if self.exact
            else f"minimum-norm pre-image (rank {self.rank} < {n_in})"
        )
        return (
            f"{self.layer_name}^-1, {self.in_shape} <- {self.out_shape}, {n_in} <- {n_out}, {kind}"
        )


class InverseBatchNorm(nn.Module):
    """Inverse of ``BatchNorm1d/2d/3d`` in eval mode, ``y = (x - mean) / sqrt(var + eps) * gamma +
    beta`` per channel: ``x = (y - beta) * sqrt(var + eps) / gamma + mean``. A channel with
    ``gamma = 0`` is constant, so not injective: its pre-image is the running mean (``lost``
    counts such channels)."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        if norm.training or not norm.track_running_stats or norm.running_mean is None:
            raise UnsupportedLayerError(
                f"{norm!r} normalises each batch by its own statistics (training mode, or no "
                f"running statistics): not a fixed map of one input. Call model.eval() first, "
                f"or use feature matching or a learned inverse."
            )
        n = norm.num_features
        mean, var = norm.running_mean.detach().double(), norm.running_var.detach().double()
        weight = norm.weight.detach().double() if norm.affine else torch.ones_like(mean)
        bias = norm.bias.detach().double() if norm.affine else torch.zeros_like(mean)
        scale = weight / torch.sqrt(var + norm.eps)
        self.lost = int((scale == 0).sum())
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        dtype = norm.running_mean.dtype
        self.register_buffer("gain", torch.where(scale == 0, 0.0, 1 / safe).to(dtype))
        self.register_buffer("shift", bias.to(dtype))
        self.register_buffer("mean", mean.to(dtype))
        self.channels = n

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() < 2 or y.shape[1] != self.channels:
            raise ValueError(
                f"this inverse of a batch norm over {self.channels} channels takes (N, "
                f"{self.channels}, ...), got {tuple(y.shape)}"
            )
        require_finite(y, "BatchNorm")
        view = (1, -1, *[1] * (y.dim() - 2))
        return (y - self.shift.view(view)) * self.gain.view(view) + self.mean.view(view)

    def extra_repr(self) -> str:
        lost = f", {self.lost} constant channel(s) set to their mean" if self.lost else ""
        return f"{self.channels} channels{lost}"


def _tanhshrink_inverse(y: torch.Tensor) -> torch.Tensor:
    # x - tanh(x) = y is strictly increasing and x lies in (y - 1, y + 1): bisection, in float64
    lo, hi = y.double() - 1, y.double() + 1
    for _ in range(64):
        mid = (lo + hi) / 2
        low = mid - torch.tanh(mid) < y.double()
        lo, hi = torch.where(low, mid, lo), torch.where(low, hi, mid)
    return ((lo + hi) / 2).to(y.dtype)


def _softplus_inverse(y: torch.Tensor, beta: float, threshold: float) -> torch.Tensor:
    z = beta * y
    return torch.where(z > threshold, y, torch.log(torch.expm1(z.clamp_max(threshold))) / beta)


def _elu_inverse(y: torch.Tensor, alpha: float, scale: float, celu: bool) -> torch.Tensor:
    z = y / scale
    return torch.where(z > 0, z, (alpha if celu else 1.0) * torch.log1p(z / alpha))


#: per activation kind: its inverse's domain ``(lo, hi, closed)`` as a function of its parameters
#: (a closed domain keeps its ends: the identity pre-images of the clipping activations) and the
#: inverse itself
_KINDS: Mapping[str, tuple[Callable[..., tuple[float, float, bool]], Callable[..., torch.Tensor]]]
_KINDS = {
    "leaky_relu": (
        lambda p: (-math.inf, math.inf, False),
        lambda y, p: torch.where(y >= 0, y, y / p["negative_slope"]),
    ),
    "relu": (lambda p: (0.0, math.inf, True), lambda y, p: y),
    "clip": (lambda p: (p["min_val"], p["max_val"], True), lambda y, p: y),
    "hardsigmoid": (lambda p: (0.0, 1.0, True), lambda y, p: 6 * y - 3),
    "sigmoid": (lambda p: (0.0, 1.0, False), lambda y, p: torch.logit(y)),
    "tanh": (lambda p: (-1.0, 1.0, False), lambda y, p: torch.atanh(y)),
    "softsign": (lambda p: (-1.0, 1.0, False), lambda y, p: y / (1 - y.abs())),
    "elu": (
        lambda p: (-p["alpha"] * p["scale"], math.inf, False),
        lambda y, p: _elu_inverse(y, p["alpha"], p["scale"], p["celu"]),
    ),
    "softplus": (
        lambda p: (0.0, math.inf, False),
        lambda y, p: _softplus_inverse(y, p["beta"], p["threshold"]),
    ),
    "log_sigmoid": (lambda p: (-math.inf, 0.0, False), lambda y, p: y - torch.log(-torch.expm1(y))),
    "tanhshrink": (lambda p: (-math.inf, math.inf, False), lambda y, p: _tanhshrink_inverse(y)),
}

#: what each identity pre-image loses, for its repr and the notebooks' text
LOST = {
    "relu": "negatives come back as 0",
    "clip": "values beyond the clip ends come back at the ends",
    "hardsigmoid": "inputs beyond +-3 come back at +-3",
}


class CountingInverse(nn.Module):
    """An inverse with a domain: it counts the values it had to move into it (``clamped``) of
    those it inverted (``seen``) since the last :meth:`reset_counts` (``analytic.domain_counts``
    reports them per layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.clamped = 0
        self.seen = 0

    def reset_counts(self) -> None:
        self.clamped = self.seen = 0


class InverseActivation(CountingInverse):
    """Inverse of an elementwise activation, with domain clamping and counting.

    ``kind`` is one of ``leaky_relu`` (``negative_slope``: a number, or one per channel as PReLU
    has), ``relu``, ``clip`` (``min_val``, ``max_val``: ReLU6, Hardtanh), ``hardsigmoid``,
    ``sigmoid``, ``tanh``, ``softsign``, ``elu`` (``alpha``, ``scale``, ``celu``: ELU, CELU, SELU),
    ``softplus`` (``beta``, ``threshold``), ``log_sigmoid``, ``tanhshrink``. Finite values outside
    the inverse's domain are moved ``eps`` inside an open end (onto a closed one) and counted in
    ``clamped`` of ``seen``.
    """

    KINDS = tuple(_KINDS)

    def __init__(
        self,
        kind: str,
        negative_slope: float | torch.Tensor = 0.01,
        eps: float = DEFAULT_EPS,
        **params: Any,
    ) -> None:
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"Unknown activation {kind!r}; known: {list(_KINDS)}")
        if kind == "leaky_relu":
            slope = torch.as_tensor(negative_slope, dtype=torch.float64)
            if not bool((slope > 0).all()):
                raise UnsupportedLayerError(
                    f"LeakyReLU with slope {negative_slope} is not invertible (slope must be > 0)."
                )
            params["negative_slope"] = negative_slope
        if kind == "elu":
            params = {"scale": 1.0, "celu": False, **params}
            if not params.get("alpha", 0) > 0:
                raise UnsupportedLayerError(
                    f"ELU with alpha {params.get('alpha')} is not invertible (alpha must be > 0)."
                )
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.kind, self.params, self.eps = kind, params, eps
        self.negative_slope = params.get("negative_slope")
        self.domain = _KINDS[kind][0](params)

    def clamp_to_domain(self, y: torch.Tensor) -> torch.Tensor:
        """Move out-of-domain values into it and count them; NaN/inf is an error."""
        require_finite(y, self.kind)
        lo, hi, closed = self.domain
        if not closed and y.is_floating_point():
            for end in (lo, hi):
                if math.isfinite(end) and self.eps < torch.finfo(y.dtype).eps * max(1, abs(end)):
                    raise ValueError(
                        f"eps={self.eps:g} is below {y.dtype}'s resolution near {end:g} "
                        f"({torch.finfo(y.dtype).eps:.1e}): {end:g} -/+ eps rounds to {end:g} and "
                        f"the {self.kind} inverse would be infinite. Use eps >= "
                        f"{torch.finfo(y.dtype).eps * max(1, abs(end)):.0e}, or invert in float64."
                    )
        gap = 0.0 if closed else self.eps
        lo_in = lo + gap if math.isfinite(lo) else -1.0 / self.eps
        hi_in = hi - gap if math.isfinite(hi) else 1.0 / self.eps
        outside = (y < lo_in) | (y > hi_in)
        self.clamped += int(outside.sum())
        self.seen += y.numel()
        return y.clamp(lo_in, hi_in)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = self.clamp_to_domain(y)
        params = self.params
        slope = params.get("negative_slope")
        if isinstance(slope, torch.Tensor) and slope.numel() > 1:  # one per channel (PReLU)
            params = {**params, "negative_slope": slope.to(y).view(1, -1, *[1] * (y.dim() - 2))}
        return _KINDS[self.kind][1](y, params)

    def extra_repr(self) -> str:
        shown = {k: v for k, v in self.params.items() if not isinstance(v, torch.Tensor)}
        args = "".join(f", {k}={v}" for k, v in shown.items())
        lost = f" ({LOST[self.kind]})" if self.kind in LOST else ""
        return f"{self.kind}^-1{args}, eps={self.eps}{lost}"


class InverseSoftmax(CountingInverse):
    """Inverse of ``Softmax(dim)`` (``LogSoftmax(dim)`` with ``log=True``, ``Softmin(dim)`` with
    ``negate=True``): softmax forgets a constant added along ``dim``, so the pre-image returned is
    the one with zero mean there, ``log y - mean(log y)``. Probabilities are clamped into ``[eps,
    1]`` and log-probabilities to ``<= 0``, and counted."""

    def __init__(
        self, dim: int | None, log: bool = False, eps: float = DEFAULT_EPS, negate: bool = False
    ) -> None:
        super().__init__()
        if dim is None:
            raise UnsupportedLayerError(
                "Softmax without dim: PyTorch picks the dimension from the input's rank (and "
                "warns); give it dim explicitly to invert it"
            )
        self.dim, self.log, self.eps, self.negate = dim, log, eps, negate

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        require_finite(y, "LogSoftmax" if self.log else "Softmax")
        lo, hi = (-1.0 / self.eps, 0.0) if self.log else (self.eps, 1.0)
        self.clamped += int(((y < lo) | (y > hi)).sum())
        self.seen += y.numel()
        z = y.clamp(lo, hi)
        z = z if self.log else torch.log(z)
        z = z - z.mean(self.dim, keepdim=True)
        return -z if self.negate else z

    def extra_repr(self) -> str:
        name = "log_softmax" if self.log else "softmin" if self.negate else "softmax"
        return f"{name}^-1, dim={self.dim}, zero-mean pre-image"


class InverseReshape(nn.Module):
    """Inverse of ``Flatten`` or ``Unflatten``: back to the per-sample shape the layer was given
    (``None``: unknown, so the tensor passes as it is)."""

    def __init__(self, in_shape: tuple[int, ...] | None, layer: str = "Flatten") -> None:
        super().__init__()
        self.shape, self.layer = (tuple(in_shape) if in_shape is not None else None), layer

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            return y
        if y[0].numel() != math.prod(self.shape):
            raise ValueError(
                f"this inverse of {self.layer} restores shape {self.shape} ({math.prod(self.shape)}"
                f" values per sample), got {tuple(y.shape)}"
            )
        return y.reshape(len(y), *self.shape)

    def extra_repr(self) -> str:
        return f"{self.layer}^-1 -> {self.shape}"


def _activation(module: nn.Module, eps: float) -> nn.Module | None:
    """The inverse of an elementwise activation module, or None if it is not one handled here."""
    simple = {
        nn.ReLU: "relu",
        nn.Sigmoid: "sigmoid",
        nn.Tanh: "tanh",
        nn.Softsign: "softsign",
        nn.LogSigmoid: "log_sigmoid",
        nn.Tanhshrink: "tanhshrink",
        nn.Hardsigmoid: "hardsigmoid",
    }
    for cls, kind in simple.items():
        if isinstance(module, cls):
            return InverseActivation(kind, eps=eps)
    if isinstance(module, nn.LeakyReLU):
        return InverseActivation("leaky_relu", module.negative_slope, eps)
    if isinstance(module, nn.PReLU):
        slope = module.weight.detach().clone()
        return InverseActivation("leaky_relu", slope if slope.numel() > 1 else float(slope), eps)
    if isinstance(module, nn.RReLU):  # in eval mode (check_invertible refuses training mode)
        return InverseActivation("leaky_relu", (module.lower + module.upper) / 2, eps)
    if isinstance(module, nn.Hardtanh):  # ReLU6 is a Hardtanh(0, 6)
        return InverseActivation("clip", eps=eps, min_val=module.min_val, max_val=module.max_val)
    if isinstance(module, nn.SELU):
        return InverseActivation("elu", eps=eps, alpha=1.6732632423543772, scale=1.0507009873554805)
    if isinstance(module, nn.CELU):
        return InverseActivation("elu", eps=eps, alpha=module.alpha, celu=True)
    if isinstance(module, nn.ELU):
        return InverseActivation("elu", eps=eps, alpha=module.alpha)
    if isinstance(module, nn.Softplus):
        return InverseActivation("softplus", eps=eps, beta=module.beta, threshold=module.threshold)
    if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
        log, negate = isinstance(module, nn.LogSoftmax), isinstance(module, nn.Softmin)
        return InverseSoftmax(module.dim, log=log, eps=eps, negate=negate)
    return None


#: the activation layers :func:`_activation` inverts
_ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink,
                nn.Hardsigmoid, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.Hardtanh, nn.SELU, nn.CELU,
                nn.ELU, nn.Softplus, nn.Softmax, nn.LogSoftmax, nn.Softmin)  # fmt: skip

#: layers refused with a reason of their own (the way forward is added by :func:`layer_inverse`)
_MAX_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
    nn.LPPool1d,
    nn.LPPool2d,
)
_PER_SAMPLE_NORMS = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
_REFUSED: Mapping[tuple[type[nn.Module], ...], str] = {
    _MAX_POOLS: "keeps each window's maximum (or norm) but not where it was: no inverse from the "
    "pooled values alone. Given the pooling indices, invert a Conv2d-ReLU-MaxPool2d block with "
    "analytic.invert_conv_relu_pool",
    (nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish): "is not injective (it dips below zero and comes "
    "back, so two inputs share each small negative output)",
    (nn.Softshrink, nn.Hardshrink, nn.Threshold): "sends a whole interval of inputs to one value: "
    "not injective",
    _PER_SAMPLE_NORMS: "normalises each sample by its own statistics, which the output no longer "
    "holds",
}

_IDENTITY = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
             nn.FeatureAlphaDropout)  # fmt: skip


def _way_forward(index: int | str) -> str:
    return (
        f"Invert the part of the model before it (model[:{index}]), or use feature matching "
        f"(optimise.match_features) or a learned inverse (reversenet_utils.progressive), which "
        f"only run the layer forward."
    )


def _refusal(module: nn.Module, index: int | str) -> str:
    way = _way_forward(index)
    for kinds, why in _REFUSED.items():
        if isinstance(module, kinds):
            return f"Layer {index} ({module!r}) {why}. {way}"
    return f"Layer {index} ({module!r}) has no analytic inverse here. {way}"


def _own_forward(module: nn.Module) -> type[nn.Module] | None:
    """The torch.nn layer class whose forward a user's subclass replaces, if it does (that class's
    inverse would then be silently wrong); None for torch's own classes and for subclasses that
    keep the forward."""
    if type(module).__module__.startswith("torch.nn"):
        return None
    for base in type(module).__mro__[1:]:
        if base is nn.Module:
            return None
        if base.__module__.startswith("torch.nn") and "forward" in base.__dict__:
            return base if type(module).forward is not base.forward else None
    return None


def _training_refusal(module: nn.Module, index: int | str) -> str | None:
    if not module.training or isinstance(module, nn.Identity):
        return None
    if isinstance(module, _IDENTITY) or isinstance(module, nn.RReLU):
        what = "zeroes inputs at random" if isinstance(module, _IDENTITY) else "draws its slope"
        return (
            f"Layer {index} ({module!r}) is in training mode, where it {what}: call model.eval() "
            f"first (in eval mode it is a fixed map and inverts)."
        )
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return (
            f"Layer {index} ({module!r}) is in training mode, where it normalises each batch by "
            f"its own statistics: call model.eval() first (in eval mode it is a per-channel "
            f"affine map and inverts)."
        )
    return None


def _handled(module: nn.Module) -> bool:
    kinds = (nn.Linear, nn.Flatten, nn.Unflatten, nn.modules.batchnorm._BatchNorm, nn.RReLU)
    return isinstance(module, (*kinds, *_IDENTITY, *AFFINE_LAYERS, *_ACTIVATIONS))


def check_invertible(module: nn.Module, index: int | str = 0) -> None:
    """Raise :class:`UnsupportedLayerError` unless :func:`layer_inverse` inverts ``module``: the
    message names the layer, why not, and the way forward. Cheap (no inverse is built), so a chain
    is checked whole before any inverse is."""
    if isinstance(module, nn.Sequential):
        for i, child in enumerate(module):
            check_invertible(child, f"{index}.{i}")
        return
    base = _own_forward(module)
    if base is not None:
        raise UnsupportedLayerError(
            f"Layer {index} ({type(module).__name__}) is a {base.__name__} with its own forward: "
            f"what it computes need not be what {base.__name__} computes, so {base.__name__}'s "
            f"inverse could be silently wrong. {_way_forward(index)}"
        )
    training = _training_refusal(module, index)
    if training:
        raise UnsupportedLayerError(training)
    if isinstance(module, nn.Flatten) and module.start_dim == 0:
        raise UnsupportedLayerError(
            f"Layer {index} ({module!r}) flattens the batch dimension too: per-sample inverses "
            f"need start_dim >= 1"
        )
    if isinstance(module, nn.PReLU) and not bool((module.weight > 0).all()):
        raise UnsupportedLayerError(
            f"Layer {index} ({module!r}) has a slope <= 0 on some channel, where it is not "
            f"injective: no inverse. Use feature matching or a learned inverse."
        )
    if not _handled(module):
        raise UnsupportedLayerError(_refusal(module, index))


def layer_inverse(
    module: nn.Module,
    index: int | str,
    in_shape: tuple[int, ...] | None,
    prior: tuple[torch.Tensor, torch.Tensor] | None = None,
    eps: float = DEFAULT_EPS,
    damping: float = 1e-6,
) -> nn.Module:
    """The inverse of one layer ``module`` (layer ``index`` of its model, for messages) on inputs
    of per-sample shape ``in_shape`` (``None``: unknown; only affine layers other than ``Linear``
    need it), with the Gaussian ``prior`` for a ``Linear`` layer.

    Raises:
        UnsupportedLayerError: the layer has no analytic inverse here (:func:`check_invertible`).
        ValueError: an affine layer's input shape is unknown.
    """
    check_invertible(module, index)
    if isinstance(module, nn.Linear):
        return InverseLinear(module, prior=prior, damping=damping)
    if isinstance(module, _IDENTITY):
        return nn.Identity()
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return InverseReshape(in_shape, type(module).__name__)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return InverseBatchNorm(module)
    if isinstance(module, AFFINE_LAYERS):
        if in_shape is None:
            raise ValueError(
                f"layer {index} ({module!r}): inverting it needs the shape of its input: give "
                f"input_shape (e.g. (1, 28, 28))"
            )
        return InverseAffine(module, in_shape)
    return _activation(module, eps)
