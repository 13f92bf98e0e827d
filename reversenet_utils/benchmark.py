"""Notebook 07's stages: every inversion method on the same features, scored the same way.

A :class:`Reconstructions` collects each method's reconstruction of the test images from each
block boundary of each target, with the seconds it took; the stages fill it by family, and
:func:`score` turns it into the results rows. Figures and tables take the rows; the claims made
from them live in :mod:`reversenet_utils.claims.benchmark`.

- :func:`analytic_inversions`, :func:`pooling_index_inversions`: notebook 02's inverses;
- :func:`learned_inversions`: notebook 03's inverse weights and notebook 04's chains (loaded, or
  trained here where missing);
- :func:`optimisation_inversions`: Adam, L-BFGS feature matching, the hybrid, and the regularised
  variant where plain matching is not exact;
- :func:`score`, :func:`method_table`, :func:`quality_speed_figure`, :func:`gallery_panels`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .analytic import boundary_inverses, invert_conv_relu_pool
from .context import Context, in_fast_layout
from .inverse_weights import load_inverse_weights
from .labels import (
    CHAIN_REAL,
    HYBRID,
    INVERSE_WEIGHTS,
    MATCHING,
    METHOD_ORDER,
    OPTIMISATION,
    PINV,
    PINV_INDICES,
    PRIOR,
    REGULARISED,
    chain_label,
)
from .metrics import Timer, clip_images, psnr, reclassification_accuracy, reconstruction_report
from .models import TARGETS
from .notebook import AT_LEAST_0, AT_LEAST_1, FRACTION, find_row, one_of, require
from .optimise import invert_by_optimisation, match_features, smooth_total_variation
from .plotting import markdown_table
from .progressive import InverseChain, forward_features, load_or_train_chain, regime_sampler
from .thresholds import RECOVERED_DB
from .train import run_side_by_side

__all__ = [
    "check_parameters",
    "Reconstructions",
    "analytic_inversions",
    "pooling_index_inversions",
    "learned_inversions",
    "optimisation_inversions",
    "score",
    "method_table",
    "quality_speed_figure",
    "gallery_panels",
]

Key = tuple[str, str, int]  # (method, target, block boundary k)


def check_parameters(params: Mapping[str, Any]) -> None:
    """Notebook 07's parameters beyond their types (``notebook.require``)."""
    splittable = [n for n, spec in TARGETS.items() if spec.block_ends]
    targets, n_test, opt_images = params["targets"], params["n_test"], params["opt_images"]
    require(
        params,
        {
            "targets": one_of(splittable, "targets with block boundaries"),
            "judge": (
                lambda v: v in TARGETS and v not in targets,
                "a registered target, independent of the targets it judges",
            ),
            "n_test": (lambda v: 1 <= v <= 10_000, "1..10000"),
            "opt_images": (lambda v: 1 <= v <= n_test, f"1..n_test ({n_test})"),
            "n_show": (lambda v: 1 <= v <= opt_images, f"1..opt_images ({opt_images})"),
            "prior_images": (lambda v: 1 <= v <= 5000, "1..5000"),
            "damping_grid": (lambda v: bool(v) and min(v) > 0, "positive ridges"),
            "prior_grid": (lambda v: bool(v) and min(v) > 0, "positive weights"),
            **dict.fromkeys(("opt_steps", "lbfgs_steps", "hybrid_steps"), AT_LEAST_1),
            "chain_steps": AT_LEAST_0,
            "min_judge_accuracy": FRACTION,
            "block1_judge_margin": FRACTION,
        },
    )


class Reconstructions:
    """Each method's reconstructions of the test images from each ``(method, target, k)``, and the
    seconds the inversion alone took (features given)."""

    def __init__(self) -> None:
        self.images: dict[Key, torch.Tensor] = {}
        self.seconds: dict[Key, float] = {}

    def add(self, key: Key, images: torch.Tensor, seconds: float) -> None:
        self.images[key], self.seconds[key] = images, seconds

    def get(self, key: Key) -> tuple[torch.Tensor, float]:
        """The reconstruction kept under ``key`` and its seconds."""
        return self.images[key], self.seconds[key]

    def run(
        self, key: Key, inverse: Callable[[torch.Tensor], torch.Tensor], f: torch.Tensor
    ) -> None:
        """Invert the features ``f`` with ``inverse`` in chunks of 2 000, timed, and keep the
        result."""
        with torch.inference_mode(), Timer() as t:
            x_hat = torch.cat([inverse(chunk) for chunk in f.split(2000)])
        self.add(key, x_hat, t.seconds)


