"""Analytic inverses: a network is a chain of affine maps and activations, so invert each piece.

- ``Linear``: subtract the bias, then apply the Moore-Penrose pseudo-inverse ``W^+``. For a
  square invertible ``W`` that is the exact inverse; for a narrowing layer (fewer outputs than
  inputs) ``W^+ y`` is the *minimum-norm* pre-image: of all ``x`` with ``W x = y`` the one with no
  component in the null space of ``W``. Optionally a Gaussian prior (mean ``mu``, covariance
  ``Sigma`` of the layer's inputs) replaces "smallest norm" by "most likely under the data":
  ``x = mu + Sigma W^T (W Sigma W^T + lambda I)^{-1} (y - b - W mu)``, still a pre-image.
- Activations: ``LeakyReLU^{-1}`` (divide negatives by the slope), ``Sigmoid^{-1} = logit``,
  ``Tanh^{-1} = atanh``, ``ReLU`` by its identity pre-image (zeros stay zero).
- ``Conv2d``: a convolution is a linear map too. Its matrix (``conv_matrix``: the response to every
  input pixel) gets the same pseudo-inverse, so ``invert`` undoes convolutions exactly where they
  are injective (more outputs than inputs and full column rank: the first blocks of both CNNs) and
  returns the minimum-norm pre-image where they narrow.
- ``MaxPool2d`` keeps one value of each window and not *which* one: no inverse from the pooled
  values alone. :func:`invert_conv_relu_pool` inverts a conv - ReLU - max-pool block **given the
  pooling indices** (privileged knowledge, said so wherever it is used): every positive pooled value
  is one exact equation ``(W x + b)[argmax] = value``; the input is their least-squares solution
  (conjugate gradients, batched).
- ``Flatten`` by ``Unflatten``; ``Identity`` and ``Dropout`` (eval mode) by identity.

When the analytic chain fails (an input far from the network's range), :func:`inversion_trace`
shows where, and ``optimise.optimise_preimage`` finds a pre-image by gradient descent instead.

Domain handling. An activation inverse is defined on an open interval (logit on (0, 1), atanh on
(-1, 1), leaky ReLU on the reals, ReLU's pre-image on [0, inf)). Finite values outside
``[lo + eps, hi - eps]`` (an infinite end becomes ``-/+ 1/eps``) are clamped into it and *counted*,
per layer: ``domain_counts(inverse)`` reports them. NaN or inf in what is inverted is an error (no
finite image can honestly come of it), and so is an ``eps`` too small for the tensor's dtype (in
float32, ``1 - 1e-9`` rounds to 1 and its logit is inf). ``eps`` defaults to :data:`DEFAULT_EPS` =
1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .labels import PINV, PRIOR
from .metrics import clip_images, psnr
from .progress import progress_bar

__all__ = [
    "pinv_and_rank",
    "DEFAULT_EPS",
    "UnsupportedLayerError",
    "InverseLinear",
    "InverseConv2d",
    "InverseActivation",
    "conv_matrix",
    "invert",
    "invert_conv_relu_pool",
    "prior_inverse",
    "choose_damping",
    "boundary_inverses",
    "domain_counts",
    "reset_domain_counts",
    "linear_input_stats",
    "pinv",
    "inversion_trace",
]

#: Distance kept from the edge of an activation inverse's domain (see the module docstring).
DEFAULT_EPS = 1e-6


class UnsupportedLayerError(TypeError):
    """A layer has no analytic inverse here (pooling, normalisation, ...)."""


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
            else torch.zeros(w.shape[0], dtype=w.dtype)
        )
        if prior is None:
            a = pinv_and_rank(w, rcond)[0]
            c = -a @ b
        else:
            pair = isinstance(prior, (tuple, list)) and len(prior) == 2
            if not (pair and all(isinstance(t, torch.Tensor) for t in prior)):
                raise TypeError(
                    f"a prior is a pair of tensors (mean, cov), e.g. from linear_input_stats; got "
                    f"{type(prior).__name__}"
                )
            mean, cov = (t.detach().double().to(w.device) for t in prior)
            if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
                raise ValueError(
                    f"the prior of Linear({w.shape[1]}, {w.shape[0]}) holds NaN or inf: its mean "
                    f"and cov "
                    f"must be finite (recompute them with linear_input_stats on finite inputs)"
                )
            if mean.shape != (w.shape[1],) or cov.shape != (w.shape[1], w.shape[1]):
                raise ValueError(
                    f"Prior for Linear({w.shape[1]}, {w.shape[0]}) needs mean ({w.shape[1]},) and "
                    f"cov "
                    f"({w.shape[1]}, {w.shape[1]}), got {tuple(mean.shape)} and {tuple(cov.shape)}."
                )
            wsw = w @ cov @ w.T
            lam = damping * torch.trace(wsw) / w.shape[0]
            a = torch.linalg.solve(
                wsw + lam * torch.eye(w.shape[0], dtype=w.dtype, device=w.device), w @ cov
            ).T
            c = mean - a @ (b + w @ mean)
        self.register_buffer("A", a.to(weight.dtype))
        self.register_buffer("c", c.to(weight.dtype))
        self.with_prior = prior is not None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-1] != self.A.shape[1]:
            raise ValueError(
                f"this inverse of Linear({self.A.shape[0]}, {self.A.shape[1]}) takes "
                f"{self.A.shape[1]} features per sample, got shape {tuple(y.shape)}"
            )
        _require_finite(y, "Linear")
        return y @ self.A.T + self.c

    def extra_repr(self) -> str:
        kind = "gaussian-prior pre-image" if self.with_prior else "pseudo-inverse"
        return f"{self.A.shape[0]} <- {self.A.shape[1]}, {kind}"


def conv_matrix(conv: nn.Conv2d, in_shape: tuple[int, int, int]) -> torch.Tensor:
    """The matrix ``M`` (float64, ``out_features x in_features``) with ``conv(x) - bias = M
    x.flatten()``.

    Column ``j`` is the convolution's response to the ``j``-th unit input (no bias), so ``M`` has
    ``C_out H_out W_out`` rows and ``C_in H W`` columns (3136 x 784 for ``cnn_nopool``'s first
    layer).
    """
    if tuple(in_shape[:1]) != (conv.in_channels,) or len(in_shape) != 3:
        raise ValueError(
            f"{conv!r} takes inputs of shape ({conv.in_channels}, H, W), got in_shape "
            f"{tuple(in_shape)}"
        )
    n = math.prod(in_shape)
    weight = conv.weight.detach().double()
    basis = torch.eye(n, dtype=torch.float64, device=weight.device).reshape(n, *in_shape)
    response = F.conv2d(basis, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return response.reshape(n, -1).T


class InverseConv2d(nn.Module):
    """Inverse of a ``Conv2d`` on inputs of shape ``in_shape``: the pseudo-inverse of its matrix.

    Exact where the convolution is injective (``conv_matrix`` has full column rank), the
    minimum-norm pre-image where it narrows; one precomputed matrix product per batch, like
    :class:`InverseLinear`.
    """

    def __init__(
        self, conv: nn.Conv2d, in_shape: tuple[int, int, int], rcond: float = 1e-10
    ) -> None:
        super().__init__()
        if conv.padding_mode != "zeros":
            raise UnsupportedLayerError(
                f"{conv!r}: only zero padding is supported (its matrix is then exact)"
            )
        matrix = conv_matrix(conv, in_shape)
        bias = (
            conv.bias.detach().double()
            if conv.bias is not None
            else torch.zeros(conv.out_channels, dtype=torch.float64)
        )
        self.out_shape = tuple(
            F.conv2d(
                torch.zeros(1, *in_shape, dtype=torch.float64, device=matrix.device),
                conv.weight.detach().double(),
                None,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
            ).shape[1:]
        )
        self.in_shape = tuple(in_shape)
        dtype = conv.weight.dtype
        inverse, self.rank = pinv_and_rank(matrix, rcond)  # one SVD: the inverse and the rank
        self.register_buffer("A", inverse.to(dtype))
        self.register_buffer(
            "b", bias.to(matrix.device).repeat_interleave(math.prod(self.out_shape[1:])).to(dtype)
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[1:]) != self.out_shape:
            raise ValueError(
                f"this inverse of a convolution takes features of shape {self.out_shape} per "
                f"sample, got {tuple(y.shape)}"
            )
        _require_finite(y, "Conv2d")
        return ((y.flatten(1) - self.b) @ self.A.T).reshape(len(y), *self.in_shape)

    def extra_repr(self) -> str:
        n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
        kind = (
            "exact (injective)"
            if self.rank == n_in
            else f"minimum-norm pre-image (rank {self.rank} < {n_in})"
        )
        return f"{self.in_shape} <- {self.out_shape}, {n_in} <- {n_out}, {kind}"


def _require_finite(y: torch.Tensor, layer: str) -> None:
    bad = int((~torch.isfinite(y)).sum())
    if bad:
        raise ValueError(
            f"the input of the inverse of {layer} holds {bad} NaN/inf values of {y.numel()}: no "
            f"finite "
            f"pre-image exists; check the features passed in (and the layer that produced them)"
        )


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
            raise UnsupportedLayerError(
                f"LeakyReLU with slope {negative_slope} is not invertible (slope must be > 0)."
            )
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.kind, self.negative_slope, self.eps = kind, negative_slope, eps
        self.clamped = 0  # values moved into the domain since the last reset
        self.seen = 0  # values inverted since the last reset

    def clamp_to_domain(self, y: torch.Tensor) -> torch.Tensor:
        """Move out-of-domain values to ``[lo + eps, hi - eps]`` and count them; NaN/inf is an
        error."""
        _require_finite(y, self.kind)
        lo, hi = self.DOMAINS[self.kind]
        if math.isfinite(hi) and y.is_floating_point() and self.eps < torch.finfo(y.dtype).eps:
            raise ValueError(
                f"eps={self.eps:g} is below {y.dtype}'s resolution near {hi:g} "
                f"({torch.finfo(y.dtype).eps:.1e}): {hi:g} - eps rounds to {hi:g} and the "
                f"{self.kind} inverse would be infinite. Use eps >= "
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


#: the layer types inverted here; a subclass that overrides ``forward`` computes another map and is
#: refused
_INVERTIBLE = (
    nn.Linear,
    nn.Conv2d,
    nn.LeakyReLU,
    nn.ReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
)


def _invert_layer(
    module: nn.Module,
    index: int,
    prior: tuple[torch.Tensor, torch.Tensor] | None,
    eps: float,
    damping: float,
    in_shape: tuple[int, ...] | None,
) -> nn.Module:
    base = next((t for t in _INVERTIBLE if isinstance(module, t)), None)
    if base is not None and type(module).forward is not base.forward:
        raise UnsupportedLayerError(
            f"Layer {index} ({type(module).__name__}) is a {base.__name__} with its own forward: "
            f"what it computes need not be what {base.__name__} computes, so {base.__name__}'s "
            f"inverse could be silently wrong. Invert the part of the model before it "
            f"(model[:{index}]), or use feature matching (optimise.match_features) or a learned "
            f"inverse (reversenet_utils.progressive), which only run the layer forward."
        )
    if isinstance(module, nn.Linear):
        return InverseLinear(module, prior=prior, damping=damping)
    if isinstance(module, nn.Conv2d):
        if in_shape is None:
            raise ValueError(
                f"layer {index} ({module!r}): inverting a convolution needs input_shape (e.g. (1, "
                f"28, 28))"
            )
        return InverseConv2d(module, in_shape)
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
            raise UnsupportedLayerError(
                f"layer {index} ({module!r}): only Flatten(start_dim, -1) is supported"
            )
        return _Unflatten(module.start_dim)
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return nn.Identity()
    if isinstance(module, nn.MaxPool2d):
        raise UnsupportedLayerError(
            f"Layer {index} ({module!r}) keeps each window's maximum but not where it was: no "
            f"inverse from the pooled values alone. Given the pooling indices, invert a "
            f"Conv2d-ReLU-MaxPool2d block with analytic.invert_conv_relu_pool; otherwise invert "
            f"model[:{index}], match features by optimisation (optimise.match_features) or use a "
            f"learned inverse (reversenet_utils.progressive)."
        )
    raise UnsupportedLayerError(
        f"Layer {index} ({module!r}) has no analytic inverse here. Supported: Linear, Conv2d, "
        f"LeakyReLU, ReLU, Sigmoid, Tanh, Flatten, Identity, Dropout. Invert the part of the model "
        f"before it (e.g. model[:{index}]) or use a learned inverse (reversenet_utils.progressive)."
    )


def _output_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The per-sample output shape of ``module`` on inputs of ``shape``; ``None`` where it does not
    take them (e.g. a chain that starts with ``Linear`` given the default image shape: only a later
    ``Conv2d`` needs it)."""
    param = next(module.parameters(), None)
    probe = torch.zeros(
        1,
        *shape,
        dtype=param.dtype if param is not None else None,
        device=param.device if param is not None else None,
    )
    try:
        with torch.no_grad():
            return tuple(module(probe).shape[1:])
    except RuntimeError:
        return None


