"""How good a reconstruction is: MSE, PSNR, SSIM (pytorch-msssim), re-classification; timing.

Conventions (docs/design.md): images are (N, C, H, W) in [0, 1]; PSNR in dB with data range 1;
SSIM in [0, 1]; accuracies as fractions. Every function scores each image and returns the
mean over images (``per_image=True`` returns the per-image values instead). Reconstructions
that leave [0, 1] should be clipped by the caller with :func:`clip_images` first, because that
is what a viewer sees; non-finite values are an error here, never a silent NaN.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from pytorch_msssim import ssim as _ssim

from .train import predict

__all__ = [
    "PSNR_CAP_DB",
    "share_interval",
    "clip_images",
    "mse",
    "psnr",
    "ssim",
    "ssim_reconstruction_range",
    "reclassification_accuracy",
    "reconstruction_report",
    "bootstrap_ci",
    "paired_differences",
    "verdict",
    "Timer",
]

#: PSNR of a perfect reconstruction would be infinite; per-image MSE is floored at 1e-10,
#: which caps PSNR at 100 dB so that means stay finite.
PSNR_CAP_DB = 100.0
_MSE_FLOOR = 10 ** (-PSNR_CAP_DB / 10)


#: how far outside [0, 1] a value may lie and still count as rounding (float32 arithmetic on [0, 1]
#: images)
_RANGE_TOLERANCE = 1e-4


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"Expected two tensors, got {type(pred).__name__} and {type(target).__name__}."
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"Shapes differ: reconstruction {tuple(pred.shape)} vs original {tuple(target.shape)}."
        )
    if pred.dim() != 4:
        raise ValueError(f"Expected image batches (N, C, H, W), got shape {tuple(pred.shape)}.")
    if pred.numel() == 0:
        raise ValueError(
            f"Empty batch {tuple(pred.shape)}: there is nothing to score (a mean over no image is "
            f"NaN)."
        )
    for label, t in (("reconstruction", pred), ("original", target)):
        # one pass: a NaN makes both ends NaN and an inf shows at one end (counting non-finite
        # values with isfinite().sum() took 35 ms per 10 000 images, aminmax 0.5 ms)
        lo, hi = (v.item() for v in torch.aminmax(t))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = (~torch.isfinite(t)).sum().item()
            raise ValueError(
                f"The {label} holds {bad} non-finite values (NaN/inf); fix the inverse upstream."
            )
        if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"The {label} has values in [{lo:.4g}, {hi:.4g}], but PSNR and SSIM here are "
                f"defined on images in [0, 1]. "
                + ("Divide 0-255 images by 255. " if hi > 2 else "")
                + (
                    "Clip reconstructions with metrics.clip_images first (what a viewer sees)."
                    if label == "reconstruction"
                    else "Pass the original images as loaded (pixel / 255)."
                )
            )


def clip_images(images: torch.Tensor) -> torch.Tensor:
    """Clip to the image range [0, 1] (what a viewer of the reconstruction sees)."""
    return images.clamp(0.0, 1.0)


def mse(pred: torch.Tensor, target: torch.Tensor, per_image: bool = False) -> torch.Tensor | float:
    """Mean squared error per image, then averaged (or returned per image)."""
    _check_pair(pred, target)
    values = _mse_per_image(pred, target)
    return values if per_image else values.mean().item()


def psnr(pred: torch.Tensor, target: torch.Tensor, per_image: bool = False) -> torch.Tensor | float:
    """Peak signal-to-noise ratio in dB for images in [0, 1], per image then averaged.

    ``10 log10(1 / MSE)``, with MSE floored so that a perfect match scores :data:`PSNR_CAP_DB`.
    """
    _check_pair(pred, target)
    values = _psnr_from_mse(_mse_per_image(pred, target))
    return values if per_image else values.mean().item()


def _mse_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MSE, float64, of a checked pair. The squares are taken in the wider of the two
    dtypes (float32 at least): [0, 1] images in float32 give the MSE to a relative 1e-5, far inside
    the floor :data:`PSNR_CAP_DB` sets, and float64 inputs keep their precision. 0.30 -> 0.09 s for
    10 000 images against float64 throughout."""
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    return (pred.to(dtype) - target.to(dtype)).pow_(2).flatten(1).mean(1).double()


