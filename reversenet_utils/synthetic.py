"""Training inputs that are not MNIST (zero-shot inversion): structured noise and target-only
synthesis.

- :func:`random_strokes`: pen-stroke-like curves, a generic prior of line drawings learned from no
  data;
- :func:`structured_noise`: half smooth thresholded noise at random scales, half strokes;
- :func:`synthesize_inputs`: inputs optimised against the target alone (DeepInversion-style).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .checks import whole_number
from .context import in_fast_layout
from .optimise import optimise_preimage, total_variation

__all__ = ["random_strokes", "structured_noise", "synthesize_inputs"]


def random_strokes(
    n: int, generator: torch.Generator | None = None, size: int = 28
) -> torch.Tensor:
    """Pen-stroke-like images in [0, 1], (n, 1, size, size): 1-3 random quadratic Bezier curves
    each.

    Every curve is sampled at 24 points; a pixel's ink falls off as a Gaussian of its distance to
    the nearest point (random pen width), clipped to 1. A generic prior of line drawings, learned
    from no data.
    """
    whole_number(n, "n", 0)  # none is an empty batch (structured_noise may draw no strokes)
    whole_number(size, "size", 2)
    n_curves, n_points = 3, 24
    # control points in the central 80 %
    ctrl = torch.rand(n, n_curves, 3, 2, generator=generator) * 0.8 + 0.1
    t = torch.linspace(0, 1, n_points)[:, None]
    bezier = torch.cat([(1 - t) ** 2, 2 * t * (1 - t), t**2], 1)  # Bernstein weights, (n_points, 3)
    points = torch.einsum("pc,nkcd->nkpd", bezier, ctrl) * (size - 1)  # (n, curves, points, 2)
    # 1..3 curves
    keep = torch.arange(n_curves) < torch.randint(1, n_curves + 1, (n, 1), generator=generator)
    width = torch.rand(n, 1, 1, 1, generator=generator) * 0.6 + 0.7  # pen profile's std in pixels
    grid = torch.arange(size, dtype=torch.float32)
    # an unused curve's points lie at infinity: their distance to every pixel is inf (no pass over
    # the distances) (n, curves*points, 2)
    points = points.masked_fill(~keep[..., None, None], float("inf")).flatten(1, 2)
    d2 = (grid[None, None, :, None] - points[..., 0, None, None]) ** 2 + (
        grid[None, None, None, :] - points[..., 1, None, None]
    ) ** 2
    # distance to the nearest point of any curve
    ink = 1.5 * torch.exp(-d2.amin(1) / (2 * width[:, 0] ** 2))
    return ink.clamp(0, 1)[:, None]


def structured_noise(
    n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Image-like inputs in [0, 1], (n, 1, 28, 28), from no data at all.

    Half are smooth Gaussian noise at a random coarse resolution (4x4, 7x7 or 14x14), upsampled and
    passed through a sigmoid with a random threshold and contrast (soft blobs, sharp-edged shapes
    and thin ridges on a dark background); the other half are :func:`random_strokes`.
    """
    whole_number(n, "n")
    sizes = torch.tensor([4, 7, 14])[torch.randint(0, 3, (n,), generator=generator)]
    smooth = torch.empty(n, 1, 28, 28)
    for size in (4, 7, 14):
        pick = sizes == size
        if pick.any():
            low = torch.randn(int(pick.sum()), 1, size, size, generator=generator)
            smooth[pick] = F.interpolate(low, size=(28, 28), mode="bicubic", align_corners=False)
    threshold = torch.rand(n, 1, 1, 1, generator=generator) * 1.5 + 0.3
    contrast = torch.rand(n, 1, 1, 1, generator=generator) * 12 + 2
    images = torch.sigmoid(contrast * (smooth - threshold))
    strokes = torch.rand(n, generator=generator) < 0.5
    images[strokes] = random_strokes(int(strokes.sum()), generator)
    return images.to(device)


def synthesize_inputs(
    target: nn.Module,
    n: int,
    steps: int = 60,
    lr: float = 0.1,
    tv_weight: float = 0.05,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs synthesized from the target alone (DeepInversion-style, without batch-norm
    statistics).

    Start from :func:`structured_noise`, parameterise each image as ``sigmoid(z)`` so it stays in
    [0, 1], and minimise the cross-entropy towards a random class plus a total-variation prior.
    Returns ``(images, confidence of the target in the chosen class)``. The target runs as a copy
    in its fastest layout (``context.in_fast_layout``): ``cnn_pool``'s 1 024 inputs took 6.5-8.7
    against 10.6-13.4 s so.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(
            f"n (how many inputs to synthesize) must be a whole number >= 1, got {n!r}"
        )
    g = torch.Generator().manual_seed(seed)
    device = next(target.parameters()).device
    target = in_fast_layout(target)
    init = torch.logit(structured_noise(n, g).clamp(0.02, 0.98)).to(device)
    classes = torch.randint(0, 10, (n,), generator=g).to(device)
    z = optimise_preimage(
        lambda z: target(torch.sigmoid(z)),
        classes,
        init,
        lambda logits, c: F.cross_entropy(logits, c, reduction="none"),
        steps=steps,
        lr=lr,
        batch_size=1024,
        prior=lambda z: tv_weight * total_variation(torch.sigmoid(z)),
        desc="synthesizing inputs",
    )
    with torch.no_grad():
        images = torch.sigmoid(z)
        confidence = torch.softmax(target(images), 1).gather(1, classes[:, None])[:, 0]
    return images, confidence