def analytic_inversions(
    recs: Reconstructions,
    nets: Mapping[str, nn.Sequential],
    features: Mapping[str, Sequence[torch.Tensor]],
    train_images: torch.Tensor,
    damping_grid: Sequence[float],
    held_out: int = 5000,
) -> dict[tuple[str, int], float]:
    """``pinv`` and the prior pre-image from every block boundary of every target that has them
    (each built once for the whole network and sliced per boundary; the last ``held_out``
    training images choose the ridge). Returns the chosen ridge per ``(target, k)`` where a dense
    layer has a prior."""
    damping = {}
    fit, val = train_images[:-held_out], train_images[-held_out:]
    for name, net in nets.items():
        found = boundary_inverses(net, TARGETS[name].block_ends, fit, val, damping_grid)
        if not found:
            print(f"{name}: no analytic inverse (a layer, here max-pooling, has none without its "
                  "indices)")  # fmt: skip
            continue
        for k in range(1, len(features[name])):
            recs.run((PINV, name, k), found[PINV, k], features[name][k])
            if found[PRIOR, k] is found[PINV, k]:  # no prior applies: the same reconstruction
                recs.add((PRIOR, name, k), *recs.get((PINV, name, k)))
                continue
            recs.run((PRIOR, name, k), found[PRIOR, k], features[name][k])
            if hasattr(found[PRIOR, k], "damping"):  # where a dense layer has a prior
                damping[name, k] = found[PRIOR, k].damping
    return damping


def pooling_index_inversions(
    recs: Reconstructions, blocks: Mapping[str, Sequence[nn.Sequential]], x: torch.Tensor
) -> None:
    """Behind max-pooling the analytic route needs the pooling indices (privileged): block 1 of
    every target whose first block is a convolution ending in max-pooling, on the images ``x``
    (an iterative least-squares solve)."""
    for name, bs in blocks.items():
        first = bs[0]
        if isinstance(first[-1], nn.MaxPool2d) and isinstance(first[0], nn.Conv2d):
            feats, idx = forward_features(bs[:1], x, with_indices=True)
            with Timer() as t:
                x_hat = invert_conv_relu_pool(first, feats[1], idx[0])
            recs.add((PINV_INDICES, name, 1), x_hat, t.seconds)


def learned_inversions(
    ctx: Context,
    recs: Reconstructions,
    nets: Mapping[str, nn.Sequential],
    blocks: Mapping[str, Sequence[nn.Sequential]],
    features: Mapping[str, Sequence[torch.Tensor]],
    train_images: torch.Tensor,
    chain_steps: int,
    seed: int,
) -> tuple[dict[tuple[str, str], InverseChain], dict[str, str]]:
    """The learned inverses from every boundary they start from: notebook 03's inverse weights of
    the sigmoid MLP (its last hidden layer) and notebook 04's real-image and noise chains, each
    loaded where saved for these very target weights (by fingerprint), else trained here (chains
    two side by side on a CPU, each from its own generator seeded ``seed``, as in 04). Returns the
    chains and which notebook trained each inverse."""
    provenance = {}
    if "mlp_sigmoid" in nets:
        weights = load_inverse_weights(
            ctx, nets["mlp_sigmoid"], "mlp_sigmoid", train_images, notebook=ctx.notebook, seed=seed
        )
        provenance[f"mlp_sigmoid: {INVERSE_WEIGHTS}"] = weights.meta["notebook"]
        recs.run(
            (INVERSE_WEIGHTS, "mlp_sigmoid", 2),
            lambda h: weights(h).reshape(-1, 1, 28, 28),
            features["mlp_sigmoid"][2],
        )
    jobs = [(name, regime) for name in nets for regime in ("real", "noise")]
    found = run_side_by_side(
        [
            partial(
                load_or_train_chain,
                ctx,
                name,
                nets[name],
                blocks[name],
                regime,
                chain_steps or TARGETS[name].chain_steps,
                regime_sampler(
                    regime, torch.Generator().manual_seed(seed), ctx.device, real=train_images
                ),
                seed=seed,
                notebook=ctx.notebook,
            )  # fmt: skip
            for name, regime in jobs
        ],
        ctx.device,
    )
    chains = {}
    for (name, regime), chain in zip(jobs, found):
        label = chain_label(regime)
        provenance[f"{name}: {label}"] = chain.meta["notebook"]
        chains[name, label], fast = chain, in_fast_layout(chain)
        for k in range(1, len(blocks[name]) + 1):
            recs.run((label, name, k), partial(fast, k=k), features[name][k])
    return chains, provenance


