"""Notebook 08's claims (the explorer), from its results metrics and parameters alone.

The notebook's conclusion and gates and README's headline and claims table call these:

- :func:`update_in_time`: one image's whole grid answers within the gate (``max_update_ms``);
- :func:`gates`: the quality gates, each a :class:`~reversenet_utils.claims.Claim`;
- :func:`conclusion`: the notebook's generated conclusion;
- :func:`headline`: README's one-line finding.

``metrics`` is the ``metrics`` mapping of ``results/08_explore.json``: ``targets``, ``methods``,
``latency`` (:func:`reversenet_utils.explore.measure_latency`), ``digit_index``,
``grid_reconstructions``, ``grid_finite``, ``best_fast``
(:func:`reversenet_utils.explore.best_fast_methods`), ``dataset_title``.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import Claim

__all__ = ["update_in_time", "gates", "conclusion", "headline"]


def update_in_time(metrics: Mapping, params: Mapping | None = None) -> Claim:
    """The median time of one digit's whole grid is within ``params["max_update_ms"]`` (``params``:
    by default ``metrics`` itself, where a results file's parameters and metrics are merged)."""
    params = metrics if params is None else params
    median, gate = metrics["latency"]["median_ms"], params["max_update_ms"]
    return Claim(f"median {median:.0f} ms (gate {gate:.0f} ms)", median <= gate)


def gates(metrics: Mapping, params: Mapping) -> list[Claim]:
    """The explorer answers within a stroke, shows both chains of every target, and every picture
    it shows is a finite 28x28 image."""
    n, targets = metrics["grid_reconstructions"], len(metrics["targets"])
    return [
        update_in_time(metrics, params),
        Claim(
            f"{n} reconstructions in the grid: at least the two chains of each of the {targets} "
            f"targets",
            n >= 2 * targets,
        ),
        Claim(
            "every reconstruction in the grid is a finite 28x28 image", bool(metrics["grid_finite"])
        ),
    ]


def conclusion(metrics: Mapping) -> list[str]:
    """The conclusion's lines: the latency, and per target the best fast method from block 1 and
    from the logits on the explorer's digit."""
    lat = metrics["latency"]
    lines = [
        f"**{metrics['dataset_title']} test image #{metrics['digit_index']}:**",
        "",
        f"- median {lat['median_ms']:.0f} ms per image (90th percentile {lat['p90_ms']:.0f} ms) on "
        f"this machine",
    ]
    for name in metrics["targets"]:
        best = metrics["best_fast"].get(name)
        if best is None:
            lines.append(f"- `{name}`: no fast method inverts it")
            continue
        (m1, p1), (m_k, p_k) = best["block 1"], best["logits"]
        lines.append(
            f"- `{name}`: from block 1 {m1} at {p1:.1f} dB; from the logits {m_k} at {p_k:.1f} dB"
        )
    return lines + ["", "Notebooks 04 and 07 measure the same over the whole test set."]


def headline(metrics: Mapping) -> str:
    """README's one-line finding of notebook 08."""
    lat = metrics["latency"]
    return (
        f"{len(metrics['methods'])} fast methods × {len(metrics['targets'])} targets, every block "
        f"boundary: one image's whole grid in {lat['median_ms']:.0f} ms (median of "
        f"{lat['digits']} images, max {lat['max_ms']:.0f} ms) on a CPU; feature matching on a "
        "button"
    )
