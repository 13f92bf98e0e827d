"""Notebook 04's claims (zero-shot progressive inversion), from its results metrics and parameters
alone.

The one definition of each claim lives here; the notebook's findings, conclusion and gates and
README's headline and generalisation table all call it:

- :func:`zero_shot_close`: a data-free chain comes within ``gap`` dB of the chain trained on real
  images;
- :func:`findings`, :func:`conclusion`: the notebook's generated text;
- :func:`gates`: its quality gates, each a :class:`~reversenet_utils.claims.Claim`;
- :func:`headline`: README's one-line finding.

``metrics`` is the ``metrics`` mapping of ``results/04_zero_shot_progressive_inversion.json``:
``rows``, ``paired`` (per-seed paired PSNR differences,
:func:`reversenet_utils.metrics.paired_differences`), ``targets`` (blocks and whether the first
layer is a convolution), ``injectivity`` (notebook 02's map for these targets), ``speed``,
``optimisation_sweep``, ``logit_ceiling``, ``anchors``, ``dataset_title``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from ..labels import REGIMES, chain_label
from ..metrics import verdict
from ..notebook import select_rows
from ..plotting import markdown_table
from ..thresholds import ACCURACY_RERUN_TOLERANCE, RECOVERED_DB, ZERO_SHOT_GAP_DB
from . import Claim

__all__ = [
    "ZERO_SHOT",
    "REAL",
    "row",
    "sweep",
    "best_zero_shot",
    "seed_spread",
    "zero_shot_close",
    "paired_text",
    "findings",
    "conclusion",
    "gates",
    "ceiling_reached",
    "against_anchor",
    "anchor_table",
    "headline",
]

#: the data-free regimes, and the chain they are compared with
ZERO_SHOT = tuple(chain_label(r) for r in REGIMES if r != "real")
REAL = chain_label("real")


def row(metrics: Mapping, target: str, chain: str, depth: int) -> dict:
    """The results row of one target, chain and block boundary (a ``KeyError`` naming what is
    missing)."""
    for r in metrics["rows"]:
        if r["target"] == target and r["chain"] == chain and r["depth"] == depth:
            return r
    raise KeyError(f"no row for target {target!r}, chain {chain!r}, depth {depth}")


def _chains(metrics: Mapping, target: str) -> list[str]:
    return list(dict.fromkeys(r["chain"] for r in metrics["rows"] if r["target"] == target))


def best_zero_shot(metrics: Mapping, target: str, k: int) -> str:
    """The data-free chain of ``target`` with the higher PSNR from block boundary ``k``."""
    present = [c for c in ZERO_SHOT if c in _chains(metrics, target)]
    return max(present, key=lambda c: row(metrics, target, c, k)["psnr"])


def _pair(metrics: Mapping, target: str, a: str, b: str, k: int) -> dict:
    for p in metrics["paired"]:
        if p["target"] == target and p["a"] == a and p["b"] == b and p["depth"] == k:
            return p
    raise KeyError(f"no paired difference of {a!r} against {b!r} for {target!r} at depth {k}")


def zero_shot_close(metrics: Mapping, target: str, k: int, gap: float = ZERO_SHOT_GAP_DB) -> Claim:
    """Does the best data-free chain come within ``gap`` dB of the real-image chain at block
    boundary ``k``?

    The one definition: yes where both reach float precision (``RECOVERED_DB``: their difference is
    rounding), or where, for *every* training seed, the 95 % interval of the paired per-image
    difference (zero-shot minus real) lies above ``-gap``. With one seed, the interval is widened by
    twice the seed-to-seed spread measured in the same run (:func:`seed_spread`), so that the
    verdict carries the training variance and not only the test images'.
    """
    zero = best_zero_shot(metrics, target, k)
    z, r = row(metrics, target, zero, k)["psnr"], row(metrics, target, REAL, k)["psnr"]
    where = f"`{target}` k = {k}"
    if min(z, r) >= RECOVERED_DB:
        return Claim(
            f"{where}: zero-shot ({zero}) and real images both at float precision ({z:.1f} and "
            f"{r:.1f} dB, >= {RECOVERED_DB:.0f} dB)",
            True,
        )
    p = _pair(metrics, target, zero, REAL, k)
    floor = 2 * (seed_spread(metrics, target, k) or 0.0) if p["seeds"] == 1 else 0.0
    worst = min(lo for lo, _ in p["cis"]) - floor  # the lowest the difference may be, over seeds
    seeds = (
        f"{p['seeds']} training seeds"
        if p["seeds"] > 1
        else (
            f"one training seed; widened by {floor:.2f} dB, twice the seed-to-seed spread"
            if floor
            else "one training seed"
        )
    )
    return Claim(
        f"{where}: zero-shot ({zero}) trails real images by {r - z:.2f} dB; the difference's 95 % "
        f"interval reaches {-worst:.2f} dB below ({seeds}), gap allowed {gap:g} dB",
        -worst <= gap,
    )


def seed_spread(metrics: Mapping, target: str, k: int) -> float | None:
    """The seed-to-seed standard deviation (dB) of a paired difference measured in this run, for a
    chain trained with one seed: the largest among the chains trained with several seeds at the same
    target and boundary, else at the same boundary of any target, else anywhere; None where no chain
    had several seeds."""

    def spreads(keep) -> list[float]:
        return [
            statistics.stdev(p["means"]) for p in metrics["paired"] if p["seeds"] > 1 and keep(p)
        ]

    for keep in (
        lambda p: p["target"] == target and p["depth"] == k,
        lambda p: p["depth"] == k,
        lambda p: True,
    ):
        found = spreads(keep)
        if found:
            return max(found)
    return None


def paired_text(metrics: Mapping, target: str, a: str, b: str, k: int) -> str:
    """PSNR difference of chains ``a`` and ``b`` on the same test images with its 95 % interval per
    training seed: "better"/"worse" only if every seed's interval excludes zero on the same side;
    both at float precision a match."""
    pa, pb = row(metrics, target, a, k)["psnr"], row(metrics, target, b, k)["psnr"]
    if min(pa, pb) >= RECOVERED_DB:
        return (
            f"both at float precision ({pa:.1f} and {pb:.1f} dB, >= {RECOVERED_DB:.0f} dB): a match"
        )
    p = _pair(metrics, target, a, b, k)
    cis, means = p["cis"], p["means"]
    word = (
        "better"
        if all(lo > 0 for lo, _ in cis)
        else "worse"
        if all(hi < 0 for _, hi in cis)
        else "a match"
    )
    if p["seeds"] == 1:
        return (
            f"{means[0]:+.2f} dB (95 % CI {cis[0][0]:+.2f} to {cis[0][1]:+.2f}; "
            f"one training seed: {word} for this seed)"
        )
    return (
        f"{sum(means) / len(means):+.2f} dB over {p['seeds']} training seeds (per seed "
        f"{min(means):+.2f} to {max(means):+.2f}, widest 95 % CI {min(lo for lo, _ in cis):+.2f} "
        f"to {max(hi for _, hi in cis):+.2f}: {word})"
    )


def _blocks(metrics: Mapping, target: str) -> int:
    return metrics["targets"][target]["blocks"]


def _convs(metrics: Mapping) -> list[str]:
    return [t for t, v in metrics["targets"].items() if v["conv"]]


def _limit(metrics: Mapping, target: str, k: int) -> dict | None:
    return next(
        (r for r in metrics["injectivity"] if r["target"] == target and r["depth"] == k), None
    )


def sweep(metrics: Mapping, target: str, k: int, start: str = "grey") -> list[dict]:
    """The feature-matching sweep's points of one target, depth and start, in iteration order."""
    return select_rows(metrics["optimisation_sweep"], target=target, depth=k, start=start)