def _regularised(
    feature_fn: nn.Module,
    f: torch.Tensor,
    train_images: torch.Tensor,
    prior_grid: Sequence[float],
    prior_images: int,
    steps: int,
) -> tuple[Any, float]:
    """Feature matching with a TV and norm prior (He et al.'s rMLE with L-BFGS), its weight chosen
    from ``prior_grid`` by PSNR on the last ``prior_images`` training images (never the test set).
    Returns the search's result on ``f`` and the weight."""

    def match(target: torch.Tensor, w: float):
        def prior(x: torch.Tensor) -> torch.Tensor:
            return w * (smooth_total_variation(x) + (x - 0.5).pow(2).flatten(1).mean(1))

        return match_features(feature_fn, target, steps=steps, dtype=torch.float32, prior=prior)

    held_out = train_images[-prior_images:]
    with torch.no_grad():
        held_features = feature_fn(held_out)
    scores = {
        w: psnr(clip_images(match(held_features, w).images).cpu(), held_out.cpu())
        for w in prior_grid
    }
    weight = max(scores, key=scores.get)
    return match(f, weight), weight


def optimisation_inversions(
    recs: Reconstructions,
    blocks: Mapping[str, Sequence[nn.Sequential]],
    chains: Mapping[tuple[str, str], InverseChain],
    features: Mapping[str, Sequence[torch.Tensor]],
    x: torch.Tensor,
    train_images: torch.Tensor,
    params: Mapping[str, Any],
) -> dict[tuple[str, int], float]:
    """The optimisation methods on the first ``opt_images`` test images, from the first and the
    last block boundary: Adam (``opt_steps``), L-BFGS feature matching from grey
    (``lbfgs_steps``), the hybrid (the real-image chain's output, then ``hybrid_steps``), and where
    plain matching is not exact the regularised variant. Returns the regularised variant's prior
    weight per ``(target, k)``."""
    subset = torch.arange(params["opt_images"])
    prior_weight = {}
    for name, bs in blocks.items():
        for k in sorted({1, len(bs)}):
            feature_fn, f = nn.Sequential(*bs[:k]), features[name][k][subset]
            with Timer() as t:
                x_opt = invert_by_optimisation(feature_fn, f, steps=params["opt_steps"])
            recs.add((OPTIMISATION, name, k), x_opt, t.seconds)
            found = match_features(feature_fn, f, steps=params["lbfgs_steps"], dtype=torch.float32)
            recs.add((MATCHING, name, k), found.images, found.total_seconds)
            with torch.no_grad(), Timer() as t_init:
                start = chains[name, CHAIN_REAL](f, k)
            found = match_features(
                feature_fn, f, steps=params["hybrid_steps"], init=start, dtype=torch.float32
            )
            recs.add((HYBRID, name, k), found.images, t_init.seconds + found.total_seconds)
            if (
                psnr(clip_images(recs.images[MATCHING, name, k]).cpu(), x[subset].cpu())
                < RECOVERED_DB
            ):
                found, prior_weight[name, k] = _regularised(
                    feature_fn, f, train_images, params["prior_grid"], params["prior_images"],
                    params["lbfgs_steps"],
                )  # fmt: skip
                recs.add((REGULARISED, name, k), found.images, found.total_seconds)
    return prior_weight


