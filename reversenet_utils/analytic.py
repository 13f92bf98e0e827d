"""Analytic inverses: a network is a chain of affine maps and activations, so invert each piece.

:func:`invert` chains the inverse of every layer of an ``nn.Sequential`` (nested blocks included)
in reverse order; :mod:`~reversenet_utils.layer_inverses` holds the inverse of each layer kind:

- ``Linear``: subtract the bias, then apply the Moore-Penrose pseudo-inverse ``W^+``. For a
  square invertible ``W`` that is the exact inverse; for a narrowing layer (fewer outputs than
  inputs) ``W^+ y`` is the *minimum-norm* pre-image: of all ``x`` with ``W x = y`` the one with no
  component in the null space of ``W``. Optionally a Gaussian prior (mean ``mu``, covariance
  ``Sigma`` of the layer's inputs) replaces "smallest norm" by "most likely under the data":
  ``x = mu + Sigma W^T (W Sigma W^T + lambda I)^{-1} (y - b - W mu)``, still a pre-image.
- Every other affine layer (convolutions of any kind, transposed convolutions, average pooling,
  upsampling, padding, batch norm in eval mode): a linear map too. Its matrix (the response to
  every input unit) gets the same pseudo-inverse, so ``invert`` undoes it exactly where it is
  injective (the first blocks of both CNNs) and returns the minimum-norm pre-image where it
  narrows.
- Activations: the invertible ones by their inverse (``LeakyReLU`` divides negatives by the slope,
  ``Sigmoid^{-1} = logit``, ``Tanh^{-1} = atanh``, ELU, Softplus, ...), ``ReLU`` and the clipping
  ones by their identity pre-image (zeros stay zero).
- ``MaxPool2d`` keeps one value of each window and not *which* one: no inverse from the pooled
  values alone. :func:`invert_conv_relu_pool` inverts a conv - ReLU - max-pool block **given the
  pooling indices** (privileged knowledge, said so wherever it is used): every positive pooled value
  is one exact equation ``(W x + b)[argmax] = value``; the input is their least-squares solution
  (conjugate gradients, batched).
- Reshapes by their inverse reshape; ``Identity`` and ``Dropout`` (eval mode) by identity.

When the analytic chain fails (an input far from the network's range), :func:`inversion_trace`
shows where, and ``optimise.optimise_preimage`` finds a pre-image by gradient descent instead.

Domain handling. An activation inverse is defined on an interval (logit on (0, 1), atanh on
(-1, 1), leaky ReLU on the reals, ReLU's pre-image on [0, inf)). Finite values outside
``[lo + eps, hi - eps]`` (an infinite end becomes ``-/+ 1/eps``) are clamped into it and *counted*,
per layer: ``domain_counts(inverse)`` reports them. NaN or inf in what is inverted is an error (no
finite image can honestly come of it), and so is an ``eps`` too small for the tensor's dtype (in
float32, ``1 - 1e-9`` rounds to 1 and its logit is inf). ``eps`` defaults to :data:`DEFAULT_EPS` =
1e-6.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .labels import PINV, PRIOR
from .layer_inverses import (
    DEFAULT_EPS,
    CountingInverse,
    InverseLinear,
    UnsupportedLayerError,
    check_invertible,
    layer_inverse,
    require_finite,
)
from .metrics import clip_images, psnr
from .progress import progress_bar

__all__ = [
    "invert",
    "invert_conv_relu_pool",
    "prior_inverse",
    "choose_damping",
    "boundary_inverses",
    "domain_counts",
    "reset_domain_counts",
    "linear_input_stats",
    "inversion_trace",
]


def _output_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The per-sample output shape of ``module`` on inputs of ``shape``; ``None`` where it does not
    take them (e.g. a chain that starts with ``Linear`` given the default image shape: only a later
    affine layer needs it)."""
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


