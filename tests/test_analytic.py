"""Analytic inverses: each piece round-trips in float64, domain clamping is counted, errors are
clear."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reversenet_utils.analytic import (
    choose_damping,
    domain_counts,
    invert,
    invert_conv_relu_pool,
    linear_input_stats,
    prior_inverse,
    reset_domain_counts,
)
from reversenet_utils.layer_inverses import (
    InverseActivation,
    InverseLinear,
    UnsupportedLayerError,
    affine_matrix,
)

GEN = torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _float64():
    """Run every test here in float64 (round trips are checked to 1e-9), then restore the
    default."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN)


@pytest.mark.parametrize(
    "layer",
    [
        nn.Linear(7, 7),
        nn.Linear(5, 9),
        nn.LeakyReLU(0.1),
        nn.LeakyReLU(0.01),
        nn.Sigmoid(),
        nn.Tanh(),
        nn.Flatten(),
    ],
    ids=lambda m: repr(m),
)
def test_each_piece_round_trips_random_inputs(layer: nn.Module) -> None:
    layer = layer.double()
    x = _randn(64, 7) if not isinstance(layer, (nn.Linear, nn.Flatten)) else None
    if isinstance(layer, nn.Linear):
        x = _randn(64, layer.in_features)
    if isinstance(layer, nn.Flatten):
        x = _randn(64, 1, 4, 4)
    inverse = invert(nn.Sequential(layer), input_shape=tuple(x.shape[1:]))
    with torch.no_grad():
        recovered = inverse(layer(x))
    assert recovered.shape == x.shape
    assert (recovered - x).abs().max() < 1e-9


def test_narrowing_linear_gives_the_minimum_norm_pre_image() -> None:
    layer = nn.Linear(9, 4).double()
    y = _randn(16, 4)
    with torch.no_grad():
        x = invert(nn.Sequential(layer))(y)
        assert torch.allclose(layer(x), y, atol=1e-10)  # a pre-image ...
        null = torch.linalg.svd(layer.weight)[2][4:]  # rows span the null space of W
        assert (x @ null.T).abs().max() < 1e-10  # ... with no null-space component


def test_prior_pre_image_is_a_pre_image_nearest_the_mean() -> None:
    layer = nn.Linear(9, 4).double()
    mean, cov = _randn(9), torch.eye(9)
    inv = InverseLinear(layer, prior=(mean, cov), damping=0.0)
    y = _randn(16, 4)
    with torch.no_grad():
        x = inv(y)
        assert torch.allclose(layer(x), y, atol=1e-9)
        plain = invert(nn.Sequential(layer))(y)
    assert ((x - mean).norm(dim=1) <= (plain - mean).norm(dim=1) + 1e-9).all()


def test_linear_input_stats_match_numpy_definitions() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    images = _randn(100, 1, 2, 2)
    stats = linear_input_stats(model, images, batch_size=32)
    assert set(stats) == {1, 3}
    flat = images.reshape(100, -1)
    assert torch.allclose(stats[1][0], flat.mean(0))
    assert torch.allclose(stats[1][1], torch.cov(flat.T, correction=0))


@pytest.mark.parametrize(
    "kind, values, expected_clamped",
    [
        ("sigmoid", [0.0, 1.0, 0.5, -0.2, 1.3], 4),
        ("tanh", [-1.0, 1.0, 0.0, 0.999, 2.0], 3),
        ("leaky_relu", [-5.0, 3.0, 1e4, -1e4], 2),
        ("relu", [0.0, 2.0, -1.0], 1),
    ],
)
def test_domain_clamping_is_counted_and_finite(
    kind: str, values: list[float], expected_clamped: int
) -> None:
    inv = InverseActivation(kind, negative_slope=0.1, eps=1e-3)
    out = inv(torch.tensor(values))
    assert torch.isfinite(out).all()
    assert inv.clamped == expected_clamped and inv.seen == len(values)
    if kind == "sigmoid":  # logit of the clamped edges
        assert out[0].item() == pytest.approx(math.log(1e-3 / (1 - 1e-3)))
        assert out[1].item() == pytest.approx(-out[0].item())


def test_counts_are_reported_per_layer_and_reset() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), nn.Linear(3, 2), nn.Sigmoid())
    inverse = invert(model, input_shape=None)
    inverse(torch.tensor([[0.0, 0.5], [0.5, 1.0]]))
    counts = domain_counts(inverse)
    assert list(counts.values())[0] == {"clamped": 2, "seen": 4}
    reset_domain_counts(inverse)
    assert all(c == {"clamped": 0, "seen": 0} for c in domain_counts(inverse).values())


