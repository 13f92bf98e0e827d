"""The privacy-utility frontier (notebook 09): points from results rows, the Pareto front, the
recommended configuration in each of its three cases, the figure and the table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from reversenet_utils.frontier import (  # noqa: E402
    frontier_figure,
    frontier_points,
    frontier_table,
    holds,
    pareto_front,
    recommend,
)


def _row(target, split, defence, strength, loss, ssim, hi, rec, threat=None, inputs="mnist"):
    threat = threat or ("inverse net, other data" + ("" if defence == "none" else " (adaptive)"))
    return {"target": target, "split": split, "defence": defence, "strength": strength,
            "accuracy": 0.98 - loss, "accuracy_loss": loss, "threat": threat, "ssim": ssim,
            "ssim_ci": [ssim - 0.02, hi], "recognisable": rec, "reclass": 0.5,
            "inputs": inputs}  # fmt: skip


def test_a_point_is_its_best_attacker_by_the_upper_end_of_its_interval() -> None:
    rows = [
        _row("t", 1, "none", 0.0, 0.0, 0.9, 0.92, 1.0, "x"),
        _row("t", 1, "none", 0.0, 0.0, 0.8, 0.95, 1.0, "y"),  # lower mean, higher upper end
        _row("t", 1, "none", 0.0, 0.0, 0.99, 0.99, 1.0, "z", inputs="fashion_mnist"),
        _row("t", 1, "none", 0.0, 0.0, 0.99, 0.99, 1.0, "w"),  # another threat model
    ]
    del rows[0]["accuracy_loss"]  # undefended rows carry none: 0
    (p,) = frontier_points(rows, "mnist", threats=("x", "y", "z"))
    assert p["attacker"] == "y" and p["ssim_hi"] == 0.95 and p["accuracy_loss"] == 0.0


def test_every_point_is_judged_by_the_same_threat_model() -> None:
    """By default the owner's-data and white-box attacks of the undefended splits are left out:
    the defended settings are attacked only by the adaptive attacker on the server's own images."""
    rows = [
        _row("t", 1, "none", 0.0, 0.0, 0.6, 0.62, 1.0),
        _row("t", 1, "none", 0.0, 0.0, 0.9, 0.92, 1.0, "inverse net, same data"),
        _row("t", 1, "none", 0.0, 0.0, 0.95, 0.97, 1.0, "optimisation"),
        _row("t", 1, "gaussian", 1.0, 0.0, 0.5, 0.52, 1.0),
        _row("t", 1, "gaussian", 1.0, 0.0, 0.1, 0.12, 0.0, "inverse net, other data (naive)"),
    ]
    points = frontier_points(rows, "mnist")
    assert [(p["defence"], p["attacker"], p["ssim_hi"]) for p in points] == [
        ("gaussian", "inverse net, other data (adaptive)", 0.52),
        ("none", "inverse net, other data", 0.62),
    ]


def test_the_pareto_front_keeps_only_the_undominated() -> None:
    points = frontier_points(
        [
            _row("t", 1, "none", 0.0, 0.0, 0.9, 0.95, 1.0),
            _row("t", 1, "gaussian", 1.0, 0.005, 0.5, 0.55, 0.6),
            _row("t", 1, "gaussian", 2.0, 0.02, 0.6, 0.62, 0.7),  # dominated by the one above
            _row("t", 2, "none", 0.0, 0.0, 0.4, 0.45, 0.3),  # dominates both noisy ones at 1
            _row("t", 2, "dropout", 0.9, 0.03, 0.1, 0.15, 0.0),
        ],
        "mnist",
    )
    front = pareto_front(points)
    assert [(p["split"], p["defence"]) for p in front] == [(2, "none"), (2, "dropout")]


def test_the_recommendation_holds_or_names_the_nearest_point_and_its_cost() -> None:
    rows = [
        # "a": two configurations hold; the cheaper is chosen
        _row("a", 1, "none", 0.0, 0.0, 0.9, 0.95, 1.0),
        _row("a", 2, "dropout", 0.9, 0.008, 0.2, 0.25, 0.05),
        _row("a", 2, "nopeek", 1.0, 0.004, 0.2, 0.28, 0.08),
        _row("a", 2, "gaussian", 1.0, 0.001, 0.2, 0.28, 0.2),  # too many recognisable
        # "b": hiding costs 3 points: that point, and its cost
        _row("b", 1, "none", 0.0, 0.0, 0.9, 0.95, 1.0),
        _row("b", 1, "dp", 1.0, 0.03, 0.1, 0.2, 0.0),
        # "c": nothing hides: the least leak within the budget
        _row("c", 1, "none", 0.0, 0.0, 0.9, 0.95, 1.0),
        _row("c", 1, "gaussian", 4.0, 0.009, 0.5, 0.6, 0.5),
        _row("c", 1, "gaussian", 8.0, 0.2, 0.3, 0.4, 0.3),
    ]
    found = recommend(frontier_points(rows, "mnist"), 0.3, 0.01)
    assert (found["a"]["status"], found["a"]["defence"]) == ("holds", "nopeek")
    assert holds(found["a"], 0.3, 0.01) and not holds(found["b"], 0.3, 0.01)
    assert (found["b"]["status"], found["b"]["defence"], found["b"]["accuracy_loss"]) == (
        "costs more", "dp", 0.03,
    )  # fmt: skip
    assert (found["c"]["status"], found["c"]["strength"]) == ("leaks", 4.0)
    # nothing within the budget at all: the least leak of every point
    only = recommend(frontier_points(rows[-1:], "mnist"), 0.3, 0.01)
    assert only["c"]["strength"] == 8.0


def test_the_figure_and_the_table_show_every_target() -> None:
    rows = [
        _row("a", 1, "none", 0.0, 0.0, 0.9, 0.95, 1.0),
        _row("a", 2, "dropout", 0.9, 0.008, 0.2, 0.25, 0.05),
        _row("b", 1, "none", 0.0, 0.0, 0.9, 0.95, 1.0),
    ]
    points = frontier_points(rows, "mnist")
    fig = frontier_figure(points, recommend(points, 0.3, 0.01), 0.3, 0.01, "MNIST")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    table = frontier_table(points)
    assert "`a` | 2 | dropout 0.9" in table and "`b` | 1 | none" in table