def _trace_shapes(
    model: nn.Sequential, input_shape: tuple[int, ...] | None
) -> list[tuple[int, ...] | None]:
    """The per-sample shape at each layer's input, and at the output, of ``model`` on inputs of
    ``input_shape``: traced through the whole chain before any inverse is built."""
    shapes = [tuple(input_shape) if input_shape is not None else None]
    for index, module in enumerate(model):
        shape = shapes[-1]
        traced = _output_shape(module, shape) if shape is not None else None
        # (a chain that starts with a dense layer takes vectors: the image shape does not apply)
        if (
            shape is not None
            and traced is None
            and not (index == 0 and isinstance(module, nn.Linear))
        ):
            raise ValueError(
                f"input_shape={tuple(input_shape)}: layer {index} ({module!r}) cannot take inputs "
                f"of shape {shape} there, so the model does not take inputs of that shape and an "
                f"inverse built for it would be wrong. Give the shape of one input the model "
                f"takes, without the batch dimension (MNIST: (1, 28, 28)), or None for a chain of "
                f"dense layers."
            )
        shapes.append(traced)
    return shapes


def invert(
    model: nn.Sequential,
    input_shape: tuple[int, ...] | None = (1, 28, 28),
    priors: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    eps: float = DEFAULT_EPS,
    damping: float = 1e-6,
) -> nn.Sequential:
    """The analytic inverse of ``model``, an ``nn.Sequential`` of layers that
    :mod:`~reversenet_utils.layer_inverses` inverts (nested ``nn.Sequential`` blocks included), as
    an ``nn.Sequential`` with one inverse per layer of ``model``.

    ``invert(model)(model(x))`` maps outputs back to inputs; the inverse of ``model[:k]`` inverts
    from the output of layer ``k - 1``. Its layers run in reverse order, in ``model``'s dtype.

    Args:
        model: the chain to invert (not modified; in eval mode). input_shape: the shape of one
            input without the batch dimension; reshapes are undone to it, and affine layers other
            than ``Linear`` are inverted for it. ``None`` (a chain of dense layers) leaves the
            reconstruction flat.
            priors: optional ``{layer index: (mean, cov)}`` of the inputs of top-level ``Linear``
            layers, e.g. from :func:`linear_input_stats`; those layers get the Gaussian-prior
            pre-image. eps: margin kept inside each activation inverse's domain. damping:
            relative ridge ``lambda`` of the prior pre-image.

    Raises:
        UnsupportedLayerError: naming the first layer that cannot be inverted, why, and what to
            do, before any inverse is built.
    """
    if not isinstance(model, nn.Sequential):
        raise UnsupportedLayerError(
            f"invert() takes an nn.Sequential chain, got {type(model).__name__}: give the layers "
            f"of a model of your own as nn.Sequential(...), or use feature matching "
            f"(optimise.match_features) or a learned inverse (reversenet_utils.progressive), "
            f"which take any module."
        )
    priors = dict(priors or {})
    linear = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    misplaced = sorted(i for i in priors if i not in linear)
    if misplaced:
        raise ValueError(
            f"priors given for layers {misplaced}, which are not Linear layers of the model; its "
            f"Linear layers are at {linear} (a prior describes the input of a Linear layer)"
        )
    for index, module in enumerate(model):
        check_invertible(module, index)  # say that a layer has no inverse before any shape error
    shapes = _trace_shapes(model, input_shape)
    inverses = [
        invert(module, shapes[index], eps=eps, damping=damping)
        if isinstance(module, nn.Sequential)
        else layer_inverse(module, index, shapes[index], priors.get(index), eps, damping)
        for index, module in enumerate(model)
    ]
    return nn.Sequential(*reversed(inverses))


