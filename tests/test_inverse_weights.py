"""Learned inverse weights: the squash, the inverse-weights module and loss, the decoder, class
optimisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reversenet_utils.inverse_weights import (
    InverseWeights,
    MLPDecoder,
    inverse_weights_loss,
    optimise_hidden_for_classes,
    squash,
    train_inverse_weights,
)
from reversenet_utils.models import build_target
from reversenet_utils.train import train_loop


def test_squash_maps_each_row_into_the_open_unit_interval() -> None:
    p = torch.tensor([[-3.0, 0.0, 5.0], [2.0, 2.0, 2.0]])
    out = squash(p, margin=0.005)
    assert out[0].tolist() == pytest.approx([0.005, 0.005 + 0.99 * 3 / 8, 0.995])
    assert out[1].tolist() == [0.5, 0.5, 0.5]  # no range: the middle, not NaN


def test_inverse_weights_loss_value() -> None:
    x, x_inv = torch.zeros(2, 4), torch.ones(2, 4)
    assert inverse_weights_loss(x, x_inv, torch.tensor([0.0, 1.0])).item() == pytest.approx(8.0)
    assert inverse_weights_loss(x, x_inv, torch.tensor([-1.0, 2.0])).item() == pytest.approx(9.0)


def test_inverse_weights_needs_a_sigmoid_mlp() -> None:
    with pytest.raises(TypeError, match="sigmoid MLP"):
        InverseWeights(build_target("mlp_leaky"))


def test_inverse_weights_learn_to_reconstruct() -> None:
    torch.manual_seed(0)
    target = build_target("mlp_sigmoid").requires_grad_(False)
    images = torch.rand(256, 1, 28, 28) * (torch.rand(256, 1, 1, 1) > 0.5)  # two kinds of images
    with torch.no_grad():
        h2 = target[:5](images)
    inverse = InverseWeights(target)
    assert [n for n, p in inverse.named_parameters()] == ["w2_inv", "w1_inv"]  # biases stay frozen
    before = inverse_weights_loss(images, inverse(h2), inverse.last_hidden).item()

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        return inverse_weights_loss(images[idx], inverse(h2[idx]), inverse.last_hidden)

    history = train_loop(
        inverse.parameters(), loss_fn, 256, epochs=20, batch_size=64, lr=0.05, optimizer="adagrad"
    )
    out = inverse(h2)
    assert out.shape == (256, 784) and torch.isfinite(out).all()
    assert history[-1]["loss"] * 256 / 64 < before  # the per-batch loss fell
    assert inverse.from_pre_activation(torch.zeros(3, 100)).shape == (3, 784)


def test_decoder_outputs_images() -> None:
    out = MLPDecoder(100, hidden=32)(torch.randn(5, 100))
    assert out.shape == (5, 1, 28, 28) and ((out > 0) & (out < 1)).all()


def test_optimise_hidden_for_classes_reaches_confidence() -> None:
    readout = nn.Linear(20, 10).requires_grad_(False)
    readout.weight.zero_()
    # class k reads hidden unit k: every class reachable
    readout.weight[:, :10] = 10 * torch.eye(10)
    readout.bias.zero_()
    z, probs = optimise_hidden_for_classes(readout, 20, [0, 3, 9], steps=300, lr=1.0)
    assert z.shape == (3, 20)
    assert probs.argmax(1).tolist() == [0, 3, 9]
    assert probs.max(1).values.min() > 0.9


def test_train_inverse_weights_keeps_confident_images_and_learns() -> None:
    torch.manual_seed(0)
    target = build_target("mlp_sigmoid").requires_grad_(False)
    images = torch.rand(200, 1, 28, 28) * (torch.rand(200, 1, 1, 1) > 0.5)
    inverse, history, kept = train_inverse_weights(
        target, images, confidence_threshold=0.05, steps=40, batch_size=50, lr=0.05
    )
    assert kept == 200  # with ten classes every softmax maximum exceeds 0.1
    assert history[-1]["loss"] < history[0]["loss"] and not inverse.training
    assert inverse.sigmoid_inverse.seen == 0  # counters start clean for the caller
    with pytest.raises(ValueError, match="no image is classified with confidence"):
        train_inverse_weights(target, images, confidence_threshold=0.999, steps=1)
    with pytest.raises(ValueError, match="confidence_threshold must be in"):
        train_inverse_weights(target, images, confidence_threshold=1.5)