def test_unsupported_layer_is_named() -> None:
    model = nn.Sequential(nn.Flatten(), nn.LayerNorm(4))
    with pytest.raises(UnsupportedLayerError, match=r"Layer 1 \(LayerNorm.*its own statistics"):
        invert(model)
    with pytest.raises(
        UnsupportedLayerError, match="MaxPool2d.*pooling indices.*invert_conv_relu_pool"
    ):
        invert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)), input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="needs the shape of its input: give input_shape"):
        invert(nn.Sequential(nn.Conv2d(1, 2, 3)), input_shape=None)
    with pytest.raises(UnsupportedLayerError, match="not invertible"):
        invert(nn.Sequential(nn.LeakyReLU(0.0)))


def test_prior_inverse_and_choose_damping() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.LeakyReLU(0.1), nn.Linear(4, 3))
    # images that live near a 2-dimensional subspace: a prior learns it, the minimum-norm pre-image
    # does not
    basis = torch.randn(2, 16)
    images = (
        (torch.randn(600, 2) @ basis + 0.01 * torch.randn(600, 16)).reshape(600, 1, 4, 4).sigmoid()
    )
    priors = linear_input_stats(net, images[:500])
    prefix = net[:3]  # invert from the hidden layer: the prior of layer 3 must be ignored
    inverse = prior_inverse(prefix, priors, damping=1e-3, input_shape=(1, 4, 4))
    assert sum(isinstance(m, InverseLinear) and m.with_prior for m in inverse) == 1
    best, sweep = choose_damping(prefix, priors, images[500:], [1e-6, 1e-3, 1.0, 1e3])
    assert set(sweep) == {1e-6, 1e-3, 1.0, 1e3} and best == max(sweep, key=sweep.get)
    plain = invert(prefix, input_shape=(1, 4, 4))
    held_out = images[500:]
    err_prior = (
        (prior_inverse(prefix, priors, best, (1, 4, 4))(prefix(held_out)) - held_out).pow(2).mean()
    )
    err_pinv = (plain(prefix(held_out)) - held_out).pow(2).mean()
    assert err_prior < err_pinv / 10
    with pytest.raises(ValueError, match="empty"):
        choose_damping(prefix, priors, held_out, [])


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Conv2d(1, 8, 4, stride=2, padding=1),
        nn.Conv2d(2, 6, 3, padding=1, bias=False),
    ],
    ids=repr,
)
def test_an_injective_convolution_inverts_exactly(conv: nn.Conv2d) -> None:
    conv = conv.double()
    x = _randn(16, conv.in_channels, 8, 8)
    model = nn.Sequential(conv, nn.LeakyReLU(0.1))
    inverse = invert(model, input_shape=(conv.in_channels, 8, 8))
    with torch.no_grad():
        assert (inverse(model(x)) - x).abs().max() < 1e-9
    assert "exact" in inverse[-1].extra_repr()


def test_affine_matrix_is_the_convolution() -> None:
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    x = _randn(4, 2, 7, 7)
    matrix, bias, out_shape = affine_matrix(conv, (2, 7, 7))
    with torch.no_grad():
        expected = (conv(x) - conv.bias.view(1, -1, 1, 1)).flatten(1)
    assert torch.allclose(x.flatten(1) @ matrix.T, expected, atol=1e-12)
    assert out_shape == (3, 4, 4) and torch.allclose(bias, conv.bias.repeat_interleave(16))


def test_a_narrowing_convolution_gives_a_pre_image() -> None:
    conv = nn.Conv2d(
        1, 2, 4, stride=2, padding=1
    ).double()  # 8x8 -> 2x4x4: 32 features for 64 pixels
    x = _randn(8, 1, 8, 8)
    inverse = invert(nn.Sequential(conv), input_shape=(1, 8, 8))
    with torch.no_grad():
        x_hat = inverse(conv(x))
        assert torch.allclose(conv(x_hat), conv(x), atol=1e-9)  # the same features ...
    assert (x_hat - x).abs().max() > 0.1  # ... from another input
    assert "minimum-norm" in inverse[0].extra_repr()


def test_conv_relu_pool_inverts_given_the_indices() -> None:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).double()
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        pooled, idx = torch.nn.functional.max_pool2d(block[1](block[0](x)), 2, return_indices=True)
    x_hat = invert_conv_relu_pool(block, pooled, idx, steps=300, tol=1e-12)
    assert (x_hat - x).abs().max() < 1e-6
    with pytest.raises(UnsupportedLayerError, match="Conv2d-ReLU-MaxPool2d"):
        invert_conv_relu_pool(block[:2], pooled, idx)
    with pytest.raises(ValueError, match="one shape"):
        invert_conv_relu_pool(block, pooled, idx[:2])
    with pytest.raises(ValueError, match="NaN/inf"):
        invert_conv_relu_pool(block, pooled * float("nan"), idx)
    with pytest.raises(ValueError, match="steps must be"):
        invert_conv_relu_pool(block, pooled, idx, steps=0)


