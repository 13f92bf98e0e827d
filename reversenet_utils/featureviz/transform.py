"""Transformation robustness (pad, jitter, scale, rotation per image) and the image penalties
of feature visualisation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


# --- transformation robustness and penalties -----------------------------------------------------


def robustness(
    pad: int = 12,
    jitter: int = 8,
    scales: tuple[float, float] = (0.9, 1.1),
    degrees: float = 10.0,
    final_jitter: int = 4,
    crop: bool = True,
    fill: float = 0.5,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random transforms applied to every optimisation step's images, independently per image.

    Pad by ``pad`` pixels of ``fill`` (Distill's grey), shift within a range of ``jitter`` pixels
    (±``jitter``/2, as Lucid's jitter crop does), scale by a factor in ``scales``, rotate by up to
    ``degrees``, shift again within ``final_jitter``: the Distill / Lucid defaults. The whole chain
    is one affine map per image, sampled by a single batched ``grid_sample`` (bilinear; outside the
    padded image its border is repeated), which costs a fifth of padding, cropping and resampling
    one after the other.

    ``crop=True`` crops like Lucid's jitter does: the output is ``jitter + final_jitter`` pixels
    smaller than the padded image (236 px for 224 px images). ``crop=False`` keeps the padded size,
    for a network that takes one input size only (with ``pad=0``: the input's size).
    """
    for name, value in (("pad", pad), ("jitter", jitter), ("final_jitter", final_jitter)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number of pixels >= 0, got {value!r}")
    if not (0 < scales[0] <= scales[1]):
        raise ValueError(f"scales must be (low, high) with 0 < low <= high, got {scales!r}")
    shrink = (jitter + final_jitter) if crop else 0

    def transform(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if pad:
            x = F.pad(x, (pad,) * 4, value=fill)
        h_in, w_in = h + 2 * pad, w + 2 * pad
        h_out, w_out = h_in - shrink, w_in - shrink
        if min(h_out, w_out) < 1:
            raise ValueError(
                f"images of {h}x{w} px padded by {pad} leave nothing after cropping {shrink} px"
            )
        opts = {"device": x.device, "dtype": x.dtype}
        # pixel offsets: output pixel u (centred) -> input pixel R(-angle) (u + t2) / scale + t1
        t1 = (torch.rand(n, 2, **opts) - 0.5) * jitter
        t2 = (torch.rand(n, 2, **opts) - 0.5) * final_jitter
        scale = torch.empty(n, **opts).uniform_(*scales)
        angle = torch.empty(n, **opts).uniform_(-degrees, degrees) * (math.pi / 180)
        cos, sin = angle.cos() / scale, angle.sin() / scale
        # (n, 2, 2), on (x, y)
        rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
        # affine_grid works in [-1, 1] coordinates of the output and of the input: rescale by
        # half-sizes
        out_half = torch.tensor([w_out / 2, h_out / 2], **opts)
        in_half = torch.tensor([w_in / 2, h_in / 2], **opts)
        linear = rot * out_half[None, None, :] / in_half[None, :, None]
        shift = (torch.einsum("nij,nj->ni", rot, t2) + t1) / in_half
        theta = torch.cat([linear, shift[:, :, None]], 2)
        grid = F.affine_grid(theta, [n, c, h_out, w_out], align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)

    return transform


def blur_penalty(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean square difference between ``x`` and its 3x3 box blur: penalises high
    frequencies."""
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (x - blurred).pow(2).flatten(1).mean(1)
