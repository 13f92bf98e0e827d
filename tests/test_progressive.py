"""Progressive block-wise inversion on a tiny model: blocks, modules, losses, schedules, inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reversenet_utils.artifacts import CheckpointMismatchError, inverse_checkpoint
from reversenet_utils.optimise import invert_by_optimisation, total_variation
from reversenet_utils.progressive import (
    AnalyticPath,
    BlockInverse,
    InverseChain,
    LossWeights,
    chain_label,
    exact_path_applies,
    forward_features,
    invert_from_every_depth,
    load_or_train_chain,
    progressive_losses,
    regime_sampler,
    schedule_depths,
    split_blocks,
    train_inverse_chain,
    transposed_conv_design,
)
from reversenet_utils.synthetic import random_strokes, structured_noise, synthesize_inputs


def _tiny() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 4, stride=2, padding=1),
        nn.LeakyReLU(0.1),  # block 1: 4 x 14 x 14
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # block 2: 8 x 7 x 7
        nn.Flatten(),
        nn.Linear(8 * 7 * 7, 10),  # block 3: logits
    ).requires_grad_(False)


def test_split_blocks_and_features() -> None:
    model = _tiny()
    blocks = split_blocks(model, [2, 5, 7])
    assert [len(b) for b in blocks] == [2, 3, 2]
    x = torch.rand(3, 1, 28, 28)
    feats, indices = forward_features(blocks, x, with_indices=True)
    assert [tuple(f.shape[1:]) for f in feats] == [(1, 28, 28), (4, 14, 14), (8, 7, 7), (10,)]
    assert (
        torch.allclose(feats[-1], model(x))
        and indices[0] is None
        and indices[1].shape == (3, 8, 7, 7)
    )
    for bad in ([2, 5], [5, 2, 7], []):
        with pytest.raises(ValueError, match="ends"):
            split_blocks(model, bad)


def test_inverse_chain_maps_every_boundary_to_images() -> None:
    blocks = split_blocks(_tiny(), [2, 5, 7])
    x = torch.rand(3, 1, 28, 28)
    for unpool in (False, True):
        chain = InverseChain(blocks, unpool=unpool)
        feats, indices = forward_features(blocks, x, with_indices=unpool)
        for k in (1, 2, 3):
            assert chain(feats[k], k, indices).shape == x.shape
        with pytest.raises(ValueError, match="k must be"):
            chain(feats[1], 4)
    with pytest.raises(ValueError, match="pooling indices"):
        BlockInverse((4, 14, 14), (8, 7, 7), unpool=True)(torch.rand(2, 8, 7, 7))


def test_invert_from_every_depth_matches_the_chain_in_any_chunking() -> None:
    blocks = split_blocks(_tiny(), [2, 5, 7])
    chain = InverseChain(blocks, unpool=True).eval()
    x = torch.rand(7, 1, 28, 28)
    feats, indices = forward_features(blocks, x, with_indices=True)
    seconds: dict[int, float] = {}
    # chunks of 3, 3, 1
    out = invert_from_every_depth(chain, blocks, x, batch_size=3, seconds=seconds)
    assert sorted(out) == [1, 2, 3]
    # each depth's chain time
    assert sorted(seconds) == [1, 2, 3] and all(s > 0 for s in seconds.values())
    with torch.no_grad():
        for k, x_hat in out.items():
            assert torch.allclose(x_hat, chain(feats[k], k, indices), atol=1e-6)


def test_class_cycle_term_only_when_inverting_the_logits() -> None:
    blocks = split_blocks(_tiny(), [2, 5, 7])
    chain = InverseChain(blocks, hidden=8, hidden_dense=32)
    x = torch.rand(4, 1, 28, 28)
    plain, with_class = LossWeights(1, 1, 1, 0), LossWeights(1, 1, 1, class_cycle=5)
    with torch.no_grad():
        assert progressive_losses(chain, blocks, x, 2, with_class) == progressive_losses(
            chain, blocks, x, 2, plain
        )
        extra = progressive_losses(chain, blocks, x, 3, with_class) - progressive_losses(
            chain, blocks, x, 3, plain
        )
        # the extra term is 5 x the cross-entropy of the target's class of the original on the
        # reconstruction
        logits = blocks[0](x)
        for block in blocks[1:]:
            logits = block(logits)
        again = chain(logits, 3)
        for block in blocks:
            again = block(again)
        assert extra.item() == pytest.approx(
            5 * torch.nn.functional.cross_entropy(again, logits.argmax(1)).item(), rel=1e-5
        )


def test_class_cycle_term_never_on_part_of_a_network() -> None:
    """A chain of a split device (its last block a feature map, not the logits) has no
    class-decision term, and asking for one there is refused rather than read as per-pixel classes.
    """
    blocks = split_blocks(_tiny(), [2, 5, 7])[:2]  # the device up to split 2: (8, 7, 7) features
    chain = InverseChain(blocks, hidden=8, hidden_dense=32)
    x = torch.rand(4, 1, 28, 28)
    plain, with_class = LossWeights(1, 1, 1, 0), LossWeights(1, 1, 1, class_cycle=5)
    with torch.no_grad():
        assert progressive_losses(
            chain, blocks, x, 2, with_class, logits=False
        ) == progressive_losses(chain, blocks, x, 2, plain)
        with pytest.raises(ValueError, match=r"needs logits.*\(4, 8, 7, 7\).*logits=False"):
            progressive_losses(chain, blocks, x, 2, with_class)


def test_schedules_share_the_budget() -> None:
    assert schedule_depths(3, 6, "progressive") == [1, 1, 2, 2, 3, 3]
    assert schedule_depths(3, 4, "joint") == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="schedule"):
        schedule_depths(3, 4, "random")


def test_training_lowers_the_three_losses() -> None:
    blocks = split_blocks(_tiny(), [2, 5, 7])
    torch.manual_seed(0)
    chain = InverseChain(blocks, hidden=8, hidden_dense=32)
    data = structured_noise(256, torch.Generator().manual_seed(0))
    before = progressive_losses(chain, blocks, data, 2).item()
    history = train_inverse_chain(
        chain, blocks, lambda idx: data[idx % 256], steps=60, batch_size=32, lr=5e-3
    )
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["loss"]))
    with torch.no_grad():
        assert progressive_losses(chain, blocks, data, 2).item() < before


def test_a_cnn_chain_trains_channels_last_and_comes_back_in_the_standard_layout() -> None:
    """cnn_pool's chains (with transposed convolutions, and with unpooling) train in the
    channels-last layout (context.fast_layout), learn, and are returned in the standard layout;
    the target's blocks, which other chains share, are not converted."""
    from reversenet_utils.context import fast_layout
    from reversenet_utils.models import TARGETS, build_target

    torch.manual_seed(0)
    blocks = split_blocks(build_target("cnn_pool"), TARGETS["cnn_pool"].block_ends)
    data = structured_noise(64, torch.Generator().manual_seed(0))
    for unpool in (False, True):
        torch.manual_seed(1)
        chain = InverseChain(blocks, unpool=unpool, hidden=8, hidden_dense=32)
        assert fast_layout(chain, *blocks) == torch.channels_last
        with torch.no_grad():
            before = progressive_losses(chain, blocks, data, 2).item()
        train_inverse_chain(chain, blocks, lambda idx: data[idx % 64], steps=20, batch_size=16)
        with torch.no_grad():
            assert progressive_losses(chain, blocks, data, 2).item() < before
        assert all(p.is_contiguous() for p in chain.parameters())
    assert all(p.is_contiguous() for b in blocks for p in b.parameters())


