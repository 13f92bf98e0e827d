"""Notebook 03's claims (learned inverse weights), from its results metrics and parameters alone.

The notebook's conclusion and gates and README's headline and claims table call these:

- :func:`follows_opinion`: reconstructions of the test images the network gets wrong are classified
  as its (wrong) prediction more often than as the true label, on whole 95 % intervals;
- :func:`gates`: the quality gates, each a :class:`~reversenet_utils.claims.Claim`;
- :func:`conclusion`: the notebook's generated conclusion;
- :func:`headline`: README's one-line finding.

``metrics`` is the ``metrics`` mapping of ``results/03_learned_inverse_weights.json``:
``target_accuracy``, ``faithful``, ``improved`` and ``pinv`` (reconstruction reports; ``pinv``
also ``clamped`` per activation inverse and ``w2_condition_number``), ``opinion``, ``generation``,
``anchor_accuracy`` (None without an anchor), ``fully_trained``, ``dataset_title``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..metrics import share_interval
from ..thresholds import DECODER_GAIN_DB
from . import Claim

__all__ = ["follows_opinion", "gates", "conclusion", "headline"]


def _pct(ci: list[float]) -> str:
    return f"[{ci[0]:.0%}, {ci[1]:.0%}]"


def follows_opinion(metrics: Mapping) -> Claim:
    """Of the misclassified test images, the share whose reconstruction is classified as the
    network's prediction lies wholly above the share classified as the true label (95 % Wilson
    intervals)."""
    o = metrics["opinion"]
    n = o["misclassified_originals"]
    if n == 0:
        return Claim("the network misclassifies no test image: nothing to follow", False)
    pred = share_interval(o["misclassified_as_prediction"], n)
    true = share_interval(o["misclassified_as_true_label"], n)
    return Claim(
        f"{o['misclassified_as_prediction']:.0%} {_pct(pred)} as the prediction vs "
        f"{o['misclassified_as_true_label']:.0%} {_pct(true)} as the label (n = {n})",
        pred[0] > true[1],
    )


def _anchor(metrics: Mapping) -> Claim:
    acc, anchor = metrics["target_accuracy"], metrics.get("anchor_accuracy")
    if anchor is None:
        return Claim(f"target accuracy {acc:.2%}: no published anchor for this target here", True)
    if not metrics["fully_trained"]:
        return Claim(
            f"target accuracy {acc:.2%}: trained short of its recipe, no anchor claim", True
        )
    return Claim(f"target accuracy {acc:.2%} above the original's {anchor:.2%}", acc > anchor)


def gates(metrics: Mapping, params: Mapping) -> list[Claim]:
    """The target reaches its anchor (where one applies); generation is confident; the faithful
    inverse re-classifies and beats the pseudo-inverse; the decoder beats it by
    :data:`~reversenet_utils.thresholds.DECODER_GAIN_DB`; reconstructions follow the network's
    opinion."""
    f, imp, pinv = metrics["faithful"], metrics["improved"], metrics["pinv"]
    low = min(metrics["generation"]["confidence"])
    return [
        _anchor(metrics),
        Claim(
            f"generated classes at readout confidence {low:.4f} or more (gate "
            f"{params['min_generation_confidence']})",
            low > params["min_generation_confidence"],
        ),
        Claim(
            f"faithful inverse re-classified {f['reclass']:.2%} "
            f"(gate {params['min_faithful_reclass']:.0%})",
            f["reclass"] > params["min_faithful_reclass"],
        ),
        Claim(
            f"faithful inverse {f['psnr']:.2f} dB above the pseudo-inverse's {pinv['psnr']:.2f} dB",
            f["psnr"] > pinv["psnr"],
        ),
        Claim(
            f"decoder {imp['psnr']:.2f} dB, SSIM {imp['ssim']:.3f}: at least {DECODER_GAIN_DB:g} "
            f"dB and some SSIM above the faithful inverse's {f['psnr']:.2f} dB, {f['ssim']:.3f}",
            imp["psnr"] > f["psnr"] + DECODER_GAIN_DB and imp["ssim"] > f["ssim"],
        ),
        follows_opinion(metrics),
    ]


def conclusion(metrics: Mapping, params: Mapping) -> list[str]:
    """The conclusion's lines, every number and every verdict from the metrics."""
    f, imp, pi = metrics["faithful"], metrics["improved"], metrics["pinv"]
    acc, gen = metrics["target_accuracy"], metrics["generation"]
    clamped = sum(c["clamped"] for c in pi["clamped"].values())
    follows = follows_opinion(metrics)
    return [
        f"**On {metrics['dataset_title']}**, `{params['target']}` at {acc:.2%} test accuracy:",
        "",
        f"- The faithful learned inverse from 100 sigmoid units reaches {f['psnr']:.1f} dB, SSIM "
        f"{f['ssim']:.2f}; {f['reclass']:.1%} of its reconstructions are re-classified correctly "
        f"(the target itself: {acc:.1%}). The analytic pseudo-inverse of the same layers "
        f"{'does worse' if pi['psnr'] < f['psnr'] else 'does as well or better'} ({pi['psnr']:.1f} "
        f"dB): it must invent the 684 dimensions the first layer discards, and the exact inverse "
        f"of the 100×100 layer (condition number {pi['w2_condition_number']:.0f}) clamps "
        f"{clamped:,} hidden values pushed outside (0, 1).",
        f'- **"Idealised" images, measured.** Of the test images the network gets wrong, the '
        f"reconstructions are classified {follows.text}: they follow "
        + (
            "the network's opinion rather than the truth. The inverse can only return what the "
            "last hidden layer kept, and that is mostly the class."
            if follows.holds
            else "the network's opinion no more clearly than the truth (the intervals overlap)."
        ),
        f"- **Generation**: the optimised hidden vectors reach readout confidence "
        f"{min(gen['confidence']):.2%} or more for every class; the projected images themselves "
        f"{min(gen['image_confidence']):.0%}–{max(gen['image_confidence']):.0%} (a confident "
        f"hidden vector need not project to a convincing image).",
        f"- **Beyond the original**, a small nonlinear decoder trained with MSE on all images "
        f"reaches {imp['psnr']:.1f} dB, SSIM {imp['ssim']:.2f} ({imp['psnr'] - f['psnr']:+.1f} dB "
        f"over the faithful inverse), re-classified {imp['reclass']:.1%}.",
    ]


def headline(metrics: Mapping) -> str:
    """README's one-line finding of notebook 03."""
    f, imp = metrics["faithful"], metrics["improved"]
    return (
        f"faithful inverse weights {f['psnr']:.1f} dB / {f['reclass']:.1%} re-classified, a small "
        f"decoder {imp['psnr']:.1f} dB; generated images reach "
        f"{min(metrics['generation']['confidence']):.2%} confidence or more"
    )