class _Unflatten(nn.Module):
    """Inverse of ``Flatten(start_dim)``: restores the shape recorded from the last forward
    input."""

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
    """The analytic inverse of ``model``, an ``nn.Sequential`` of supported layers, as an
    ``nn.Sequential``.

    ``invert(model)(model(x))`` maps outputs back to inputs; the inverse of ``model[:k]`` inverts
    from the output of layer ``k - 1``. Its layers run in reverse order, in ``model``'s dtype.

    Args:
        model: the chain to invert (not modified). input_shape: the shape of one input without the
            batch dimension; ``Flatten`` is undone to it. ``None`` leaves the reconstruction flat.
            priors: optional ``{layer index: (mean, cov)}`` of the inputs of ``Linear`` layers, e.g.
            from :func:`linear_input_stats`; those layers get the Gaussian-prior pre-image. eps:
            margin kept inside each activation inverse's domain. damping: relative ridge ``lambda``
            of the prior pre-image.

    Raises:
        UnsupportedLayerError: naming the first layer that cannot be inverted and what to do.
    """
    if not isinstance(model, nn.Sequential):
        raise UnsupportedLayerError(
            f"invert() takes an nn.Sequential chain, got {type(model).__name__}."
        )
    priors = dict(priors or {})
    linear = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    misplaced = sorted(i for i in priors if i not in linear)
    if misplaced:
        raise ValueError(
            f"priors given for layers {misplaced}, which are not Linear layers of the model; its "
            f"Linear layers are at {linear} (a prior describes the input of a Linear layer)"
        )
    # the per-sample shape at each layer's input, traced through the whole chain before any inverse
    # is built
    shapes = [tuple(input_shape) if input_shape is not None else None]
    for index, module in enumerate(model):
        shape = shapes[-1]
        if not isinstance(module, _INVERTIBLE):
            # raises: say that the layer has no inverse first
            _invert_layer(module, index, None, eps, damping, None)
        # (and a probe would draw dropout's randomness)
        keeps_shape = isinstance(module, (nn.Identity, nn.Dropout))
        traced = (
            shape if keeps_shape else _output_shape(module, shape) if shape is not None else None
        )
        if (
            shape is not None
            and traced is None
            and not (index == 0 and isinstance(module, nn.Linear))
        ):
            # (a chain that starts with a dense layer takes vectors: the image shape does not apply
            # to it)
            raise ValueError(
                f"input_shape={tuple(input_shape)}: layer {index} ({module!r}) cannot take inputs "
                f"of shape {shape} there, so the model does not take inputs of that shape and an "
                f"inverse built for it would be wrong. Give the shape of one input the model "
                f"takes, without the batch dimension (MNIST: (1, 28, 28)), or None for a chain of "
                f"dense layers."
            )
        shapes.append(traced)
    inverses = []
    for index, module in enumerate(model):
        inv = _invert_layer(module, index, priors.pop(index, None), eps, damping, shapes[index])
        if isinstance(inv, _Unflatten) and shapes[index] is not None:
            inv.shape = tuple(shapes[index][module.start_dim - 1 :])
        inverses.append(inv)
    return nn.Sequential(*reversed(inverses))


