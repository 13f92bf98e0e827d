"""The training loop, the target registry and load-or-train, on tiny synthetic data."""

from __future__ import annotations

import re

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from reversenet_utils import models, train
from reversenet_utils.context import Context
from reversenet_utils.data import MNISTSplit
from reversenet_utils.models import TARGETS, TargetSpec, build_target


def _toy_split(n: int, seed: int) -> MNISTSplit:
    """Two classes told apart by the brightness of the left vs right half of the image."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = 0.3 * torch.rand(n, 1, 28, 28, generator=g)
    images[labels == 0, :, :, :14] += 0.6
    images[labels == 1, :, :, 14:] += 0.6
    return MNISTSplit(images, labels)


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_maps_images_to_ten_logits(name: str) -> None:
    assert build_target(name)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_target_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="mlp_leaky"):
        build_target("mlp_typo")


def test_a_dataset_recipe_changes_only_its_own_dataset(
    tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TargetSpec.on`` applies a dataset's recipe; training on that dataset uses it, on another
    the default."""
    tiny = TargetSpec(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
        "tiny",
        epochs=1,
        lr=1e-2,
        dataset_recipes={"fashion_mnist": {"epochs": 2, "batch_size": 32}},
    )
    assert (
        tiny.on("fashion_mnist").epochs,
        tiny.on("fashion_mnist").batch_size,
        tiny.on("fashion_mnist").lr,
    ) == (2, 32, 1e-2)
    assert (
        tiny.on("mnist") == replace(tiny, dataset_recipes={})
        and tiny.on("fashion_mnist").dataset_recipes == {}
    )
    monkeypatch.setitem(models.TARGETS, "tiny", tiny)
    split = _toy_split(64, 0)
    for dataset, (epochs, batch_size) in (("fashion_mnist", (2, 32)), ("mnist", (1, 128))):
        ctx = Context(dataset, "cpu")
        _, meta = train.train_target(ctx, "tiny", train=split, test=split)
        assert (meta["epochs"], meta["batch_size"], meta["dataset"]) == (
            epochs,
            batch_size,
            dataset,
        )
    with pytest.raises(
        ValueError, match="may change epochs, lr, batch_size, channels_last, not seed"
    ):
        TargetSpec(tiny.build, "tiny", epochs=1, dataset_recipes={"fashion_mnist": {"seed": 3}})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 0}, "epochs=0; epochs must be a whole number >= 1"),
        ({"epochs": 2.5}, "epochs=2.5; epochs must be"),
        ({"batch_size": True}, "batch_size=True; batch_size must be"),
        ({"lr": float("nan")}, "lr=nan; lr must be a finite number > 0"),
        ({"lr": -1e-3}, "lr=-0.001"),
        ({"channels_last": "yes"}, "channels_last='yes'; channels_last must be True or False"),
    ],
)
def test_a_recipe_refuses_values_it_cannot_train_with(change: dict, message: str) -> None:
    build = lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10))  # noqa: E731
    with pytest.raises(
        ValueError, match=f"the recipe on 'fashion_mnist' sets {re.escape(message)}"
    ):
        TargetSpec(build, "tiny", epochs=1, dataset_recipes={"fashion_mnist": change})
    with pytest.raises(ValueError, match=f"the default recipe sets {re.escape(message)}"):
        TargetSpec(build, "tiny", **{"epochs": 1, **change})


def test_a_channels_last_fit_learns_the_same_model_and_returns_it_in_the_standard_layout() -> None:
    """The layout changes only the rounding: the same initialisation and batches give the same
    model to float error."""

    def conv() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 14 * 14, 2),
        )

    models_ = {layout: conv() for layout in (False, True)}
    for layout, model in models_.items():
        train.fit(
            model, _toy_split(256, 0), None, epochs=1, lr=1e-3, batch_size=64, channels_last=layout
        )
    plain, channels_last = models_[False], models_[True]
    assert channels_last[0].weight.is_contiguous() and not channels_last.training
    assert all(
        torch.allclose(p, q, atol=1e-4)
        for p, q in zip(plain.parameters(), channels_last.parameters())
    )
    # it did train
    assert not all(torch.equal(p, q) for p, q in zip(plain.parameters(), conv().parameters()))


