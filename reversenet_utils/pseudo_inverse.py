"""Notebook 02's stages: analytic inversion, from the pieces to the injectivity map.

Each stage returns plain mappings or tensors; each figure or table function takes them and only
draws or formats; the claims made from them live in
:mod:`reversenet_utils.claims.pseudo_inverse`.

- :func:`compare_solvers`: ``pinv`` against ``lstsq`` for one layer;
- :func:`exact_case`: square weights inverted in float32 and float64;
- :func:`preimage_check`: a narrowing layer gives a pre-image, not the image;
- :func:`fit_prior`, :func:`regularised_inverse`: the pre-image nearest the data, its ridge chosen
  on held-out training images;
- :func:`depth_curves`: every inverse from every layer;
- :func:`sigmoid_domain`, :func:`class_prototypes`: domains and what a class looks like;
- :func:`conv_inversions`: convolution blocks, exactly or given the pooling indices;
- :func:`injectivity_rows`: notebook 02's injectivity map (``injectivity.injectivity_row``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .analytic import (
    choose_damping,
    domain_counts,
    invert,
    invert_conv_relu_pool,
    linear_input_stats,
    prior_inverse,
    reset_domain_counts,
)
from .context import Context
from .data import MNISTSplit
from .injectivity import injectivity_row
from .layer_inverses import pinv
from .metrics import Timer, reconstruction_report
from .models import TARGETS
from .notebook import AT_LEAST_0, AT_LEAST_1, FRACTION, one_of, require
from .plotting import markdown_table
from .progressive import forward_features, split_blocks
from .thresholds import RECOVERED_DB
from .train import load_target, predict, run_side_by_side

__all__ = [
    "check_parameters",
    "compare_solvers",
    "solver_table",
    "exact_case",
    "preimage_check",
    "Prior",
    "fit_prior",
    "regularised_inverse",
    "damping_figure",
    "depth_names",
    "depth_curves",
    "depth_curves_figure",
    "depth_table",
    "reconstruction_rows",
    "sigmoid_domain",
    "domain_table",
    "class_prototypes",
    "conv_inversions",
    "conv_table",
    "injectivity_rows",
    "injectivity_table",
    "injectivity_figure",
]


def check_parameters(params: Mapping[str, Any]) -> None:
    """Notebook 02's parameters beyond their types (``notebook.require``)."""
    splittable = [n for n, spec in TARGETS.items() if spec.block_ends]
    require(
        params,
        {
            "damping_grid": (lambda v: bool(v) and min(v) > 0, "positive ridges"),
            "eps": (lambda v: 0 < v < 0.5, "in (0, 0.5)"),
            "n_show": (lambda v: 1 <= v <= 100, "1..100"),
            "pool_images": (lambda v: 1 <= v <= 10_000, "1..10000"),
            "injectivity_targets": one_of(splittable, "targets with block boundaries"),
            "injectivity_images": (lambda v: 1 <= v <= 64, "1..64"),
            "injectivity_steps": AT_LEAST_1,
            "injectivity_depths": AT_LEAST_0,
            "min_prototype_confidence": FRACTION,
        },
    )


# --- the pieces ---------------------------------------------------------------------------------


def compare_solvers(layer: nn.Linear, images: torch.Tensor) -> dict:
    """Solve ``W x = y - b`` for every image with ``pinv`` (one SVD, then a matrix product) and
    with ``lstsq`` (gelsd): each one's relative residual, error against the true image and
    seconds, and how far the two solutions differ."""
    w = layer.weight
    with torch.no_grad():
        z = images.flatten(1) @ w.T  # = layer(x) - b
    with Timer() as t_pinv:
        w_pinv = pinv(w)  # float64 SVD, stored as float32
    with Timer() as t_apply:
        x_pinv = z @ w_pinv.T
    with Timer() as t_lstsq:
        x_lstsq = torch.linalg.lstsq(w, z.T, driver="gelsd").solution.T
    out: dict[str, Any] = {}
    solved = (
        ("pinv", x_pinv, t_pinv.seconds + t_apply.seconds),
        ("lstsq", x_lstsq, t_lstsq.seconds),
    )
    for name, sol, seconds in solved:
        out[name] = {
            "relative residual": ((sol @ w.T - z).norm() / z.norm()).item(),
            "error vs true x": (sol - images.flatten(1)).abs().max().item(),
            "seconds (10k images)": seconds,
        }
    out["pinv"]["seconds per further batch"] = t_apply.seconds
    out["lstsq"]["seconds per further batch"] = t_lstsq.seconds
    out["max |pinv - lstsq|"] = (x_pinv - x_lstsq).abs().max().item()
    return out


