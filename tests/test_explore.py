"""The explorer's logic without a browser: input conversion, drawing, the grid of reconstructions,
rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reversenet_utils.analytic import invert
from reversenet_utils.explore import (
    FAST_METHODS,
    Explorer,
    Sketch,
    as_digit,
    depth_labels,
    feature_image,
    grid_figure,
    mnist_like,
    png,
    single_thread,
)
from reversenet_utils.models import TARGETS, build_target
from reversenet_utils.progress import BATCH_ENV, progress_bar, widget_front_end
from reversenet_utils.progressive import InverseChain, chain_label, split_blocks


def _explorer() -> Explorer:
    """mlp_leaky with random weights, its pseudo-inverses and an untrained chain: the grid's
    plumbing, fast."""
    torch.manual_seed(0)
    net = build_target("mlp_leaky").eval().requires_grad_(False)
    ends = TARGETS["mlp_leaky"].block_ends
    chain = InverseChain(split_blocks(net, ends))
    # the inverse of net[:end] is its last `end` layers (as Explorer.load builds them)
    full = invert(net)
    inverses = {
        ("pinv", "mlp_leaky", k): full[len(net) - end :] for k, end in enumerate(ends, start=1)
    }
    inverses.update(
        {
            (chain_label("real"), "mlp_leaky", k): (lambda f, k=k: chain(f, k))
            for k in range(1, len(ends) + 1)
        }
    )
    return Explorer({"mlp_leaky": net}, inverses)


def test_the_grid_holds_every_method_target_and_depth() -> None:
    explorer = _explorer()
    net = explorer.nets["mlp_leaky"]
    x = torch.zeros(28, 28)
    x[6:22, 12:16] = 1.0  # a "1"
    grid = explorer.run(x)
    # in FAST_METHODS' order, only those given
    assert explorer.methods == [
        "pinv",
        chain_label("real"),
    ]
    assert set(grid.reconstructions) == {
        (m, "mlp_leaky", k) for m in explorer.methods for k in range(1, 4)
    }
    assert all(
        r.shape == (28, 28) and 0 <= r.min() and r.max() <= 1 for r in grid.reconstructions.values()
    )
    assert torch.allclose(grid.probabilities["mlp_leaky"].sum(), torch.tensor(1.0))
    assert {k for _, k in grid.features} == {1, 2, 3} and grid.seconds > 0
    # each cell is that method's inverse of that block's output, clipped
    expected = invert(net[:3])(net[:3](x.reshape(1, 1, 28, 28))).reshape(28, 28).clamp(0, 1)
    assert torch.allclose(grid.reconstructions["pinv", "mlp_leaky", 1], expected, atol=1e-5)
    # another digit changes the probabilities and the pictures
    other = explorer.run(x.T.contiguous())
    assert not torch.equal(other.probabilities["mlp_leaky"], grid.probabilities["mlp_leaky"])
    assert not torch.equal(
        other.reconstructions["pinv", "mlp_leaky", 1], grid.reconstructions["pinv", "mlp_leaky", 1]
    )
    assert set(explorer.run(x, methods=["pinv"]).reconstructions) == {
        ("pinv", "mlp_leaky", k) for k in range(1, 4)
    }
    with pytest.raises(ValueError, match="unknown methods"):
        explorer.run(x, methods=["magic"])
    fig = grid_figure(grid, explorer, depth="block 2")
    assert len(fig.axes) == (2 + len(explorer.methods)) * 2
    assert explorer.optimise(x, "mlp_leaky", 1, steps=3).shape == (28, 28)
    with pytest.raises(ValueError, match="no block boundary"):
        explorer.optimise(x, "mlp_leaky", 9)


def test_one_digit_runs_on_one_thread_and_restores_the_count() -> None:
    before = torch.get_num_threads()
    with single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_bad_digits_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="28x28"):
        as_digit(torch.zeros(32, 32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_digit(torch.full((28, 28), 255.0))
    with pytest.raises(ValueError, match="NaN"):
        as_digit(torch.full((28, 28), float("nan")))
    assert as_digit(np.zeros((1, 28, 28))).shape == (1, 1, 28, 28)


def test_pictures_become_centred_mnist_digits() -> None:
    # dark ink on white paper, off-centre, 0-255, RGB
    paper = np.full((200, 120, 3), 255, dtype=np.uint8)
    paper[20:120, 10:40] = 0
    digit = mnist_like(paper)
    assert digit.shape == (28, 28) and digit.max() == 1 and digit.min() == 0
    rows, cols = torch.nonzero(digit > 0.5, as_tuple=True)
    assert rows.max() - rows.min() + 1 == 20  # longer side scaled to 20 px, as MNIST's
    ys, xs = torch.arange(28.0), torch.arange(28.0)
    cy, cx = (digit.sum(1) @ ys) / digit.sum(), (digit.sum(0) @ xs) / digit.sum()
    assert abs(cy - 13.5) <= 0.6 and abs(cx - 13.5) <= 0.6  # centre of mass at the centre
    light = np.zeros((50, 50))  # light ink on black, 0-1, grey: same digit shape either way
    light[10:40, 20:25] = 1.0
    assert torch.allclose(mnist_like(light), mnist_like(1.0 - light), atol=1e-6)
    rgba = np.zeros((40, 40, 4))  # black strokes on a transparent background (a typical PNG)
    rgba[5:35, 18:22, 3] = 1.0
    assert mnist_like(rgba).max() == 1
    with pytest.raises(ValueError, match="no ink"):
        mnist_like(np.zeros((28, 28)))
    with pytest.raises(ValueError, match="H x W"):
        mnist_like(np.zeros((28, 28, 2)))


def test_a_sketch_inks_continuous_strokes() -> None:
    sketch = Sketch(size=100, radius=3)
    assert sketch.empty
    with pytest.raises(ValueError, match="no ink"):
        sketch.digit()
    sketch.line(10, 50, 90, 50)  # one fast move: a continuous horizontal bar
    assert sketch.pixels[50, 10:91].min() == 1 and sketch.pixels[40].max() == 0
    sketch.line(50, 50, 50, 50)  # a click: a dot
    assert sketch.digit().shape == (28, 28)
    sketch.clear()
    assert sketch.empty


def test_features_and_pngs_render() -> None:
    assert feature_image(torch.randn(16, 14, 14)).shape == (4 * 15 - 1, 4 * 15 - 1)
    assert feature_image(torch.randn(10)).shape == (4, 4)
    image = feature_image(torch.tensor([-2.0, 0.0, 2.0, 1.0]))
    assert image.flatten().tolist() == [0.0, 0.5, 1.0, 0.75]
    with pytest.raises(ValueError, match="features of one image"):
        feature_image(torch.zeros(2, 2))
    data = png(torch.rand(28, 28), size=56)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert depth_labels(4) == ["block 1", "block 2", "block 3", "logits"]
    assert set(FAST_METHODS) >= {"pinv", chain_label("noise")}


def test_progress_bars_are_text_outside_a_widget_front_end(monkeypatch) -> None:
    assert not widget_front_end()  # pytest is no Jupyter kernel
    monkeypatch.setenv(BATCH_ENV, "1")
    assert not widget_front_end()
    with progress_bar(total=2, disable=True) as bar:
        assert type(bar).__module__ == "tqdm.std"


def test_explorer_load_refuses_targets_without_blocks(ctx) -> None:
    with pytest.raises(ValueError, match="block boundaries"):
        Explorer.load(ctx, targets=["judge_cnn"], train_images=torch.zeros(2000, 1, 28, 28))
