"""Notebook 06's claims (feature visualisation), from its results metrics and parameters alone.

- :func:`gates`: every channel's objective rose, every class visualisation (ImageNet and MNIST)
  reaches ``min_probability``, batched rendering is faster per image;
- :func:`conclusion`: the notebook's measured conclusion;
- :func:`headline`: README's one-line finding.

``metrics`` is the ``metrics`` mapping of ``results/06_feature_visualization_vgg19.json``:
``model``, ``weights_source``, ``seconds_per_image``, ``batched_speedup``, ``channels`` (per
depth: ``layer``, ``objective``, ``objective_start``), ``classes`` (per class: ``name``,
``probability``), ``naive_pixel``, ``speed``, ``mnist`` (``probability``), ``peer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import Claim

__all__ = ["gates", "lowest_probability", "conclusion", "headline"]


def gates(metrics: Mapping, params: Mapping) -> list[Claim]:
    """The notebook's quality gates (``min_probability`` from ``params``)."""
    least = params["min_probability"]
    found = []
    for depth, c in metrics["channels"].items():
        found.append(
            Claim(
                f"{depth} layer {c['layer']}: every channel's objective rose from "
                f"{c['objective_start']:.3f} (reached {min(c['objective']):.3f}-"
                f"{max(c['objective']):.3f})",
                all(v > c["objective_start"] for v in c["objective"]),
            )
        )
    probs = {c["name"]: c["probability"] for c in metrics["classes"].values()}
    found.append(
        Claim(
            f"class visualisations: least probability {min(probs.values()):.3f} >= {least:g}",
            min(probs.values()) >= least,
        )
    )
    found.append(
        Claim(
            f"batched rendering {metrics['speed']['ratio']:.2f}x as fast per image as one at a "
            "time (> 1)",
            metrics["speed"]["ratio"] > 1,
        )
    )
    mnist = metrics["mnist"]["probability"]
    found.append(
        Claim(
            f"MNIST class visualisations: least probability {min(mnist):.3f} >= {least:g}",
            min(mnist) >= least,
        )
    )
    return found


def lowest_probability(probs: Sequence[float]) -> str:
    """The lowest of ``probs`` as prose: "a probability of at least 0.950", or "a probability that
    rounds to 1.000" where even the lowest does (no "1.000 or more")."""
    low = min(probs)
    return (
        "a probability that rounds to 1.000"
        if low >= 0.9995
        else f"a probability of at least {low:.3f}"
    )


def conclusion(metrics: Mapping) -> list[str]:
    """The notebook's measured conclusion, one markdown line each."""
    probs = [c["probability"] for c in metrics["classes"].values()]
    naive, speed = metrics["naive_pixel"], metrics["speed"]
    first = metrics["classes"][str(naive["class"])]
    faster = speed["ratio"] > 1
    mnist = metrics["mnist"]["probability"]
    return [
        f"- **{metrics['model']}**: every class visualisation reaches {lowest_probability(probs)} "
        "with the Fourier parameterisation and transformations "
        f"({metrics['seconds_per_image']:.1f} s per image on this machine).",
        f"- **Naive pixels also convince the classifier**: '{first['name']}' at probability "
        f"{naive['probability']:.3f} with no parameterisation or transformations (against "
        f"{first['probability']:.3f}), with an image no person would recognise: being confident "
        "is easy; the parameterisation and the robustness decide what the picture shows.",
        f"- **Batching** {speed['images']} units into one optimisation "
        + (
            f"is {speed['ratio']:.2f}x as fast per image as rendering them one at a time"
            if faster
            else f"is not faster here ({speed['ratio']:.2f}x) than rendering them one at a time"
        )
        + f" ({speed['size']} pixels, {speed['steps']} steps).",
        f"- **On MNIST**, `cnn_pool`'s ten class visualisations reach {lowest_probability(mnist)}: "
        "the same tool shows what a small target has learned.",
    ]


def headline(metrics: Mapping) -> str:
    """README's one-line finding of notebook 06."""
    return (
        f"{metrics['model']}: class visualisations at probability ≥ "
        f"{min(c['probability'] for c in metrics['classes'].values()):.3f}, "
        f"{metrics['seconds_per_image']:.1f} s each on a CPU; batched rendering "
        f"{metrics['batched_speedup']:.1f}x faster"
    )