def findings(metrics: Mapping, params: Mapping) -> list[str]:
    """The notebook's findings, one markdown line each."""
    lines = []
    for name in metrics["targets"]:
        K = _blocks(metrics, name)
        zero1, zero2 = best_zero_shot(metrics, name, 1), best_zero_shot(metrics, name, min(2, K))
        last = row(metrics, name, REAL, K)
        lines.append(
            f"- **{name}**: zero-shot ({zero1}) against real images at k = 1: "
            f"{paired_text(metrics, name, zero1, REAL, 1)}; at k = {min(2, K)}: "
            f"{paired_text(metrics, name, zero2, REAL, min(2, K))}; from the logits the real-image "
            f"inverse reaches {last['psnr']:.1f} dB, {last['reclass']:.2%} re-classified"
        )
    joint = chain_label("real", "joint")
    for name in [t for t in metrics["targets"] if joint in _chains(metrics, t)]:
        K = _blocks(metrics, name)
        lines.append(
            f"- **{name}**, joint against progressive (same budget): at k = 1 "
            f"{paired_text(metrics, name, joint, REAL, 1)}, from the logits "
            f"{paired_text(metrics, name, joint, REAL, K)}"
        )
    for name in metrics["targets"]:
        for label in [c for c in _chains(metrics, name) if c.endswith("unpool")]:
            K = _blocks(metrics, name)

            def gain(k: int, name: str = name, label: str = label) -> float:
                return row(metrics, name, label, k)["psnr"] - row(metrics, name, REAL, k)["psnr"]

            lines.append(
                f"- **{name}**, MaxUnpool with the target's indices (privileged): "
                f"{gain(1):+.1f} dB at k = 1, {gain(K):+.1f} dB from the logits"
            )
    # what is lost, from notebook 02's injectivity map (feature matching, no prior)
    for name in metrics["targets"]:
        mapped = [r for r in metrics["injectivity"] if r["target"] == name]
        if not mapped:
            lines.append(
                f"- **{name}**: not in notebook 02's injectivity map (run notebook 02 for it)"
            )
            continue
        kept = [f"k = {r['depth']}" for r in mapped if r["recovered"]]
        learned_gap = [
            f"k = {r['depth']}: learned {row(metrics, name, REAL, r['depth'])['psnr']:.1f} dB, "
            f"the limit {r['recovered_psnr']:.0f} dB"
            for r in mapped
            if r["recovered"]
        ]
        there = (
            "; there the information is all present, and " + "; ".join(learned_gap) if kept else ""
        )
        lines.append(
            f"- **{name}**: feature matching recovers the image exactly from "
            f"{', '.join(kept) or 'no boundary'} (notebook 02){there}"
        )
    speed = metrics["speed"]
    lines.append(
        f"- learned inverse {speed['speedup']:.0f}x faster than {params['opt_steps']}-step Adam "
        f"optimisation, and {speed['learned_psnr'] - speed['optimisation_psnr']:+.1f} dB; at equal "
        f"PSNR against L-BFGS (k = {speed['depth']}): "
        + (
            f"{speed['equal_psnr_speedup']:,.0f}x"
            if speed["equal_psnr_speedup"]
            else "L-BFGS does not reach it within the sweep"
        )
    )
    for name, c in metrics["logit_ceiling"].items():
        lines.append(
            f"- **{name}** from the logits: {c['learned']['reclass']:.2%} re-classified, "
            f"{c['refined']['reclass']:.2%} after refining {c['refined_images']} reconstructions; "
            f"the target's accuracy (the ceiling) is {c['target_accuracy']:.2%}"
        )
    return lines


