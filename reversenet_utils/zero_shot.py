"""Notebook 04's stages: zero-shot progressive inversion, against real images and the limit.

Each stage returns plain rows, mappings or tensors; each figure function takes them and only
draws; the claims made from them live in :mod:`reversenet_utils.claims.zero_shot`.

- :func:`chain_runs`, :func:`synthesize`, :func:`training_inputs`: which chains, on what inputs;
- :func:`train_chains`, :func:`score_chains`: train every chain (saved for notebook 07), and the
  further training seeds of the chains the zero-shot claim rests on (not saved), in one pool; score
  each from every block boundary on the test images;
- :func:`seed_scores`, :func:`with_seeds`, :func:`paired_rows`: the further seeds' scores and the
  paired differences;
- :func:`speed_against_optimisation`, :func:`feature_matching_sweep`, :func:`equal_psnr_speedups`:
  the learned inverse against optimisation, at equal PSNR;
- :func:`logit_ceiling`: re-classification from the logits, refined to its ceiling;
- tables and figures: :func:`depth_table`, :func:`psnr_by_depth_figure`, :func:`depth_grids`,
  :func:`sweep_figure`, :func:`equal_psnr_table`, :func:`ceiling_table`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .labels import REGIMES, chain_label
from .artifacts import read_results
from .context import Context
from .metrics import Timer, paired_differences, psnr, reconstruction_report
from .models import TARGETS
from .notebook import AT_LEAST_0, AT_LEAST_1, Rule, find_row, one_of, require, select_rows
from .optimise import invert_by_optimisation, match_features
from .plotting import markdown_table
from .progressive import (
    InverseChain,
    LossWeights,
    forward_features,
    invert_from_every_depth,
    load_or_train_chain,
    regime_sampler,
    train_inverse_chain,
)
from .synthetic import structured_noise, synthesize_inputs
from .train import GLOBAL_RNG, run_side_by_side

__all__ = [
    "REAL",
    "ChainRun",
    "Scores",
    "Synthesized",
    "check_parameters",
    "chain_recipe",
    "chain_runs",
    "synthesize",
    "training_inputs",
    "Trained",
    "train_chains",
    "score_chains",
    "seed_scores",
    "with_seeds",
    "paired_rows",
    "depth_table",
    "psnr_by_depth_figure",
    "depth_grids",
    "speed_against_optimisation",
    "feature_matching_sweep",
    "equal_psnr",
    "equal_psnr_speedups",
    "equal_psnr_table",
    "sweep_figure",
    "injectivity_rows",
    "recipe_used",
    "logit_ceiling",
    "ceiling_table",
]

REAL = chain_label("real")  #: the chain every zero-shot chain is compared with
#: the data-free regimes whose claim rests on several training seeds (with the real-image chain)
SEEDED_REGIMES = ("real", "noise")


def check_parameters(params: Mapping[str, Any]) -> None:
    """Notebook 04's parameters beyond their types: one ``ValueError`` that names each parameter
    that is wrong and what it must be (``notebook.require``)."""
    splittable = [n for n, spec in TARGETS.items() if spec.block_ends]
    targets = params["targets"]
    test_images: Rule = (lambda v: 1 <= v <= 10_000, "1..10000 (test images)")
    rules = {
        "targets": one_of(splittable, "targets with block boundaries"),
        "joint_targets": (lambda v: set(v) <= set(targets), f"among targets={targets}"),
        "seed_targets": (lambda v: set(v) <= set(targets), f"among targets={targets}"),
        "n_test": test_images,
        "sweep_images": test_images,
        "sweep_steps": (lambda v: bool(v) and min(v) >= 1, "iteration counts >= 1"),
        "extra_seeds": (lambda v: v >= 0, ">= 0"),
        **dict.fromkeys(("chain_steps", "batch_size", "lr"), AT_LEAST_0),
        **dict.fromkeys(
            ("n_synth", "synth_steps", "opt_images", "opt_steps", "logit_refine_steps"), AT_LEAST_1
        ),
    }
    require(params, rules)


def chain_recipe(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """The chains' recipe overrides (loss weights, and batch size and learning rate where the
    parameters set them; ``progressive.train_inverse_chain`` has the rest) and each target's budget
    in batches (``chain_steps``, else its ``TargetSpec.chain_steps``)."""
    recipe: dict[str, Any] = {"weights": LossWeights(**params["loss_weights"])}
    recipe |= {name: params[name] for name in ("batch_size", "lr") if params[name]}
    steps = {n: params["chain_steps"] or TARGETS[n].chain_steps for n in params["targets"]}
    return recipe, steps


class ChainRun(NamedTuple):
    """One inverse chain to train: its target, training regime, schedule and unpooling."""

    target: str
    regime: str
    schedule: str = "progressive"
    unpool: bool = False

    @property
    def label(self) -> str:
        return chain_label(self.regime, self.schedule, self.unpool)


def chain_runs(
    blocks: Mapping[str, Sequence[nn.Sequential]], joint_targets: Sequence[str]
) -> list[ChainRun]:
    """Every target's chains: the three regimes, progressive; real images trained jointly for
    ``joint_targets``; for a target with max-pooling, real images with its pooling indices."""
    runs = []
    for name, bs in blocks.items():
        runs += [ChainRun(name, regime) for regime in REGIMES]
        if name in joint_targets:
            runs.append(ChainRun(name, "real", "joint"))
        if any(isinstance(b[-1], nn.MaxPool2d) for b in bs):
            runs.append(ChainRun(name, "real", unpool=True))
    return runs


class Synthesized(NamedTuple):
    """Inputs synthesized from one target, the target's confidence in each chosen class, and the
    seconds it took."""

    images: torch.Tensor
    confidence: torch.Tensor
    seconds: float


def synthesize(
    nets: Mapping[str, nn.Module], n: int, steps: int, seed: int
) -> dict[str, Synthesized]:
    """``n`` inputs synthesized from each target alone (``synthetic.synthesize_inputs``)."""
    found = {}
    for name, net in nets.items():
        with Timer() as t:
            images, confidence = synthesize_inputs(net, n, steps=steps, seed=seed)
        found[name] = Synthesized(images, confidence, t.seconds)
    return found


def training_inputs(real: torch.Tensor, synth: Mapping[str, Synthesized], n: int = 12) -> dict:
    """``n`` training inputs of each regime (the synthesized ones from the first target), for a
    figure."""
    first = next(iter(synth))
    return {
        "real": real[:n],
        "noise": structured_noise(n, torch.Generator().manual_seed(1)),
        f"synthesized ({first})": synth[first].images[:n],
    }


class Trained(NamedTuple):
    """What :func:`train_chains` trains: the chains of the runs, saved (``{(target, label):
    chain}``), and the further seeds' chains, not saved (``{(target, regime, seed): chain}``)."""

    chains: dict[tuple[str, str], InverseChain]
    extra: dict[tuple[str, str, int], InverseChain]