def test_structured_noise_is_image_like_and_seeded() -> None:
    a = structured_noise(16, torch.Generator().manual_seed(3))
    b = structured_noise(16, torch.Generator().manual_seed(3))
    assert a.shape == (16, 1, 28, 28) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.1


def test_random_strokes_are_thin_lines() -> None:
    s = random_strokes(64, torch.Generator().manual_seed(0))
    assert s.shape == (64, 1, 28, 28) and 0 <= s.min() and s.max() == 1
    ink = (s > 0.5).float().mean((1, 2, 3))
    assert (ink > 0).all() and ink.max() < 0.35  # every image has a stroke, none is a filled blob
    assert s[:, :, 0].max() < 0.5 and s[:, :, -1].max() < 0.5  # control points stay off the border


def test_a_seed_draws_the_same_noise_as_before() -> None:
    """The zero-shot chains' training stream is fixed by its seed: a faster sampler must draw the
    same images (sums taken from the sampler of 2026-12-02, before unused curves moved to infinity).
    The tolerance is float32 rounding, which differs between CPUs' vector units (CI saw 2.5e-7 on
    3758); another draw moves the sum by units."""
    assert structured_noise(
        32, torch.Generator().manual_seed(0)
    ).double().sum().item() == pytest.approx(3758.809689705623, abs=1e-3)
    assert random_strokes(
        32, torch.Generator().manual_seed(0)
    ).double().sum().item() == pytest.approx(3446.159947745639, abs=1e-3)


