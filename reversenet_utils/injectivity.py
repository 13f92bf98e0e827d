"""How much does each block destroy? The injectivity map of a target, block boundary by block
boundary.

Two measurements for the map ``x -> f_k(x)`` (the first ``k`` blocks) on test digits:

- **Local rank**: the numerical rank of its Jacobian at each digit (float64; singular values above
  ``max(m, n) * eps * sigma_max``, numpy's rule). Rank 784 means no direction of pixel space is lost
  to first order at that digit; fewer features than pixels caps the rank below 784.
- **Recovery**: plain feature matching (``optimise.match_features``: L-BFGS in float64, no prior,
  from grey) of the digits' features. Reaching float precision (>= :data:`RECOVERED_DB`) shows the
  map is injective there in practice, not only to first order; stalling far below with the features
  matched means other inputs give the same features, and that information is gone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .metrics import clip_images, psnr
from .optimise import match_features
from .thresholds import RECOVERED_DB

__all__ = ["RECOVERED_DB", "jacobian_ranks", "injectivity_map", "injectivity_row"]

#: where the Jacobian's rank proves the image lost, feature matching stops once its loss fell by
#: less than this fraction over 100 iterations (``optimise.match_features``' ``stall``)
STALL = 1e-3


def jacobian_ranks(fn: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The numerical rank of ``fn``'s Jacobian at each image (float64; numpy's tolerance), one
    value per image."""
    if len(images) == 0:
        raise ValueError("no images: the rank of the Jacobian is measured at given inputs")
    fn = _float64_copy(fn)
    x = images.detach().double()

    def one(sample: torch.Tensor) -> torch.Tensor:
        return fn(sample.unsqueeze(0)).flatten()

    with torch.no_grad():
        features = fn(x[:1]).numel()
    # forward mode costs one pass per pixel, reverse mode one per feature: the cheaper of the two
    jacobian = torch.func.jacfwd if features > x[0].numel() else torch.func.jacrev
    # torch scripts forward mode's decompositions once, warning of its own deprecation
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning
        )
        jac = torch.func.vmap(jacobian(one))(x)  # (N, features, pixels)
    return torch.linalg.matrix_rank(jac.flatten(2))


def injectivity_map(
    name: str,
    blocks: Sequence[nn.Module],
    images: torch.Tensor,
    steps: int = 1000,
    batch_size: int = 16,
) -> list[dict]:
    """One row per block boundary ``k`` of target ``name`` (``blocks`` from
    ``progressive.split_blocks``): :func:`injectivity_row` for ``k = 1, ..., len(blocks)``."""
    return [
        injectivity_row(name, blocks, k, images, steps, batch_size)
        for k in range(1, len(blocks) + 1)
    ]


def injectivity_row(
    name: str,
    blocks: Sequence[nn.Module],
    k: int,
    images: torch.Tensor,
    steps: int = 1000,
    batch_size: int = 16,
) -> dict:
    """The map at block boundary ``k`` of target ``name``: ``{target, depth, features, pixels,
    rank, rank_max, recovered_psnr, recovered, iterations, seconds, residual}``.

    ``rank`` is the smallest Jacobian rank over ``images`` (``rank_max`` the largest); the recovery
    is feature matching of the same images for at most ``steps`` L-BFGS iterations. ``recovered`` is
    ``recovered_psnr >= RECOVERED_DB``. Where every image's rank is below the pixel count, the
    recovery stops at a plateau (:data:`STALL`); elsewhere it runs until converged or out of
    ``steps``.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(blocks):
        raise ValueError(f"k must be a block boundary, 1..{len(blocks)}, got {k!r}")
    pixels = math.prod(images.shape[1:])
    fn = nn.Sequential(*blocks[:k]).eval()
    with torch.no_grad():
        features = fn(images)
    ranks = jacobian_ranks(fn, images)
    # where the rank is below the pixel count at every image, no input is recovered: the search
    # may stop at a plateau (its PSNR is that of some pre-image); elsewhere a plateau can precede
    # recovery, so it runs on
    lost = int(ranks.max()) < pixels
    found = match_features(
        fn,
        features,
        steps=steps,
        batch_size=batch_size,
        shape=tuple(images.shape[1:]),
        stall=STALL if lost else 0.0,
    )
    quality = psnr(clip_images(found.images.detach().cpu()), images.detach().cpu())
    return {
        "target": name,
        "depth": k,
        "features": features[0].numel(),
        "pixels": pixels,
        "rank": int(ranks.min()),
        "rank_max": int(ranks.max()),
        "recovered_psnr": quality,
        "recovered": quality >= RECOVERED_DB,
        "iterations": found.iterations,
        "seconds": found.total_seconds,
        "residual": found.residual,
    }


def _float64_copy(module: nn.Module) -> nn.Module:
    import copy

    module = copy.deepcopy(module).double().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