def train_chains(
    ctx: Context,
    runs: Sequence[ChainRun],
    nets: Mapping[str, nn.Sequential],
    blocks: Mapping[str, Sequence[nn.Sequential]],
    real: torch.Tensor,
    synth: Mapping[str, Synthesized],
    steps: Mapping[str, int],
    seed: int,
    recipe: Mapping[str, Any],
    seed_targets: Sequence[str] = (),
    extra_seeds: int = 0,
) -> Trained:
    """Train every chain of ``runs`` (``steps[target]`` batches) on the context's device and save it
    with its target's fingerprint, for notebook 07 (the context's notebook recorded as its maker);
    and the real-image and noise chains of ``seed_targets`` again with ``extra_seeds`` further
    seeds (the same recipe and budget; not saved), for the claim's spread over training seeds.

    Each chain draws its batches from its own generator, seeded by its seed; on a CPU two train
    side by side, all of them in one pool, the costliest first (``train.run_side_by_side``): no
    core waits for the last chain of one group before the next group starts.
    """
    device = ctx.device
    tasks = [
        partial(
            load_or_train_chain,
            ctx,
            r.target,
            nets[r.target],
            blocks[r.target],
            r.regime,
            steps[r.target],
            regime_sampler(
                r.regime,
                torch.Generator().manual_seed(seed),
                device,
                real=real,
                synthesized=synth[r.target].images,
            ),
            r.schedule,
            r.unpool,
            seed=seed,
            notebook=ctx.notebook,
            retrain=True,
            **recipe,
        )
        for r in runs
    ]
    costs = [
        _chain_cost(len(blocks[r.target]), steps[r.target], r.schedule, r.unpool) for r in runs
    ]
    extra = {}
    for name in [t for t in blocks if t in seed_targets]:
        for regime in SEEDED_REGIMES:
            for s in range(seed + 1, seed + 1 + extra_seeds):
                with GLOBAL_RNG:  # initialised here, in order; trained side by side below
                    torch.manual_seed(s)
                    extra[name, regime, s] = InverseChain(blocks[name]).to(device)
    for (name, regime, s), chain in extra.items():
        tasks.append(
            partial(
                train_inverse_chain,
                chain,
                blocks[name],
                regime_sampler(regime, torch.Generator().manual_seed(s), device, real=real),
                steps[name],
                seed=s,
                desc=f"{name}: {chain_label(regime)}, seed {s}",
                **recipe,
            )
        )
        costs.append(_chain_cost(len(blocks[name]), steps[name], "progressive", False))
    trained = run_side_by_side(tasks, device, costs=costs)
    return Trained({(r.target, r.label): chain for r, chain in zip(runs, trained)}, extra)


