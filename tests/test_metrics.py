"""Metrics: PSNR of a known pair, SSIM of identical images, clear errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reversenet_utils.metrics import (
    PSNR_CAP_DB,
    Timer,
    mse,
    psnr,
    reclassification_accuracy,
    reconstruction_report,
    ssim,
)


def test_psnr_of_a_known_pair() -> None:
    x = torch.zeros(3, 1, 28, 28)
    y = torch.full_like(x, 0.1)  # MSE 0.01 -> 20 dB
    assert mse(y, x) == pytest.approx(0.01)
    assert psnr(y, x) == pytest.approx(20.0, abs=1e-5)  # 0.1 is not exact in float32
    per_image = psnr(torch.cat([y[:1], torch.full_like(x[:1], 0.01)]), x[:2], per_image=True)
    assert per_image.tolist() == pytest.approx([20.0, 40.0], abs=1e-5)


def test_psnr_of_identical_images_is_capped() -> None:
    x = torch.rand(2, 1, 28, 28)
    assert psnr(x, x) == PSNR_CAP_DB


def test_mse_in_float32_matches_float64_and_float64_inputs_keep_their_precision() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    reference = (y.double() - x.double()).pow(2).flatten(1).mean(1)
    assert torch.allclose(mse(y, x, per_image=True), reference, rtol=1e-5, atol=0)
    # a float64 reconstruction 1e-4 off, below float32's resolution of its MSE differences: scored
    # in float64
    close = (x.double() + 1e-4 * torch.randn(x.shape, dtype=torch.float64)).clamp(0, 1)
    exact = 10 * torch.log10(1 / (close - x.double()).pow(2).flatten(1).mean(1))
    assert torch.allclose(psnr(close, x, per_image=True), exact, rtol=1e-9)
    report = reconstruction_report(x, y)
    assert report["mse"] == pytest.approx(reference.mean().item(), rel=1e-5)
    assert report["psnr"] == pytest.approx(psnr(y, x), rel=1e-12) and report[
        "ssim"
    ] == pytest.approx(ssim(y, x), rel=1e-12)


def test_ssim_is_one_for_identical_images_and_lower_otherwise() -> None:
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    # a reconstruction exact to float precision of flat shapes (filled clothing): float32 rounding
    # gives 1.00005
    g = torch.Generator().manual_seed(1)
    flat = torch.zeros(256, 1, 28, 28)
    flat[:, :, 4:24, 4:24] = torch.rand(256, 1, 1, 1, generator=g)
    near = flat + 1e-6 * torch.randn(flat.shape, generator=g)
    assert ssim(near, flat, per_image=True).max() <= 1.0
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(noisy, x) < 0.9
    assert ssim(noisy, x, per_image=True).shape == (4,)


@pytest.mark.parametrize("metric", [mse, psnr, ssim])
def test_metrics_refuse_nan_and_shape_mismatch(metric) -> None:
    x = torch.rand(2, 1, 28, 28)
    # a NaN spoils both ends of the range, an inf one of them
    for value in (
        math.nan,
        math.inf,
        -math.inf,
    ):
        bad = x.clone()
        bad[0, 0, 0, 0] = bad[1, 0, 5, 5] = value
        with pytest.raises(ValueError, match="reconstruction holds 2 non-finite"):
            metric(bad, x)
        with pytest.raises(ValueError, match="original holds 2 non-finite"):
            metric(x, bad)
    with pytest.raises(ValueError, match="Shapes differ"):
        metric(x[:1], x)


def test_reclassification_accuracy_and_report() -> None:
    # a "classifier" that reads the class off the mean brightness of the image
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with torch.no_grad():
        classifier[1].weight.copy_(torch.stack([-torch.ones(784), torch.ones(784)]) / 784)
        classifier[1].bias.copy_(torch.tensor([0.5, -0.5]))
    images = torch.cat([torch.zeros(3, 1, 28, 28), torch.ones(1, 1, 28, 28)])
    labels = torch.tensor([0, 0, 1, 1])
    assert reclassification_accuracy(classifier, images, labels) == pytest.approx(0.75)
    report = reconstruction_report(images, images + 0.6, labels, classifier)  # clipped to [0, 1]
    assert set(report) == {"psnr", "ssim", "mse", "reclass", "psnr_ci", "ssim_ci", "reclass_ci"}
    assert report["reclass_ci"][0] <= report["reclass"] <= report["reclass_ci"][1]
    assert report["reclass"] == pytest.approx(0.5)  # everything is now bright: all read as class 1
    assert report["mse"] == pytest.approx(0.75 * 0.36)  # the white image stays white after clipping


def test_timer_measures_a_rate() -> None:
    with Timer() as t:
        sum(range(10_000))
    assert t.seconds > 0 and t.rate(100) == pytest.approx(100 / t.seconds)


def test_paired_differences_per_seed() -> None:
    import torch

    from reversenet_utils.metrics import paired_differences

    a = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 2.0])]
    b = [torch.tensor([0.0, 1.0, 2.0])]
    found = paired_differences(a, b)  # the seeds both have: one
    assert found["seeds"] == 1 and found["means"] == [1.0] and found["cis"] == [[1.0, 1.0]]
    with pytest.raises(ValueError, match="at least one seed"):
        paired_differences([], b)
    with pytest.raises(ValueError, match="3 images against 2"):
        paired_differences(a, [torch.tensor([0.0, 1.0])])


def test_ssim_in_the_convention_of_he_et_al_uses_each_reconstructions_range() -> None:
    from pytorch_msssim import ssim as reference

    from reversenet_utils.metrics import reconstruction_report, ssim, ssim_reconstruction_range

    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 16, 16, generator=g)
    pred = (0.2 + 0.5 * target + 0.05 * torch.rand(3, 1, 16, 16, generator=g)).clamp(0, 1)
    pred[1] = 0.4  # flat: scored with range 1
    pred[2] = target[2]  # spans (almost) [0, 1]
    got = ssim_reconstruction_range(pred, target, per_image=True)
    span = float(pred[0].max() - pred[0].min())
    expected = reference(pred[:1], target[:1], data_range=span, size_average=False)
    assert torch.allclose(got[0], expected[0], atol=1e-5)
    assert torch.allclose(got[1], ssim(pred[1:2], target[1:2], per_image=True)[0])
    assert got[0] != ssim(pred[:1], target[:1])  # the conventions differ on a narrow range
    report = reconstruction_report(target, pred, ssim_by_reconstruction_range=True)
    assert report["ssim_recon_range"] == pytest.approx(got.mean().item(), abs=1e-6)
    assert len(report["ssim_recon_range_ci"]) == 2
    assert "ssim_recon_range" not in reconstruction_report(target, pred)
