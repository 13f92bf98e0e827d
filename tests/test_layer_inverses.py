"""Every layer kind ``layer_inverses`` inverts, on models the tests build: exact where the layer is
injective, a pre-image (the same output) where it is not, and a clear refusal for the rest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reversenet_utils import layer_inverses as li
from reversenet_utils.analytic import domain_counts, invert
from reversenet_utils.layer_inverses import (
    InverseAffine,
    UnsupportedLayerError,
    affine_matrix,
    check_invertible,
    layer_inverse,
)


def _x(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(4, *shape, generator=torch.Generator().manual_seed(seed)).double()


def _round_trip(layer: nn.Module, in_shape: tuple[int, ...], scale: float = 1.0):
    layer = layer.double().eval()
    x = _x(*in_shape, scale=scale)
    with torch.no_grad():
        y = layer(x)
        x_hat = layer_inverse(layer, 0, in_shape)(y)
        return x, y, x_hat, layer(x_hat)


def _bn(kind, n: int, zero_channel: bool = False) -> nn.Module:
    norm = kind(n)
    g = torch.Generator().manual_seed(1)
    norm.running_mean = torch.randn(n, generator=g)
    norm.running_var = torch.rand(n, generator=g) + 0.5
    with torch.no_grad():
        norm.weight.copy_(torch.randn(n, generator=g))
        norm.bias.copy_(torch.randn(n, generator=g))
        if zero_channel:
            norm.weight[0] = 0.0
    return norm


#: injective layers: the inverse gives the input back
EXACT = {
    "conv1d": (nn.Conv1d(2, 3, 3, padding=1), (2, 9)),
    "conv2d strided, dilated, grouped": (
        nn.Conv2d(2, 8, 3, stride=1, padding=2, dilation=2, groups=2),
        (2, 6, 6),
    ),
    "conv2d depthwise": (nn.Conv2d(3, 6, 3, padding=1, groups=3), (3, 5, 5)),
    "conv2d reflect padding": (nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"), (1, 5, 5)),
    "conv2d circular padding": (nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), (1, 5, 5)),
    "conv3d": (nn.Conv3d(1, 4, 2, padding=1), (1, 3, 3, 3)),
    "conv transpose 2d": (nn.ConvTranspose2d(2, 3, 3, stride=2, output_padding=1), (2, 4, 4)),
    "conv transpose 1d": (nn.ConvTranspose1d(2, 2, 4, stride=2), (2, 5)),
    "upsample bilinear": (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 4, 4)),
    "upsample nearest": (nn.Upsample(scale_factor=3), (2, 3, 3)),
    "pixel shuffle": (nn.PixelShuffle(2), (8, 3, 3)),
    "pixel unshuffle": (nn.PixelUnshuffle(2), (2, 4, 6)),
    "channel shuffle": (nn.ChannelShuffle(2), (4, 3, 3)),
    "zero pad": (nn.ZeroPad2d((1, 2, 0, 1)), (1, 4, 5)),
    "reflection pad": (nn.ReflectionPad2d(1), (2, 4, 4)),
    "replication pad": (nn.ReplicationPad1d(2), (3, 5)),
    "batch norm 1d": (_bn(nn.BatchNorm1d, 6), (6,)),
    "batch norm 2d": (_bn(nn.BatchNorm2d, 3), (3, 4, 5)),
    "batch norm without affine": (nn.BatchNorm2d(3, affine=False), (3, 2, 2)),
    "leaky relu": (nn.LeakyReLU(0.2), (10,)),
    "prelu per channel": (nn.PReLU(3, init=0.3), (3, 4, 4)),
    "prelu": (nn.PReLU(), (10,)),
    "rrelu (eval)": (nn.RReLU(), (10,)),
    "elu": (nn.ELU(0.7), (10,)),
    "celu": (nn.CELU(0.5), (10,)),
    "selu": (nn.SELU(), (10,)),
    "sigmoid": (nn.Sigmoid(), (10,)),
    "tanh": (nn.Tanh(), (10,)),
    "softsign": (nn.Softsign(), (10,)),
    "softplus": (nn.Softplus(beta=2.0, threshold=3.0), (10,)),
    "log sigmoid": (nn.LogSigmoid(), (10,)),
    "tanhshrink": (nn.Tanhshrink(), (10,)),
    "flatten": (nn.Flatten(), (2, 3, 4)),
    "flatten from dim 2": (nn.Flatten(2), (2, 3, 4)),
    "unflatten": (nn.Unflatten(1, (2, 3)), (6,)),
    "identity": (nn.Identity(), (5,)),
    "dropout (eval)": (nn.Dropout(0.5), (5,)),
    "alpha dropout (eval)": (nn.AlphaDropout(0.5), (5,)),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_an_injective_layer_gives_its_input_back(name: str) -> None:
    layer, shape = EXACT[name]
    x, y, x_hat, _ = _round_trip(layer, shape)
    assert (x_hat - x).abs().max() < 1e-8, name


#: linear layers that narrow, and the identity pre-images of the clipping activations: the inverse
#: gives an input with the same output
PRE_IMAGE = {
    "avg pool": (nn.AvgPool2d(2), (1, 6, 6)),
    "avg pool 1d, stride 1": (nn.AvgPool1d(3, stride=1), (2, 8)),
    "adaptive avg pool, odd size": (nn.AdaptiveAvgPool2d((3, 2)), (2, 7, 5)),
    "strided conv": (nn.Conv2d(1, 2, 4, stride=2, padding=1), (1, 8, 8)),
    "batch norm with a constant channel": (_bn(nn.BatchNorm2d, 3, zero_channel=True), (3, 2, 2)),
    "relu": (nn.ReLU(), (10,)),
    "relu6": (nn.ReLU6(), (10,)),
    "hardtanh": (nn.Hardtanh(-0.5, 0.5), (10,)),
    "hardsigmoid": (nn.Hardsigmoid(), (10,)),
    "softmax": (nn.Softmax(dim=1), (6,)),
    "log softmax": (nn.LogSoftmax(dim=1), (6,)),
    "softmin": (nn.Softmin(dim=1), (6,)),
}


@pytest.mark.parametrize("name", list(PRE_IMAGE))
def test_a_layer_that_loses_information_gets_a_pre_image(name: str) -> None:
    layer, shape = PRE_IMAGE[name]
    x, y, x_hat, y_again = _round_trip(layer, shape, scale=1.0 if "soft" in name else 4.0)
    assert (y_again - y).abs().max() < 1e-8, name  # the same output ...
    assert (x_hat - x).abs().max() > 1e-3, name  # ... from another input


def test_the_pre_images_are_the_ones_described() -> None:
    """ReLU's negatives come back as 0, softmax's pre-image has zero mean, a constant batch-norm
    channel comes back at its running mean, a pooling's pre-image has minimum norm."""
    x, _, x_hat, _ = _round_trip(nn.ReLU(), (10,), scale=4.0)
    assert torch.equal(x_hat, x.clamp_min(0))
    x, _, x_hat, _ = _round_trip(nn.Softmax(dim=1), (6,))
    assert torch.allclose(x_hat, x - x.mean(1, keepdim=True), atol=1e-9)
    norm = _bn(nn.BatchNorm2d, 3, zero_channel=True)
    x, _, x_hat, _ = _round_trip(norm, (3, 2, 2))
    assert torch.allclose(x_hat[:, 0], norm.running_mean[0].expand(4, 2, 2))
    assert "1 constant channel(s)" in repr(layer_inverse(norm, 0, (3, 2, 2)))
    pool = nn.AvgPool2d(2).double()
    x, y, x_hat, _ = _round_trip(pool, (1, 4, 4))
    assert torch.allclose(x_hat, nn.Upsample(scale_factor=2)(y), atol=1e-9)  # spread evenly
    inverse = layer_inverse(pool, 0, (1, 4, 4))
    assert not inverse.exact and "minimum-norm pre-image (rank 4 < 16)" in repr(inverse)