@pytest.mark.parametrize(
    ("conv", "pool", "shape"),
    [
        (dict(in_channels=1, out_channels=16, kernel_size=3, padding=1, padding_mode="reflect"),
         nn.MaxPool2d(3, 2), (1, 9, 9)),
        (dict(in_channels=2, out_channels=32, kernel_size=3, padding="same", groups=2),
         nn.MaxPool2d(2), (2, 8, 8)),
        (dict(in_channels=1, out_channels=64, kernel_size=3, stride=2),
         nn.MaxPool2d(2, 1, ceil_mode=True), (1, 11, 11)),
    ],
)  # fmt: skip
def test_conv_relu_pool_takes_any_convolution_given_the_input_shape(conv, pool, shape) -> None:
    torch.manual_seed(0)  # the convolution is drawn here, whatever ran before
    conv = nn.Conv2d(**conv)
    block = nn.Sequential(conv, nn.ReLU(), pool).double()
    x = torch.rand(3, *shape, dtype=torch.float64)
    with torch.no_grad():
        pooled, idx = torch.nn.functional.max_pool2d(
            block[1](block[0](x)), pool.kernel_size, pool.stride, pool.padding, pool.dilation,
            pool.ceil_mode, return_indices=True,
        )  # fmt: skip
    needs_shape = conv.stride != (1, 1) or pool.stride != pool.kernel_size
    if needs_shape:
        with pytest.raises(ValueError, match="give input_shape"):
            invert_conv_relu_pool(block, pooled, idx)
    x_hat = invert_conv_relu_pool(block, pooled, idx, steps=500, tol=1e-12, input_shape=shape)
    assert (x_hat - x).abs().max() < 1e-6
    with pytest.raises(ValueError, match="give input_shape as the shape of one input"):
        invert_conv_relu_pool(block, pooled, idx, input_shape=(shape[0], 30, 30))


@pytest.mark.parametrize("shape", [(100, 784), (784, 100), (64, 64), (30, 30)])
def test_pinv_and_rank_match_torch_linalg(shape: tuple[int, int]) -> None:
    """The thin-SVD pseudo-inverse is torch.linalg.pinv's (rtol rule included), and its rank
    matrix_rank's."""
    from reversenet_utils.layer_inverses import pinv_and_rank

    torch.manual_seed(0)
    m = torch.randn(*shape, dtype=torch.float64)
    if shape == (30, 30):
        m[:, -5:] = m[:, :5]  # rank 25: the small singular values are dropped
    inverse, rank = pinv_and_rank(m)
    assert torch.allclose(inverse, torch.linalg.pinv(m, rtol=1e-10), atol=1e-10)
    assert (
        rank
        == int(torch.linalg.matrix_rank(m, rtol=1e-10))
        == (25 if shape == (30, 30) else min(shape))
    )


def test_linear_input_stats_float32_products_keep_a_large_mean_precise() -> None:
    """Float32 products around a provisional mean: the covariance of inputs far from zero (mean 50,
    sd 1) stays within 1e-5 of float64's, where raw float32 second moments would lose it to
    cancellation."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    images = 50 + torch.randn(5000, 1, 4, 4)
    mean, cov = linear_input_stats(model, images, batch_size=512)[1]
    flat = images.reshape(len(images), -1).double()
    assert mean.dtype == cov.dtype == torch.float64
    assert torch.allclose(mean, flat.mean(0), atol=1e-6)
    assert torch.allclose(cov, torch.cov(flat.T, correction=0), atol=1e-5)


def test_boundary_inverses_equal_each_prefix_inverted_on_its_own() -> None:
    """boundary_inverses builds the inverses once and slices them: the same maps as prior_inverse /
    invert of each prefix, the ridge chosen on the held-out images recorded as .damping."""
    from reversenet_utils.analytic import boundary_inverses, choose_damping

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 32), nn.LeakyReLU(0.1), nn.Linear(32, 10)
    ).requires_grad_(False)
    images = torch.rand(600, 1, 28, 28)
    grid = (1e-3, 1e-1, 1.0)
    found = boundary_inverses(net, [3, 4], images[:500], images[500:], grid)
    priors = linear_input_stats(net, images[:500])
    for k, end in enumerate([3, 4], start=1):
        lam, _ = choose_damping(net[:end], priors, images[500:], grid)
        assert found["prior pre-image", k].damping == lam
        f = net[:end](images[:20])
        ref = prior_inverse(net[:end], priors, lam)(f)
        assert torch.allclose(found["prior pre-image", k](f), ref, atol=1e-5)
        assert torch.allclose(found["pinv", k](f), invert(net[:end])(f), atol=1e-5)
