"""Notebook 01's claims (the targets), from its results metrics and parameters alone.

The notebook's conclusion and gates and README's headline and claims table call these:

- :func:`floors_met`: every target clears its accuracy floor;
- :func:`anchor_comparisons`: each target with a published accuracy against it, on the 95 % Wilson
  interval of its test accuracy widened by ``thresholds.ACCURACY_RERUN_TOLERANCE`` (what another
  training seed moves a target's accuracy by: one run's interval over test images leaves it out);
- :func:`gates`: the quality gates, each a :class:`~reversenet_utils.claims.Claim`;
- :func:`conclusion`: the notebook's generated conclusion;
- :func:`headline`: README's one-line finding.

``metrics`` is the ``metrics`` mapping of ``results/01_train_targets.json``: ``targets`` (per
target ``test_accuracy``, ``floor``, ``epochs``, ``parameters``, ``train_s``), ``anchors`` (per
target ``value`` and ``what``), ``n_test``, ``full_recipes``, ``dataset``, ``dataset_title``. Files
written before ``anchors`` and ``n_test`` were recorded support :func:`floors_met` and
:func:`headline` only.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..metrics import share_interval, verdict
from ..thresholds import ACCURACY_RERUN_TOLERANCE
from . import Claim

__all__ = ["floors_met", "anchor_comparisons", "gates", "conclusion", "headline", "table"]

#: the anchor that gates: MNIST's sigmoid MLP must beat the original write-up's accuracy when
#: trained with its full recipe, by :func:`anchor_comparisons`' verdict (the other anchors are
#: compared, not gated)
GATED_ANCHOR = ("mnist", "mlp_sigmoid")


def floors_met(metrics: Mapping) -> Claim:
    """Every target's test accuracy is at least its floor."""
    t = metrics["targets"]
    low = min(t, key=lambda n: t[n]["test_accuracy"])
    short = [n for n, v in t.items() if v["test_accuracy"] < v.get("floor", 0)]
    accuracies = [v["test_accuracy"] for v in t.values()]
    return Claim(
        f"{min(accuracies):.2%}–{max(accuracies):.2%} (lowest `{low}`)"
        + (f"; below their floors: {', '.join(short)}" if short else ""),
        not short,
    )


def anchor_comparisons(metrics: Mapping) -> dict[str, tuple[str, list[float]]]:
    """Per target with an anchor: the verdict against it (``beats``, ``matches``, ``falls short
    of``) on the interval over test images widened by the re-run tolerance, and that interval
    (before widening)."""
    out = {}
    for name, anchor in metrics["anchors"].items():
        if name in metrics["targets"]:
            ci = share_interval(metrics["targets"][name]["test_accuracy"], metrics["n_test"])
            out[name] = (verdict(ci, anchor["value"], ACCURACY_RERUN_TOLERANCE), ci)
    return out


def gates(metrics: Mapping) -> list[Claim]:
    """Every target clears its floor; with the full recipes, MNIST's sigmoid MLP beats its anchor
    (:func:`anchor_comparisons`: the interval, widened by the re-run tolerance, lies above it)."""
    found = [floors_met(metrics)]
    dataset, name = GATED_ANCHOR
    if metrics["dataset"] == dataset and metrics["full_recipes"] and name in metrics["targets"]:
        word, (lo, hi) = anchor_comparisons(metrics)[name]
        acc, anchor = metrics["targets"][name]["test_accuracy"], metrics["anchors"][name]["value"]
        found.append(
            Claim(
                f"`{name}` {acc:.2%} ({lo:.2%}–{hi:.2%} ± {ACCURACY_RERUN_TOLERANCE:.2%} re-run) "
                f"{word} the original's {anchor:.2%}",
                word == "beats",
            )
        )
    return found


def conclusion(metrics: Mapping) -> list[str]:
    """The conclusion's lines: the floors, and each anchor's verdict with its interval."""
    t = metrics["targets"]
    acc = {name: v["test_accuracy"] for name, v in t.items()}
    low, best = min(acc, key=acc.get), max(acc, key=acc.get)
    held = floors_met(metrics)
    lines = [
        f"- On {metrics['dataset_title']}, "
        + (f"all {len(acc)} networks clear their floors" if held.holds else held.text)
        + f"; the lowest is `{low}` at {acc[low]:.2%} (floor {t[low]['floor']:.0%}), the best "
        f"`{best}` at {acc[best]:.2%}."
    ]
    for name, (word, (lo, hi)) in anchor_comparisons(metrics).items():
        anchor = metrics["anchors"][name]
        lines.append(
            f"- `{name}` {word} the {anchor['value']:.2%} reported for {anchor['what']} "
            f"({acc[name]:.2%}, interval {lo:.2%}–{hi:.2%})."
        )
    if metrics["anchors"]:
        lines.append(
            f'- A verdict says "beats" or "falls short of" only where the interval stays clear '
            f"of the anchor once widened by {ACCURACY_RERUN_TOLERANCE:.2%} on each side: what "
            f"another training seed moved an anchored target's accuracy by "
            f"(`scripts/measure_seed_spread.py`)."
        )
    return lines


def headline(metrics: Mapping) -> str:
    """README's one-line finding of notebook 01."""
    accuracies = [t["test_accuracy"] for t in metrics["targets"].values()]
    return (
        f"{len(accuracies)} networks trained, test accuracy {min(accuracies):.2%}–"
        f"{max(accuracies):.2%}"
    )


def table(metrics: Mapping) -> tuple[list[str], list[list]]:
    """Header and rows of the targets' table (for ``plotting.markdown_table``)."""
    header = [
        "target",
        "parameters",
        "epochs",
        "test accuracy",
        "floor",
        "anchor",
        "train time (s)",
    ]
    rows = []
    for name, t in metrics["targets"].items():
        a = metrics["anchors"].get(name)
        anchor = f"{a['value']:.2%} ({a['what']})" if a else ""
        rows.append([
            f"`{name}`", f"{t['parameters']:,}", t["epochs"], f"{t['test_accuracy']:.2%}",
            f"{t['floor']:.1%}", anchor, f"{t['train_s']:.1f}",
        ])  # fmt: skip
    return header, rows
