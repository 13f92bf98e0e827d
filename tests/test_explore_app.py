"""The explorer's widgets outside a browser (the browser tests drive them in JupyterLab and Voilà),
notebook 08's measurements, and its claims."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from test_explore import _explorer

from reversenet_utils.claims import GateFailure, check_gates
from reversenet_utils.claims.explore import conclusion, gates, headline, update_in_time
from reversenet_utils.data import MNISTSplit
from reversenet_utils.explore import OPTIMISATION, best_fast_methods, latency_table, measure_latency
from reversenet_utils.explore_app import ExplorerApp, drive_headless, probability_bars


def _digits(n: int = 12) -> MNISTSplit:
    """``n`` bar digits, one per class label 0..9 in turn, the bar's column moving with it."""
    images = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        images[i, 0, 6:22, 4 + 2 * (i % 10) : 7 + 2 * (i % 10)] = 1.0
    return MNISTSplit(images, torch.arange(n) % 10)


@pytest.fixture(scope="module")
def app() -> ExplorerApp:
    return ExplorerApp(_explorer(), _digits(), digit_index=0, opt_steps=3)


def test_the_app_shows_its_first_digit_and_every_method(app: ExplorerApp) -> None:
    assert app.updates == 1 and "update 1" in app.status.value and app.error.value == ""
    shown = {w for w in app.table.children}
    assert app.input_image in shown and all(app.recon[m, "mlp_leaky"] in shown for m in app.toggles)
    assert bytes(app.recon["pinv", "mlp_leaky"].value).startswith(b"\x89PNG")
    # the feature-matching row is empty until its button runs
    assert app.recon[OPTIMISATION, "mlp_leaky"].layout.visibility == "hidden"
    app.client_ready()  # Voilà's late client: the canvas is painted again, nothing else changes
    assert app.updates == 1


def test_a_stroke_updates_the_grid_and_the_button_fills_its_row(app: ExplorerApp) -> None:
    said = drive_headless(app)
    assert "one stroke" in said and app.updates >= 2
    assert app.recon[OPTIMISATION, "mlp_leaky"].layout.visibility == "visible"
    app.move(10, 10)  # not drawing: nothing happens
    assert app.updates >= 2


def test_a_toggled_method_leaves_the_grid(app: ExplorerApp) -> None:
    app.toggles["pinv"].value = False
    assert app.recon["pinv", "mlp_leaky"] not in app.table.children
    app.toggles["pinv"].value = True
    assert app.recon["pinv", "mlp_leaky"] in app.table.children


def test_picking_a_class_or_an_index_shows_that_digit(app: ExplorerApp) -> None:
    before = app.updates
    app.label.value = "3"
    assert app.index.value == 3 and app.updates == before + 1
    app.label.value = "-"
    app.label.value = "3"  # already shown: shown again
    assert app.updates == before + 2
    app.index.value = 5
    assert torch.equal(app.digit, _digits().images[5, 0])


def test_bad_input_is_said_in_the_app_not_raised(app: ExplorerApp) -> None:
    app.show_digit(None)  # clear: an empty canvas, then a stroke of nothing
    app.drawing = True
    app.up(0, 0)
    assert app.error.value  # the error says why, in the app
    app.uploaded({"new": [{"name": "notes.txt", "content": b"not a picture"}]})
    assert "notes.txt is not a picture" in app.error.value
    app.uploaded({"new": []})  # nothing chosen: nothing changes
    buffer = io.BytesIO()
    picture = np.full((40, 40, 3), 255, np.uint8)
    picture[8:32, 18:22] = 0  # a dark stroke on white, as a photo of a digit
    Image.fromarray(picture).save(buffer, format="PNG")
    app.uploaded({"new": [{"name": "one.png", "content": buffer.getvalue()}]})
    assert app.error.value == ""


def test_the_button_names_a_boundary_the_target_lacks(app: ExplorerApp) -> None:
    app.depth.value = app.depth.options[-1]
    app.opt_target.options = ["mlp_leaky"]
    labels = app.explorer.depths("mlp_leaky")
    assert app.depth.value in labels  # the single target has every boundary
    app.explorer.depths = lambda name: labels[:1]  # a target with one boundary only
    try:
        app.optimise()
        assert "has no" in app.error.value
    finally:
        del app.explorer.depths


def test_a_digit_index_outside_the_test_set_is_refused() -> None:
    with pytest.raises(ValueError, match="a test image is 0..11"):
        ExplorerApp(_explorer(), _digits(), digit_index=12)


def test_probability_bars_show_every_class() -> None:
    html = probability_bars(torch.full((10,), 0.1))
    assert html.count("10.0%") == 10


def test_latency_and_the_best_fast_methods_are_measured() -> None:
    explorer, digits = _explorer(), _digits()
    latency = measure_latency(explorer, digits.images, 4, warm_up=1)
    assert latency["digits"] == 4 and 0 < latency["median_ms"] <= latency["max_ms"]
    assert set(latency["per_method_ms"]) == set(explorer.methods)
    header, rows = latency_table(latency)
    assert header == ["", "ms"] and len(rows) == 3 + len(explorer.methods)
    with pytest.raises(ValueError, match="digits must be 1..12"):
        measure_latency(explorer, digits.images, 13)
    best = best_fast_methods(explorer.run(digits.images[0]))
    assert set(best["mlp_leaky"]) == {"block 1", "logits"}
    assert best["mlp_leaky"]["block 1"][0] in explorer.methods


def _metrics(**change) -> dict:
    metrics = {
        "targets": ["a", "b"],
        "methods": ["pinv", "progressive, real"],
        "latency": {"digits": 50, "median_ms": 40.0, "p90_ms": 50.0, "max_ms": 60.0},
        "digit_index": 0,
        "grid_reconstructions": 4,
        "grid_finite": True,
        "best_fast": {"a": {"block 1": ["pinv", 30.0], "logits": ["pinv", 9.0]}},
        "dataset_title": "MNIST",
    }
    return {**metrics, **change}


def test_the_claims_of_notebook_08_follow_the_metrics() -> None:
    params = {"max_update_ms": 200.0}
    assert update_in_time(_metrics(), params).holds
    late = _metrics(latency={"digits": 50, "median_ms": 250.0, "p90_ms": 260.0, "max_ms": 300.0})
    assert not update_in_time(late, params).holds
    assert len(check_gates(gates(_metrics(), params))) == 3
    for bad in (late, _metrics(grid_reconstructions=3), _metrics(grid_finite=False)):
        with pytest.raises(GateFailure, match="1 of 3 quality gates failed"):
            check_gates(gates(bad, params))
    lines = conclusion(_metrics())
    assert lines[0] == "**MNIST test image #0:**"
    assert "- `a`: from block 1 pinv at 30.0 dB; from the logits pinv at 9.0 dB" in lines
    assert "- `b`: no fast method inverts it" in lines
    assert "40 ms (median of 50 images, max 60 ms)" in headline(_metrics())
