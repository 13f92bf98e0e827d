"""Rendering: Adam on a parameterisation against an objective, with transformation robustness,
BatchNorm folded into the convolutions for the run, intermediate frames and an animation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..optimise import total_variation
from ..progress import progress_bar
from .objectives import OUTPUT, Objective
from .hooks import _Recorder
from .param import ImageParam
from .transform import blur_penalty


def _foldable(model: nn.Module, keep: Sequence[str]) -> list[tuple[str, str]]:
    """``(convolution, normalisation)`` module names where a ``BatchNorm2d`` reads nothing but one
    convolution's output (an ``nn.Conv2d``, or a subclass calling ``F.conv2d`` on its own weight);
    none where ``torch.fx`` cannot trace."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    # e.g. data-dependent control flow: nothing folded, the model runs as it is (same results,
    # slower)
    except Exception:
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if (
            node.op != "call_module"
            or type(modules.get(node.target)) is not nn.BatchNorm2d
            or len(node.args) != 1
        ):
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or len(src.users) != 1:
            continue
        if src.op == "call_module":
            conv = src.target
        elif (
            src.op == "call_function"
            and src.target in (torch.conv2d, F.conv2d)
            and isinstance(src.args[1], torch.fx.Node)
            and src.args[1].op == "get_attr"
            and len(src.args[1].users) == 1
        ):
            conv = src.args[1].target.rpartition(".")[0]
        else:
            continue
        if isinstance(modules.get(conv), nn.Conv2d) and conv not in keep:
            pairs.append((conv, node.target))
    return pairs


@contextmanager
def folded_batchnorm(model: nn.Module, keep: Sequence[str] = ()) -> Iterator[nn.Module]:
    """Within the block, ``model`` (frozen, in eval mode) runs with every ``BatchNorm2d`` that reads
    only one convolution's output folded into that convolution's weight and bias: the same function
    to float rounding, minus a memory-bound pass per normalisation forward and backward
    (EfficientNet-Lite0's 49: a gradient step on 4 images at 236 px took 67 ms folded against 88-116
    ms unfolded, channels-last, on a 2-core CPU; logits agree to 1e-6).

    On leaving, the model is restored exactly: its own parameter objects, untouched, and its
    normalisation modules. Inside, each normalisation is an ``nn.Identity`` under its own name, so a
    hook there sees the same output; a convolution named in ``keep`` (a layer an objective records)
    is not folded, so its own output stays as it was.
    """
    if model.training:
        raise ValueError(
            "folded_batchnorm folds the running statistics of eval mode: call model.eval() first "
            "(in training mode BatchNorm normalises by each batch's own statistics)"
        )
    # (conv, its weight, its bias, the normalisation's parent, its name, the normalisation)
    saved = []
    try:
        with torch.no_grad():
            for conv_name, bn_name in _foldable(model, keep):
                conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
                parent_name, _, leaf = bn_name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                saved.append((conv, conv.weight, conv.bias, parent, leaf, bn))
                scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(
                    bn.running_var + bn.eps
                )
                shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.weight = nn.Parameter(
                    conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1))),
                    requires_grad=False,
                )
                conv.bias = nn.Parameter(
                    (bias - bn.running_mean) * scale + shift, requires_grad=False
                )
                setattr(parent, leaf, nn.Identity())
        yield model
    finally:
        for conv, weight, bias, parent, leaf, bn in reversed(saved):
            conv.weight, conv.bias = weight, bias  # a registered parameter may be set back to None
            setattr(parent, leaf, bn)


# --- rendering -----------------------------------------------------------------------------------


@dataclass
class RenderResult:
    """What :func:`render` returns: final images, the objective per step, frames, timing."""

    images: torch.Tensor  # (B, C, H, W) in [0, 1], on the CPU
    objective: torch.Tensor  # (B,) the objective on the final, untransformed images
    # batch-mean objective per step (transformed)
    history: list[float] = field(default_factory=list)
    frames: list[torch.Tensor] = field(default_factory=list)  # (B, C, H, W) snapshots
    seconds: float = math.nan


def render(
    model: nn.Module,
    objective: Objective,
    batch: int = 1,
    size: int = 224,
    channels: int = 3,
    param: str = "fft",
    steps: int = 256,
    lr: float = 0.05,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tv_weight: float = 0.0,
    blur_weight: float = 0.0,
    frame_every: int = 0,
    seed: int = 0,
    desc: str = "rendering",
) -> RenderResult:
    """Maximise ``objective`` over a batch of ``batch`` images of a frozen ``model`` with Adam.

    ``transform`` (e.g. :func:`robustness`) is applied at every step, ``preprocess`` (e.g. ImageNet
    normalisation) right before the model. ``tv_weight`` / ``blur_weight`` subtract smoothness
    penalties. Every ``frame_every`` steps a snapshot is kept for :func:`save_gif`. The model is
    frozen (``requires_grad_(False)``) and left so; its train/eval mode is restored.

    Raises:
        FloatingPointError: the objective became NaN or inf (names the step and the learning rate).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = next(model.parameters()).device
    image = ImageParam(
        batch, size, channels, param, generator=torch.Generator().manual_seed(seed)
    ).to(device)
    opt = torch.optim.Adam(image.parameters(), lr=lr)
    preprocess = preprocess or (lambda x: x)
    was_training = model.training
    result = RenderResult(images=torch.empty(0), objective=torch.empty(0))
    # on leaving, even by an error: the model's mode, its normalisations, no hooks
    with ExitStack() as restore:
        restore.callback(model.train, was_training)
        model.eval().requires_grad_(False)
        # the same function, fewer passes
        restore.enter_context(folded_batchnorm(model, objective.layers))
        recorder = _Recorder(model, objective.layers)
        restore.callback(recorder.close)
        torch.manual_seed(seed)
        start = time.perf_counter()
        for step in progress_bar(range(steps), desc=desc, unit="step", mininterval=1.0):
            x = image()
            if frame_every and step % frame_every == 0:
                result.frames.append(x.detach().cpu())
            # channels-last input: the CPU convolutions run about a third faster (measured on
            # EfficientNet-Lite0)
            out = model(
                preprocess(transform(x) if transform else x).contiguous(
                    memory_format=torch.channels_last
                )
            )
            score = objective({**recorder.activations, OUTPUT: out})
            if not torch.isfinite(score).all():
                raise FloatingPointError(
                    f"objective {objective.name} became {score.tolist()} at step {step}; lower "
                    f"lr={lr}"
                )
            loss = -score.sum()
            if tv_weight:
                loss = loss + tv_weight * total_variation(x).sum()
            if blur_weight:
                loss = loss + blur_weight * blur_penalty(x).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            result.history.append(score.mean().item())
        with torch.no_grad():
            x = image()
            out = model(preprocess(x))
            result.objective = objective({**recorder.activations, OUTPUT: out}).cpu()
            result.images = x.cpu()
            if frame_every:
                result.frames.append(result.images)
    result.seconds = time.perf_counter() - start
    return result


def save_gif(
    frames: Sequence[torch.Tensor], path: str | Path, index: int = 0, duration_ms: int = 80
) -> Path:
    """Write image ``index`` of every frame (each (B, C, H, W) in [0, 1]) as an animated GIF."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames: render with frame_every > 0")
    pictures = []
    for frame in frames:
        array = (frame[index].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        pictures.append(Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array))
    path = Path(path)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)
    return path