def test_synthesis_and_optimisation_inversion() -> None:
    model = _tiny()
    model[-1].weight.mul_(50)  # a random readout is too timid to be confident of anything
    images, confidence = synthesize_inputs(model, 16, steps=20, lr=0.2, seed=0)
    assert images.shape == (16, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert confidence.mean() > 0.5  # the target now believes in the chosen classes
    block = model[:2]
    x = structured_noise(8, torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = block(x)
    x_hat = invert_by_optimisation(block, target, steps=150, lr=0.1, tv_weight=0.0)
    with torch.no_grad():
        assert ((block(x_hat) - target).norm() / target.norm()) < 0.3
    # each image is optimised on its own: batches of 3 give the images of one batch of 8 (to float
    # rounding)
    in_threes = invert_by_optimisation(block, target, steps=20, lr=0.1, batch_size=3)
    torch.testing.assert_close(
        in_threes,
        invert_by_optimisation(block, target, steps=20, lr=0.1, batch_size=8),
        atol=1e-3,
        rtol=0,
    )


def test_total_variation() -> None:
    assert total_variation(torch.ones(2, 1, 5, 5)).tolist() == [0.0, 0.0]
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., ::2] = 1.0  # vertical stripes: every horizontal neighbour differs
    assert total_variation(stripes).item() == pytest.approx(1.0)


def test_regime_sampler_draws_each_regime() -> None:
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(20, 1, 28, 28)
    idx = torch.arange(8)
    batch = regime_sampler("real", generator=gen, real=real)(idx)
    assert batch.shape == (8, 1, 28, 28) and all(
        any(torch.equal(b, r) for r in real) for b in batch
    )
    noise = regime_sampler("noise", gen)(idx)
    assert noise.shape == (8, 1, 28, 28) and not any(torch.equal(n, r) for n in noise for r in real)
    with pytest.raises(ValueError, match="needs its images"):
        regime_sampler("synthesized", gen, real=real)
    with pytest.raises(ValueError, match="regime must be"):
        regime_sampler("imagenet", gen)


def test_a_chain_is_trained_once_then_loaded_for_the_same_target_only(ctx) -> None:
    net = _tiny()
    blocks = split_blocks(net, [2, 5, 7])
    sample = regime_sampler("noise", torch.Generator().manual_seed(0))
    chain = load_or_train_chain(
        ctx,
        "tiny",
        net,
        blocks,
        "real",
        3,
        lambda idx: torch.rand(len(idx), 1, 28, 28),
        batch_size=4,
    )
    path = inverse_checkpoint(ctx, "tiny", chain_label("real"))
    assert path.name == "tiny__progressive-real.pt" and path.is_file() and chain.meta["steps"] == 3
    assert (
        chain.meta["target"] == "tiny" and chain.meta["dataset"] == "mnist" and not chain.training
    )
    untouched = path.stat().st_mtime_ns
    # loaded, not retrained
    loaded = load_or_train_chain(ctx, "tiny", net, blocks, "real", 3, sample, batch_size=4)
    assert path.stat().st_mtime_ns == untouched
    f = torch.rand(2, 8, 7, 7)
    with torch.no_grad():
        assert torch.equal(loaded(f, 2), chain(f, 2))
    # same shapes, other weights: a different target (or the same one retrained)
    retrained = _tiny()
    with torch.no_grad():
        retrained[0].weight.add_(0.1)
    with pytest.raises(CheckpointMismatchError, match="target_fingerprint.*re-run notebooks/04"):
        load_or_train_chain(
            ctx,
            "tiny",
            retrained,
            split_blocks(retrained, [2, 5, 7]),
            "real",
            3,
            sample,
            batch_size=4,
        )
    assert path.stat().st_mtime_ns == untouched  # refused, and the saved inverse is kept


def test_an_injective_leaky_conv_block_is_inverted_exactly_by_a_fitted_path() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1),
        nn.LeakyReLU(0.1),  # 784 -> 3136: injective, 64 weights >= 36 equations
        nn.Flatten(),
        nn.Linear(16 * 14 * 14, 10),
    ).requires_grad_(False)
    blocks = split_blocks(model, [2, 4])
    assert exact_path_applies(blocks[0], (1, 28, 28), (16, 14, 14))
    # 4 channels: 16 weights < 36 equations
    assert not exact_path_applies(_tiny()[:2], (1, 28, 28), (4, 14, 14))
    assert not exact_path_applies(
        nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU()), (1, 28, 28), (16, 14, 14)
    )
    chain = InverseChain(blocks)
    assert list(chain.exact) == ["0"] and InverseChain(blocks, exact=False).exact.keys() == set()
    x = structured_noise(8, torch.Generator().manual_seed(1))
    f1 = blocks[0](x)
    # not fitted yet: the learned module inverts
    assert not chain.exact["0"].is_exact and torch.equal(chain(f1, 1), chain.step(0, f1))
    sample = regime_sampler("noise", torch.Generator().manual_seed(2))
    train_inverse_chain(chain, blocks, sample, steps=2, batch_size=4, exact_images=16)
    assert chain.exact["0"].is_exact and chain.exact["0"].fit_db > 100
    recovered = chain(f1, 1)
    # float32 precision, on images it never saw
    assert 10 * torch.log10(1 / (recovered - x).pow(2).mean()) > 80
    # from deeper: the learned module of block 1 (the exact path would amplify the estimate's error)
    deeper = chain(model(x), 2)
    assert deeper.shape == x.shape and not torch.allclose(deeper, recovered)