def invert_conv_relu_pool(
    block: nn.Sequential,
    pooled: torch.Tensor,
    indices: torch.Tensor,
    steps: int = 150,
    batch_size: int = 1000,
    tol: float = 1e-7,
) -> torch.Tensor:
    """The input of a ``Conv2d - ReLU - MaxPool2d`` block from its output **and its pooling
    indices**.

    Each positive pooled value ``v`` at window position ``i`` (from ``indices``, as returned by
    ``max_pool2d(..., return_indices=True)``) is one linear equation ``(W x + b)_i = v``; a zero
    says only ``(W x + b)_i <= 0`` and is left out. The least-squares solution of the equations, by
    conjugate gradients on the normal equations (CGLS), batched, from zero, stopping at ``steps`` or
    when every image's relative residual is below ``tol``. Exact (to float precision) where the
    equations determine ``x``: for ``cnn_pool``'s first block, about 2 000 equations for 784 pixels.
    The indices are privileged knowledge: a party that sees only the pooled values does not have
    them.
    """
    layers = list(block)
    if len(layers) != 3 or not (
        isinstance(layers[0], nn.Conv2d)
        and isinstance(layers[1], nn.ReLU)
        and isinstance(layers[2], nn.MaxPool2d)
    ):
        raise UnsupportedLayerError(
            f"invert_conv_relu_pool inverts a Conv2d-ReLU-MaxPool2d block, got {block!r}"
        )
    if pooled.shape != indices.shape:
        raise ValueError(
            f"pooled values {tuple(pooled.shape)} and indices {tuple(indices.shape)} must have one "
            f"shape"
        )
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    _require_finite(pooled, "MaxPool2d")
    conv, pool = layers[0], layers[2]
    if conv.padding_mode != "zeros" or conv.groups != 1:
        raise UnsupportedLayerError(f"{conv!r}: only zero padding and groups=1 are supported")
    weight = conv.weight.detach()
    bias = (
        conv.bias.detach()
        if conv.bias is not None
        else torch.zeros(conv.out_channels, device=weight.device)
    )
    in_hw = _conv_input_size(conv, pool, pooled.shape[-2:])
    conv_hw = tuple(
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, p, d, k, st in zip(in_hw, conv.padding, conv.dilation, conv.kernel_size, conv.stride)
    )
    out = []
    for start in progress_bar(
        range(0, len(pooled), batch_size),
        desc="conv-ReLU-pool least squares",
        unit="batch",
        mininterval=1.0,
        disable=len(pooled) <= batch_size,
    ):
        v, idx = pooled[start : start + batch_size], indices[start : start + batch_size]
        known = F.max_unpool2d(
            (v > 0).to(weight.dtype), idx, pool.kernel_size, pool.stride, pool.padding, conv_hw
        )
        goal = (
            F.max_unpool2d(
                v.to(weight.dtype), idx, pool.kernel_size, pool.stride, pool.padding, conv_hw
            )
            - bias.view(1, -1, 1, 1)
        ) * known

        def forward(x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation) * known

        def adjoint(r: torch.Tensor) -> torch.Tensor:
            out_pad = tuple(
                s - ((c - 1) * st - 2 * p + d * (k - 1) + 1)
                for s, c, st, p, d, k in zip(
                    in_hw, conv_hw, conv.stride, conv.padding, conv.dilation, conv.kernel_size
                )
            )
            return F.conv_transpose2d(
                r, weight, None, conv.stride, conv.padding, out_pad, 1, conv.dilation
            )

        out.append(_cgls(forward, adjoint, goal, (len(v), conv.in_channels, *in_hw), steps, tol))
    return torch.cat(out)


