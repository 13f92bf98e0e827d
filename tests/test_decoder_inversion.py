"""Notebook 05's stages (on a small untrained VAE) and its claims on fixture metrics: every branch,
including those today's numbers never reach."""

from __future__ import annotations

import copy

import matplotlib
import pytest
import torch

from reversenet_utils.claims import GateFailure, check_gates
from reversenet_utils.claims.decoder_inversion import (
    conclusion,
    gates,
    headline,
    naive_fails_fix_works,
)
from reversenet_utils.decoder_inversion import (
    bce_per_image,
    latent_scatter_figure,
    optimised_latents,
    own_output_check,
    residual_figure,
    trace_table,
)
from reversenet_utils.models import VAE

matplotlib.use("Agg")


def test_the_decoders_own_outputs_return_to_their_latents() -> None:
    torch.manual_seed(0)
    vae = VAE(latent=4).eval()
    latents = 0.1 * torch.randn(16, 4)
    summary, trace = own_output_check(vae.decoder, latents)
    assert summary["latent_rel_err"] < 1e-6 and summary["share_below_1e-3"] == 1.0
    assert summary["deepest_tanh_input_median_bad"] is None  # none missed
    assert summary["trace"] is trace and any("residual" in t for t in trace)
    header, rows = trace_table(trace, trace)
    assert len(header) == 3 and len(rows) == len(trace)
    assert rows[0][1].startswith(("residual", "clamped"))
    assert residual_figure(trace, trace).axes[0].get_yscale() == "log"


def test_latents_are_optimised_from_each_start_and_plotted() -> None:
    torch.manual_seed(0)
    vae = VAE(latent=2).eval()
    images = torch.rand(8, 1, 28, 28)
    starts = {"from zero": torch.zeros(8, 2), "from one": torch.ones(8, 2)}
    found, seconds = optimised_latents(vae.decoder, images, starts, steps=2, lr=0.1)
    assert list(found) == list(starts) and all(z.shape == (8, 2) for z in found.values())
    assert all(s > 0 for s in seconds.values())
    assert bce_per_image(torch.full((2, 3), 0.5), torch.ones(2, 3)).shape == (2,)
    fig = latent_scatter_figure(found, torch.randn(8, 2), torch.arange(8) % 10, "class")
    assert len(fig.axes) == 3  # two panels and the colour bar


TRACE_OWN = [{"step": "Linear 3", "residual": 1e-8}, {"step": "Sigmoid", "clamped": 0.0}]
TRACE_REAL = [
    {"step": "Linear 3", "residual": 0.14},
    {"step": "Sigmoid", "clamped": 0.5},
    {"step": "Linear 1", "residual": 0.9},
    {"step": "Tanh", "clamped": 0.87},
]
METRICS = {
    "decoder_outputs": {
        "latent_rel_err": 2e-7,
        "latent_rel_err_frobenius": 1e-5,
        "trace": TRACE_OWN,
    },
    "real_trace": TRACE_REAL,
    "routes": {
        "encoder": {"psnr": 18.1, "reclass": 0.9},
        "faithful_pinv": {"psnr": 5.9, "reclass": 0.1},
        "prior_pinv": {"psnr": 12.0, "reclass": 0.5},
        "optimised_from_pinv": {"psnr": 17.0, "reclass": 0.85},
        "optimised_from_zero": {"psnr": 17.7, "reclass": 0.88},
    },
    "dataset_title": "MNIST",
}
PARAMS = {"min_reclass": 0.85, "judge": "cnn_pool"}


def _metrics(route: str | None = None, **change) -> dict:
    metrics = copy.deepcopy(METRICS)
    for key, value in change.items():
        if route:
            metrics["routes"][route][key] = value
        else:
            metrics["decoder_outputs"][key] = value
    return metrics


def test_every_gate_holds_on_the_fixture_and_each_can_fail() -> None:
    assert naive_fails_fix_works(METRICS).holds
    assert len(check_gates(gates(METRICS, PARAMS))) == 7
    failing = [
        (_metrics(latent_rel_err=2e-3), 1),
        (_metrics("faithful_pinv", psnr=15.0), 4),  # not a failure, and the fixes gain too little
        (_metrics("prior_pinv", psnr=7.0), 1),
        (_metrics("optimised_from_zero", reclass=0.8), 1),
        (_metrics("optimised_from_zero", psnr=16.0), 1),
    ]
    for metrics, n in failing:
        with pytest.raises(GateFailure, match=f"{n} of 7 quality gates failed"):
            check_gates(gates(metrics, PARAMS))
    flat = copy.deepcopy(METRICS)
    flat["real_trace"][2]["residual"] = 1e-6
    with pytest.raises(GateFailure, match="compounds"):
        check_gates(gates(flat, PARAMS))


def test_the_conclusion_says_which_start_is_better() -> None:
    text = "\n".join(conclusion(METRICS, PARAMS))
    assert text.startswith("**On MNIST:**")
    assert "grows from 0.14 to 0.90" in text and "from 50% to 87%" in text
    assert "by `cnn_pool`" in text and "worse than starting from zero" in text
    better = "\n".join(conclusion(_metrics("optimised_from_pinv", psnr=18.0), PARAMS))
    assert "at least as good as starting from zero" in better
    assert headline(METRICS) == (
        "the naive pinv + atanh + logit inverse reaches 5.9 dB on real images; the best fix 17.7 "
        "dB (encoder 18.1 dB)"
    )