@pytest.mark.parametrize("unpool", [False, True])
def test_losses_compute_the_first_module_once_and_equal_the_definition(unpool: bool) -> None:
    """The chain's first module on the true f_k is shared by the block loss and the image loss: the
    loss and its gradients equal those of the definition (each term evaluated on its own), with and
    without an exact path."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    wide = nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.LeakyReLU(0.1), *_tiny()[2:]
    ).requires_grad_(False)
    # block 1 injective: an exact path
    wide[2] = nn.Conv2d(16, 8, 3, padding=1).requires_grad_(False)
    blocks = split_blocks(wide, [2, 5, 7])
    x = torch.rand(6, 1, 28, 28)
    assert exact_path_applies(blocks[0], (1, 28, 28), (16, 14, 14))
    for exact in (False, True):
        torch.manual_seed(1)
        chain = InverseChain(blocks, unpool=unpool, exact=exact)
        if exact:
            assert (
                chain.fit_exact(blocks, torch.rand(64, 1, 28, 28))[1] > 50
                and chain.exact["0"].is_exact
            )
        for k in (1, 2, 3):
            chain.zero_grad()
            loss = progressive_losses(chain, blocks, x, k)
            loss.backward()
            fast = [p.grad.clone() if p.grad is not None else None for p in chain.parameters()]
            chain.zero_grad()
            feats, indices = forward_features(blocks, x, upto=k, with_indices=unpool)
            power = [f.pow(2).mean().clamp_min(1e-8) for f in feats]
            w = LossWeights()
            block = sum(
                F.mse_loss(chain.step(j, feats[j + 1], indices), feats[j]) / power[j]
                for j in range(k)
            )
            x_hat = chain(feats[k], k, indices)
            again = x_hat
            for b in blocks[:k]:
                again = b(again)
            ref = (
                w.block * block
                + w.image * F.mse_loss(x_hat, x) / power[0]
                + w.cycle * F.mse_loss(again, feats[k]) / power[k]
            )
            if k == len(blocks):
                ref = ref + w.class_cycle * F.cross_entropy(again, feats[k].argmax(1))
            ref.backward()
            assert torch.allclose(loss, ref, rtol=1e-5), (k, exact, loss, ref)
            for g, p in zip(fast, chain.parameters()):
                assert (g is None) == (p.grad is None) and (
                    g is None or torch.allclose(g, p.grad, rtol=1e-4, atol=1e-6)
                )


def test_forward_features_in_chunks_equals_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large batch runs in chunks (cache-friendly on a CPU): the same features and pooling
    indices."""
    from reversenet_utils import progressive

    blocks = split_blocks(_tiny(), [2, 5, 7])
    x = torch.rand(25, 1, 28, 28)
    whole, whole_idx = forward_features(blocks, x, with_indices=True)
    monkeypatch.setattr(progressive, "FEATURE_CHUNK", 10)  # 10 + 10 + 5
    parts, parts_idx = forward_features(blocks, x, with_indices=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, parts)) and len(parts) == 4
    assert [i is None for i in parts_idx] == [True, False, True] and torch.equal(
        whole_idx[1], parts_idx[1]
    )
    assert len(forward_features(blocks, x, upto=1)[0]) == 2


