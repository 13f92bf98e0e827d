"""Notebook 03's experiment stages (on a small untrained sigmoid MLP) and its claims on fixture
metrics: every branch, including those today's numbers never reach."""

from __future__ import annotations

import copy

import matplotlib
import pytest
import torch

from reversenet_utils.claims import GateFailure, check_gates
from reversenet_utils.claims.inverse_weights import conclusion, follows_opinion, gates, headline
from reversenet_utils.inverse_weights import (
    InverseWeights,
    classifier_opinion,
    generate_classes,
    train_decoder,
    unit_projections,
)
from reversenet_utils.metrics import share_interval
from reversenet_utils.models import build_target
from reversenet_utils.plotting import show_framed_pair

matplotlib.use("Agg")


def _net_and_inverse() -> tuple[torch.nn.Sequential, InverseWeights]:
    torch.manual_seed(0)
    net = build_target("mlp_sigmoid").eval()
    return net, InverseWeights(net)


def test_the_classifier_opinion_counts_each_share() -> None:
    net, _ = _net_and_inverse()
    images = torch.rand(20, 1, 28, 28)
    labels = torch.arange(20) % 10
    opinion, wrong = classifier_opinion(net, images, labels, images)  # perfect reconstructions
    assert opinion["as_prediction_on_original"] == 1.0
    assert opinion["misclassified_originals"] == int(wrong.sum())
    if opinion["misclassified_originals"]:
        assert opinion["misclassified_as_prediction"] == 1.0
        assert opinion["misclassified_as_true_label"] == 0.0
    with pytest.raises(ValueError, match="must be as many"):
        classifier_opinion(net, images, labels, images[:5])


def test_generation_projections_and_the_decoder_run() -> None:
    net, inverse = _net_and_inverse()
    generated, readout, on_image = generate_classes(net, inverse, steps=3)
    assert generated.shape == (10, 1, 28, 28) and len(readout) == len(on_image) == 10
    units = unit_projections(inverse, net[3].out_features, scale=10.0)
    assert units.shape == (100, 1, 28, 28)
    assert units.amin() >= 0 and units.amax() <= 1
    features, images = torch.rand(64, 100), torch.rand(64, 1, 28, 28)
    decoder, seconds = train_decoder(features, images, hidden=16, epochs=1)
    assert decoder(features).shape == (64, 1, 28, 28) and seconds > 0


def test_the_framed_pair_frames_the_marked_images() -> None:
    images = torch.rand(12, 1, 28, 28)
    framed = torch.zeros(12, dtype=torch.bool)
    framed[[1, 7]] = True
    fig = show_framed_pair(images, images, framed, nrow=6, titles=("a", "b"), suptitle="two framed")
    assert [len(ax.patches) for ax in fig.axes] == [2, 2]
    assert fig.axes[0].patches[1].get_xy() == (1 * 30 + 1, 1 * 30 + 1)  # image 7: row 1, column 1


def test_share_interval_is_wilsons_and_refuses_bad_input() -> None:
    lo, hi = share_interval(168 / 227, 227)
    assert lo == pytest.approx(0.6794, abs=1e-4) and hi == pytest.approx(0.7928, abs=1e-4)
    with pytest.raises(ValueError, match="number of items"):
        share_interval(0.5, 0)
    with pytest.raises(ValueError, match="fraction"):
        share_interval(1.5, 10)


PARAMS = {"target": "mlp_sigmoid", "min_generation_confidence": 0.996, "min_faithful_reclass": 0.9}
METRICS = {
    "target_accuracy": 0.98,
    "anchor_accuracy": 0.97,
    "fully_trained": True,
    "faithful": {"psnr": 13.6, "ssim": 0.55, "reclass": 0.964},
    "improved": {"psnr": 15.1, "ssim": 0.65, "reclass": 0.97},
    "pinv": {
        "psnr": 3.4,
        "ssim": 0.1,
        "reclass": 0.2,
        "w2_condition_number": 120.0,
        "clamped": {"1": {"clamped": 5}, "3": {"clamped": 7}},
    },
    "opinion": {
        "misclassified_originals": 227,
        "misclassified_as_prediction": 168 / 227,
        "misclassified_as_true_label": 41 / 227,
    },
    "generation": {"confidence": [0.999, 0.998], "image_confidence": [0.6, 0.9]},
    "dataset_title": "MNIST",
}


def _metrics(**change) -> dict:
    metrics = copy.deepcopy(METRICS)
    for key, value in change.items():
        section, _, name = key.partition("__")
        if name:
            metrics[section][name] = value
        else:
            metrics[section] = value
    return metrics


def test_reconstructions_follow_the_opinion_on_whole_intervals() -> None:
    assert follows_opinion(_metrics()).holds
    close = _metrics(opinion__misclassified_as_true_label=150 / 227)
    assert not follows_opinion(close).holds  # the intervals overlap
    none_wrong = _metrics(opinion__misclassified_originals=0)
    assert (
        not follows_opinion(none_wrong).holds
        and "no test image" in follows_opinion(none_wrong).text
    )


def test_every_gate_holds_on_the_fixture_and_each_can_fail() -> None:
    assert len(check_gates(gates(_metrics(), PARAMS))) == 6
    failing = [
        _metrics(target_accuracy=0.96),
        _metrics(generation__confidence=[0.99]),
        _metrics(faithful__reclass=0.85),
        _metrics(pinv__psnr=20.0),
        _metrics(improved__psnr=14.0),
        _metrics(opinion__misclassified_as_true_label=150 / 227),
    ]
    for metrics in failing:
        with pytest.raises(GateFailure, match="1 of 6 quality gates failed"):
            check_gates(gates(metrics, PARAMS))


def test_the_anchor_gate_applies_only_to_a_fully_trained_target_with_an_anchor() -> None:
    below = 0.96
    assert check_gates(gates(_metrics(target_accuracy=below, anchor_accuracy=None), PARAMS))
    assert check_gates(gates(_metrics(target_accuracy=below, fully_trained=False), PARAMS))


def test_the_conclusion_says_what_the_numbers_say() -> None:
    lines = conclusion(_metrics(), PARAMS)
    text = "\n".join(lines)
    assert lines[0] == "**On MNIST**, `mlp_sigmoid` at 98.00% test accuracy:"
    assert "does worse (3.4 dB)" in text and "clamps 12 hidden values" in text
    assert "the network's opinion rather than the truth" in text
    other = "\n".join(
        conclusion(_metrics(pinv__psnr=20.0, opinion__misclassified_as_true_label=0.66), PARAMS)
    )
    assert "does as well or better" in other and "no more clearly than the truth" in other
    assert headline(_metrics()).startswith("faithful inverse weights 13.6 dB / 96.4% re-classified")
