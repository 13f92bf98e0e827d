"""The re-run tolerance of the anchor verdicts: training under several seeds without saving, the
script that records the spread, and the committed records against the stated tolerance."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from reversenet_utils import train as train_module
from reversenet_utils.context import DATASETS, Context
from reversenet_utils.thresholds import ACCURACY_RERUN_TOLERANCE

REPO = Path(__file__).resolve().parents[1]


def _script():
    path = REPO / "scripts" / "measure_seed_spread.py"
    spec = importlib.util.spec_from_file_location("measure_seed_spread", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["measure_seed_spread"] = module
    spec.loader.exec_module(module)
    return module


def _records() -> dict[str, dict]:
    found = {}
    for dataset in DATASETS:
        ctx = Context(dataset, "cpu", REPO)
        path = ctx.folder("results", create=False) / "target_seed_spread.json"
        if path.is_file():
            found[dataset] = json.loads(path.read_text())
    return found


def test_every_committed_spread_lies_within_the_stated_tolerance() -> None:
    """The constant the anchor verdicts widen by covers every measured seed-to-seed spread, on
    every dataset, of every target compared with an anchor there."""
    records, script = _records(), _script()
    assert set(records) == set(DATASETS), "run scripts/measure_seed_spread.py for each dataset"
    for dataset, record in records.items():
        assert set(record["accuracies"]) >= set(script.anchored_targets(dataset)), dataset
        assert len(record["seeds"]) >= 3, dataset
        for name, accuracies in record["accuracies"].items():
            spread = max(accuracies) - min(accuracies)
            assert spread == pytest.approx(record["spread"][name])
            assert spread <= ACCURACY_RERUN_TOLERANCE, (dataset, name, spread)


def test_seed_accuracies_trains_each_seed_and_saves_nothing(monkeypatch, ctx) -> None:
    calls = []

    def fit(ctx, model, name, epochs, seed, train, test):
        calls.append((name, seed, epochs, train, test))
        return {"test_accuracy": 0.9 + seed / 100}

    monkeypatch.setattr(Context, "load", lambda self, split: split)
    monkeypatch.setattr(train_module, "_fit_recipe", fit)
    assert train_module.seed_accuracies(ctx, "mlp_leaky", range(3), epochs=1) == [0.9, 0.91, 0.92]
    assert calls[2] == ("mlp_leaky", 2, 1, "train", "test")
    assert not ctx.folder("artifacts", create=False).exists()
    with pytest.raises(ValueError, match="at least one training seed"):
        train_module.seed_accuracies(ctx, "mlp_leaky", [])


def test_the_script_records_each_anchored_target(monkeypatch, tmp_root) -> None:
    script = _script()
    assert script.anchored_targets("mnist") == ["cnn_pool", "mlp_relu", "mlp_sigmoid"]
    assert script.anchored_targets("fashion_mnist") == ["cnn_pool", "mlp_relu"]
    monkeypatch.setattr(
        script, "seed_accuracies", lambda ctx, name, seeds: [0.9 + s / 1000 for s in seeds]
    )
    assert script.main(["--dataset", "fashion_mnist", "--seeds", "3", "--device", "cpu"]) == 0
    record = json.loads(
        (tmp_root / "results" / "fashion_mnist" / f"{script.RECORD}.json").read_text()
    )
    assert record["seeds"] == [0, 1, 2] and record["spread"]["cnn_pool"] == pytest.approx(0.002)
    assert record["dataset"] == "fashion_mnist" and "cpu" in record["machine"]
    with pytest.raises(SystemExit):
        script.main(["--seeds", "1"])