@pytest.mark.parametrize(
    "kernel, stride, padding, output_padding, size",
    [
        (4, 2, 1, 0, 7),
        (3, 1, 1, 0, 5),
        (5, 2, 2, 1, 6),
        ((3, 2), (2, 1), (1, 0), (1, 0), 4),
        (2, 3, 0, 2, 3),
    ],
)
def test_transposed_conv_design_is_the_convolution_as_a_matrix(
    kernel, stride, padding, output_padding, size
) -> None:
    """Every output channel of the transposed convolution is the design matrix times that channel's
    weights."""
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(3, 2, kernel, stride, padding, output_padding, bias=False).double()
    z = torch.randn(2, 3, size, size + 1, dtype=torch.float64)
    out = conv(z).detach()
    design = transposed_conv_design(z, conv)
    assert design.shape == (2 * out.shape[2] * out.shape[3], conv.weight[:, 0].numel())
    for ci in range(2):
        got = (design @ conv.weight[:, ci].detach().flatten()).reshape(2, *out.shape[2:])
        torch.testing.assert_close(got, out[:, ci], rtol=0, atol=1e-12)


class _Residual(nn.Module):
    """A residual block of the user's own: a black box to the chain."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv(x))


def _lenet_like() -> nn.Sequential:
    """He et al.'s LeNet shape: unpadded 5x5 convolutions (28 -> 24 -> 12 -> 8 -> 4), then a
    residual block of its own, a 1-D feature map and dense layers."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2),  # block 1: 8 x 12 x 12
        nn.Conv2d(8, 16, 5), nn.ReLU(),  # block 2: 16 x 8 x 8
        _Residual(16), nn.MaxPool2d(2, 2),  # block 3: 16 x 4 x 4
        nn.Flatten(2),  # block 4: 16 x 16 (neither an image nor a vector)
        nn.Flatten(), nn.Linear(256, 10),  # block 5: logits
    ).requires_grad_(False)  # fmt: skip


