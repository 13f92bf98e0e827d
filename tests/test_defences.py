"""Split-computing defences and attacks (notebook 09): what each defence does to the features, clear
errors on bad strengths, distance correlation, DP training's epsilon, the device/server split and
the choice of the cheapest defence."""

from __future__ import annotations

import math

import pytest
import torch

from reversenet_utils.data import MNISTSplit
from reversenet_utils.defences import (
    GaussianNoise,
    LaplaceNoise,
    Quantise,
    SplitDropout,
    _train_adversarial,
    distance_correlation,
    make_defence,
    train_defended,
)
from reversenet_utils.models import build_target, get_spec
from reversenet_utils.split import (
    cheapest_defence,
    defended_accuracy,
    device_blocks,
    score,
    split_points,
    strongest,
    train_attacker,
    transmit,
)
from reversenet_utils.train import evaluate


def _features(seed: int = 0) -> torch.Tensor:
    return torch.randn(4000, 16, 4, 4, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def test_noise_has_the_asked_standard_deviation_and_laplace_matches_it() -> None:
    f = _features()
    torch.manual_seed(0)
    for kind in ("gaussian", "laplace"):
        d = make_defence(kind, 0.5, f)
        added = d(f) - f
        assert added.std().item() == pytest.approx(0.5 * f.std().item(), rel=0.03), kind
    assert torch.equal(make_defence("gaussian", 0.0, f)(f), f) and torch.equal(
        make_defence("laplace", 0.0, f)(f), f
    )
    heavy = (make_defence("laplace", 1.0, f)(f) - f).abs() / f.std()
    light = (make_defence("gaussian", 1.0, f)(f) - f).abs() / f.std()
    assert (heavy > 4).float().mean() > (
        light > 4
    ).float().mean()  # heavier tails at equal variance


def test_dropout_stays_on_at_inference_and_keeps_the_mean() -> None:
    f = _features().abs() + 1
    d = SplitDropout(0.8).eval()
    out = d(f)
    assert (out == 0).float().mean().item() == pytest.approx(0.8, abs=0.01)
    assert out.mean().item() == pytest.approx(f.mean().item(), rel=0.05)


def test_quantisation_levels() -> None:
    f = _features()
    for bits in (1, 2, 4):
        q = make_defence("quantise", bits, f)
        out = q(f)
        # idempotent: already on the grid
        assert len(out.unique()) <= 2**bits and torch.equal(q(out), out)
    fine = make_defence("quantise", 16, f)
    assert (fine(f) - f).abs().max() <= (f.max() - f.min()) / (2**16 - 1)


@pytest.mark.parametrize(
    "bad",
    [
        lambda f: make_defence("gaussian", -1.0, f),
        lambda f: make_defence("laplace", math.nan, f),
        lambda f: make_defence("dropout", 1.0, f),
        lambda f: make_defence("quantise", 0, f),
        lambda f: make_defence("quantise", 2.5, f),
        lambda f: make_defence("blur", 1.0, f),
        lambda f: make_defence("gaussian", 1.0, torch.full((3,), math.nan)),
        lambda f: GaussianNoise(True, 1.0),
        lambda f: Quantise(4, 1.0, 1.0),
        lambda f: LaplaceNoise(1.0, math.inf),
    ],
)
def test_a_bad_defence_is_refused_with_what_was_wrong(bad) -> None:
    with pytest.raises(ValueError, match="must|unknown|needs"):
        bad(_features())


def test_distance_correlation() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    assert distance_correlation(x, 3 * x + 1).item() == pytest.approx(1.0, abs=1e-4)
    assert distance_correlation(x, torch.randn(256, 8, generator=g)).item() < 0.35
    assert distance_correlation(x, x.pow(2)).item() > 0.4  # dependence without correlation
    with pytest.raises(ValueError, match="same size"):
        distance_correlation(x, x[:10])


def _small_data(n: int = 512) -> tuple[MNISTSplit, MNISTSplit]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 28, 28, generator=g)
    labels = (
        images[:, 0, :14].mean((1, 2)) > images[:, 0, 14:].mean((1, 2))
    ).long()  # learnable from pixels
    return MNISTSplit(images[: n // 2], labels[: n // 2]), MNISTSplit(
        images[n // 2 :], labels[n // 2 :]
    )


def test_training_defences_run_and_dp_reports_a_budget_that_shrinks_with_noise(ctx) -> None:
    train, test = _small_data()
    plain, meta = train_defended(ctx, "mlp_relu", train, test, 1)
    assert (
        0 <= meta["accuracy"] <= 1
        and "epsilon" not in meta
        and not any(p.requires_grad for p in plain.parameters())
    )
    _, nopeek = train_defended(ctx, "mlp_relu", train, test, 1, "nopeek", 1.0, 3)
    eps = [
        train_defended(ctx, "mlp_relu", train, test, 1, "dp", sigma, 3)[1]["epsilon"]
        for sigma in (0.7, 2.0)
    ]
    assert 0 < eps[1] < eps[0] < math.inf and 0 <= nopeek["accuracy"] <= 1
    with pytest.raises(ValueError, match="unknown training-time defence"):
        train_defended(ctx, "mlp_relu", train, test, 1, "gaussian", 1.0, 3)
    with pytest.raises(ValueError, match="split_end"):
        train_defended(ctx, "mlp_relu", train, test, 1, "nopeek", 1.0, 99)


def test_adversarial_training_hides_the_input_from_its_adversary_reproducibly(ctx) -> None:
    """The min-max runs in the right direction: on images an adversary can learn (mixtures of four
    patterns), a larger weight leaves the training-time adversary a larger reconstruction error.
    Through ``train_defended``: the same seed gives the same weights, and the report is a mean
    squared error of [0, 1] pixels."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand(4, 784, generator=g)
    images = (torch.rand(512, 4, generator=g) @ patterns / 2).clamp(0, 1).reshape(-1, 1, 28, 28)
    data = MNISTSplit(images, torch.randint(0, 10, (512,), generator=g))
    errors = [
        _train_adversarial(build_target("mlp_relu"), 3, data, 2, 2e-3, 16, weight, 0, "test")
        for weight in (0.01, 20.0)
    ]
    assert 0 < errors[0] < errors[1] <= 1
    train, test = _small_data()
    first, meta = train_defended(ctx, "mlp_relu", train, test, 1, "adversarial", 1.0, 3)
    again, _ = train_defended(ctx, "mlp_relu", train, test, 1, "adversarial", 1.0, 3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                 again.state_dict().values()))  # fmt: skip
    assert 0 < meta["adversary_mse"] <= 1 and "epsilon" not in meta and 0 <= meta["accuracy"] <= 1


def test_the_device_and_the_server_compose_to_the_network() -> None:
    torch.manual_seed(0)
    net = build_target("cnn_pool").eval()
    assert split_points("cnn_pool") == [1, 2, 3] and split_points("mlp_relu") == [1]
    x = torch.rand(16, 1, 28, 28)
    blocks = device_blocks("cnn_pool", net, 2)
    assert torch.equal(transmit(blocks, x), net[: get_spec("cnn_pool").block_ends[1]](x))
    _, test = _small_data(64)
    assert defended_accuracy("cnn_pool", net, 2, None, test) == pytest.approx(evaluate(net, test))
    noisy = device_blocks(
        "cnn_pool", net, 1, make_defence("gaussian", 1.0, transmit(blocks[:1], x))
    )
    assert not torch.equal(transmit(noisy, x), transmit(blocks[:1], x))
    with pytest.raises(ValueError, match="splits after blocks"):
        device_blocks("cnn_pool", net, 4)  # the logits are not a split


def test_an_attacker_trains_through_a_defended_device() -> None:
    torch.manual_seed(0)
    net = build_target("cnn_nopool").eval().requires_grad_(False)
    x = torch.rand(64, 1, 28, 28)
    blocks = device_blocks("cnn_nopool", net, 1, make_defence("dropout", 0.5, x))
    chain = train_attacker(blocks, "real", 3, x, desc="test")
    assert chain(transmit(blocks, x[:4]), 1).shape == (4, 1, 28, 28)


def _row(
    defence: str, strength: float, loss: float, ssim: float, hi: float, threat: str = "adaptive"
) -> dict:
    return {
        "target": "t",
        "split": 1,
        "defence": defence,
        "strength": strength,
        "accuracy_loss": loss,
        "ssim": ssim,
        "ssim_ci": [ssim - 0.01, hi],
        "threat": threat,
    }


def test_the_cheapest_defence_is_the_one_that_holds_at_least_cost() -> None:
    rows = [
        _row("none", 0, 0.0, 0.9, 0.91),
        _row("gaussian", 1, 0.005, 0.25, 0.28),
        _row("gaussian", 1, 0.005, 0.2, 0.22, "naive"),
        _row("dropout", 0.5, 0.002, 0.29, 0.31),  # interval reaches 0.3: does not hold
        _row("quantise", 1, 0.04, 0.1, 0.12),  # holds, but costs 4 points
        _row("nopeek", 1, 0.003, 0.2, 0.21),
        _row("nopeek", 1, 0.003, 0.35, 0.36, "naive"),
    ]  # its best attacker wins
    best = cheapest_defence(rows, "t", 1, 0.01, 0.3)
    assert (best["defence"], best["strength"]) == ("gaussian", 1) and best[
        "ssim"
    ] == 0.25  # the stronger of its attackers
    assert cheapest_defence(rows, "t", 1, 0.001, 0.3) is None
    assert strongest(rows, defence="nopeek")["ssim"] == 0.35


def test_a_row_scores_recognisable_images() -> None:
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    half = torch.cat([x[:16], torch.zeros_like(x[16:])])
    r = score(x, half, None, None, 0.3, target="t", split=1)
    assert (
        r["recognisable"] == pytest.approx(0.5)
        and r["target"] == "t"
        and r["n_images"] == 32
        and "reclass" not in r
    )


def _dp_with_per_sample_hooks(net, split_end, train, lr, batch_size, noise, seed):
    """The reference DP-SGD step: opacus' per-sample gradient hooks on the device's layers and one
    plain loss."""
    import warnings

    import torch.nn.functional as F
    from opacus import PrivacyEngine

    from reversenet_utils.train import seed_everything

    generator = seed_everything(seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train.images, train.labels),
        batch_size=batch_size,
        generator=generator,
    )
    device_part, server_part = net[:split_end], net[split_end:]
    optimizer, server_optimizer = (
        torch.optim.Adam(p.parameters(), lr=lr) for p in (device_part, server_part)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private, optimizer, loader = PrivacyEngine(accountant="rdp").make_private(
            module=device_part,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=noise,
            max_grad_norm=1.0,
            noise_generator=torch.Generator().manual_seed(seed),
        )
        net.train()
        for x, y in loader:
            if len(x):
                loss = F.cross_entropy(server_part(private(x)), y)
                optimizer.zero_grad(set_to_none=True)
                server_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                server_optimizer.step()
    private.remove_hooks()


@pytest.mark.parametrize("name, split_end", [("mlp_relu", 3), ("cnn_nopool", 2)])
def test_dp_with_ghost_clipping_takes_the_per_sample_hooks_steps(name: str, split_end: int) -> None:
    from reversenet_utils.defences import _train_dp

    train, _ = _small_data(512)
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        nets.append(build_target(name))
    _train_dp(nets[0], split_end, train, 1, 1e-3, 64, 1.0, 1.0, 1e-5, 0, name)
    _dp_with_per_sample_hooks(nets[1], split_end, train, 1e-3, 64, 1.0, 0)
    for (key, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), (key, (a - b).abs().max().item())


@pytest.mark.parametrize("kind", ["gaussian", "laplace", "dropout"])
def test_random_defences_draw_from_their_own_seeded_stream(kind: str) -> None:
    f = _features()
    state = torch.get_rng_state()
    first, again = make_defence(kind, 0.5, f, seed=3), make_defence(kind, 0.5, f, seed=3)
    assert torch.equal(first(f), again(f))  # reproducible, whatever ran before
    assert not torch.equal(
        make_defence(kind, 0.5, f, seed=4)(f), make_defence(kind, 0.5, f, seed=3)(f)
    )
    assert torch.equal(torch.get_rng_state(), state)  # torch's global generator untouched
    assert not torch.equal(first(f), first(f))  # a fresh draw each call
    with pytest.raises(ValueError, match="seed must be a whole number"):
        make_defence(kind, 0.5, f, seed=1.5)
    if kind == "dropout":
        assert torch.equal(make_defence(kind, 0.0, f)(f), f)