def solver_table(solvers: Mapping[str, dict]) -> tuple[list[str], list[list[str]], str]:
    """Header, rows and column alignment of the solvers' comparison (``markdown_table``)."""
    header = ["layer", "solver", "relative residual", "max error vs true x", "s (10k images)",
              "s per further batch"]  # fmt: skip
    rows = [
        [
            layer,
            solver,
            f"{r['relative residual']:.1e}",
            f"{r['error vs true x']:.2e}",
            f"{r['seconds (10k images)']:.3f}",
            f"{r['seconds per further batch']:.4f}",
        ]  # fmt: skip
        for layer, res in solvers.items()
        for solver, r in ((s, res[s]) for s in ("pinv", "lstsq"))
    ]
    return header, rows, "llrrrr"


def _exact_error(model: nn.Sequential, images: torch.Tensor, dtype: torch.dtype) -> float:
    """Max ``|x - inverse(body(x))|``, ``body`` every layer before the readout, all in ``dtype``."""
    body = copy.deepcopy(model[:-1]).to(dtype)
    with torch.no_grad():
        return (invert(body)(body(images.to(dtype))) - images.to(dtype)).abs().max().item()


def exact_case(square: nn.Sequential, images: torch.Tensor) -> dict:
    """The square-weights MLP inverted from its last hidden layer: the largest error in float32
    and in float64, and the weights' condition numbers."""
    conds = {
        f"layer {i}": torch.linalg.cond(m.weight.double()).item()
        for i, m in enumerate(square)
        if isinstance(m, nn.Linear)
    }
    return {
        "max_abs_err_float32": _exact_error(square, images, torch.float32),
        "max_abs_err_float64": _exact_error(square, images, torch.float64),
        "condition_numbers": conds,
    }