def conclusion(metrics: Mapping, params: Mapping) -> list[str]:
    """The notebook's conclusion, one markdown statement each (the zero-shot claim at
    ``ZERO_SHOT_GAP_DB``, as README states it, whatever the gate of this run allows)."""
    title, steps = metrics["dataset_title"], max(params["sweep_steps"])
    # the claim, as README states it (the gate may allow more: a regression guard)
    gap = ZERO_SHOT_GAP_DB
    concl = []
    for name in metrics["targets"]:
        m1, r1 = _limit(metrics, name, 1), row(metrics, name, REAL, 1)
        if m1 is None:
            continue
        if m1["recovered"] and r1["psnr"] >= RECOVERED_DB:
            concl.append(
                f"**`{name}`, block 1: inverted to float precision** ({r1['psnr']:.0f} dB from "
                f"real images; "
                f"{row(metrics, name, best_zero_shot(metrics, name, 1), 1)['psnr']:.0f} dB "
                f"zero-shot): the block keeps everything and the chain finds it."
            )
        elif m1["recovered"]:
            hybrid = sweep(metrics, name, 1, "learned")
            concl.append(
                f"**`{name}`, block 1: the information is there, the learned inverse stops short "
                f"of it.** Feature matching recovers these {title} images to "
                f"{m1['recovered_psnr']:.0f} dB (notebook 02), the learned inverse reaches "
                f"{r1['psnr']:.1f} dB: the gap is the inverse's, not the network's"
                + (
                    f"; started from its output, {steps} L-BFGS iterations reach "
                    f"{hybrid[-1]['psnr']:.0f} dB (the hybrid)."
                    if hybrid
                    else "."
                )
            )
        else:
            concl.append(
                f"**`{name}`, block 1 loses information on {title}**: feature matching reaches "
                f"only {m1['recovered_psnr']:.0f} dB ({m1['features']:,} features, Jacobian rank "
                f"{m1['rank']}), the learned inverse {r1['psnr']:.1f} dB."
            )
    for name in metrics["targets"]:
        for label in [c for c in _chains(metrics, name) if c.endswith("unpool")]:
            d = row(metrics, name, label, 1)["psnr"] - row(metrics, name, REAL, 1)["psnr"]
            concl.append(
                f"**Max-pooling** (`{name}`): the inverse given the target's pooling indices is "
                f"{d:+.1f} dB "
                "against plain upsampling at k = 1"
                + (
                    "; feature matching needs no indices to recover block 1, "
                    "so pooling costs the learned inverse, not the information."
                    if (_limit(metrics, name, 1) or {}).get("recovered")
                    else "."
                )
            )
    for name in _convs(metrics):
        verdicts = [zero_shot_close(metrics, name, k, gap) for k in (1, 2)]
        said = "comes within" if all(v.holds for v in verdicts) else "does not come within"
        concl.append(
            f"**Zero-shot against real images** (`{name}`): the best zero-shot chain {said} "
            f"{gap:g} dB of real "
            f"images at k = 1 and 2 (whole 95 % intervals, every training seed): "
            + "; ".join(v.text.split("` ", 1)[1] for v in verdicts)
            + "."
        )
    for name in [t for t in metrics["targets"] if t not in _convs(metrics)]:
        m1, zero = _limit(metrics, name, 1), best_zero_shot(metrics, name, 1)
        behind = row(metrics, name, REAL, 1)["psnr"] - row(metrics, name, zero, 1)["psnr"]
        concl.append(
            f"**`{name}`** is the hard case for zero-shot: {behind:.2f} dB behind real images at k "
            f"= 1"
            + (
                f", where its first block is not injective (Jacobian rank "
                f"{m1['rank']}–{m1['rank_max']} of {m1['pixels']} pixels) and an inverse must fill "
                f"the lost dimensions with a prior that only real "
                "images teach."
                if m1 and not m1["recovered"]
                else "."
            )
        )
    ceiling = metrics["logit_ceiling"]
    concl.append(
        "**From the logits** every inverse draws a class prototype: "
        + "; ".join(
            f"`{t}` {c['learned']['reclass']:.1%} re-classified, {c['refined']['reclass']:.1%} "
            f"refined, ceiling {c['target_accuracy']:.1%}"
            for t, c in ceiling.items()
        )
        + (
            '. Against the public MNIST anchors the table says "beats" only where the interval, '
            f"widened by {ACCURACY_RERUN_TOLERANCE:.2%} on each side for another training seed, "
            "lies above the anchor."
            if metrics["anchors"]
            else f". No public anchor exists for {title}."
        )
    )
    speed, e = metrics["speed"], metrics["speed"]["equal_psnr_speedup"]
    concl.append(
        f"**Speed at equal quality.** One forward pass is {speed['speedup']:,.0f}x faster than "
        f"{params['opt_steps']} Adam steps "
        f"({speed['learned_psnr'] - speed['optimisation_psnr']:+.1f} dB); the comparison that "
        f"counts is at equal PSNR against L-BFGS: at `{speed['target']}` k = {speed['depth']} "
        + (f"{e:,.0f}x." if e else "L-BFGS does not reach it within the sweep.")
        + " Where a block is injective L-BFGS reaches the learned inverse's PSNR in few iterations;"
        " where it is not, it may not reach it at all."
    )
    concl.append(
        "**Joint against progressive** and the seeds: the findings' paired differences; the chains "
        "of "
        f"`seed_targets` are trained with {1 + params['extra_seeds']} seeds, the others with one "
        f"(this CPU's "
        "budget; `params/full.yaml` gives every chain more)."
    )
    return concl