def invert_conv_relu_pool(
    block: nn.Sequential,
    pooled: torch.Tensor,
    indices: torch.Tensor,
    steps: int = 150,
    batch_size: int = 1000,
    tol: float = 1e-7,
    input_shape: tuple[int, ...] | None = None,
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

    The convolution may have any kernel, stride, padding (mode included), dilation and groups: its
    adjoint is taken by automatic differentiation. ``input_shape`` (one input's ``(C, H, W)``, or
    ``(H, W)``) is needed where the pooled size does not determine the input's: anything but a
    stride-1 convolution that keeps the size followed by non-overlapping pooling.
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
    require_finite(pooled, "MaxPool2d")
    conv, pool = layers[0], layers[2]
    weight = conv.weight.detach()
    bias = (
        conv.bias.detach()
        if conv.bias is not None
        else torch.zeros(conv.out_channels, device=weight.device, dtype=weight.dtype)
    )
    if input_shape is None:
        in_hw = _conv_input_size(conv, pool, pooled.shape[-2:])
    else:
        in_hw = tuple(input_shape[-2:])
    conv_hw = _checked_conv_size(conv, pool, in_hw, tuple(pooled.shape[1:]))

    def linear(x: torch.Tensor) -> torch.Tensor:  # the convolution without its bias
        return conv._conv_forward(x, weight, None)

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
        shape = (len(v), conv.in_channels, *in_hw)

        def forward(x: torch.Tensor, known: torch.Tensor = known) -> torch.Tensor:
            return linear(x) * known

        # forward is linear, so its vector-Jacobian product at any point is its adjoint
        _, vjp = torch.func.vjp(forward, torch.zeros(shape, dtype=weight.dtype, device=v.device))
        out.append(_cgls(forward, lambda r, vjp=vjp: vjp(r)[0], goal, shape, steps, tol))
    return torch.cat(out)


def _conv_input_size(
    conv: nn.Conv2d, pool: nn.MaxPool2d, pooled_hw: Sequence[int]
) -> tuple[int, int]:
    """The input height and width of a conv - ReLU - pool block with ``pooled_hw`` outputs, where
    they follow from it: a stride-1 convolution that keeps the size and non-overlapping pools."""
    k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
    keeps = conv.stride == (1, 1) and (
        conv.padding == "same"
        if isinstance(conv.padding, str)
        else all(
            2 * p == d * (s - 1) for p, d, s in zip(conv.padding, conv.dilation, conv.kernel_size)
        )
    )
    if not keeps or stride != k or pool.padding not in (0, (0, 0)):
        raise ValueError(
            f"{conv!r} followed by {pool!r}: the pooled size does not say the input's size; give "
            f"input_shape (one input's (C, H, W))"
        )
    return tuple(int(s) * k for s in pooled_hw)


def _checked_conv_size(
    conv: nn.Conv2d, pool: nn.MaxPool2d, in_hw: tuple[int, ...], pooled: tuple[int, ...]
) -> tuple[int, int]:
    """The convolution's output size on inputs of ``in_hw``, checked against the pooled shape
    (shape arithmetic only, on the meta device; a padding mode other than zeros pads by as much)."""
    meta = torch.zeros(1, conv.in_channels, *in_hw, device="meta")
    conv_out = F.conv2d(
        meta, conv.weight.to("meta"), None, conv.stride, conv.padding, conv.dilation, conv.groups
    )
    after_pool = F.max_pool2d(
        conv_out, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode
    ).shape[1:]
    if tuple(after_pool) != tuple(pooled):
        raise ValueError(
            f"inputs of size {tuple(in_hw)} give pooled features of shape {tuple(after_pool)}, "
            f"not the {tuple(pooled)} given: give input_shape as the shape of one input of the "
            f"block"
        )
    return tuple(conv_out.shape[-2:])


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
        # no prior applies: the prior pre-image is pinv (the same module: its users invert once)
        if not any(isinstance(m, nn.Linear) for m in net[:end]):
            inverses[PRIOR, k] = inverses[PINV, k]
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
        if isinstance(m, CountingInverse)
    }


def reset_domain_counts(inverse: nn.Module) -> None:
    """Zero the clamping counters of every activation inverse in ``inverse``."""
    for m in inverse.modules():
        if isinstance(m, CountingInverse):
            m.reset_counts()


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
        if isinstance(inv, CountingInverse):
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
