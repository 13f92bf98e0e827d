"""Notebook 01's stages and claims on fixture metrics: every branch, including those today's numbers
never reach."""

from __future__ import annotations

import copy

import matplotlib
import pytest

from reversenet_utils import train as train_module
from reversenet_utils.claims import GateFailure, check_gates
from reversenet_utils.claims.targets import (
    anchor_comparisons,
    conclusion,
    floors_met,
    gates,
    headline,
    table,
)
from reversenet_utils.plotting import training_curves
from reversenet_utils.context import Context
from reversenet_utils.metrics import share_interval
from reversenet_utils.thresholds import ACCURACY_RERUN_TOLERANCE
from reversenet_utils.train import targets_summary, train_targets

matplotlib.use("Agg")

METRICS = {
    "targets": {
        "mlp_sigmoid": {
            "test_accuracy": 0.9773,
            "floor": 0.96,
            "epochs": 8,
            "parameters": 89610,
            "train_s": 4.0,
        },
        "cnn_pool": {
            "test_accuracy": 0.9908,
            "floor": 0.98,
            "epochs": 5,
            "parameters": 215370,
            "train_s": 60.0,
        },
        "mlp_leaky": {
            "test_accuracy": 0.975,
            "floor": 0.96,
            "epochs": 8,
            "parameters": 55050,
            "train_s": 3.0,
        },
    },
    "anchors": {
        "mlp_sigmoid": {"value": 0.9521, "what": "same shape, SGD"},
        "cnn_pool": {"value": 0.9888, "what": "same shape"},
        "lenet": {"value": 0.99, "what": "not trained here"},
    },
    "n_test": 10000,
    "full_recipes": True,
    "dataset": "mnist",
    "dataset_title": "MNIST",
}


def _metrics(**accuracies) -> dict:
    metrics = copy.deepcopy(METRICS)
    for name, acc in accuracies.items():
        metrics["targets"][name]["test_accuracy"] = acc
    return metrics


def test_floors_and_the_gated_anchor() -> None:
    assert floors_met(METRICS).holds
    anchor_gate = check_gates(gates(METRICS))[1].text
    assert (
        anchor_gate.startswith("`mlp_sigmoid` 97.73% (")
        and "beats the original's 95.21%" in anchor_gate
    )
    short = _metrics(mlp_leaky=0.95)
    assert not floors_met(short).holds and "below their floors: mlp_leaky" in floors_met(short).text
    below = _metrics(mlp_sigmoid=0.965)  # above its floor, below a (fixture) anchor of 97 %
    below["anchors"]["mlp_sigmoid"]["value"] = 0.97
    with pytest.raises(GateFailure, match="1 of 2 quality gates failed"):
        check_gates(gates(below))
    for change in ({"full_recipes": False}, {"dataset": "fashion_mnist"}):
        assert len(check_gates(gates({**below, **change}))) == 1  # the anchor gate is off


def test_anchor_verdicts_rest_on_the_interval() -> None:
    found = anchor_comparisons(METRICS)
    assert set(found) == {"mlp_sigmoid", "cnn_pool"}  # an anchor of an untrained target is skipped
    assert found["mlp_sigmoid"][0] == "beats" and found["cnn_pool"][0] == "matches"
    assert anchor_comparisons(_metrics(cnn_pool=0.98))["cnn_pool"][0] == "falls short of"


def test_anchor_verdicts_carry_the_rerun_tolerance() -> None:
    """An interval over test images that clears the anchor, but by less than what another training
    seed moves the accuracy, matches it; the gate on it then fails."""
    metrics = _metrics()
    lo = share_interval(0.9773, 10000)[0]
    metrics["anchors"]["mlp_sigmoid"]["value"] = lo - ACCURACY_RERUN_TOLERANCE / 2
    assert anchor_comparisons(metrics)["mlp_sigmoid"][0] == "matches"
    with pytest.raises(GateFailure, match="matches the original's"):
        check_gates(gates(metrics))
    metrics["anchors"]["mlp_sigmoid"]["value"] = lo - 2 * ACCURACY_RERUN_TOLERANCE
    assert anchor_comparisons(metrics)["mlp_sigmoid"][0] == "beats"
    assert any(f"widened by {ACCURACY_RERUN_TOLERANCE:.2%}" in line for line in conclusion(metrics))
    assert not any("widened" in line for line in conclusion({**metrics, "anchors": {}}))


def test_the_conclusion_the_table_and_the_headline() -> None:
    lines = conclusion(METRICS)
    assert lines[0].startswith(
        "- On MNIST, all 3 networks clear their floors; the lowest is `mlp_leaky`"
    )
    assert any(line.startswith("- `cnn_pool` matches the 98.88%") for line in lines)
    assert "below their floors" in conclusion(_metrics(mlp_leaky=0.95))[0]
    header, rows = table(METRICS)
    assert len(header) == 7 and rows[0][5] == "95.21% (same shape, SGD)" and rows[2][5] == ""
    assert headline(METRICS) == "3 networks trained, test accuracy 97.50%–99.08%"


def test_the_stages_train_side_by_side_and_summarise_in_the_given_order(monkeypatch) -> None:
    calls = []

    def fake(ctx, name, **kwargs):
        calls.append((ctx.dataset, name))
        history = [{"loss": 1.0, "test_accuracy": 0.9}, {"loss": 0.5, "test_accuracy": 0.95}]
        return None, {"test_accuracy": 0.95, "train_s": 1.234, "epochs": 2, "history": history}

    monkeypatch.setattr(train_module, "train_target", fake)
    runs = train_targets(Context("fashion_mnist", "cpu"), ["mlp_leaky", "mlp_sigmoid"], epochs=2)
    assert sorted(calls) == [("fashion_mnist", "mlp_leaky"), ("fashion_mnist", "mlp_sigmoid")]
    assert list(runs) == ["mlp_leaky", "mlp_sigmoid"]
    summary = targets_summary(runs, {"mlp_leaky": 0.9, "mlp_sigmoid": 0.9})
    assert summary["mlp_leaky"]["train_s"] == 1.23 and summary["mlp_leaky"]["parameters"] == 55050
    fig = training_curves(runs, low=0.8)
    assert fig.axes[0].get_yscale() == "log" and fig.axes[1].get_ylim() == (0.8, 1.0)
