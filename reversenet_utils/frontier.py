"""The privacy-utility frontier of split computing (notebook 09): where to split, and with what
defence, so that the server learns nothing recognisable and the device loses at most a point of
accuracy.

Every ``(target, split, defence, strength)`` that notebook 09 ran, undefended splits included, is
one point: the accuracy it costs against the same network undefended, and what its best attacker
(:data:`FRONTIER_THREATS`: one threat model for every point, the adaptive attacker trained on its
own images) recovers, judged on the upper end of that attacker's 95 % SSIM interval (``ssim_hi``),
the share of test images it makes recognisable and the independent judge's re-classification of
its reconstructions (leaking the class is a leak too). Nothing here trains or attacks; it reads the
results rows of :mod:`reversenet_utils.privacy`.

- :func:`frontier_points`: one point per setting, its best attacker's numbers;
- :func:`pareto_front`: the points no other point beats on both cost and leak;
- :func:`recommend`: per target, the cheapest point that holds, or else the nearest one and what it
  costs (one definition: :func:`holds`);
- :func:`frontier_figure`, :func:`frontier_table`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .plotting import markdown_table

__all__ = [
    "FRONTIER_THREATS",
    "MAX_RECOGNISABLE",
    "frontier_points",
    "pareto_front",
    "hides",
    "holds",
    "recommend",
    "frontier_figure",
    "frontier_table",
]

#: the largest share of test images a configuration may leave recognisable and still hold
MAX_RECOGNISABLE = 0.10


#: the attackers every point of the frontier is judged by, one threat model for all: the server
#: trains an inverse network on its own images of the same kind (never the device owner's), on
#: the features the device sends, defended or not (the adaptive attacker). Notebook 09's leak
#: table also runs stronger threats at the undefended splits (the owner's own images, white-box
#: optimisation); a defended setting not attacked by them would look safer than the undefended
#: point beside it only because it was attacked more weakly.
FRONTIER_THREATS = ("inverse net, other data", "inverse net, other data (adaptive)")


def frontier_points(
    rows: Sequence[Mapping], inputs: str, threats: Sequence[str] = FRONTIER_THREATS
) -> list[dict]:
    """One point per ``(target, split, defence, strength)`` among the results ``rows`` scored on
    the test images of ``inputs`` by an attacker of ``threats``: its accuracy lost (0 undefended),
    and its best attacker's (the highest upper end of the SSIM interval) SSIM, interval, share
    recognisable and judge re-classification. Sorted by target, split, defence and strength."""
    best: dict[tuple, Mapping] = {}
    for r in rows:
        if r["inputs"] != inputs or r["threat"] not in threats:
            continue
        key = (r["target"], r["split"], r["defence"], float(r["strength"]))
        if key not in best or r["ssim_ci"][1] > best[key]["ssim_ci"][1]:
            best[key] = r
    return [
        {
            "target": target,
            "split": split,
            "defence": defence,
            "strength": strength,
            "accuracy": r["accuracy"],
            "accuracy_loss": r.get("accuracy_loss", 0.0),
            "attacker": r["threat"],
            "ssim": r["ssim"],
            "ssim_ci": list(r["ssim_ci"]),
            "ssim_hi": r["ssim_ci"][1],
            "recognisable": r["recognisable"],
            "judge": r.get("reclass"),
        }  # fmt: skip
        for (target, split, defence, strength), r in sorted(best.items(), key=lambda kv: kv[0])
    ]


def pareto_front(points: Sequence[Mapping]) -> list[dict]:
    """The points of one target that no other point dominates: none costs at most as much
    accuracy and leaks at most as much (``ssim_hi``), one of the two strictly less. Sorted by the
    accuracy lost."""
    front = [
        p for p in points
        if not any(
            q["accuracy_loss"] <= p["accuracy_loss"] and q["ssim_hi"] <= p["ssim_hi"]
            and (q["accuracy_loss"] < p["accuracy_loss"] or q["ssim_hi"] < p["ssim_hi"])
            for q in points
        )
    ]  # fmt: skip
    return sorted((dict(p) for p in front), key=lambda p: (p["accuracy_loss"], p["ssim_hi"]))


def hides(point: Mapping, below_ssim: float, max_recognisable: float = MAX_RECOGNISABLE) -> bool:
    """Whether a point's best attacker learns nothing recognisable: its whole SSIM interval below
    ``below_ssim`` and at most ``max_recognisable`` of the images recognisable."""
    return point["ssim_hi"] < below_ssim and point["recognisable"] <= max_recognisable


def holds(
    point: Mapping, below_ssim: float, max_loss: float, max_recognisable: float = MAX_RECOGNISABLE
) -> bool:
    """The one definition of a configuration that holds: it hides (:func:`hides`) and loses at most
    ``max_loss`` of accuracy."""
    return hides(point, below_ssim, max_recognisable) and point["accuracy_loss"] <= max_loss


def recommend(
    points: Sequence[Mapping],
    below_ssim: float,
    max_loss: float,
    max_recognisable: float = MAX_RECOGNISABLE,
) -> dict[str, dict]:
    """Per target: the cheapest point that holds (:func:`holds`; ties: the lower ``ssim_hi``), as
    ``{"status": "holds", **point}``. Where none holds, the nearest: the cheapest point that hides
    whatever it costs (``"status": "costs more"``), or, where nothing hides, the point of least
    ``ssim_hi`` within the accuracy budget (``"status": "leaks"``; none within it: the least
    ``ssim_hi`` of all)."""
    found = {}
    for target in dict.fromkeys(p["target"] for p in points):
        mine = [p for p in points if p["target"] == target]
        hiding = [p for p in mine if hides(p, below_ssim, max_recognisable)]
        cheapest = min(hiding, key=lambda p: (p["accuracy_loss"], p["ssim_hi"]), default=None)
        if cheapest is not None:
            status = "holds" if cheapest["accuracy_loss"] <= max_loss else "costs more"
            found[target] = {"status": status, **cheapest}
            continue
        affordable = [p for p in mine if p["accuracy_loss"] <= max_loss] or mine
        found[target] = {"status": "leaks", **min(affordable, key=lambda p: p["ssim_hi"])}
    return found


def _label(p: Mapping) -> str:
    return "none" if p["defence"] == "none" else f"{p['defence']} {p['strength']:g}"


def frontier_figure(
    points: Sequence[Mapping],
    recommended: Mapping[str, Mapping],
    below_ssim: float,
    max_loss: float,
    title: str,
) -> Figure:
    """Per target: every point, the accuracy lost against the best attacker's SSIM (upper end of
    its interval), coloured by split; the Pareto front as a line; the recommended configuration
    ringed; the recognisable line and the accuracy budget."""
    targets = list(dict.fromkeys(p["target"] for p in points))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.4 * len(targets), 3.8), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, target in zip(axes[0], targets):
        mine = [p for p in points if p["target"] == target]
        for split in sorted({p["split"] for p in mine}):
            at = [p for p in mine if p["split"] == split]
            ax.scatter([100 * p["accuracy_loss"] for p in at], [p["ssim_hi"] for p in at],
                       s=18, label=f"split {split}", zorder=2)  # fmt: skip
        front = pareto_front(mine)
        ax.plot([100 * p["accuracy_loss"] for p in front], [p["ssim_hi"] for p in front],
                color="black", lw=1, drawstyle="steps-post", label="Pareto front")  # fmt: skip
        r = recommended[target]
        ax.scatter([100 * r["accuracy_loss"]], [r["ssim_hi"]], s=140, facecolors="none",
                   edgecolors="red", lw=1.5, zorder=3,
                   label=f"{r['status']}: split {r['split']}, {_label(r)}")  # fmt: skip
        ax.axhline(below_ssim, color="grey", ls="--", lw=1)
        ax.axvline(100 * max_loss, color="grey", ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_title(target)
        ax.set_xlabel("accuracy lost (points; symlog)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("best attacker's SSIM, upper 95 % bound")
    fig.suptitle(f"The privacy-utility frontier ({title}): each point a split and a defence "
                 "setting (none included); lower left is better; dashed: recognisable, dotted: "
                 "the accuracy budget")  # fmt: skip
    fig.tight_layout()
    return fig


def frontier_table(points: Sequence[Mapping]) -> str:
    """Markdown: every point on a Pareto front, per target (its split, defence, cost and leak)."""
    body = []
    for target in dict.fromkeys(p["target"] for p in points):
        for p in pareto_front([p for p in points if p["target"] == target]):
            body.append([
                f"`{target}`", p["split"], _label(p), f"{p['accuracy']:.2%}",
                f"{0.0 - p['accuracy_loss']:+.2%}", p["attacker"],
                f"{p['ssim']:.2f} (≤ {p['ssim_hi']:.2f})", f"{p['recognisable']:.0%}",
                "–" if p["judge"] is None else f"{p['judge']:.0%}",
            ])  # fmt: skip
    header = ["target", "split", "defence", "accuracy", "change", "best attacker", "SSIM (upper)",
              "recognisable", "judge re-classifies"]  # fmt: skip
    return markdown_table(header, body)
