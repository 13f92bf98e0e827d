"""The VAE, its loss, and the inverse-decoder tools: inversion_trace and optimise_preimage."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reversenet_utils.analytic import invert, inversion_trace
from reversenet_utils.optimise import optimise_preimage
from reversenet_utils.models import VAE
from reversenet_utils.train import vae_loss


def test_vae_shapes_and_loss() -> None:
    torch.manual_seed(0)
    vae = VAE(latent=8)
    x = torch.rand(4, 1, 28, 28)
    recon, mu, log_var = vae(x)
    assert recon.shape == x.shape and mu.shape == log_var.shape == (4, 8)
    assert ((recon > 0) & (recon < 1)).all()
    assert all(m.bias is None for m in vae.modules() if isinstance(m, nn.Linear))  # bias-free
    loss = vae_loss(vae, x)
    assert torch.isfinite(loss) and loss > 0
    with pytest.raises(ValueError, match="latent"):
        VAE(latent=0)


def _widening_decoder() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 12, bias=False), nn.Tanh(), nn.Linear(12, 20, bias=False), nn.Sigmoid()
    ).double()


def test_trace_of_a_widening_decoder_on_its_own_outputs_is_exact() -> None:
    decoder = _widening_decoder()
    z = torch.randn(50, 3, dtype=torch.float64) * 0.5
    z_back, trace = inversion_trace(
        decoder, invert(decoder, input_shape=None, eps=1e-15), decoder(z)
    )
    assert (z_back - z).abs().max() < 1e-9
    assert [r["step"] for r in trace] == [
        "0: Sigmoid^-1",
        "1: Linear^-1",
        "2: Tanh^-1",
        "3: Linear^-1",
    ]
    assert all(r.get("residual", 0) < 1e-9 and r.get("clamped", 0) == 0 for r in trace)


def test_trace_shows_residuals_and_clamping_off_the_range() -> None:
    decoder = _widening_decoder()
    images = torch.rand(50, 20, dtype=torch.float64).round()  # binary "images": not decoder outputs
    _, trace = inversion_trace(decoder, invert(decoder, input_shape=None, eps=1e-3), images)
    assert trace[0]["clamped"] == 1.0  # every 0 and 1 sits at the logit's clamp
    assert trace[1]["residual"] > 0.01


def test_optimise_preimage_fits_the_decoder_output() -> None:
    decoder = _widening_decoder().float()
    z_true = torch.randn(30, 3) * 0.5
    with torch.no_grad():
        target = decoder(z_true)

    def bce(recon: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy(recon, goal, reduction="none").sum(1)

    z = optimise_preimage(
        decoder, target, torch.zeros_like(z_true), bce, steps=300, lr=0.05, batch_size=16
    )
    assert z.shape == z_true.shape
    with torch.no_grad():
        assert (decoder(z) - target).abs().max() < 0.02
    with pytest.raises(ValueError, match="rows"):
        optimise_preimage(decoder, target, torch.zeros(5, 3), bce)