def _conv_input_size(
    conv: nn.Conv2d, pool: nn.MaxPool2d, pooled_hw: Sequence[int]
) -> tuple[int, int]:
    """The input height and width of a conv - ReLU - pool block with ``pooled_hw`` outputs (stride-1
    'same' convolutions and non-overlapping pools, as the targets here use)."""
    k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    if conv.stride != (1, 1) or any(
        2 * p != d * (s - 1) for p, d, s in zip(conv.padding, conv.dilation, conv.kernel_size)
    ):
        raise UnsupportedLayerError(
            f"{conv!r}: invert_conv_relu_pool needs a stride-1 convolution that keeps the size"
        )
    return tuple(int(s) * k for s in pooled_hw)


@torch.no_grad()
def _cgls(
    forward, adjoint, goal: torch.Tensor, shape: tuple[int, ...], steps: int, tol: float
) -> torch.Tensor:
    """Least squares ``min ||forward(x) - goal||`` per sample by conjugate gradients on the normal
    equations (CGLS), until their residual ``||adjoint(forward(x) - goal)||`` falls below ``tol`` of
    its start for every sample."""
    x = torch.zeros(shape, dtype=goal.dtype, device=goal.device)
    r = goal.clone()
    s = adjoint(r)
    p, gamma = s.clone(), s.flatten(1).pow(2).sum(1)
    start = gamma.sqrt().clamp_min(1e-30)
    for _ in range(steps):
        q = forward(p)
        alpha = gamma / q.flatten(1).pow(2).sum(1).clamp_min(1e-30)
        x += alpha.view(-1, *[1] * (x.dim() - 1)) * p
        r -= alpha.view(-1, *[1] * (r.dim() - 1)) * q
        s = adjoint(r)
        new_gamma = s.flatten(1).pow(2).sum(1)
        if (
            new_gamma.sqrt() / start
        ).max() < tol:  # the normal equations hold to tol for every sample
            break
        p = s + (new_gamma / gamma.clamp_min(1e-30)).view(-1, *[1] * (x.dim() - 1)) * p
        gamma = new_gamma
    return x


