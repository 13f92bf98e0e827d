"""Inverting a VAE's decoder (notebook 05): from an image back to the latent that decodes to it.

The analytic route (``analytic.invert``: pseudo-inverses and inverse activations, layer by layer)
is exact on the decoder's own outputs and breaks on real images, which lie outside the decoder's
range; :func:`own_output_check` measures the first, ``analytic.inversion_trace`` the second. The
fixes are a Gaussian-prior pseudo-inverse and optimisation of the latent
(:func:`optimised_latents`). The figures take what those return.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from .analytic import invert, inversion_trace, linear_input_stats
from .metrics import reconstruction_report
from .notebook import AT_LEAST_0, AT_LEAST_1, FRACTION, require
from .optimise import optimise_preimage

__all__ = [
    "check_parameters",
    "route_scores",
    "prior_latents",
    "routes_table",
    "own_output_check",
    "bce_per_image",
    "optimised_latents",
    "trace_table",
    "residual_figure",
    "latent_scatter_figure",
]


@torch.no_grad()
def own_output_check(
    decoder: nn.Sequential, latents: torch.Tensor, eps: float = 1e-15
) -> tuple[dict, list[dict]]:
    """The faithful inverse, in float64, on the decoder's own outputs for ``latents`` (the encoder's
    means): how far it returns each latent (relative error), and how deep the latents it misses
    drive their most saturated tanh unit. Returns the summary and the layer-by-layer trace."""
    dec64, mu64 = copy.deepcopy(decoder).double().cpu(), latents.double().cpu()
    images = dec64(mu64)
    back, trace = inversion_trace(dec64, invert(dec64, input_shape=None, eps=eps), images)
    tanh_inputs = torch.cat([dec64[:1](mu64), dec64[:3](mu64)], dim=1)  # both tanh layers' inputs
    per_latent = (back - mu64).norm(dim=1) / mu64.norm(dim=1)
    deepest = tanh_inputs.abs().max(1).values
    bad = per_latent > 1e-3
    summary = {
        "latent_rel_err": per_latent.median().item(),
        "latent_rel_err_frobenius": ((back - mu64).norm() / mu64.norm()).item(),
        "latent_rel_err_max": per_latent.max().item(),
        "share_below_1e-3": (~bad).double().mean().item(),
        "deepest_tanh_input_median_good": deepest[~bad].median().item(),
        "deepest_tanh_input_median_bad": deepest[bad].median().item() if bad.any() else None,
        "trace": trace,
    }
    return summary, trace


def check_parameters(params: Mapping) -> None:
    """Notebook 05's parameters beyond their types (``notebook.require``)."""
    margin = (lambda v: 0 < v < 0.5, "in (0, 0.5)")
    require(
        params,
        {
            **dict.fromkeys(("latent", "opt_steps", "n_show"), AT_LEAST_1),
            "vae_epochs": AT_LEAST_0,
            "clamp_eps": margin,
            "exact_eps": margin,
            "prior_damping": (lambda v: v > 0, "> 0"),
            "opt_lr": (lambda v: v > 0, "> 0"),
            "min_reclass": FRACTION,
        },
    )