def gates(metrics: Mapping, params: Mapping) -> list[Claim]:
    """The notebook's quality gates (thresholds from ``params``; params/smoke.yaml scales them to
    its budget)."""
    found = []
    if "cnn_nopool" in metrics["targets"]:
        r = row(metrics, "cnn_nopool", REAL, 1)
        found.append(
            Claim(
                f"cnn_nopool's real-image inverse from block 1: {r['psnr']:.1f} dB >= "
                f"{params['min_block1_psnr']:g} dB",
                r["psnr"] >= params["min_block1_psnr"],
            )
        )
    for name in metrics["targets"]:
        r = row(metrics, name, REAL, _blocks(metrics, name))
        found.append(
            Claim(
                f"{name}: real-image inverse from the logits re-classified {r['reclass']:.2%} >= "
                f"{params['min_logit_reclass']:.2%}",
                r["reclass"] >= params["min_logit_reclass"],
            )
        )
    for name in _convs(metrics):  # the zero-shot claim itself, at the gate's gap
        found += [zero_shot_close(metrics, name, k, params["max_zero_shot_gap"]) for k in (1, 2)]
    speed = metrics["speed"]
    found.append(
        Claim(
            f"the learned inverse ({speed['learned_psnr']:.1f} dB) at least as good as "
            f"optimisation ({speed['optimisation_psnr']:.1f} dB)",
            speed["learned_psnr"] >= speed["optimisation_psnr"],
        )
    )
    found.append(
        Claim(
            f"the learned inverse {speed['speedup']:.0f}x faster than optimisation (> 10x)",
            speed["speedup"] > 10,
        )
    )
    for name, c in metrics["logit_ceiling"].items():
        found.append(
            Claim(
                f"{name}: refined logit inversions re-classified {c['refined']['reclass']:.2%}, "
                f"within {params['max_ceiling_gap']:.2%} of the target's accuracy "
                f"{c['target_accuracy']:.2%}",
                c["refined"]["reclass"] >= c["target_accuracy"] - params["max_ceiling_gap"],
            )
        )
    # L-BFGS from grey reaches float precision wherever notebook 02 found it injective
    for r in metrics["injectivity"]:
        points = sweep(metrics, r["target"], r["depth"])
        if r["recovered"] and r["iterations"] <= max(params["sweep_steps"]) and points:
            found.append(
                Claim(
                    f"{r['target']} k = {r['depth']}: feature matching {points[-1]['psnr']:.1f} dB "
                    f">= {RECOVERED_DB:.0f} dB (injective in notebook 02)",
                    points[-1]["psnr"] >= RECOVERED_DB,
                )
            )
    return found