def test_fit_learns_and_reports_every_epoch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    history = train.fit(
        model, _toy_split(512, 0), _toy_split(256, 1), epochs=2, lr=1e-2, batch_size=64
    )
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["test_accuracy"] > 0.95
    assert history[-1]["loss"] < history[0]["loss"]
    with pytest.raises(ValueError, match="epochs"):
        train.fit(model, _toy_split(8, 0), epochs=0)


def test_load_target_trains_when_missing_then_loads(
    tmp_root: Path, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = TargetSpec(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "tiny", epochs=1, lr=1e-2
    )
    monkeypatch.setitem(models.TARGETS, "tiny", tiny)
    monkeypatch.setattr(
        Context, "load", lambda self, split: _toy_split(256 if split == "train" else 64, 0)
    )
    first = train.load_target(ctx, "tiny")
    assert (tmp_root / "artifacts" / "targets" / "tiny.pt").is_file()
    assert first.meta["epochs"] == 1 and 0 <= first.meta["test_accuracy"] <= 1
    assert not any(p.requires_grad for p in first.parameters()) and not first.training
    monkeypatch.setattr(
        train, "train_target", lambda *a, **k: pytest.fail("should load, not retrain")
    )
    second = train.load_target(ctx, "tiny")
    assert torch.equal(first[1].weight, second[1].weight)


def test_load_target_without_training_says_which_notebook(ctx: Context) -> None:
    with pytest.raises(FileNotFoundError, match="01_train_targets"):
        train.load_target(ctx, "mlp_leaky", train_if_missing=False)


def test_predict_runs_cnns_channels_last_with_the_same_logits() -> None:
    """predict's channels-last copy of a CNN gives the model's own logits; the model itself is left
    as it was."""
    from reversenet_utils.models import build_target
    from reversenet_utils.train import predict

    torch.manual_seed(0)
    net = build_target("cnn_pool").train()
    x = torch.rand(300, 1, 28, 28)
    with torch.no_grad():
        expected = net.eval()(x)
    net.train()
    got = predict(net, x, batch_size=128)
    assert torch.allclose(got, expected, atol=1e-4) and torch.equal(
        got.argmax(1), expected.argmax(1)
    )
    assert net.training and all(p.is_contiguous() for p in net.parameters())


def test_fast_layout_is_channels_last_only_for_float32_convolutions_on_a_cpu() -> None:
    """Channels-last where a module convolves (transposed convolutions too) on a CPU in float32;
    the standard layout for dense layers, modules without parameters and float64."""
    from reversenet_utils.context import fast_layout

    conv, dense = build_target("cnn_pool"), build_target("mlp_relu")
    up = nn.Sequential(nn.ConvTranspose2d(4, 1, 4, 2, 1))
    assert fast_layout(conv) == fast_layout(up) == fast_layout(dense, up) == torch.channels_last
    assert fast_layout(dense) == fast_layout(nn.Flatten()) == torch.contiguous_format
    assert fast_layout(conv.double()) == torch.contiguous_format  # no fast float64 kernels


def test_the_targets_max_pooling_is_torch_s_with_and_without_gradients() -> None:
    """models.MaxPool2d's no-gradient path (two maxima of strided views) gives F.max_pool2d's
    values, NaN included; with gradients it is nn.MaxPool2d's, so the backward routes to the same
    positions."""
    from reversenet_utils.models import MaxPool2d

    pool = MaxPool2d(2)
    x = torch.relu(torch.randn(4, 3, 10, 12))
    x[0, 0, 0, 0] = float("nan")
    with torch.no_grad():
        fast = pool(x)
    reference = torch.nn.functional.max_pool2d(x, 2)
    assert torch.equal(fast.isnan(), reference.isnan()) and torch.equal(
        fast.nan_to_num(), reference.nan_to_num()
    )
    odd = torch.rand(2, 1, 7, 7)  # an odd size, another stride: nn.MaxPool2d's own path
    with torch.no_grad():
        assert torch.equal(pool(odd), torch.nn.functional.max_pool2d(odd, 2))
        assert torch.equal(MaxPool2d(3, 1)(odd), torch.nn.functional.max_pool2d(odd, 3, 1))
    y = torch.rand(2, 2, 8, 8, requires_grad=True)
    pool(y).sum().backward()
    z = y.detach().clone().requires_grad_()
    torch.nn.functional.max_pool2d(z, 2).sum().backward()
    assert torch.equal(y.grad, z.grad)


def _train_tiny(seed: int) -> torch.Tensor:
    """A seeded model (initialised under GLOBAL_RNG) trained on its own batches; its weights."""
    with train.GLOBAL_RNG:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 2))
    train.fit(model, _toy_split(256, seed), epochs=2, lr=1e-2, batch_size=32, seed=seed)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_run_side_by_side_gives_what_one_after_another_gives() -> None:
    from functools import partial

    threads = torch.get_num_threads()
    tasks = [partial(_train_tiny, s) for s in range(4)]
    torch.set_num_threads(1)  # the side-by-side tasks' intra-op threads, for bitwise equal sums
    try:
        alone = [task() for task in tasks]
    finally:
        torch.set_num_threads(threads)
    together = train.run_side_by_side(tasks, "cpu", workers=2)
    assert torch.get_num_threads() == threads  # restored
    for a, b in zip(alone, together):
        assert torch.equal(a, b)
    assert train.run_side_by_side([], "cpu") == []