def test_values_outside_a_domain_are_clamped_and_counted() -> None:
    for layer, inside, outside in (
        (nn.ELU(0.5), -0.1, -0.7),
        (nn.Softplus(), 0.1, -1.0),
        (nn.LogSigmoid(), -0.1, 0.5),
        (nn.Softsign(), 0.1, 1.5),
        (nn.Hardtanh(-1, 1), 0.1, 2.0),
    ):
        inverse = invert(nn.Sequential(layer.double()), input_shape=None)
        x = inverse(torch.tensor([[inside, outside]], dtype=torch.float64))
        assert torch.isfinite(x).all(), layer
        assert list(domain_counts(inverse).values()) == [{"clamped": 1, "seen": 2}], layer
    softmax = invert(nn.Sequential(nn.Softmax(dim=1)), input_shape=None)
    softmax(torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    assert list(domain_counts(softmax).values()) == [{"clamped": 1, "seen": 2}]
    with pytest.raises(ValueError, match="NaN/inf"):
        softmax(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="resolution near -0.5"):
        invert(nn.Sequential(nn.ELU(0.5)), input_shape=None, eps=1e-12)(torch.zeros(1, 2))


def test_a_model_of_every_kind_inverts_whole() -> None:
    """BatchNorm, a depthwise and a transposed convolution, odd sizes and nested blocks, inverted in
    one call: the reconstruction is the input where every layer is injective."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), _bn(nn.BatchNorm2d, 4), nn.ELU()),
        nn.Conv2d(4, 8, 3, padding=1, groups=4),
        nn.PReLU(8, init=0.2),
        nn.ConvTranspose2d(8, 8, 2, stride=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 300),
        nn.Softplus(),
    ).double().eval()  # fmt: skip
    x = _x(1, 5, 5, scale=0.3)
    inverse = invert(model, input_shape=(1, 5, 5))
    with torch.no_grad():
        x_hat = inverse(model(x))
    assert (x_hat - x).abs().max() < 1e-6
    assert len(inverse) == len(model) and isinstance(inverse[-1], nn.Sequential)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (nn.MaxPool2d(2), "pooling indices.*invert_conv_relu_pool"),
        (nn.AdaptiveMaxPool2d(2), "not where it was"),
        (nn.SiLU(), "not injective"),
        (nn.GELU(), "not injective"),
        (nn.Softshrink(), "whole interval"),
        (nn.GroupNorm(1, 2), "its own statistics"),
        (nn.PReLU(init=-0.1), "slope <= 0"),
        (nn.Flatten(0), "batch dimension"),
        (nn.Bilinear(2, 2, 2), "has no analytic inverse here"),
    ],
)
def test_a_layer_without_an_inverse_is_refused_with_the_way_forward(layer, message) -> None:
    with pytest.raises(UnsupportedLayerError, match=message):
        check_invertible(layer, 3)
    with pytest.raises(UnsupportedLayerError, match=r"Layer 1 \("):
        invert(nn.Sequential(nn.Identity(), layer), input_shape=(2, 4, 4))


def test_training_mode_and_replaced_forwards_are_refused() -> None:
    for layer in (nn.Dropout(0.5), nn.BatchNorm1d(3), nn.RReLU()):
        with pytest.raises(UnsupportedLayerError, match=r"training mode.*model\.eval\(\)"):
            check_invertible(layer.train(), 0)
    with pytest.raises(UnsupportedLayerError, match="no running statistics"):
        li.InverseBatchNorm(nn.BatchNorm1d(3, track_running_stats=False).eval())

    class Doubled(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    class Renamed(nn.Conv2d):  # keeps Conv2d's forward: inverted as one
        pass

    with pytest.raises(UnsupportedLayerError, match="Conv2d with its own forward"):
        check_invertible(Doubled(1, 1, 1), 0)
    check_invertible(Renamed(1, 1, 1), 0)
    with pytest.raises(UnsupportedLayerError, match="nn.Sequential chain.*feature matching"):
        invert(Doubled(1, 1, 1))


def test_the_affine_matrix_is_checked_and_bounded(monkeypatch) -> None:
    with pytest.raises(UnsupportedLayerError, match="not an affine map"):
        affine_matrix(nn.Tanh(), (3,))
    with pytest.raises(ValueError, match="does not take inputs of shape"):
        affine_matrix(nn.Conv2d(1, 1, 3), (2, 5, 5))
    monkeypatch.setattr(li, "MAX_MATRIX_ENTRIES", 100)
    with pytest.raises(ValueError, match="matrix would hold.*learned inverse"):
        affine_matrix(nn.Conv2d(1, 1, 3, padding=1), (1, 5, 5))
    inverse = InverseAffine(nn.AvgPool2d(1), (1, 2, 2))
    with pytest.raises(ValueError, match=r"takes features of shape \(1, 2, 2\)"):
        inverse(torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="restores shape"):
        layer_inverse(nn.Flatten(), 0, (2, 3))(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="batch norm over 3 channels"):
        layer_inverse(_bn(nn.BatchNorm1d, 3).eval(), 0, (3,))(torch.zeros(1, 4))
    with pytest.raises(UnsupportedLayerError, match="without dim"):
        layer_inverse(nn.Softmax(), 0, (3,))