#: how far below the target's accuracy the upper end of the refined logit inversions' interval may
#: lie and still "reach" it (half a point)
CEILING_SLACK = 0.005


def ceiling_reached(metrics: Mapping) -> Claim:
    """Refined inversions from the logits reach every target's own accuracy: the upper end of their
    re-classification interval within ``CEILING_SLACK`` of it."""
    cells, ok = [], True
    for name, c in metrics["logit_ceiling"].items():
        lo, hi = c["refined"]["reclass_ci"]
        cells.append(
            f"`{name}` {c['refined']['reclass']:.1%} [{lo:.1%}, {hi:.1%}] (accuracy "
            f"{c['target_accuracy']:.1%})"
        )
        ok &= hi >= c["target_accuracy"] - CEILING_SLACK
    return Claim("; ".join(cells), ok)


def against_anchor(ci: list[float], anchor: float) -> str:
    """The verdict of a re-classification share with 95 % interval ``ci`` against a published
    anchor: the interval is widened by ``ACCURACY_RERUN_TOLERANCE`` first, since the share rests on
    a trained target (the refined ceiling is its accuracy) and a trained inverse, and another
    training seed moves it by that much."""
    return verdict(ci, anchor, ACCURACY_RERUN_TOLERANCE)


def anchor_table(metrics: Mapping) -> str:
    """Markdown: re-classification from the logits (the real-image chain, refined, the best
    zero-shot chain) with 95 % intervals, each judged against its public anchor where one exists
    (:func:`against_anchor`)."""
    anchors, body = metrics["anchors"], []
    for name in metrics["targets"]:
        K = _blocks(metrics, name)
        zero = max(row(metrics, name, c, K)["reclass"] for c in ZERO_SHOT)

        def against(r: Mapping, name: str = name) -> str:
            lo, hi = r["reclass_ci"]
            text = f"{r['reclass']:.2%} ({lo:.2%}-{hi:.2%})"
            if name in anchors:
                text += f": {against_anchor(r['reclass_ci'], anchors[name])} the anchor"
            return text

        ours, refined = row(metrics, name, REAL, K), metrics["logit_ceiling"][name]["refined"]
        anchor = f"{anchors[name]:.2%}" if name in anchors else ""
        body.append([name, anchor, against(ours), against(refined), f"{zero:.2%}"])
    header = ["target", "anchor (real images)", "ours, progressive, real",
              "ours, refined (hybrid)", "ours, best zero-shot"]  # fmt: skip
    return (
        "Re-classification from the logits, with 95 % bootstrap intervals over the test images "
        f'("beats" only where the interval, widened by {ACCURACY_RERUN_TOLERANCE:.2%} on each side '
        "for another training seed, lies above the anchor):\n\n" + markdown_table(header, body)
    )