def test_any_block_shape_gets_an_inverse_and_the_chain_trains() -> None:
    model = _lenet_like()
    blocks = split_blocks(model, [3, 5, 7, 8, 10])
    x = torch.rand(4, 1, 28, 28)
    for unpool in (False, True):
        chain = InverseChain(blocks, unpool=unpool)
        feats, indices = forward_features(blocks, x, with_indices=unpool)
        assert [tuple(f.shape[1:]) for f in feats[1:4]] == [(8, 12, 12), (16, 8, 8), (16, 4, 4)]
        for k in range(1, 6):
            assert chain(feats[k], k, indices).shape == x.shape
    assert chain.uses_indices == [True, False, True, False, False]
    assert isinstance(chain.inverses[1].linear[0], nn.Upsample)  # 8 -> 12: resize, then convolve
    sample = regime_sampler("noise", torch.Generator().manual_seed(0))
    history = train_inverse_chain(chain, blocks, sample, steps=3, batch_size=4)
    assert len(history) == 1 and torch.isfinite(torch.tensor(list(history[0].values()))).all()


def test_a_whole_factor_of_resolution_is_undone_by_a_strided_transposed_convolution() -> None:
    """8x8 features of 24x24 maps (He et al.'s LeNet): stride 3; 7 -> 23 (remainder 2 < 3): stride
    3 with output padding; 8 -> 30 (remainder 6): resizing; 12 -> 8 -> 12: resizing."""
    for hw_out, hw_in, kind in ((8, 24, nn.ConvTranspose2d), (7, 23, nn.ConvTranspose2d),
                                (8, 30, nn.Sequential), (8, 12, nn.Sequential)):  # fmt: skip
        inverse = BlockInverse((3, hw_in, hw_in), (5, hw_out, hw_out))
        assert isinstance(inverse.linear, kind), (hw_out, hw_in)
        assert inverse(torch.rand(2, 5, hw_out, hw_out)).shape == (2, 3, hw_in, hw_in)
    rect = BlockInverse((3, 24, 17), (5, 8, 8))  # per side: stride 3 and 2, remainder 0 and 1
    assert rect.linear.stride == (3, 2) and rect(torch.rand(1, 5, 8, 8)).shape == (1, 3, 24, 17)


def test_the_gaussian_regime_draws_standard_normal_pixels() -> None:
    sample = regime_sampler("gaussian", torch.Generator().manual_seed(0))
    x = sample(torch.arange(4096))
    assert x.shape == (4096, 1, 28, 28) and abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    with pytest.raises(ValueError, match="gaussian"):
        regime_sampler("uniform", torch.Generator())


def test_a_pooling_inverse_unpools_to_the_size_before_any_pooling() -> None:
    pool = nn.MaxPool2d(3, stride=2)  # overlapping windows: 9 -> 4
    inverse = BlockInverse((2, 9, 9), (4, 4, 4), unpool=True, pool=pool, pooled_from=(4, 9, 9))
    pre = torch.rand(2, 4, 9, 9)
    out, idx = nn.functional.max_pool2d(pre, 3, 2, return_indices=True)
    assert inverse(out, idx).shape == (2, 2, 9, 9)
    with pytest.raises(ValueError, match="dense inverse of .* weights"):
        BlockInverse((3, 224, 224), (1000,))


def test_a_block_whose_layers_invert_exactly_gets_an_analytic_path() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 12), nn.LeakyReLU(0.1),  # block 1: narrows, learned
        nn.Linear(12, 12), nn.BatchNorm1d(12).eval(), nn.ELU(),  # block 2: square, invertible
        nn.Linear(12, 12), nn.ReLU(),  # block 3: ReLU loses the negatives
    ).requires_grad_(False)  # fmt: skip
    blocks = split_blocks(model, [3, 6, 8])
    chain = InverseChain(blocks, in_shape=(1, 4, 4))
    assert list(chain.exact) == ["1"] and isinstance(chain.exact["1"], AnalyticPath)
    x = torch.rand(8, 1, 4, 4)
    feats, _ = forward_features(blocks, x)
    assert not chain.exact["1"].is_exact  # measured before use
    assert chain.fit_exact(blocks, torch.rand(16, 1, 4, 4))[2] > 100
    assert torch.allclose(chain.first_step(feats[2], 2), feats[1], atol=1e-4)
    assert AnalyticPath.build(_Residual(2), (2, 4, 4), (2, 4, 4)) is None  # a black box
