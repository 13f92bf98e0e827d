"""Feature matching at the limit, the injectivity map, and the intervals that decide "beats" or
"matches"."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reversenet_utils.injectivity import RECOVERED_DB, injectivity_map, jacobian_ranks
from reversenet_utils.metrics import bootstrap_ci, psnr, verdict
from reversenet_utils.optimise import match_features, smooth_total_variation


def _injective() -> nn.Sequential:
    torch.manual_seed(0)
    # 64 pixels -> 256 features
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.1))


def test_feature_matching_recovers_an_injective_map_to_float_precision() -> None:
    net, x = _injective(), torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        f = net(x)
    found = match_features(net, f, steps=200, shape=(1, 8, 8), snapshots=[2, 50])
    assert psnr(found.images.clamp(0, 1).float(), x) >= RECOVERED_DB
    assert psnr(found.snapshots[2].clamp(0, 1).float(), x) < psnr(
        found.images.clamp(0, 1).float(), x
    )
    assert found.seconds[2] <= found.seconds[50] <= found.total_seconds
    assert all(p.requires_grad for p in net.parameters())  # the caller's module is not changed


def test_feature_matching_from_a_start_and_bounded() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))  # far from injective: many pre-images
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        f = net(x) * 50  # features an in-range image can hardly produce
    found = match_features(
        net,
        f,
        steps=20,
        init=x,
        shape=(1, 8, 8),
        bounded=True,
        dtype=torch.float32,
        prior=lambda z: 0.01 * smooth_total_variation(z),
    )
    assert (
        found.images.min() >= 0 and found.images.max() <= 1 and found.images.dtype == torch.float32
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps must be"),
        ({"batch_size": 2.5}, "batch_size must be"),
        ({"snapshots": [0]}, "snapshots"),
        ({"snapshots": [11]}, "snapshots"),
        ({"init": torch.zeros(1, 1, 8, 8)}, "init has 1 rows"),
        ({"stall": 1.0}, "stall must be"),
        ({"stall": float("nan")}, "stall must be"),
        ({"stall_window": 0}, "stall_window"),
    ],
)
def test_feature_matching_refuses_bad_arguments(kwargs: dict, match: str) -> None:
    net = _injective()
    with torch.no_grad():
        f = net(torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match=match):
        match_features(net, f, **{"steps": 10, "shape": (1, 8, 8), **kwargs})
    with pytest.raises(ValueError, match="NaN/inf"):
        match_features(net, f * float("nan"), steps=10, shape=(1, 8, 8))
    with pytest.raises(ValueError, match="no rows"):
        match_features(net, f[:0], steps=10, shape=(1, 8, 8))


def test_feature_matching_stops_where_it_stalls_and_not_where_it_converges() -> None:
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    # features no image in [0, 1] produces: the bounded search creeps along sigmoid's flat ends
    with torch.no_grad():
        f = linear(torch.rand(2, 1, 8, 8)) * 50
    flat = match_features(
        linear,
        f,
        steps=400,
        shape=(1, 8, 8),
        bounded=True,
        stall=1e-3,
        stall_window=20,
        snapshots=[40, 400],
    )
    never = match_features(
        linear, f, steps=400, shape=(1, 8, 8), bounded=True, stall_window=20, stall=0.0
    )
    assert flat.iterations < never.iterations  # stopped once the loss stopped falling ...
    assert torch.equal(flat.snapshots[400], flat.images)  # ... and kept what it had
    assert flat.residual == pytest.approx(never.residual, rel=1e-3)  # nothing was left on the table
    net, x = _injective(), torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        g = net(x)
    # converging: runs on to float precision
    found = match_features(net, g, steps=300, shape=(1, 8, 8), stall=1e-3, stall_window=5)
    assert psnr(found.images.clamp(0, 1).float(), x) >= RECOVERED_DB


# fewer features than pixels (reverse mode) and more (forward mode)
@pytest.mark.parametrize("width", [5, 40])
def test_jacobian_rank_matches_the_full_jacobian(width: int) -> None:
    torch.manual_seed(0)
    net, x = (
        nn.Sequential(
            nn.Flatten(), nn.Linear(16, width), nn.LeakyReLU(0.1), nn.Linear(width, width)
        ),
        torch.rand(3, 1, 4, 4),
    )
    full = [
        torch.linalg.matrix_rank(
            torch.autograd.functional.jacobian(lambda v: net(v.unsqueeze(0)).flatten(), s).flatten(
                1
            )
        )
        for s in x
    ]
    assert jacobian_ranks(net, x).tolist() == [int(r) for r in full] == [min(width, 16)] * 3


def test_jacobian_rank_counts_the_directions_kept() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 1, 4, 4)
    assert jacobian_ranks(nn.Sequential(nn.Flatten(), nn.Linear(16, 5)), x).tolist() == [5, 5, 5]
    assert jacobian_ranks(nn.Sequential(nn.Flatten(), nn.Linear(16, 40)), x).tolist() == [
        16,
        16,
        16,
    ]
    # dead units drop rows of the Jacobian
    relu = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU())
    with torch.no_grad():
        dead = (relu(x) == 0).sum(1)
    assert jacobian_ranks(relu, x).tolist() == (16 - dead).tolist()
    with pytest.raises(ValueError, match="no images"):
        jacobian_ranks(relu, x[:0])


def test_injectivity_map_tells_kept_from_lost() -> None:
    torch.manual_seed(0)
    blocks = [_injective(), nn.Sequential(nn.Flatten(), nn.Linear(256, 10))]
    rows = injectivity_map("toy", blocks, torch.rand(4, 1, 8, 8), steps=300, batch_size=4)
    assert [r["depth"] for r in rows] == [1, 2]
    assert rows[0]["recovered"] and rows[0]["rank"] == 64 and rows[0]["features"] == 256
    assert not rows[1]["recovered"] and rows[1]["rank"] == 10


def test_injectivity_map_stops_at_a_plateau_only_where_the_rank_proves_the_image_lost(
    monkeypatch,
) -> None:
    import reversenet_utils.injectivity as injectivity

    used, real = [], injectivity.match_features
    monkeypatch.setattr(
        injectivity, "match_features", lambda *a, **k: used.append(k["stall"]) or real(*a, **k)
    )
    torch.manual_seed(0)
    injectivity_map(
        "toy",
        [_injective(), nn.Sequential(nn.Flatten(), nn.Linear(256, 10))],
        torch.rand(2, 1, 8, 8),
        steps=50,
    )
    # full rank: runs on; rank 10 of 64 pixels: may stop at a plateau
    assert used == [
        0.0,
        injectivity.STALL,
    ]


def test_bootstrap_interval_and_verdict() -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(2000, generator=gen) + 3
    lo, hi = bootstrap_ci(values)
    assert lo < values.mean().item() < hi and hi - lo < 0.2
    lo_small, hi_small = bootstrap_ci(values[:50])
    assert hi_small - lo_small > hi - lo  # fewer images, wider interval
    assert verdict([lo, hi], 2.0) == "beats" and verdict([lo, hi], 4.0) == "falls short of"
    assert verdict([lo, hi], values.mean().item()) == "matches"
    # a re-run's tolerance widens the interval: close to the other number, a match
    assert verdict([1.0, 1.2], 0.9) == "beats" and verdict([1.0, 1.2], 0.9, 0.3) == "matches"
    assert verdict([1.0, 1.2], 1.4, 0.3) == "matches" and verdict([1.0, 1.2], 1.6, 0.3) != "matches"
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        verdict([1.0, 1.2], 0.9, -0.1)
    for bad, match in ((torch.tensor([]), "no values"), (torch.tensor([1.0, float("nan")]), "NaN")):
        with pytest.raises(ValueError, match=match):
            bootstrap_ci(bad)
    for n_boot in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_boot must be"):
            bootstrap_ci(values, n_boot=n_boot)


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_means() -> None:
    values = torch.randn(300, generator=torch.Generator().manual_seed(1)).double()
    # the definition: 1000 resamples of the images, drawn as bootstrap_ci does
    gen = torch.Generator().manual_seed(0)
    idx = torch.cat([torch.randint(300, (200, 300), generator=gen) for _ in range(5)])
    expected = torch.quantile(
        values[idx].mean(1), torch.tensor([0.025, 0.975], dtype=torch.float64)
    ).tolist()
    assert bootstrap_ci(values) == pytest.approx(expected, abs=1e-12)
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values)  # another seed, other resamples
    # every image scored alike: the interval is that score, exactly (07's gate)
    for constant in (
        100.0,
        0.3,
        1.0,
    ):
        assert bootstrap_ci(torch.full((10_000,), constant, dtype=torch.float64)) == [
            constant,
            constant,
        ]
