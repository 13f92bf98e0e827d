"""Notebook 06's stages: what early and late channels and whole classes of an ImageNet network
"want to see", why the parameterisation matters, what batching saves, and the same on an MNIST
target.

Each stage renders (:func:`~reversenet_utils.featureviz.render.render`) and returns the results
with the plain numbers the results file records; :func:`labelled_row` draws a row of them. The
claims made from the numbers live in :mod:`reversenet_utils.claims.featureviz`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from ..notebook import AT_LEAST_1, FRACTION, require
from .nets import ImageNetNet
from .objectives import channel, class_logit
from .render import RenderResult, render
from .transform import robustness

__all__ = [
    "check_parameters",
    "labelled_row",
    "render_channels",
    "channel_metrics",
    "channel_figure",
    "class_probabilities",
    "render_classes",
    "naive_pixels",
    "batched_speed",
    "mnist_classes",
]


def check_parameters(params: Mapping[str, Any]) -> None:
    """Notebook 06's parameters beyond their types (``notebook.require``)."""
    counts = ("steps", "channel_steps", "n_channels", "speed_images", "speed_size", "speed_steps",
              "mnist_steps", "frame_every")  # fmt: skip
    require(
        params,
        {
            **dict.fromkeys(counts, AT_LEAST_1),
            "size": (lambda v: v >= 64, ">= 64 (ImageNet networks need 64 x 64 pixels or more)"),
            "classes": (
                lambda v: 1 <= len(v) <= 8 and all(0 <= c < 1000 for c in v),
                "1-8 ImageNet class indices in 0..999",
            ),
            "lr": (lambda v: v > 0, "> 0"),
            "min_probability": FRACTION,
        },
    )


def labelled_row(images: torch.Tensor, titles: Sequence[str], suptitle: str) -> Figure:
    """One row of RGB images (``(B, 3, H, W)`` in [0, 1]) with a title each."""
    fig, axes = plt.subplots(1, len(images), figsize=(2.4 * len(images), 2.8), squeeze=False)
    for ax, image, title in zip(axes[0], images, titles):
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def render_channels(
    net: ImageNetNet,
    n_channels: int,
    size: int,
    steps: int,
    lr: float,
    transform: Callable[[torch.Tensor], torch.Tensor],
    seed: int,
) -> dict[str, RenderResult]:
    """Channels ``0..n_channels-1`` of the network's early and of its late layer, each a batch of
    one image per channel: ``{"early": result, "late": result}``."""
    units = list(range(n_channels))
    return {
        depth: render(
            net.model,
            channel(name, units),
            batch=n_channels,
            size=size,
            steps=steps,
            lr=lr,
            transform=transform,
            preprocess=net.preprocess,
            seed=seed,
            desc=f"{depth} layer {name}",
        )  # fmt: skip
        for depth, name in (("early", net.early), ("late", net.late))
    }


def channel_metrics(
    net: ImageNetNet, results: Mapping[str, RenderResult]
) -> dict[str, dict[str, Any]]:
    """What the results file records of each layer's channels: the layer, the objective each
    channel reached and where the batch started, and the seconds per image."""
    return {
        depth: {
            "layer": net.early if depth == "early" else net.late,
            "objective": r.objective.tolist(),
            "objective_start": r.history[0],
            "seconds_per_image": r.seconds / len(r.images),
        }
        for depth, r in results.items()
    }


def channel_figure(net: ImageNetNet, depth: str, result: RenderResult) -> Figure:
    """The channels of one layer (``"early"`` or ``"late"``), titled with the objective reached."""
    name = net.early if depth == "early" else net.late
    values = result.objective.tolist()
    titles = [f"{name} ch {u}: {v:.2f}" for u, v in enumerate(values)]
    return labelled_row(
        result.images,
        titles,
        f"{net.name}, {depth} layer {name}: channels 0-{len(values) - 1} (objective reached)",
    )


@torch.no_grad()
def class_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    classes: Sequence[int],
    preprocess: Callable | None = None,
) -> torch.Tensor:
    """The model's probability of class ``classes[i]`` in image ``i`` (untransformed), on the
    CPU."""
    device = next(model.parameters()).device
    x = images.to(device)
    probs = torch.softmax(model(preprocess(x) if preprocess else x), 1).cpu()
    return probs[torch.arange(len(classes)), list(classes)]


def render_classes(
    net: ImageNetNet,
    classes: Sequence[int],
    size: int,
    steps: int,
    lr: float,
    transform: Callable[[torch.Tensor], torch.Tensor],
    frame_every: int,
    seed: int,
) -> tuple[RenderResult, torch.Tensor]:
    """One image per class, its logit maximised (frames kept every ``frame_every`` steps), and the
    network's probability of that class in the final image."""
    result = render(
        net.model, class_logit(list(classes)), batch=len(classes), size=size, steps=steps, lr=lr,
        transform=transform, preprocess=net.preprocess, frame_every=frame_every, seed=seed,
        desc="classes",
    )  # fmt: skip
    return result, class_probabilities(net.model, result.images, classes, net.preprocess)


def naive_pixels(
    net: ImageNetNet, target_class: int, size: int, steps: int, lr: float, seed: int
) -> tuple[RenderResult, float]:
    """The same class objective and budget optimised on free pixels with no transformations, and
    the class's probability in the result."""
    result = render(
        net.model, class_logit(target_class), size=size, steps=steps, lr=lr, param="pixel",
        preprocess=net.preprocess, seed=seed, desc="naive pixels",
    )  # fmt: skip
    probability = class_probabilities(net.model, result.images, [target_class], net.preprocess)
    return result, probability[0].item()


def batched_speed(
    net: ImageNetNet,
    images: int,
    size: int,
    steps: int,
    lr: float,
    transform: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """Seconds per image to render ``images`` channels of the late layer in one batch, and one at a
    time, and their ratio."""
    common = {"size": size, "steps": steps, "lr": lr, "transform": transform,
              "preprocess": net.preprocess}  # fmt: skip
    batched = render(
        net.model, channel(net.late, list(range(images))), batch=images, desc="batched", **common
    ).seconds
    single = sum(
        render(net.model, channel(net.late, u), desc=f"one at a time ({u})", **common).seconds
        for u in range(images)
    )
    return {
        "images": images,
        "size": size,
        "steps": steps,
        "batched_s_per_image": batched / images,
        "single_s_per_image": single / images,
        "ratio": single / batched,
    }


def mnist_classes(
    cnn: nn.Module, steps: int, lr: float, seed: int
) -> tuple[RenderResult, torch.Tensor]:
    """The ten classes of an MNIST CNN, grayscale 28 x 28, the Fourier parameterisation with small
    jitter, scale and rotation (no padding: the dense layer needs 28 x 28), and the network's
    probability of each class in its image."""
    transform = robustness(pad=0, jitter=4, degrees=10, final_jitter=2, crop=False)
    result = render(
        cnn, class_logit(list(range(10))), batch=10, size=28, channels=1, steps=steps, lr=lr,
        transform=transform, seed=seed, desc="MNIST classes",
    )  # fmt: skip
    return result, class_probabilities(cnn, result.images, range(10))