@torch.no_grad()
def route_scores(
    vae: nn.Module,
    routes: Mapping[str, torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    classifier: nn.Module,
) -> dict[str, dict]:
    """Each route's latents decoded and scored against ``images`` (PSNR, SSIM, re-classification by
    ``classifier``: ``metrics.reconstruction_report``)."""
    return {
        name: reconstruction_report(images, vae.decode(z), labels, classifier)
        for name, z in routes.items()
    }


@torch.no_grad()
def prior_latents(
    vae: nn.Module, train_images: torch.Tensor, images: torch.Tensor, eps: float, damping: float
) -> torch.Tensor:
    """The latents of ``images`` by the Gaussian-prior (range-aware) pseudo-inverse of the decoder:
    its layers' input statistics taken from the encoder means of ``train_images``, ridge
    ``damping``."""
    mu_train, _ = vae.encode(train_images)
    priors = linear_input_stats(vae.decoder, mu_train)
    inverse = invert(vae.decoder, input_shape=None, eps=eps, priors=priors, damping=damping)
    return inverse(images.flatten(1))


def routes_table(
    scores: Mapping[str, dict], routes: Mapping[str, torch.Tensor], mu: torch.Tensor
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the routes' scores, with each route's mean latent distance to the encoder
    mean ``mu`` (for ``plotting.markdown_table``)."""
    header = ["route", "PSNR (dB)", "SSIM", "re-classified", "latent distance to encoder mean"]
    rows = [
        [
            name,
            f"{s['psnr']:.2f}",
            f"{s['ssim']:.3f}",
            f"{s['reclass']:.2%}",
            f"{(routes[name] - mu).norm(dim=1).mean():.2f}",
        ]  # fmt: skip
        for name, s in scores.items()
    ]
    return header, rows


def bce_per_image(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed binary cross-entropy per image: the VAE's own reconstruction loss."""
    return F.binary_cross_entropy(recon, target, reduction="none").sum(1)


def optimised_latents(
    decoder: nn.Module,
    images: torch.Tensor,
    starts: Mapping[str, torch.Tensor],
    steps: int = 100,
    lr: float = 0.1,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Latents found by Adam on the decoder's BCE from each start in ``starts`` (a name per start),
    and the seconds each took."""
    found, seconds = {}, {}
    for name, init in starts.items():
        start = time.perf_counter()
        found[name] = optimise_preimage(
            decoder, images.flatten(1), init, bce_per_image, steps=steps, lr=lr, desc=name
        )
        seconds[name] = time.perf_counter() - start
    return found, seconds


def _step_text(r: dict) -> str:
    return f"residual {r['residual']:.1e}" if "residual" in r else f"clamped {r['clamped']:.1%}"


def trace_table(own: list[dict], real: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the two traces side by side (for ``plotting.markdown_table``)."""
    header = [
        "inverse step",
        "decoder's own outputs (float64)",
        "real test images (original clamping)",
    ]
    return header, [[o["step"], _step_text(o), _step_text(r)] for o, r in zip(own, real)]


def residual_figure(own: list[dict], real: list[dict]) -> Figure:
    """Each least-squares step's relative residual, on real images and on the decoder's own
    outputs."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = [r["step"] for r in real if "residual" in r]
    ax.plot(
        steps,
        [r["residual"] for r in real if "residual" in r],
        marker="o",
        label="real test images",
    )
    own_residuals = [max(r["residual"], 1e-16) for r in own if "residual" in r]
    ax.plot(steps, own_residuals, marker="o", label="decoder's own outputs")
    ax.set_yscale("log")
    ax.set_ylabel("relative least-squares residual")
    ax.set_title("Where the layer-by-layer inverse breaks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def latent_scatter_figure(
    latents: Mapping[str, torch.Tensor], reference: torch.Tensor, labels: torch.Tensor, title: str
) -> Figure:
    """Each route's latents projected on the first two principal axes of ``reference`` (the
    encoder's means), coloured by class."""
    centre = reference.mean(0)
    axes_2d = torch.linalg.svd(reference - centre, full_matrices=False)[2][:2].T
    fig, panels = plt.subplots(1, len(latents), figsize=(4 * len(latents), 3.8), squeeze=False)
    for ax, (name, z) in zip(panels[0], latents.items()):
        p = ((z - centre) @ axes_2d).cpu()
        dots = ax.scatter(p[:, 0], p[:, 1], c=labels.cpu(), cmap="tab10", s=2, alpha=0.6)
        ax.set_title(name)
        ax.set_xlabel("PC 1 of encoder means")
    panels[0, 0].set_ylabel("PC 2")
    fig.colorbar(dots, ax=panels[0].tolist(), ticks=range(10), label=title)
    fig.suptitle(
        "Latents of the test images, projected on the encoder means' first two principal axes",
        y=1.04,
    )
    return fig