def test_run_side_by_side_raises_a_tasks_error_and_refuses_bad_workers() -> None:
    def fails() -> None:
        raise FloatingPointError("loss became non-finite")

    threads = torch.get_num_threads()
    with pytest.raises(FloatingPointError, match="non-finite"):
        train.run_side_by_side([lambda: 1, fails], "cpu", workers=2)
    assert torch.get_num_threads() == threads
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a whole number"):
            train.run_side_by_side([lambda: 1], "cpu", workers=bad)
    assert train.run_side_by_side([lambda: 1, lambda: 2], "cpu", workers=1) == [1, 2]
    with pytest.raises(ValueError, match="one estimate per task: 1 for 2"):
        train.run_side_by_side([lambda: 1, lambda: 2], "cpu", costs=[1.0])


def test_run_side_by_side_in_processes_keeps_the_order_and_raises_a_tasks_error() -> None:
    import math
    from functools import partial

    done = train.run_side_by_side([partial(math.sqrt, v) for v in (9.0, 4.0, 1.0)], workers=2,
                                  costs=[1, 3, 2], processes="roots")  # fmt: skip
    assert done == [3.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="math domain error"):
        train.run_side_by_side([partial(math.sqrt, -1.0), partial(math.sqrt, 1.0)], workers=2,
                               processes="roots")  # fmt: skip


def test_run_side_by_side_starts_the_costliest_first_and_keeps_the_order_of_results() -> None:
    import threading

    started, lock, pair = [], threading.Lock(), threading.Barrier(2, timeout=10)

    def task(i: int) -> int:
        with lock:
            started.append(i)
        pair.wait()  # two at a time: neither finishes before the other has started
        return i * 10

    tasks = [lambda i=i: task(i) for i in range(4)]
    got = train.run_side_by_side(tasks, "cpu", workers=2, costs=[1.0, 5.0, 2.0, 9.0])
    assert got == [0, 10, 20, 30]  # the caller's order
    assert set(started[:2]) == {3, 1} and set(started[2:]) == {0, 2}  # the costliest first


def test_training_flops_rank_the_targets_by_their_work_on_a_dataset() -> None:
    """The max-pooling CNN (5x5 convolutions) costs most and the small leaky MLP least; a longer
    recipe (Fashion-MNIST's) costs more; nothing is drawn from the global generator."""
    from reversenet_utils.models import TARGETS

    state = torch.random.get_rng_state()
    mnist = {n: train.training_flops(n, "mnist", 60_000) for n in TARGETS}
    assert torch.equal(torch.random.get_rng_state(), state)
    assert max(mnist, key=mnist.get) == "cnn_pool" and min(mnist, key=mnist.get) == "mlp_leaky"
    assert train.training_flops("cnn_pool", "fashion_mnist", 60_000) == pytest.approx(
        mnist["cnn_pool"] * 10 / 3
    )
    assert train.training_flops("cnn_pool", "mnist", 60_000, epochs=1) == pytest.approx(
        mnist["cnn_pool"] / 3
    )