@torch.no_grad()
def preimage_check(net: nn.Sequential, images: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """The narrowing MLP inverted from its logits: how well ``net(inverse(y))`` reproduces ``y``
    and ``inverse(net(x))`` reproduces ``x``, and the share of each image's energy in the null space
    of the first layer. Returns those and the logits."""
    inverse = invert(net)
    logits = net(images)
    x_pinv = inverse(logits)
    logits_again = net(x_pinv)
    row_space = torch.linalg.svd(net[1].weight.double(), full_matrices=False)[2]  # orthonormal
    flat = images.flatten(1).double()
    null_energy = 1 - (flat @ row_space.T).pow(2).sum(1) / flat.pow(2).sum(1)
    found = {
        "relative_error_net_of_inverse": ((logits_again - logits).norm() / logits.norm()).item(),
        "same_prediction": (logits_again.argmax(1) == logits.argmax(1)).double().mean().item(),
        "relative_error_inverse_of_net": ((x_pinv - images).norm() / images.norm()).item(),
        "null_space_energy_fraction": null_energy.mean().item(),
    }
    return found, logits


# --- the prior pre-image --------------------------------------------------------------------------


class Prior(dict):
    """The prior pre-image's fit: ``priors`` (the inputs' statistics of every ``Linear`` layer),
    ``damping`` (the chosen ridge per depth), ``sweep`` (validation PSNR per depth and ridge),
    ``seconds`` (of the statistics)."""


def fit_prior(
    net: nn.Sequential, images: torch.Tensor, damping_grid: Sequence[float], held_out: int = 5000
) -> Prior:
    """The statistics of ``net``'s layer inputs on all but the last ``held_out`` images, and the
    ridge per depth that gives the highest PSNR on those last images (``analytic.choose_damping``);
    the test set is never used."""
    fit_split, val_split = images[:-held_out], images[-held_out:]
    with Timer() as t_stats:
        priors = linear_input_stats(net, fit_split)
    choices = {
        d: choose_damping(net[: d + 1], priors, val_split, damping_grid) for d in range(1, len(net))
    }
    return Prior(
        priors=priors,
        damping={d: best for d, (best, _) in choices.items()},
        sweep={d: values for d, (_, values) in choices.items()},
        seconds=t_stats.seconds,
    )


def regularised_inverse(net: nn.Sequential, prior: Prior, depth: int) -> nn.Sequential:
    """The prior pre-image inverse of ``net[:depth + 1]`` at the ridge chosen for that depth."""
    return prior_inverse(net[: depth + 1], prior["priors"], prior["damping"][depth])


def depth_names(net: nn.Sequential) -> dict[int, str]:
    """``{d: "d: LayerType"}`` for every layer output an inverse starts from."""
    return {d: f"{d}: {type(net[d]).__name__}" for d in range(1, len(net))}


def damping_figure(
    prior: Prior, damping_grid: Sequence[float], names: Mapping[int, str], depths=(1, 3, 5)
) -> Figure:
    """Validation PSNR against the relative ridge, from a few depths."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for d in depths:
        values = [prior["sweep"][d][lam] for lam in damping_grid]
        ax.semilogx(damping_grid, values, marker="o", label=f"from layer {names[d]}")
    ax.set_xlabel("relative ridge $\\lambda$")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title("Prior pre-image: the ridge matters only from the logits")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _depth_curve(
    model: nn.Sequential,
    images: torch.Tensor,
    labels: torch.Tensor,
    make_inverse: Callable[[int], nn.Module],
) -> dict[int, dict]:
    """Reconstruction report from the output of each layer ``d`` of ``model``."""
    out = {}
    for d in range(1, len(model)):
        with torch.no_grad():
            out[d] = reconstruction_report(
                images, make_inverse(d)(model[: d + 1](images)), labels, model
            )
    return out


def depth_curves(
    nets: Mapping[str, nn.Sequential], prior: Prior, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, dict[int, dict]]:
    """From every layer of each network in ``nets`` (the narrowing one first, the square one
    second): the pseudo-inverse's reconstruction report, and for the first also the prior
    pre-image's (``{"<name>, pinv": {d: report}, ...}``)."""
    (name, net), (square_name, square) = list(nets.items())
    return {
        f"{name}, pinv": _depth_curve(net, images, labels, lambda d: invert(net[: d + 1])),
        f"{name}, prior pre-image": _depth_curve(
            net, images, labels, lambda d: regularised_inverse(net, prior, d)
        ),
        f"{square_name}, pinv": _depth_curve(
            square, images, labels, lambda d: invert(square[: d + 1])
        ),
    }


def depth_curves_figure(
    curves: Mapping[str, Mapping[int, dict]], names: Mapping[int, str], square: str, title: str
) -> Figure:
    """PSNR, SSIM and re-classification of every inverse from every layer; the exact inverse (of
    the network ``square``) scores the 100 dB cap, off the PSNR chart and labelled instead."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    panels = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("reclass", "re-classified correctly"))
    for ax, (key, label) in zip(axes, panels):
        for name, curve in curves.items():
            ax.plot(list(curve), [curve[d][key] for d in curve], marker="o", label=name)
        ax.set_xticks(list(names), list(names.values()), rotation=30, ha="right", fontsize="small")
        ax.set_xlabel("inverted from the output of layer")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 45)
    axes[0].annotate(
        f"{square}: 100 dB (exact) until the logits", (1, 43), fontsize="small", va="top"
    )
    axes[0].legend(fontsize="small", loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def depth_table(curves: Mapping[str, Mapping[int, dict]], names: Mapping[int, str]) -> str:
    """Markdown: PSNR / SSIM / re-classification of every inverse from every layer."""

    def cell(r: dict) -> str:
        return f"{r['psnr']:.1f} dB / {r['ssim']:.2f} / {r['reclass']:.1%}"

    rows = [[name, *(cell(c[d]) for d in names)] for name, c in curves.items()]
    return "PSNR / SSIM / re-classification:\n\n" + markdown_table(
        ["inverse", *names.values()], rows
    )


@torch.no_grad()
def reconstruction_rows(
    net: nn.Sequential, prior: Prior, images: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``images`` and their pinv and prior pre-image reconstructions from layer 1 and from the
    logits: rows for ``plotting.show_rows``."""
    rows = {"original": images}
    for d, tag in ((1, "layer 1"), (len(net) - 1, "logits")):
        h = net[: d + 1](images)
        rows[f"pinv ({tag})"] = invert(net[: d + 1])(h)
        rows[f"prior ({tag})"] = regularised_inverse(net, prior, d)(h)
    return rows


# --- domains and prototypes -----------------------------------------------------------------------


def sigmoid_domain(
    sigmoid_net: nn.Sequential,
    leaky_net: nn.Sequential,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
) -> dict:
    """A sigmoid MLP inverted from its logits: per inverse layer, the values seen and clamped into
    the activation's domain (``counts``, with each layer's description), the reconstruction report,
    whether every value is finite; and the values the leaky-ReLU MLP's inverse clamps (none)."""
    inverse = invert(sigmoid_net, eps=eps)
    with torch.no_grad():
        x_sig = inverse(sigmoid_net(images))
    counts = domain_counts(inverse)
    layers = {name: inverse[int(name)].extra_repr() for name in counts}
    leaky = invert(leaky_net)
    with torch.no_grad():
        reset_domain_counts(leaky)
        leaky(leaky_net(images))
    return {
        "counts": counts,
        "layers": layers,
        "finite": bool(torch.isfinite(x_sig).all()),
        "leaky_clamped": {k: v["clamped"] for k, v in domain_counts(leaky).items()},
        **reconstruction_report(images, x_sig, labels, sigmoid_net),
    }


def domain_table(domain: Mapping) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per inverse layer, the values inverted and clamped into the domain."""
    header = ["inverse layer", "values inverted", "clamped into the domain", "share"]
    rows = [
        [
            f"`{name}`: {domain['layers'][name]}",
            f"{c['seen']:,}",
            f"{c['clamped']:,}",
            f"{c['clamped'] / c['seen']:.1%}",
        ]  # fmt: skip
        for name, c in domain["counts"].items()
    ]
    return header, rows


@torch.no_grad()
def class_prototypes(net: nn.Sequential, prior: Prior, train: MNISTSplit) -> dict[str, Any]:
    """Each class's mean training logits inverted by pinv and by the prior pre-image; the target's
    confidence in each prototype's class, as computed and clipped to [0, 1]."""
    train_logits = predict(net, train.images)
    class_logits = torch.stack([train_logits[train.labels == c].mean(0) for c in range(10)])
    protos = {
        "pinv": invert(net)(class_logits),
        "prior": regularised_inverse(net, prior, len(net) - 1)(class_logits),
    }
    return {
        "images": protos,
        "logit_softmax": torch.softmax(class_logits, 1).diagonal(),
        "confidence": {n: torch.softmax(net(p), 1).diagonal() for n, p in protos.items()},
        "clipped": {n: torch.softmax(net(p.clamp(0, 1)), 1).diagonal() for n, p in protos.items()},
        "finite": all(bool(torch.isfinite(p).all()) for p in protos.values()),
    }


# --- convolutions and the injectivity map ---------------------------------------------------------


def conv_inversions(
    nopool: nn.Sequential,
    pooled: nn.Sequential,
    images: torch.Tensor,
    labels: torch.Tensor,
    pool_images: int,
) -> tuple[dict, nn.Module]:
    """``cnn_nopool``'s block 1 inverted exactly (a 3136 x 784 convolution matrix's
    pseudo-inverse) on every image, and ``cnn_pool``'s block 1 given its pooling indices on the
    first ``pool_images``. Returns each one's report, seconds and largest error, and the exact
    inverse."""
    block1 = nopool[: TARGETS["cnn_nopool"].block_ends[0]]
    with Timer() as t_build:
        conv_inverse = invert(block1)
    cond = torch.linalg.cond(conv_inverse[-1].A.double()).item()  # the 3136 x 784 matrix's
    with torch.no_grad(), Timer() as t_conv:
        x_conv = conv_inverse(block1(images))
    pool_block = pooled[: TARGETS["cnn_pool"].block_ends[0]]
    x_p, y_p = images[:pool_images], labels[:pool_images]
    with torch.no_grad():
        feats, indices = forward_features([pool_block], x_p, with_indices=True)
    with Timer() as t_pool:
        x_pool = invert_conv_relu_pool(pool_block, feats[1], indices[0])
    conv = {
        "cnn_nopool_block1": {
            **reconstruction_report(images, x_conv, labels, nopool),
            "seconds": t_conv.seconds,
            "build_seconds": t_build.seconds,
            "max_abs_err_float32": (x_conv - images).abs().max().item(),
            "condition_number": cond,
            "n_images": len(images),
        },
        "cnn_pool_block1_with_indices": {
            **reconstruction_report(x_p, x_pool, y_p, pooled),
            "seconds": t_pool.seconds,
            "max_abs_err_float32": (x_pool - x_p).abs().max().item(),
            "n_images": pool_images,
        },
    }
    return conv, conv_inverse


def conv_table(conv: Mapping[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the convolution blocks' inversions."""
    header = ["block 1 inverted", "images", "PSNR (dB, capped at 100)", "95 % CI", "max abs error",
              "seconds"]  # fmt: skip
    rows = [
        [
            name,
            f"{r['n_images']:,}",
            f"{r['psnr']:.1f}",
            f"{r['psnr_ci'][0]:.1f}-{r['psnr_ci'][1]:.1f}",
            f"{r['max_abs_err_float32']:.1e}",
            f"{r['seconds']:.1f}",
        ]  # fmt: skip
        for name, r in conv.items()
    ]
    return header, rows


def injectivity_rows(
    ctx: Context, targets: Sequence[str], images: torch.Tensor, depths: int, steps: int
) -> list[dict]:
    """The injectivity map (``injectivity.injectivity_row``) of each target's first ``depths``
    block boundaries (0: all), at ``images``, with ``steps`` L-BFGS iterations: one row per
    boundary, in that order. On a CPU the rows run in two worker processes
    (``train.run_side_by_side``), each on one thread: the L-BFGS loop of a few images holds the
    interpreter, so threads would wait on each other."""
    tasks = []
    for name in targets:
        blocks = split_blocks(load_target(ctx, name), TARGETS[name].block_ends)[: depths or None]
        tasks += [partial(injectivity_row, name, blocks, k, images, steps)
                  for k in range(1, len(blocks) + 1)]  # fmt: skip
    return run_side_by_side(tasks, ctx.device, processes="injectivity map (rows)")


def injectivity_table(rows: Sequence[dict]) -> tuple[list[str], list[list], str]:
    """Header, rows and alignment of the injectivity map."""
    header = ["target", "k", "features", "Jacobian rank (min-max)", "recovered PSNR (dB)",
              "iterations", "seconds", "injective here"]  # fmt: skip
    body = [
        [
            r["target"],
            r["depth"],
            f"{r['features']:,}",
            f"{r['rank']}-{r['rank_max']}" if r["rank"] != r["rank_max"] else r["rank"],
            f"{r['recovered_psnr']:.1f}",
            r["iterations"],
            f"{r['seconds']:.1f}",
            "yes" if r["recovered"] else "no",
        ]  # fmt: skip
        for r in rows
    ]
    return header, body, "lrrrrrrl"


def injectivity_figure(rows: Sequence[dict], images: int, steps: int) -> Figure:
    """The PSNR feature matching reaches at each block boundary, one line per target, against the
    float-precision line."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for name in dict.fromkeys(r["target"] for r in rows):
        pts = [r for r in rows if r["target"] == name]
        ax.plot(
            [r["depth"] for r in pts], [r["recovered_psnr"] for r in pts], marker="o", label=name
        )
    ax.axhline(RECOVERED_DB, color="grey", ls="--", lw=1)
    ax.annotate(
        "recovered to float precision", (1, RECOVERED_DB + 2), fontsize="small", color="grey"
    )
    ax.set_xlabel("block boundary k (last = logits)")
    ax.set_ylabel("feature matching: PSNR reached (dB)")
    ax.set_title(f"Injectivity map: {images} test images, {steps} L-BFGS iterations, no prior")
    ax.set_xticks(sorted({r["depth"] for r in rows}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