def headline(metrics: Mapping) -> str:
    """README's one-line finding of notebook 04."""
    first, noise = (
        row(metrics, "cnn_nopool", REAL, 1),
        row(metrics, "cnn_nopool", chain_label("noise"), 1),
    )
    limit = max(r["psnr"] for r in sweep(metrics, "cnn_nopool", 1))
    ceiling = metrics["logit_ceiling"]
    refined = "; ".join(
        f"{t} {c['refined']['reclass']:.2%} (its accuracy {c['target_accuracy']:.2%})"
        for t, c in ceiling.items()
    )
    anchors = "; ".join(
        f"{t}: {against_anchor(ceiling[t]['refined']['reclass_ci'], a)} the anchor {a:.2%}"
        for t, a in metrics["anchors"].items()
        if t in ceiling
    )
    speedup = metrics["speed"]["equal_psnr_speedup"]
    anchors = (
        f"; {anchors} (95 % intervals ± {ACCURACY_RERUN_TOLERANCE:.2%} re-run)" if anchors else ""
    )
    return (
        f"cnn_nopool from block 1: learned {first['psnr']:.1f} dB on real images, "
        f"{noise['psnr']:.1f} dB trained on noise only, feature matching (L-BFGS) {limit:.0f} dB; "
        f"from the logits, refined: {refined}{anchors}; at equal PSNR (k = "
        f"{metrics['speed']['depth']}) one forward pass is "
        + (
            f"{speedup:.0f}x faster than L-BFGS"
            if speedup
            else "not matched by L-BFGS within the sweep"
        )
    )