def prior_inverse(
    model: nn.Sequential,
    priors: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
    damping: float,
    input_shape: tuple[int, ...] | None = (1, 28, 28),
    eps: float = DEFAULT_EPS,
) -> nn.Sequential:
    """The Gaussian-prior inverse of ``model``, a prefix ``net[:d]`` of the network that ``priors``
    (from :func:`linear_input_stats` of ``net``) describe; priors of layers beyond the prefix are
    dropped."""
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
    sweep = {
        lam: psnr(clip_images(prior_inverse(model, priors, lam, shape)(features)), held_out)
        for lam in grid
    }
    return max(sweep, key=sweep.get), sweep


def boundary_inverses(
    net: nn.Sequential,
    ends: Sequence[int],
    images: torch.Tensor,
    held_out: torch.Tensor,
    damping_grid: Sequence[float],
) -> dict[tuple[str, int], nn.Sequential]:
    """Notebook 02's pseudo-inverse and prior pre-image of ``net[:end]`` for every block boundary
    ``end`` of ``ends``: ``{("pinv", k): ..., ("prior pre-image", k): ...}`` with ``k`` 1-based;
    empty where a layer does not invert. The priors come from ``images``; each boundary's ridge is
    chosen on ``held_out`` images, as :func:`choose_damping` does.

    The inverse of ``net[:end]`` is the last ``end`` layers of the whole network's inverse
    (``invert`` reverses the layers, each inverted on its own), so each inverse is built once, not
    once per boundary: a convolution's pseudo-inverse takes seconds. Each prior pre-image records
    its chosen ridge as ``.damping``.
    """
    try:
        pinv_all = invert(net)
    except UnsupportedLayerError:
        return {}
    priors = linear_input_stats(net, images)
    n = len(net)
    # only the Linear layers' inverses depend on the ridge: the others (a convolution's
    # pseudo-inverse: an SVD) are pinv_all's, shared by every ridge's inverse (layer i of net is
    # layer n - 1 - i of its inverse)
    with_prior = {
        lam: nn.Sequential(
            *(
                InverseLinear(net[n - 1 - j], priors[n - 1 - j], lam)
                if n - 1 - j in priors
                else layer
                for j, layer in enumerate(pinv_all)
            )
        )
        for lam in damping_grid
    }
    inverses: dict[tuple[str, int], nn.Sequential] = {}
    for k, end in enumerate(ends, start=1):
        inverses[PINV, k] = pinv_all[n - end :]
        # no prior applies: the prior pre-image is pinv
        if not any(isinstance(m, nn.Linear) for m in net[:end]):
            inverses[PRIOR, k] = pinv_all[n - end :]
            continue
        with torch.no_grad():
            features = net[:end](held_out)
        score = {
            lam: psnr(clip_images(inv[n - end :](features)), held_out)
            for lam, inv in with_prior.items()
        }
        best = max(score, key=score.get)
        inverses[PRIOR, k] = with_prior[best][n - end :]
        inverses[PRIOR, k].damping = best  # the ridge chosen for this boundary
    return inverses


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
    """Mean and covariance (float64) of the input of every ``Linear`` layer of ``model`` over
    ``images``.

    The result feeds ``invert(model, priors=...)``. Each batch's products are float32 (float64 for a
    float64 model), taken around a provisional mean (the first batch's, so that no large mean
    cancels), and summed in float64: within about 1e-6 of a float64 pass, at float32's cost
    (cnn_nopool's 1568 features over 55 000 images: one 1568 x 1568 product a batch).
    """
    index_of = {i: m for i, m in enumerate(model) if isinstance(m, nn.Linear)}
    shift: dict[
        int, torch.Tensor
    ] = {}  # a provisional mean (the first batch's): products of centred values
    sums: dict[int, torch.Tensor] = {}
    outer: dict[int, torch.Tensor] = {}
    n = 0
    device = next(model.parameters()).device
    for start in range(0, len(images), batch_size):
        h = images[start : start + batch_size].to(device)
        for i, module in enumerate(model):
            if i in index_of:
                flat = h.reshape(len(h), -1).to(
                    torch.float64 if h.dtype == torch.float64 else torch.float32
                )
                centred = flat - shift.setdefault(i, flat.mean(0))
                sums[i] = sums.get(i, 0) + centred.sum(0).double()
                outer[i] = outer.get(i, 0) + (centred.T @ centred).double()
            h = module(h)
        n += len(images[start : start + batch_size])
    stats = {}
    for i in index_of:
        offset = sums[i] / n
        stats[i] = (
            (shift[i].double() + offset).cpu(),
            (outer[i] / n - torch.outer(offset, offset)).cpu(),
        )
    return stats


