"""Notebook 06's stages (featureviz.stages) on a tiny stand-in network, and its claims
(claims.featureviz) on fixture metrics: every branch."""

from __future__ import annotations

import copy

import matplotlib
import pytest
import torch
from torch import nn

from reversenet_utils.claims import featureviz as claims
from reversenet_utils.featureviz import ImageNetNet, stages

matplotlib.use("Agg")

PARAMS = {
    "steps": 2, "channel_steps": 2, "n_channels": 2, "speed_images": 2, "speed_size": 64,
    "speed_steps": 1, "mnist_steps": 1, "frame_every": 1, "size": 64, "classes": [1, 2],
    "lr": 0.05, "min_probability": 0.5,
}  # fmt: skip


def _net() -> ImageNetNet:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
    ).eval()  # fmt: skip
    return ImageNetNet(model, "tiny", "random", lambda x: x, "0", "2", [f"c{i}" for i in range(5)])


def test_parameters_are_checked_beyond_their_types() -> None:
    stages.check_parameters(PARAMS)
    with pytest.raises(ValueError) as err:
        stages.check_parameters({**PARAMS, "size": 32, "classes": [1000], "steps": 0})
    assert "size must be >= 64" in str(err.value) and "classes must be 1-8" in str(err.value)
    assert "steps must be >= 1" in str(err.value)


def test_every_stage_renders_and_records_its_numbers() -> None:
    net, robust = _net(), (lambda x: x)
    channels = stages.render_channels(net, 2, 64, 2, 0.05, robust, seed=0)
    assert list(channels) == ["early", "late"] and channels["late"].images.shape == (2, 3, 64, 64)
    recorded = stages.channel_metrics(net, channels)
    assert recorded["early"]["layer"] == "0" and len(recorded["late"]["objective"]) == 2
    assert len(stages.channel_figure(net, "late", channels["late"]).axes) == 2
    result, probs = stages.render_classes(net, [1, 2], 64, 2, 0.05, robust, 1, seed=0)
    assert (
        len(result.frames) >= 2
        and probs.shape == (2,)
        and bool(((0 <= probs) & (probs <= 1)).all())
    )
    naive, p = stages.naive_pixels(net, 1, 64, 2, 0.05, seed=0)
    assert naive.images.shape == (1, 3, 64, 64) and 0 <= p <= 1
    speed = stages.batched_speed(net, 2, 64, 1, 0.05, robust)
    assert speed["ratio"] > 0 and speed["images"] == 2
    cnn = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    mnist, mnist_prob = stages.mnist_classes(cnn, 1, 0.05, seed=0)
    assert mnist.images.shape == (10, 1, 28, 28) and mnist_prob.shape == (10,)


def _metrics() -> dict:
    return {
        "model": "vgg19",
        "seconds_per_image": 2.0,
        "batched_speedup": 1.5,
        "channels": {"early": {"layer": "a", "objective": [2.0, 3.0], "objective_start": 0.5},
                     "late": {"layer": "b", "objective": [1.0, 4.0], "objective_start": 0.1}},
        "classes": {"1": {"name": "bee", "probability": 0.99},
                    "2": {"name": "owl", "probability": 0.95}},
        "naive_pixel": {"class": 1, "probability": 0.999},
        "speed": {"images": 8, "size": 128, "steps": 24, "ratio": 1.5},
        "mnist": {"probability": [0.9] * 10},
    }  # fmt: skip


def test_the_claims_hold_fail_and_say_which() -> None:
    m = _metrics()
    assert all(g.holds for g in claims.gates(m, PARAMS))
    lines = claims.conclusion(m)
    assert "is 1.50x as fast" in lines[2] and "'bee'" in lines[1]
    assert claims.headline(m).startswith("vgg19: class visualisations at probability ≥ 0.950")
    bad = copy.deepcopy(m)
    bad["channels"]["late"]["objective"] = [0.0, 4.0]
    bad["classes"]["2"]["probability"] = 0.1
    bad["speed"]["ratio"] = 0.9
    bad["mnist"]["probability"][3] = 0.2
    gates = claims.gates(bad, PARAMS)
    assert [g.holds for g in gates] == [True, False, False, False, False]
    assert "is not faster here (0.90x)" in claims.conclusion(bad)[2]
    assert "reaches a probability of at least 0.950 with" in lines[0]
    assert claims.lowest_probability([1.0, 0.99996]) == "a probability that rounds to 1.000"
    assert "reach a probability of at least 0.200:" in claims.conclusion(bad)[3]
