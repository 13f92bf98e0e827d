"""Optimisation-based inversion: find an input whose features match, by gradient descent on the input.

- :func:`optimise_preimage`: the generic solver, ``argmin_z loss(fn(z), target) + prior(z)`` by Adam,
  batched (the VAE decoder inversion of notebook 05, the input synthesis of ``synthetic``);
- :func:`invert_by_optimisation`: feature matching from mid-grey with a total-variation prior, the
  optimisation baseline of notebooks 04 and 07;
- :func:`total_variation`: the image prior, shared with ``featureviz``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

__all__ = ["optimise_preimage", "invert_by_optimisation", "total_variation"]


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
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if init.shape[0] != target.shape[0]:
        raise ValueError(f"init has {init.shape[0]} rows but target has {target.shape[0]}")
    if len(target) == 0:
        raise ValueError("nothing to invert: target holds no rows")
    out = []
    with tqdm(total=steps * -(-len(target) // batch_size), desc=desc, unit="step", mininterval=1.0) as bar:
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
    """Anisotropic total variation of each image (N, C, H, W): mean absolute difference of neighbours.

    The usual smoothness prior of optimisation-based inversion."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


def invert_by_optimisation(
    feature_fn: nn.Module, features: torch.Tensor, steps: int = 200, lr: float = 0.05, tv_weight: float = 0.01,
    shape: tuple[int, ...] = (1, 28, 28),
) -> torch.Tensor:
    """Optimisation-based inversion: Adam on the input (``x = sigmoid(z)``, from mid-grey), minimising the
    relative squared error ``||feature_fn(x) - f||^2 / ||f||^2`` plus a total-variation prior."""
    init = torch.zeros(len(features), *shape, device=features.device)
    z = optimise_preimage(
        lambda z: feature_fn(torch.sigmoid(z)), features, init,
        lambda out, f: (out - f).pow(2).flatten(1).sum(1) / f.pow(2).flatten(1).sum(1).clamp_min(1e-12),
        steps=steps, lr=lr, batch_size=len(features), prior=lambda z: tv_weight * total_variation(torch.sigmoid(z)),
        desc="optimisation-based inversion",
    )
    return torch.sigmoid(z)