def score(
    recs: Reconstructions,
    nets: Mapping[str, nn.Sequential],
    judge: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
) -> list[dict]:
    """One row per reconstruction: PSNR, SSIM and re-classification by the target with their 95 %
    intervals, re-classification by the independent ``judge``, images per second and how many
    images it scored; sorted by target, boundary and the methods' display order."""
    rows, scored = [], {}  # a reconstruction kept under two keys is scored once
    for (method, name, k), x_hat in recs.images.items():
        n = len(x_hat)
        if id(x_hat) in scored:
            rows.append({**scored[id(x_hat)], "method": method,
                         "images_per_s": n / recs.seconds[method, name, k]})  # fmt: skip
            continue
        report = reconstruction_report(x[:n], x_hat, y[:n], nets[name])
        rows.append({
            "method": method, "target": name, "depth": k,
            "depth_is_logits": k == len(TARGETS[name].block_ends),
            "psnr": report["psnr"], "ssim": report["ssim"], "reclass_target": report["reclass"],
            "psnr_ci": report["psnr_ci"], "ssim_ci": report["ssim_ci"],
            "reclass_target_ci": report["reclass_ci"],
            "reclass_independent": reclassification_accuracy(judge, clip_images(x_hat), y[:n]),
            "images_per_s": n / recs.seconds[method, name, k], "n_images": n,
        })  # fmt: skip
        scored[id(x_hat)] = rows[-1]
    order = list(nets)
    rows.sort(key=lambda r: (order.index(r["target"]), r["depth"], METHOD_ORDER.index(r["method"])))
    return rows


def method_table(rows: Sequence[dict], target: str, n_test: int) -> str:
    """Markdown: every method of ``target`` from every boundary (PSNR / SSIM / re-classified by the
    target / by the judge; how many images where fewer than ``n_test``) and its best images/s."""
    K = max(r["depth"] for r in rows if r["target"] == target)

    def cell(c: dict | None) -> str:
        if c is None:
            return "–"
        n = "" if c["n_images"] == n_test else f" (n={c['n_images']})"
        return (
            f"{c['psnr']:.1f} dB / {c['ssim']:.2f} / {c['reclass_target']:.1%} / "
            f"{c['reclass_independent']:.1%}{n}"
        )

    table = []
    for method in METHOD_ORDER:
        cells = [
            find_row(rows, True, method=method, target=target, depth=k) for k in range(1, K + 1)
        ]
        if any(cells):
            speed = max(c["images_per_s"] for c in cells if c)
            table.append([method, *map(cell, cells), f"{speed:,.0f}"])
    header = ["method", *(f"k = {k}" + (" (logits)" if k == K else "") for k in range(1, K + 1)),
              "images/s"]  # fmt: skip
    return (
        f"**{target}**: PSNR / SSIM / re-classified by the target / by the judge\n\n"
        + markdown_table(header, table)
    )


def quality_speed_figure(rows: Sequence[dict]) -> Figure:
    """PSNR against images per second of every method and target, from block 1 and from the
    logits."""
    colours = {m: f"C{i}" for i, m in enumerate(METHOD_ORDER)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, logits in zip(axes, (False, True)):
        for method in METHOD_ORDER:
            pts = [r for r in rows if r["method"] == method
                   and (r["depth_is_logits"] if logits else r["depth"] == 1)]  # fmt: skip
            if not pts:
                continue
            ax.scatter([r["images_per_s"] for r in pts], [r["psnr"] for r in pts],
                       color=colours[method], label=method, s=40)  # fmt: skip
            for r in pts:
                ax.annotate(r["target"], (r["images_per_s"], r["psnr"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("images per second (log scale)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title("inverted from the logits" if logits else "inverted from block 1")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("Quality against speed, every method and target")
    fig.tight_layout()
    return fig


def gallery_panels(
    recs: Reconstructions, blocks: Mapping[str, Sequence[nn.Sequential]], x: torch.Tensor, n: int
) -> dict[str, dict[str, dict[str, torch.Tensor | None]]]:
    """For ``"block1"`` and ``"logits"``: per target, the first ``n`` images and every method's
    reconstruction of them from that boundary (None where the method does not apply), for
    ``plotting.show_row_panels``."""
    galleries: dict[str, dict] = {"block1": {}, "logits": {}}
    for where in galleries:
        for name, bs in blocks.items():
            k = 1 if where == "block1" else len(bs)
            panel = {"original": x[:n]}
            panel |= {m: recs.images[m, name, k][:n] if (m, name, k) in recs.images else None
                      for m in METHOD_ORDER}  # fmt: skip
            galleries[where][f"{name}, k = {k}"] = panel
    return galleries