def _chain_cost(n_blocks: int, steps: int, schedule: str, unpool: bool) -> float:
    """An estimate of a chain's training cost, to start the costliest first: batches times the
    blocks a batch passes on average (all of them jointly, half of them progressively), twice
    behind unpooling (whose modules see the pooling indices at every block: measured on
    ``cnn_pool``, 58 against 33 s)."""
    depth = n_blocks if schedule == "joint" else (n_blocks + 1) / 2
    return steps * depth * (2 if unpool else 1)


class Scores(NamedTuple):
    """What scoring the chains gives: results rows, per-image PSNR per ``(target, label, k)`` (for
    paired differences) and the real-image chain's images/s per ``(target, k)``."""

    rows: list[dict]
    per_image: dict[tuple[str, str, int], torch.Tensor]
    rates: dict[tuple[str, int], float]


def score_chains(
    runs: Sequence[ChainRun],
    chains: Mapping[tuple[str, str], InverseChain],
    blocks: Mapping[str, Sequence[nn.Sequential]],
    nets: Mapping[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
) -> Scores:
    """Every chain from every block boundary on the test images ``x`` (labels ``y``): PSNR, SSIM and
    re-classification by its target, each with its 95 % interval over the images. The real-image
    chain's inversions are timed in the same pass (its rate needs no second one)."""
    rows, per_image, rates = [], {}, {}
    for r in runs:
        chain, seconds = chains[r.target, r.label], {}
        for k, x_hat in invert_from_every_depth(
            chain, blocks[r.target], x, seconds=seconds
        ).items():
            report = reconstruction_report(x, x_hat, y, nets[r.target])
            per_image[r.target, r.label, k] = psnr(x_hat.clamp(0, 1).cpu(), x.cpu(), per_image=True)
            scores = ("psnr", "psnr_ci", "ssim", "ssim_ci", "reclass", "reclass_ci")
            rows.append({"target": r.target, "chain": r.label, "regime": r.regime,
                         "schedule": r.schedule, "unpool": r.unpool, "depth": k, "seeds": [seed],
                         **{m: report[m] for m in scores}})  # fmt: skip
        if r.label == REAL:
            rates.update({(r.target, k): len(x) / s for k, s in seconds.items()})
    return Scores(rows, per_image, rates)


def seed_scores(
    per_image: Mapping[tuple[str, str, int], torch.Tensor],
    extra: Mapping[tuple[str, str, int], InverseChain],
    blocks: Mapping[str, Sequence[nn.Sequential]],
    x: torch.Tensor,
) -> dict[tuple[str, str, int], list[torch.Tensor]]:
    """Per ``(target, label, k)``, the per-image PSNR of each training seed: the saved chain's
    first, then each further seed's chain (:func:`train_chains`' ``extra``)."""
    per_seed = {key: [v] for key, v in per_image.items()}
    for (name, regime, _), chain in extra.items():
        for k, x_hat in invert_from_every_depth(chain.eval(), blocks[name], x).items():
            per_seed[name, chain_label(regime), k].append(
                psnr(x_hat.clamp(0, 1).cpu(), x.cpu(), per_image=True)
            )
    return per_seed


def with_seeds(
    rows: Sequence[dict],
    per_seed: Mapping[tuple[str, str, int], list[torch.Tensor]],
    extra: Mapping[tuple[str, str, int], InverseChain],
    seed: int,
) -> list[dict]:
    """The rows, each recording its training seeds; where there are several, the PSNR of each
    (``psnr_seeds``) and their spread (``psnr_seed_sd``)."""
    seeds: dict[tuple[str, str], list[int]] = {}
    for name, regime, s in extra:
        seeds.setdefault((name, chain_label(regime)), [seed]).append(s)
    out = []
    for r in rows:
        r = {**r, "seeds": seeds.get((r["target"], r["chain"]), [seed])}
        if len(r["seeds"]) > 1:
            r["psnr_seeds"] = [
                v.mean().item() for v in per_seed[r["target"], r["chain"], r["depth"]]
            ]
            r["psnr_seed_sd"] = torch.tensor(r["psnr_seeds"]).std().item()
        out.append(r)
    return out


def paired_rows(per_seed: Mapping[tuple[str, str, int], list[torch.Tensor]]) -> list[dict]:
    """Per training seed, each chain's paired PSNR difference from the real-image chain on the
    same test images (``metrics.paired_differences``); the privileged unpooling chains are left
    out."""
    return [
        {"target": n, "a": a, "b": REAL, "depth": k, **paired_differences(v, per_seed[n, REAL, k])}
        for (n, a, k), v in per_seed.items()
        if a != REAL and not a.endswith("unpool")
    ]


def _labels(rows: Sequence[dict], target: str | None = None) -> list[str]:
    return list(dict.fromkeys(r["chain"] for r in rows if target in (None, r["target"])))


def _depths(rows: Sequence[dict], target: str) -> list[int]:
    return sorted({r["depth"] for r in rows if r["target"] == target})


def depth_table(rows: Sequence[dict], target: str) -> str:
    """Markdown: PSNR / SSIM / re-classified of each chain of ``target`` from every boundary."""
    depths = _depths(rows, target)
    header = ["chain", *(f"k = {k}" + (" (logits)" if k == depths[-1] else "") for k in depths)]

    def cell(label: str, k: int) -> str:
        r = find_row(rows, target=target, chain=label, depth=k)
        return f"{r['psnr']:.1f} dB / {r['ssim']:.2f} / {r['reclass']:.1%}"

    body = [[label, *(cell(label, k) for k in depths)] for label in _labels(rows, target)]
    return (
        f"**{target}** — PSNR / SSIM / re-classified, inverting from the output of block k\n\n"
        + markdown_table(header, body)
    )


def psnr_by_depth_figure(rows: Sequence[dict]) -> Figure:
    """PSNR on the test set against the block boundary inverted from: one panel per target, one
    line per chain (one colour per chain across panels)."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    colours = {label: f"C{i}" for i, label in enumerate(_labels(rows))}
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], targets):
        ks = _depths(rows, name)
        for label in _labels(rows, name):
            values = [find_row(rows, target=name, chain=label, depth=k)["psnr"] for k in ks]
            ax.plot(ks, values, marker="o", label=label, color=colours[label])
        ax.set_title(name)
        ax.set_xlabel("inverted from block boundary k (K = logits)")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("PSNR (dB), full test set")
    fig.tight_layout()
    return fig


@torch.no_grad()
def depth_grids(
    chains: Mapping[tuple[str, str], InverseChain],
    blocks: Mapping[str, Sequence[nn.Sequential]],
    x: torch.Tensor,
    depth: int = 2,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per target, the images ``x`` and every chain's reconstruction of them from block boundary
    ``depth`` (or the last, if the target has fewer): rows for ``plotting.show_rows``."""
    grids = {}
    for name, bs in blocks.items():
        k = min(depth, len(bs))
        feats, indices = forward_features(bs, x, with_indices=True)
        grids[name] = {"original": x} | {
            label: chain(feats[k], k, indices) for (t, label), chain in chains.items() if t == name
        }
    return grids


def speed_against_optimisation(
    target: str,
    chains: Mapping[tuple[str, str], InverseChain],
    blocks: Mapping[str, Sequence[nn.Sequential]],
    scores: Scores,
    x: torch.Tensor,
    opt_images: int,
    opt_steps: int,
    depth: int = 2,
    n_show: int = 10,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """The real-image chain of ``target`` against Adam optimisation (``opt_steps`` steps, the first
    ``opt_images`` images) from block boundary ``depth`` (or the last, if fewer).

    The chain's PSNR and images/s over all of ``x`` are its scores (:func:`score_chains`). Returns
    the comparison and the first ``n_show`` images, learned and optimised, for a figure.
    """
    bs = blocks[target]
    k = min(depth, len(bs))
    feats, _ = forward_features(bs, x, upto=k)
    with torch.no_grad():
        x_learned = chains[target, REAL](feats[k][:n_show], k)
    subset = torch.arange(opt_images)
    with Timer() as t_opt:
        x_opt = invert_by_optimisation(nn.Sequential(*bs[:k]), feats[k][subset], steps=opt_steps)
    speed = {
        "target": target,
        "depth": k,
        "learned_images_per_s": scores.rates[target, k],
        "learned_psnr": find_row(scores.rows, target=target, chain=REAL, depth=k)["psnr"],
        "optimisation_images_per_s": t_opt.rate(opt_images),
        "optimisation_psnr": reconstruction_report(x[subset], x_opt)["psnr"],
        "optimisation_steps": opt_steps,
    }
    speed["speedup"] = speed["learned_images_per_s"] / speed["optimisation_images_per_s"]
    shown = {"original": x[:n_show], "learned": x_learned, "optimised": x_opt[:n_show]}
    return speed, shown


def feature_matching_sweep(
    chains: Mapping[tuple[str, str], InverseChain],
    blocks: Mapping[str, Sequence[nn.Sequential]],
    x: torch.Tensor,
    steps: Sequence[int],
) -> list[dict]:
    """Feature matching (L-BFGS, float32) of ``x`` from every depth: PSNR and images/s at each
    iteration count of ``steps`` (snapshots of one run), from grey and, for a convolutional
    target's first two boundaries, from the real-image chain's output (the hybrid; its time
    included)."""
    grid = sorted(set(steps))
    points = []
    for name, bs in blocks.items():
        feats, _ = forward_features(bs, x)
        for k in range(1, len(bs) + 1):
            starts: dict[str, torch.Tensor | None] = {"grey": None}
            init_s = 0.0
            if isinstance(bs[0][0], nn.Conv2d) and k <= 2:
                with torch.no_grad(), Timer() as t_init:
                    starts["learned"] = chains[name, REAL](feats[k], k)
                init_s = t_init.seconds
            for start, init in starts.items():
                found = match_features(nn.Sequential(*bs[:k]), feats[k], steps=max(grid),
                                       init=init, snapshots=grid, dtype=torch.float32)  # fmt: skip
                extra = init_s if init is not None else 0.0
                points += [
                    {
                        "target": name,
                        "depth": k,
                        "start": start,
                        "steps": s,
                        "psnr": psnr(found.snapshots[s].clamp(0, 1).cpu(), x.cpu()),
                        "images_per_s": len(x) / (found.seconds[s] + extra),
                    }  # fmt: skip
                    for s in grid
                ]
    return points


def equal_psnr(points: Sequence[dict], goal: float) -> dict:
    """Where a sweep (points in iteration order) first reaches PSNR ``goal``: its iterations and
    images/s, interpolated log-linearly between sweep points; None for both where it does not."""
    for a, b in zip(points, points[1:]):
        if a["psnr"] < goal <= b["psnr"]:
            w = (goal - a["psnr"]) / (b["psnr"] - a["psnr"])
            return {
                "steps": a["steps"] * (b["steps"] / a["steps"]) ** w,
                "images_per_s": a["images_per_s"] * (b["images_per_s"] / a["images_per_s"]) ** w,
            }
    if points and points[0]["psnr"] >= goal:
        return {"steps": points[0]["steps"], "images_per_s": points[0]["images_per_s"]}
    return {"steps": None, "images_per_s": None}  # not reached within the sweep's budget


def equal_psnr_speedups(
    rows: Sequence[dict], points: Sequence[dict], rates: Mapping[tuple[str, int], float]
) -> dict[str, dict]:
    """Per ``"target, k=K"``: the real-image chain's PSNR and images/s, and L-BFGS from grey where
    it reaches that PSNR (:func:`equal_psnr`), with the speed-up."""
    equal = {}
    for name, k in rates:
        goal = find_row(rows, target=name, chain=REAL, depth=k)["psnr"]
        hit = equal_psnr(select_rows(points, target=name, depth=k, start="grey"), goal)
        rate = hit["images_per_s"]
        equal[f"{name}, k={k}"] = {
            "learned_psnr": goal,
            "learned_images_per_s": rates[name, k],
            "optimisation_steps": hit["steps"],
            "optimisation_images_per_s": rate,
            "speedup": rates[name, k] / rate if rate else None,
        }
    return equal


def equal_psnr_table(equal: Mapping[str, dict], max_steps: int) -> str:
    """Markdown: the learned inverse against L-BFGS at equal PSNR (:func:`equal_psnr_speedups`)."""
    header = ["target, depth", "learned: PSNR", "learned: images/s",
              "L-BFGS iterations to that PSNR", "L-BFGS images/s there",
              "speed-up at equal PSNR"]  # fmt: skip
    body = [
        [
            key,
            f"{e['learned_psnr']:.1f} dB",
            f"{e['learned_images_per_s']:,.0f}",
            f"{e['optimisation_steps']:.0f}"
            if e["optimisation_steps"]
            else f"not within {max_steps}",
            f"{e['optimisation_images_per_s']:,.1f}" if e["optimisation_images_per_s"] else "–",
            f"{e['speedup']:,.0f}x" if e["speedup"] else "–",
        ]  # fmt: skip
        for key, e in equal.items()
    ]
    return markdown_table(header, body)


def sweep_figure(points: Sequence[dict], equal: Mapping[str, dict], n_images: int) -> Figure:
    """Quality against time: PSNR against seconds per image for each depth's sweep of ``n_images``
    test images, from grey (solid) and from the learned inverse (dashed); stars: the learned
    inverse itself (:func:`equal_psnr_speedups`)."""
    targets = list(dict.fromkeys(p["target"] for p in points))
    steps = sorted({p["steps"] for p in points})
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.8), squeeze=False)
    for ax, name in zip(axes[0], targets):
        for k in sorted({p["depth"] for p in points if p["target"] == name}):
            for start, style in (("grey", "-"), ("learned", "--")):
                pts = select_rows(points, target=name, depth=k, start=start)
                if pts:
                    label = f"k = {k}" + (
                        ", from the learned inverse" if start == "learned" else ""
                    )
                    ax.plot([1 / r["images_per_s"] for r in pts], [r["psnr"] for r in pts], style,
                            marker="o", color=f"C{k - 1}", label=label)  # fmt: skip
            e = equal[f"{name}, k={k}"]
            ax.scatter([1 / e["learned_images_per_s"]], [e["learned_psnr"]], marker="*", s=120,
                       color=f"C{k - 1}", edgecolor="k", zorder=3)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (log; stars: the learned inverse)")
        ax.set_title(f"{name}: L-BFGS {steps[0]}-{steps[-1]} iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    axes[0][0].set_ylabel(f"PSNR (dB), {n_images} test images")
    fig.suptitle(
        "Quality against time: feature matching from grey (solid), from the learned inverse "
        "(dashed)"
    )
    fig.tight_layout()
    return fig


def injectivity_rows(ctx: Context, targets: Sequence[str]) -> list[dict]:
    """Notebook 02's injectivity map for ``targets``, as its results file for the context's dataset
    holds it (empty where notebook 02 has not run on that dataset)."""
    found = read_results(ctx, "02_analytic_pseudo_inverse", missing_ok=True)
    return [r for r in found.get("metrics", {}).get("injectivity", []) if r["target"] in targets]


def recipe_used(
    chains: Mapping[tuple[str, str], InverseChain], steps: Mapping[str, int]
) -> dict[str, Any]:
    """What the chains were trained with, for the results file: each target's budget, and the batch
    size, learning rate and loss weights recorded in the chains' metadata."""
    meta = next(iter(chains.values())).meta
    return {
        "steps": dict(steps),
        **{k: v for k, v in meta.items() if k in ("batch_size", "lr", "weights")},
    }


def logit_ceiling(
    chains: Mapping[tuple[str, str], InverseChain],
    nets: Mapping[str, nn.Sequential],
    blocks: Mapping[str, Sequence[nn.Sequential]],
    x: torch.Tensor,
    y: torch.Tensor,
    refine_steps: int,
) -> dict[str, dict]:
    """Per target: the real-image chain's inversions from the logits, re-classified, and the same
    after ``refine_steps`` L-BFGS iterations (from the chain's output, inside [0, 1]) for those the
    target does not classify as the logits say; against the target's accuracy, the ceiling."""
    ceiling = {}
    for name, net in nets.items():
        K = len(blocks[name])
        with torch.no_grad():
            logits = net(x)
            x_logit = torch.cat([chains[name, REAL](f, K) for f in logits.split(2000)]).clamp(0, 1)
            wrong = (net(x_logit).argmax(1) != logits.argmax(1)).nonzero().flatten()
        x_refined = x_logit.clone()
        with Timer() as t_refine:
            if len(wrong):
                x_refined[wrong] = match_features(
                    net, logits[wrong], steps=refine_steps, init=x_logit[wrong], batch_size=1000,
                    dtype=torch.float32, bounded=True,
                ).images  # fmt: skip
        learned, refined = (reconstruction_report(x, r, y, net) for r in (x_logit, x_refined))
        keep = ("psnr", "reclass", "reclass_ci")
        ceiling[name] = {
            "target_accuracy": (logits.argmax(1) == y).double().mean().item(),  # the same images
            "refined_images": len(wrong),
            "refine_seconds": t_refine.seconds,
            "learned": {m: learned[m] for m in keep},
            "refined": {m: refined[m] for m in keep},
        }
    return ceiling


def ceiling_table(ceiling: Mapping[str, dict]) -> str:
    """Markdown: re-classification from the logits against the target's accuracy
    (:func:`logit_ceiling`)."""
    header = ["target", "target accuracy (ceiling)", "learned inverse", "refined (hybrid)",
              "95 % CI", "images refined", "seconds", "gap to the ceiling"]  # fmt: skip
    body = []
    for name, c in ceiling.items():
        lo, hi = c["refined"]["reclass_ci"]
        body.append([
            name, f"{c['target_accuracy']:.2%}", f"{c['learned']['reclass']:.2%}",
            f"{c['refined']['reclass']:.2%}", f"{lo:.2%}-{hi:.2%}", c["refined_images"],
            f"{c['refine_seconds']:.1f}", f"{c['refined']['reclass'] - c['target_accuracy']:+.2%}",
        ])  # fmt: skip
    return markdown_table(header, body)
