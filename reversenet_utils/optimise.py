"""Optimisation-based inversion: find an input whose features match, by gradient descent on the
input.

- :func:`optimise_preimage`: the generic solver, ``argmin_z loss(fn(z), target) + prior(z)`` by
  Adam, batched (the VAE decoder inversion of notebook 05, the input synthesis of ``synthetic``);
- :func:`invert_by_optimisation`: feature matching from mid-grey with a total-variation prior by
  Adam (He et al.'s rMLE recipe), the first-order baseline of notebooks 04 and 07;
- :func:`match_features`: feature matching at the limit, by L-BFGS (strong Wolfe line search) in
  float64, from grey or from a given start (a learned inverse's output: the hybrid); with snapshots
  for quality-against-time curves;
- :func:`total_variation`: the image prior, shared with ``featureviz``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .checks import whole_number
from .context import fast_layout
from .lbfgs import make_lbfgs
from .progress import progress_bar

__all__ = [
    "optimise_preimage",
    "invert_by_optimisation",
    "match_features",
    "FeatureMatch",
    "smooth_total_variation",
    "total_variation",
]


def optimise_preimage(
    fn: nn.Module,
    target: torch.Tensor,
    init: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int = 100,
    lr: float = 0.1,
    batch_size: int = 2500,
    prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    desc: str = "pre-image",
) -> torch.Tensor:
    """Pre-image by optimisation: ``argmin_z loss(fn(z), target) + prior(z)`` by Adam from ``init``.

    ``loss`` and ``prior`` return one value per sample (e.g. summed BCE per image, a total-variation
    penalty); batches of ``batch_size`` rows are optimised independently for ``steps`` steps each,
    with one progress bar. ``fn`` is frozen.
    """
    whole_number(steps, "steps")
    whole_number(batch_size, "batch_size")
    if not isinstance(init, torch.Tensor) or not init.is_floating_point():
        raise TypeError(
            f"init must be a floating-point tensor (the starting inputs), got {type(init).__name__}"
            + (f" of {init.dtype}" if isinstance(init, torch.Tensor) else "")
        )
    if not isinstance(target, torch.Tensor):  # features, or class labels for a classification loss
        raise TypeError(f"target must be a tensor, got {type(target).__name__}")
    for name, value in (("target", target), ("init", init)):
        if value.dim() == 0 or (value.is_floating_point() and not torch.isfinite(value).all()):
            raise ValueError(
                f"{name} must be a batch (N, ...) of finite values; got shape {tuple(value.shape)}"
                + (" holding NaN/inf" if value.dim() else "")
            )
    if init.shape[0] != target.shape[0]:
        raise ValueError(f"init has {init.shape[0]} rows but target has {target.shape[0]}")
    if len(target) == 0:
        raise ValueError("nothing to invert: target holds no rows")
    out = []
    with progress_bar(
        total=steps * -(-len(target) // batch_size), desc=desc, unit="step", mininterval=1.0
    ) as bar:
        for start in range(0, len(target), batch_size):
            z = init[start : start + batch_size].detach().clone().requires_grad_(True)
            goal = target[start : start + batch_size]
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                value = loss(fn(z), goal).sum()
                if prior is not None:
                    value = value + prior(z).sum()
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                bar.update()
            out.append(z.detach())
    return torch.cat(out)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of each image (N, C, H, W): mean absolute difference of
    neighbours.

    The usual smoothness prior of optimisation-based inversion."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


#: images per batch of :func:`invert_by_optimisation`. Every image's loss and Adam's update are its
#: own, so batching changes no result but float rounding (measured: the same images bit for bit, 500
#: images of ``cnn_pool``); on a 2-core CPU 500 images in one batch took 3.8 s for 40 steps from
#: block 1 against 1.9 s in batches of 256 (logits: 3.6 against 3.0 s): large batches' freed
#: activations are returned to the system and faulted in again at every step.
OPTIMISATION_BATCH = 256


def invert_by_optimisation(
    feature_fn: nn.Module,
    features: torch.Tensor,
    steps: int = 200,
    lr: float = 0.05,
    tv_weight: float = 0.01,
    shape: tuple[int, ...] = (1, 28, 28),
    batch_size: int = OPTIMISATION_BATCH,
) -> torch.Tensor:
    """Optimisation-based inversion: Adam on the input (``x = sigmoid(z)``, from mid-grey),
    minimising the relative squared error ``||feature_fn(x) - f||^2 / ||f||^2`` plus a
    total-variation prior; ``batch_size`` images at a time (each image's optimisation is independent
    of the others: the same result for any batch)."""
    init = torch.zeros(len(features), *shape, device=features.device)
    feature_fn = _frozen_copy(feature_fn)
    z = optimise_preimage(
        lambda z: feature_fn(torch.sigmoid(z)),
        features,
        init,
        lambda out, f: (
            (out - f).pow(2).flatten(1).sum(1) / f.pow(2).flatten(1).sum(1).clamp_min(1e-12)
        ),
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        prior=lambda z: tv_weight * total_variation(torch.sigmoid(z)),
        desc="optimisation-based inversion",
    )
    return torch.sigmoid(z)


def smooth_total_variation(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Total variation made differentiable at zero, ``mean sqrt(d^2 + eps^2)`` over neighbour
    differences, per image: the smoothness prior a quasi-Newton method (L-BFGS) can use."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).add(eps**2).sqrt().flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).add(eps**2).sqrt().flatten(1).mean(1)
    return dx + dy


@dataclass
class FeatureMatch:
    """What :func:`match_features` found: the images, and how long it took to get there.

    ``snapshots[s]`` is the reconstruction after ``s`` L-BFGS iterations (the final one if every
    batch stopped earlier) and ``seconds[s]`` the wall-clock time all batches took to get there;
    ``iterations`` is the largest number of iterations a batch ran, ``residual`` the largest
    relative feature error left, ``||f(x) - f||^2 / ||f||^2`` per image."""

    images: torch.Tensor
    iterations: int
    residual: float
    total_seconds: float
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)


def match_features(
    feature_fn: nn.Module,
    features: torch.Tensor,
    steps: int = 500,
    init: torch.Tensor | None = None,
    shape: tuple[int, ...] = (1, 28, 28),
    batch_size: int = 64,
    snapshots: Sequence[int] = (),
    prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float64,
    tol: float = 1e-14,
    history: int = 100,
    bounded: bool = False,
    stall: float = 0.0,
    stall_window: int = 100,
) -> FeatureMatch:
    """Feature matching at the limit: ``argmin_x ||feature_fn(x) - f||^2 / ||f||^2 (+ prior(x))``
    by L-BFGS.

    Plain feature matching has no prior: where ``feature_fn`` is injective its only minimum is the
    input, and a second-order method in float64 reaches it to float precision. ``prior`` (per-image
    values, e.g. ``lambda x: w * smooth_total_variation(x)``) gives the regularised variant for maps
    that are not.

    Batches of ``batch_size`` images are solved one after another, each as one L-BFGS problem (the
    loss is a sum over its images) for at most ``steps`` iterations, until every image's relative
    feature error is below ``tol``, or, with ``stall > 0``, until it stalls: its loss fell by less
    than the fraction ``stall`` over the last ``stall_window`` iterations. A stalled batch keeps the
    images it has. Off by default: a plateau need not be the end (on Fashion-MNIST, ``cnn_pool``'s
    injective block 1 sat at 53.8 dB, its loss flat, after 300 iterations, and reaches float
    precision later); ``injectivity.injectivity_map`` uses it only where the image provably cannot
    be recovered. Starts from mid-grey, or from ``init`` (e.g. a learned inverse's output: the
    hybrid). ``snapshots`` lists iteration counts at which to keep the reconstruction and the time
    taken, for a quality-against-time curve from one run. ``bounded=True`` searches images in [0, 1]
    only (``x = sigmoid(z)``), for features that an unconstrained pre-image would match only outside
    the image range (the logits). Returns a :class:`FeatureMatch`; unbounded images are not clipped.
    """
    _check_matching(features, steps, init, batch_size, snapshots, history, stall, stall_window)
    fn = _frozen_copy(feature_fn, dtype)
    marks = sorted(set(snapshots) | {steps})
    checks = sorted(
        set(marks) | (set(range(stall_window, steps, stall_window)) if stall else set())
    )  # stall tests
    parts: dict[int, list[torch.Tensor]] = {m: [] for m in marks}
    seconds = dict.fromkeys(marks, 0.0)
    most, worst = 0, 0.0
    with progress_bar(
        total=-(-len(features) // batch_size) * steps,
        desc="feature matching (L-BFGS)",
        unit="it",
        mininterval=1.0,
    ) as bar:
        for start in range(0, len(features), batch_size):
            goal = features[start : start + batch_size].to(dtype)
            scale = goal.flatten(1).pow(2).sum(1).clamp_min(1e-30)
            x0 = (
                init[start : start + batch_size].to(dtype)
                if init is not None
                else torch.full((len(goal), *shape), 0.5, dtype=dtype, device=goal.device)
            )
            if bounded:  # a start on the edge of [0, 1] would sit where sigmoid is flat
                x0 = torch.logit(x0.clamp(1e-3, 1 - 1e-3))
            z = x0.detach().clone().requires_grad_(True)

            def image() -> torch.Tensor:
                return torch.sigmoid(z) if bounded else z

            # torch.optim.LBFGS's budget of evaluations
            opt = make_lbfgs(z, history, max_eval=steps * 5 // 4)

            def relative_error() -> torch.Tensor:
                return (fn(image()) - goal).pow(2).flatten(1).sum(1) / scale

            def closure() -> torch.Tensor:
                z.grad = None
                value = relative_error().sum()
                if prior is not None:
                    value = value + prior(image()).sum()
                value.backward()
                return value

            begin, done, stopped, last = time.perf_counter(), 0, False, None
            for mark in checks:
                if not stopped:
                    opt.step(closure, mark - done)
                    ran = opt.n_iter
                    with torch.no_grad():  # converged, L-BFGS found no further descent, or stalled
                        error = relative_error()
                        value = (
                            error.sum() + (prior(image()).sum() if prior is not None else 0)
                        ).item()
                        stopped = ran < mark or (prior is None and bool((error < tol).all()))
                        stopped = stopped or (
                            last is not None and last - value <= stall * abs(last)
                        )
                    bar.update(mark - done)
                    done, most, last = mark, max(most, ran), value
                if mark in parts:
                    with torch.no_grad():
                        parts[mark].append(image().detach().clone())
                    seconds[mark] += time.perf_counter() - begin
            bar.update(steps - done)
            with torch.no_grad():
                worst = max(worst, relative_error().max().item())
    out = {m: torch.cat(p).to(features.dtype) for m, p in parts.items()}
    return FeatureMatch(
        images=out[steps],
        iterations=most,
        residual=worst,
        total_seconds=seconds[steps],
        snapshots={m: out[m] for m in snapshots},
        seconds={m: seconds[m] for m in snapshots},
    )


def _check_matching(
    features: torch.Tensor,
    steps: int,
    init: torch.Tensor | None,
    batch_size: int,
    snapshots: Sequence[int],
    history: int,
    stall: float,
    stall_window: int,
) -> None:
    """:func:`match_features`' arguments, checked: a clear error for each bad one."""
    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("history", history),
        ("stall_window", stall_window),
    ):
        whole_number(value, name)
    if not (isinstance(stall, (int, float)) and 0 <= stall < 1):
        raise ValueError(f"stall must be a fraction in [0, 1) (0: never stop early), got {stall!r}")
    bad = [
        s for s in snapshots if not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= steps
    ]
    if bad:
        raise ValueError(f"snapshots must be iteration counts in 1..steps={steps}, got {bad}")
    if len(features) == 0:
        raise ValueError("nothing to invert: features hold no rows")
    if init is not None and len(init) != len(features):
        raise ValueError(f"init has {len(init)} rows but features has {len(features)}")
    if not torch.isfinite(features).all():
        raise ValueError("features hold NaN/inf: no input matches them; check what produced them")


def _frozen_copy(module: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of ``module`` in ``dtype`` (None: its own), in its fastest memory layout
    (``context.fast_layout``), in eval mode, with gradients off (the caller's module is
    untouched)."""
    module = copy.deepcopy(module).to(dtype).eval()
    module.to(memory_format=fast_layout(module))
    for p in module.parameters():
        p.requires_grad_(False)
    return module