@torch.no_grad()
def inversion_trace(
    model: nn.Sequential, inverse: nn.Sequential, y: torch.Tensor
) -> tuple[torch.Tensor, list[dict]]:
    """Run ``inverse = invert(model)`` on ``y`` one step at a time and report what each step did.

    - a ``Linear`` step solves ``W x + b = h`` by least squares: its relative residual
      ``||W x + b - h|| / ||h||`` is 0 when ``h`` lies in the layer's range and grows as ``h``
      leaves it;
    - an activation step reports the share of values it had to clamp into its domain.

    Returns the reconstruction and one dict per step (``step``, ``residual`` or ``clamped``).
    """
    if (
        not isinstance(model, nn.Sequential)
        or not isinstance(inverse, nn.Sequential)
        or len(model) != len(inverse)
    ):
        raise ValueError(
            f"inversion_trace needs the model (an nn.Sequential) and its inverse = invert(model), "
            f"one step per layer; got {type(model).__name__} and {type(inverse).__name__} of "
            f"{len(model) if hasattr(model, '__len__') else '?'} and "
            f"{len(inverse) if hasattr(inverse, '__len__') else '?'} layers"
        )
    if not isinstance(y, torch.Tensor) or y.dim() < 2 or len(y) == 0 or not torch.isfinite(y).all():
        nonfinite = isinstance(y, torch.Tensor) and y.numel() and not torch.isfinite(y).all()
        raise ValueError(
            f"y must be a non-empty batch of finite outputs of the model (N, ...), got "
            f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
            + (" holding NaN/inf" if nonfinite else "")
        )
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
            rows.append(
                {
                    "step": name,
                    "residual": ((layer(out) - h).norm() / h.norm().clamp_min(1e-30)).item(),
                }
            )
        else:
            out = inv(h)
        h = out
    return h, rows