def _psnr_from_mse(values: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(1.0 / values.clamp_min(_MSE_FLOOR))


def ssim(
    pred: torch.Tensor, target: torch.Tensor, per_image: bool = False, batch_size: int = 256
) -> torch.Tensor | float:
    """Structural similarity (pytorch-msssim: Gaussian window 11, sigma 1.5, data range 1).

    Computed in chunks of ``batch_size`` images: on a CPU, chunks fit in cache and are much faster
    than one large batch (and than torchmetrics' implementation). Clamped to SSIM's range [-1, 1]:
    for an exact reconstruction, float32 rounding gives values like 1.0000001.
    """
    _check_pair(pred, target)
    values = _ssim_per_image(pred, target, batch_size)
    return values if per_image else values.mean().item()


def ssim_reconstruction_range(
    pred: torch.Tensor, target: torch.Tensor, per_image: bool = False, batch_size: int = 256
) -> torch.Tensor | float:
    """SSIM in the convention of He, Zhang and Lee (ACSAC 2019): the data range of each image is
    its reconstruction's own, ``pred.max() - pred.min()``, instead of 1. SSIM's constants scale
    with the data range, so this is the SSIM (data range 1) of both images divided by that range.
    A flat reconstruction (range 0) is scored with range 1. The two conventions agree where a
    reconstruction spans [0, 1]; elsewhere the smaller constants weigh the structure more."""
    _check_pair(pred, target)
    span = (pred.flatten(1).amax(1) - pred.flatten(1).amin(1)).double()
    scale = torch.where(span > 0, 1.0 / span.clamp_min(1e-12), torch.ones_like(span))
    scale = scale.view(-1, *[1] * (pred.dim() - 1)).to(pred.dtype)
    values = _ssim_per_image(pred * scale, target * scale, batch_size)
    return values if per_image else values.mean().item()


#: side of pytorch-msssim's Gaussian window (its default), the smallest image SSIM can score
SSIM_WINDOW = 11


def _ssim_per_image(
    pred: torch.Tensor, target: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM's Gaussian window is {SSIM_WINDOW} pixels, but the images are "
            f"{tuple(pred.shape[-2:])}: "
            f"score images at least {SSIM_WINDOW} x {SSIM_WINDOW} (or use PSNR)"
        )
    return torch.cat(
        [
            _ssim(
                pred[i : i + batch_size].float(),
                target[i : i + batch_size].float(),
                data_range=1.0,
                size_average=False,
            )
            for i in range(0, len(pred), batch_size)
        ]
    ).clamp(-1.0, 1.0)


@torch.no_grad()
def reclassification_accuracy(
    classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> float:
    """Fraction of ``images`` (e.g. reconstructions) that ``classifier`` assigns to ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    if len(images) == 0:
        raise ValueError(
            "no images to re-classify: the share of none is undefined (NaN); pass at least one"
        )
    logits = predict(classifier, images, batch_size)
    return (logits.argmax(1) == labels.cpu()).double().mean().item()


def reconstruction_report(
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    labels: torch.Tensor | None = None,
    classifier: nn.Module | None = None,
    recognisable_ssim: float | None = None,
    ssim_by_reconstruction_range: bool = False,
) -> dict[str, float]:
    """PSNR, SSIM, MSE and (if a classifier is given) re-classification of clipped reconstructions,
    each with its 95 % bootstrap interval over the images (``psnr_ci``, ``ssim_ci``, ``reclass_ci``:
    ``[lo, hi]``). ``recognisable_ssim``: also the share of images reconstructed with at least that
    SSIM (``recognisable``). ``ssim_by_reconstruction_range``: also SSIM in He et al.'s convention
    (``ssim_recon_range``, :func:`ssim_reconstruction_range`)."""
    recon = clip_images(reconstructions.detach().cpu())
    orig = originals.detach().cpu()
    _check_pair(recon, orig)  # once: the scores below share it
    errors = _mse_per_image(recon, orig)
    per_image = {"psnr": _psnr_from_mse(errors), "ssim": _ssim_per_image(recon, orig)}
    if recognisable_ssim is not None:
        per_image["recognisable"] = (per_image["ssim"] >= recognisable_ssim).double()
    if ssim_by_reconstruction_range:
        per_image["ssim_recon_range"] = ssim_reconstruction_range(recon, orig, per_image=True)
    if classifier is not None:
        if labels is None:
            raise ValueError("Re-classification needs the labels.")
        if len(labels) != len(recon):
            raise ValueError(f"{len(recon)} reconstructions but {len(labels)} labels.")
        per_image["reclass"] = (predict(classifier, recon).argmax(1) == labels.cpu()).double()
    report = {"mse": errors.mean().item()}
    for key, values in per_image.items():
        report[key] = values.mean().item()
        report[f"{key}_ci"] = bootstrap_ci(values)
    return report


def bootstrap_ci(
    values: torch.Tensor, level: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> list[float]:
    """Percentile bootstrap interval ``[lo, hi]`` of the mean of ``values`` (one per test image):
    resample the images with replacement ``n_boot`` times. For a paired comparison of two methods on
    the same images, pass the per-image differences (the interval of the mean difference)."""
    values = torch.as_tensor(values).detach().double().flatten().cpu()
    if values.numel() == 0:
        raise ValueError("no values: a confidence interval needs at least one measured image")
    if not torch.isfinite(values).all():
        raise ValueError("values hold NaN/inf: no interval can be computed from them")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or n_boot < 1:
        raise ValueError(f"n_boot must be a whole number >= 1 (resamples), got {n_boot!r}")
    # each resample's mean, one product
    means = _resample_counts(len(values), n_boot, seed) @ values / len(values)
    # a mean lies within its values: no rounding beyond them
    means = means.clamp(values.min(), values.max())
    lo, hi = torch.quantile(
        means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    )
    return [lo.item(), hi.item()]


def paired_differences(
    a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], level: float = 0.95
) -> dict:
    """Per training seed, the mean per-image difference ``a[s] - b[s]`` of two methods scored on the
    same images, with its bootstrap interval: ``{"seeds": n, "means": [...], "cis": [[lo, hi],
    ...]}`` over the seeds both have.

    Raises:
        ValueError: no seed in common, or the two scored different numbers of images.
    """
    seeds = min(len(a), len(b))
    if seeds == 0:
        raise ValueError("paired_differences needs at least one seed scored by both methods")
    diffs = []
    for s in range(seeds):
        x, y = torch.as_tensor(a[s]).double().flatten(), torch.as_tensor(b[s]).double().flatten()
        if x.shape != y.shape:
            raise ValueError(
                f"seed {s}: {len(x)} images against {len(y)}: a paired difference needs the same "
                f"images"
            )
        diffs.append(x - y)
    return {
        "seeds": seeds,
        "means": [d.mean().item() for d in diffs],
        "cis": [bootstrap_ci(d, level) for d in diffs],
    }


@functools.lru_cache(maxsize=2)
def _resample_counts(n: int, n_boot: int, seed: int) -> torch.Tensor:
    """``(n_boot, n)`` float64: how often each of ``n`` images is drawn in each bootstrap resample,
    so that ``counts @ values / n`` is every resample's mean. Every interval over the same ``n``
    images and ``seed`` resamples them the same way, so the draws are made once per test-set size
    and reused (10 000 images: 80 MB)."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.zeros(n_boot, n, dtype=torch.float64)
    for start in range(0, n_boot, 200):  # chunks keep the index tensor small for 10 000 images
        idx = torch.randint(n, (min(200, n_boot - start), n), generator=gen)
        counts[start : start + len(idx)].scatter_add_(
            1, idx, torch.ones(idx.shape, dtype=torch.float64)
        )
    return counts


def share_interval(share: float, n: int, level: float = 0.95) -> list[float]:
    """The Wilson score interval ``[lo, hi]`` of a share measured on ``n`` items
    (``scipy.stats.binomtest``): the interval of a re-classification rate."""
    from scipy.stats import binomtest

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(
            f"n must be the number of items the share was measured on (>= 1), got {n!r}"
        )
    if not 0 <= share <= 1:
        raise ValueError(f"share must be a fraction in [0, 1], got {share!r}")
    ci = binomtest(round(share * n), n).proportion_ci(level, method="wilson")
    return [float(ci.low), float(ci.high)]


def verdict(ci: list[float], other: float, tolerance: float = 0.0) -> str:
    """How a measured mean with interval ``ci`` compares with the number ``other`` (higher is
    better): ``"beats"`` when the whole interval lies above it, ``"falls short of"`` when below,
    else ``"matches"``. ``tolerance`` widens the interval on both sides first: what a re-run of
    the training moves a trained method's score by, which an interval over test images leaves out
    (``thresholds.RERUN_TOLERANCE_DB``).

    Raises:
        ValueError: ``ci`` is not two finite numbers with ``lo <= hi``, or ``other`` is not finite
            (a NaN would answer "matches" and an interval given upside down "beats", both silently
            wrong).
    """
    try:
        lo, hi = (float(v) for v in ci)
        other = float(other)
    except (TypeError, ValueError):
        raise ValueError(
            f"verdict: ci must be two numbers [lo, hi] and other a number, got ci={ci!r}, "
            f"other={other!r}"
        ) from None
    if not all(math.isfinite(v) for v in (lo, hi, other)):
        raise ValueError(
            f"verdict: ci={ci!r} and other={other!r} must be finite: an interval with NaN or inf "
            f"supports no claim (check the scores it came from)"
        )
    if lo > hi:
        raise ValueError(
            f"verdict: the interval {ci!r} is upside down (lo > hi): give it as [lo, hi]"
        )
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"verdict: tolerance must be a finite number >= 0, got {tolerance!r}")
    lo, hi = lo - tolerance, hi + tolerance
    if lo > other:
        return "beats"
    if hi < other:
        return "falls short of"
    return "matches"


@dataclass
class Timer:
    """Wall-clock timer: ``with Timer() as t: ...`` then ``t.seconds``; ``t.rate(n)`` = n /
    seconds."""

    seconds: float = math.nan
    _start: float = field(default=0.0, repr=False)

    def __enter__(self) -> "Timer":
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self._start

    def rate(self, n: int) -> float:
        """Items per second for ``n`` items processed inside the block."""
        return n / self.seconds
