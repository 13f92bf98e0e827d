"""The explorer's logic (notebook 08, ``make app``): one digit in, every method's reconstruction
out.

No widgets here: the notebook only wires widgets to these functions, so everything below is tested
without a browser.

- :class:`Explorer` holds what notebooks 01-04 trained and saved (targets, inverse chains, inverse
  weights; whatever is missing is trained, with a progress bar) and the analytic inverses of
  notebook 02 built on load. :meth:`Explorer.run` maps one image to a :class:`Grid`: each target's
  class probabilities, what each block keeps (its features, as an image) and each fast method's
  reconstruction from each block boundary, timed. :meth:`Explorer.optimise` is the slow method
  (L-BFGS feature matching), on demand.
- :func:`mnist_like` turns a drawing or an uploaded picture into an MNIST digit (ink bounding box
  scaled to 20 px, centred by its centre of mass in 28 x 28, as MNIST was made); :class:`Sketch` is
  the drawing surface's pixels, stroke by stroke.
- :func:`feature_image`, :func:`png` and :func:`grid_figure` render features, images and the static
  panel.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .analytic import boundary_inverses
from .context import Context
from .inverse_weights import SIGMOID_MLP_LAYERS, load_inverse_weights
from .labels import CHAIN_NOISE, CHAIN_REAL, INVERSE_WEIGHTS, MATCHING, PINV, PRIOR, chain_label
from .models import TARGETS
from .optimise import match_features
from .metrics import psnr
from .notebook import AT_LEAST_0, AT_LEAST_1, require
from .progressive import forward_features, load_or_train_chain, regime_sampler, split_blocks
from .train import load_target

__all__ = [
    "DEFAULT_TARGETS",
    "FAST_METHODS",
    "OPTIMISATION",
    "Grid",
    "Explorer",
    "single_thread",
    "as_digit",
    "mnist_like",
    "picture_scale",
    "Sketch",
    "feature_image",
    "png",
    "grid_figure",
    "depth_labels",
    "measure_latency",
    "latency_table",
    "best_fast_methods",
    "grid_summary",
    "check_parameters",
]

#: the targets of notebook 07 (every one with block boundaries and a saved inverse chain)
DEFAULT_TARGETS = ("mlp_leaky", "mlp_sigmoid", "cnn_nopool", "cnn_pool")
#: the methods that answer within a stroke: analytic and learned (notebooks 02, 03, 04)
FAST_METHODS = (PINV, PRIOR, INVERSE_WEIGHTS, CHAIN_REAL, CHAIN_NOISE)
#: the slow one, on a button: feature matching by L-BFGS (notebooks 02, 04, 07)
OPTIMISATION = MATCHING

Inverse = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block on one CPU thread (PyTorch's intra-op threads), then restore the number it
    had."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def depth_labels(n_blocks: int) -> list[str]:
    """``["block 1", ..., "block K-1", "logits"]``: the names of a target's block boundaries."""
    return [f"block {k}" for k in range(1, n_blocks)] + ["logits"]


@dataclass
class Grid:
    """What :meth:`Explorer.run` returns for one image."""

    image: torch.Tensor  # (28, 28) in [0, 1]
    probabilities: dict[str, torch.Tensor]  # target -> (10,)
    features: dict[tuple[str, int], torch.Tensor]  # (target, k) -> 2-D image of block k's output
    # (method, target, k) -> (28, 28), clipped to [0, 1]
    reconstructions: dict[tuple[str, str, int], torch.Tensor]
    seconds: float = math.nan  # wall time of the whole grid
    # method -> its share of that time
    method_seconds: dict[str, float] = field(default_factory=dict)


def as_digit(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``image`` as one MNIST-shaped digit ``(1, 1, 28, 28)`` float32; shapes ``(28, 28)``, ``(1,
    28, 28)`` and ``(1, 1, 28, 28)`` are accepted, values must be finite and in [0, 1]."""
    x = torch.as_tensor(np.asarray(image) if isinstance(image, np.ndarray) else image).float()
    if x.shape[-2:] != (28, 28) or x.numel() != 784:
        raise ValueError(
            f"the explorer takes one 28x28 digit, shape (28, 28) or (1, 28, 28), got "
            f"{tuple(x.shape)}; "
            "use mnist_like() to turn a drawing or a picture into one"
        )
    if not torch.isfinite(x).all():
        raise ValueError("the digit has NaN or infinite pixels")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(
            f"pixels must lie in [0, 1] (MNIST's range), got "
            f"{x.min().item():.3g}..{x.max().item():.3g}; "
            "scale a 0-255 picture by 1/255, or use mnist_like()"
        )
    return x.reshape(1, 1, 28, 28)


class Explorer:
    """Every target's blocks and every fast inverse of them, ready for one image at a time.

    ``inverses[(method, target, k)]`` maps block ``k``'s output (a batch) to images; build it with
    :meth:`load`, which reuses what the notebooks saved and trains what is missing.
    """

    def __init__(
        self, nets: dict[str, nn.Sequential], inverses: dict[tuple[str, str, int], Inverse]
    ) -> None:
        self.nets = nets
        self.blocks = {
            name: split_blocks(net, TARGETS[name].block_ends) for name, net in nets.items()
        }
        self.inverses = inverses
        self.device = next(next(iter(nets.values())).parameters()).device
        self.methods = [m for m in FAST_METHODS if any(key[0] == m for key in inverses)]

    @classmethod
    def load(
        cls,
        ctx: Context,
        targets: Sequence[str] = DEFAULT_TARGETS,
        train_images: torch.Tensor | None = None,
        chain_steps: int = 0,
        prior_images: int = 10_000,
        damping_grid: Sequence[float] = (1e-4, 1e-2, 0.1, 1.0, 10.0),
        seed: int = 0,
        notebook: str = "08_explore",
    ) -> Explorer:
        """Load (or train, where missing) the targets and their inverses for the context's dataset,
        on its device.

        ``train_images`` (MNIST training digits) feed the prior pre-image's statistics (the first
        ``prior_images``; the next 1 000 choose each boundary's ridge from ``damping_grid``) and any
        inverse that must be trained; ``chain_steps`` is the chains' budget (0: each target's
        ``TargetSpec.chain_steps``, what notebooks 04 and 07 save).
        """
        unknown = [t for t in targets if t not in TARGETS or not TARGETS[t].block_ends]
        if not targets or unknown:
            raise ValueError(
                f"targets {unknown or list(targets)}: choose targets with block boundaries, "
                f"{[n for n, s in TARGETS.items() if s.block_ends]}"
            )
        device = ctx.device
        if train_images is None:
            train_images = ctx.load("train").images
        if not 100 <= prior_images <= len(train_images) - 1000:
            raise ValueError(
                f"prior_images must be in 100..{len(train_images) - 1000} (the next 1 000 choose "
                f"the ridge)"
            )
        nets = {name: load_target(ctx, name) for name in targets}
        inverses: dict[tuple[str, str, int], Inverse] = {}
        generator = torch.Generator().manual_seed(seed)
        held_out = train_images[prior_images : prior_images + 1000]
        for name, net in nets.items():
            ends = TARGETS[name].block_ends
            blocks = split_blocks(net, ends)
            found = boundary_inverses(
                net, ends, train_images[:prior_images], held_out, damping_grid
            )
            inverses.update({(method, name, k): inverse for (method, k), inverse in found.items()})
            for regime in ("real", "noise"):  # notebook 04: the inverse chains
                chain = load_or_train_chain(
                    ctx,
                    name,
                    net,
                    blocks,
                    regime,
                    chain_steps or TARGETS[name].chain_steps,
                    regime_sampler(regime, generator, device, real=train_images),
                    seed=seed,
                    notebook=notebook,
                )
                for k in range(1, len(blocks) + 1):
                    inverses[chain_label(regime), name, k] = lambda f, chain=chain, k=k: chain(f, k)
            kinds = [type(m).__name__ for m in net]
            # notebook 03: inverse weights, from the last hidden layer
            if kinds == SIGMOID_MLP_LAYERS and 5 in ends:
                weights = load_inverse_weights(
                    ctx, net, name, train_images, notebook=notebook, seed=seed
                )
                inverses["inverse weights", name, ends.index(5) + 1] = lambda h, w=weights: w(h)
        return cls(nets, inverses)

    def depths(self, name: str) -> list[str]:
        return depth_labels(len(self.blocks[name]))

    @torch.inference_mode()
    def run(self, image: torch.Tensor | np.ndarray, methods: Sequence[str] | None = None) -> Grid:
        """Class probabilities, features and every (chosen) fast method's reconstruction of one
        digit.

        Runs on one CPU thread: one digit is too little work to share, and threads that wait for
        each other are slow whenever the machine is busy (on a loaded 2-core CPU, median 23 ms with
        one thread against 105-277 ms with two, spikes of 2 s).
        """
        with single_thread():
            return self._run(image, methods)

    def _run(self, image: torch.Tensor | np.ndarray, methods: Sequence[str] | None) -> Grid:
        methods = list(self.methods if methods is None else methods)
        bad = [m for m in methods if m not in FAST_METHODS]
        if bad:
            raise ValueError(
                f"unknown methods {bad}: choose from {list(FAST_METHODS)} ({OPTIMISATION!r} is "
                f"explore.optimise)"
            )
        x = as_digit(image).to(self.device)
        start = time.perf_counter()
        probabilities, features, recons = {}, {}, {}
        method_seconds = dict.fromkeys(methods, 0.0)
        for name, blocks in self.blocks.items():
            feats, _ = forward_features(blocks, x)
            probabilities[name] = torch.softmax(feats[-1][0], 0).cpu()
            for k in range(1, len(blocks) + 1):
                features[name, k] = feature_image(feats[k][0]).cpu()
                for method in methods:
                    inverse = self.inverses.get((method, name, k))
                    if inverse is None:
                        continue
                    t = time.perf_counter()
                    recons[method, name, k] = inverse(feats[k]).reshape(28, 28).clamp(0, 1).cpu()
                    method_seconds[method] += time.perf_counter() - t
        return Grid(
            x[0, 0].cpu(),
            probabilities,
            features,
            recons,
            time.perf_counter() - start,
            method_seconds,
        )

    def optimise(
        self, image: torch.Tensor | np.ndarray, name: str, k: int, steps: int = 100
    ) -> torch.Tensor:
        """Feature matching from block ``k`` of ``name`` (L-BFGS, no prior, from grey): the slow
        method, with its own progress bar. Returns the (28, 28) reconstruction."""
        if name not in self.blocks or not 1 <= k <= len(self.blocks[name]):
            raise ValueError(f"no block boundary k={k} of target {name!r}")
        x = as_digit(image).to(self.device)
        feature_fn = nn.Sequential(*self.blocks[name][:k])
        with torch.no_grad():
            f = feature_fn(x)
        with single_thread():
            found = match_features(feature_fn, f, steps=steps, dtype=torch.float32)
        return found.images.reshape(28, 28).clamp(0, 1).cpu()


# --- input: drawings and pictures --------------------------------------------------------------


def picture_scale(picture: np.ndarray | torch.Tensor) -> float:
    """The white level of ``picture``, read from its type, never guessed from one pixel: an integer
    picture's from its dtype (8-bit 255, 16-bit 65535; a 32-bit array, as Pillow opens 16-bit files,
    255 or 65535 by its largest value), a boolean's 1; a floating-point picture is [0, 1], values up
    to 1/255 above 1 (resampling) clipped, or [0, 255].

    Raises:
        ValueError: a floating-point picture in neither range, or a 32-bit one above 65535 (the
        message says what to do).
    """
    a = picture.numpy() if isinstance(picture, torch.Tensor) else np.asarray(picture)
    if a.dtype == np.bool_:
        return 1.0
    if np.issubdtype(a.dtype, np.integer):
        if a.dtype.itemsize <= 2:
            return float(np.iinfo(a.dtype).max)
        top = int(a.max()) if a.size else 0
        if top <= 255:
            return 255.0
        if top <= 65535:
            return 65535.0
        raise ValueError(
            f"a {a.dtype} picture with values up to {top}: convert it to 8 or 16 bits per channel "
            f"first"
        )
    top = float(np.max(a)) if a.size else 0.0
    if top <= 1 + 1 / 255:
        return 1.0
    if top <= 255 + 1e-6:
        return 255.0
    raise ValueError(
        f"a floating-point picture with values up to {top:g}: give it in [0, 1] or [0, 255]"
    )


def mnist_like(picture: np.ndarray | torch.Tensor, ink_threshold: float = 0.1) -> torch.Tensor:
    """A picture (H x W grey, or H x W x 3/4 colour; its white level from :func:`picture_scale`) as
    an MNIST digit ``(28, 28)`` in [0, 1].

    Dark ink on a light background is inverted first (MNIST is light on dark); then, as MNIST was
    made, the ink's bounding box is scaled so that its longer side is 20 px and placed in 28 x 28
    with its centre of mass at the centre.

    Raises:
        ValueError: not an image, or no ink (an empty canvas).
    """
    raw = (
        picture.detach().cpu().numpy() if isinstance(picture, torch.Tensor) else np.asarray(picture)
    )
    a = raw.astype(np.float64)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 2:
        raise ValueError(
            f"a picture is H x W (grey) or H x W x 3/4 (colour), got shape {np.shape(picture)}"
        )
    if not np.isfinite(a).all():
        raise ValueError("the picture has NaN or infinite pixels")
    if a.min() < 0:
        raise ValueError(
            f"the picture has negative pixels (down to {a.min():g}): give it in [0, 1] or 0-255"
        )
    a = np.clip(a / picture_scale(raw), 0.0, 1.0)
    if a.ndim == 3:  # grey, composited over white paper where there is an alpha channel
        alpha = a[..., 3] if a.shape[2] == 4 else 1.0
        a = a[..., :3].mean(2) * alpha + (1.0 - alpha)

    def background(img: np.ndarray) -> float:
        return float(np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])))

    if background(a) > 0.5:  # dark ink on light paper: MNIST is light ink on black
        a = 1.0 - a
    a = np.clip(a - background(a), 0, None)
    if a.max() <= 0:
        raise ValueError("no ink: draw a digit (or pick a picture with one) first")
    a = a / a.max()
    rows, cols = np.nonzero(a > ink_threshold)
    a = a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = 20.0 / max(a.shape)
    size = (max(1, round(a.shape[0] * scale)), max(1, round(a.shape[1] * scale)))
    box = torch.from_numpy(a)[None, None]
    if scale < 1:  # shrinking: average the pixels each output pixel covers
        small = torch.nn.functional.interpolate(box, size=size, mode="area")[0, 0]
    else:
        small = torch.nn.functional.interpolate(
            box, size=size, mode="bilinear", align_corners=False
        )[0, 0]
    small = small.clamp(0, 1)
    mass = small.sum()
    ys, xs = torch.arange(size[0], dtype=small.dtype), torch.arange(size[1], dtype=small.dtype)
    cy, cx = (small.sum(1) @ ys) / mass, (small.sum(0) @ xs) / mass
    top, left = int(round(13.5 - cy.item())), int(round(13.5 - cx.item()))
    top, left = min(max(top, 0), 28 - size[0]), min(max(left, 0), 28 - size[1])
    digit = torch.zeros(28, 28, dtype=torch.float32)
    digit[top : top + size[0], left : left + size[1]] = small.float()
    return digit


class Sketch:
    """The pixels of a square drawing surface (``size`` x ``size``, ink in [0, 1]), stroke by
    stroke.

    :meth:`line` stamps a round pen of ``radius`` pixels along a segment (vectorised: every pixel's
    distance to the segment at once), so a fast mouse move still leaves a continuous stroke.
    """

    def __init__(self, size: int = 280, radius: float = 11.0) -> None:
        if size < 28 or radius <= 0:
            raise ValueError(f"size must be >= 28 and radius > 0, got {size}, {radius}")
        self.size, self.radius = size, radius
        self.pixels = np.zeros((size, size), dtype=np.float32)
        self._yy, self._xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def clear(self) -> None:
        self.pixels[:] = 0

    def line(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Ink the segment from (x0, y0) to (x1, y1) (pixel coordinates, x to the right, y down).

        Raises:
            ValueError: a coordinate is not a finite number (a NaN would ink nothing now and poison
                every later stroke's maximum); the drawing is left as it was.
        """
        points = (x0, y0, x1, y1)
        if not all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)
            for v in points
        ):
            raise ValueError(
                f"a stroke needs finite pixel coordinates (x0, y0, x1, y1), got {points!r}"
            )
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = (
            np.zeros_like(self._xx)
            if length2 == 0
            else np.clip(((self._xx - x0) * dx + (self._yy - y0) * dy) / length2, 0, 1)
        )
        dist = np.hypot(self._xx - (x0 + t * dx), self._yy - (y0 + t * dy))
        ink = np.clip(self.radius + 0.5 - dist, 0, 1)  # anti-aliased edge one pixel wide
        np.maximum(self.pixels, ink, out=self.pixels)

    def digit(self) -> torch.Tensor:
        """The drawing as an MNIST digit (:func:`mnist_like`)."""
        return mnist_like(self.pixels)

    @property
    def empty(self) -> bool:
        return not self.pixels.any()


# --- rendering -----------------------------------------------------------------------------------


def feature_image(f: torch.Tensor, max_channels: int = 16) -> torch.Tensor:
    """One block's output for one image as a 2-D picture in [0, 1] (0.5 = zero).

    Feature maps ``(C, H, W)``: the first ``max_channels`` channels tiled in a near-square grid; a
    vector ``(n,)``: folded into a near-square. Scaled by the largest magnitude, so signs show.
    """
    f = f.detach().float()
    if f.dim() == 3:
        c = min(len(f), max_channels)
        cols = math.ceil(math.sqrt(c))
        rows = math.ceil(c / cols)
        h, w = f.shape[1:]
        tiled = torch.zeros(rows * (h + 1) - 1, cols * (w + 1) - 1)
        for i in range(c):  # at most 16 tiles: a layout loop, not a loop over samples
            r, q = divmod(i, cols)
            tiled[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = f[i]
        f = tiled
    elif f.dim() == 1:
        side = math.ceil(math.sqrt(len(f)))
        f = torch.cat([f, f.new_zeros(side * side - len(f))]).reshape(side, side)
    else:
        raise ValueError(f"features of one image are (C, H, W) or (n,), got {tuple(f.shape)}")
    scale = f.abs().max().clamp_min(1e-12)
    return (0.5 + 0.5 * f / scale).clamp(0, 1)


def png(image: torch.Tensor, size: int = 112, cmap: str = "gray") -> bytes:
    """A 2-D image in [0, 1] as PNG bytes, ``size`` pixels on its longer side (nearest neighbour:
    pixels stay pixels), in a matplotlib colour map."""
    from matplotlib import colormaps
    from PIL import Image

    a = image.detach().cpu().float().clamp(0, 1).numpy()
    rgb = (colormaps[cmap](a)[..., :3] * 255).astype(np.uint8)
    h, w = a.shape
    scale = size / max(h, w)
    picture = Image.fromarray(rgb).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.NEAREST
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def grid_figure(
    grid: Grid, explorer: Explorer, depth: str = "block 1", methods: Sequence[str] | None = None
):
    """The explorer's panel as a matplotlib figure: the digit; per target (a column) its class
    probabilities, what the block at ``depth`` keeps and each method's reconstruction from there (a
    row each)."""
    import matplotlib.pyplot as plt

    methods = list(explorer.methods if methods is None else methods)
    names = list(explorer.blocks)
    fig, axes = plt.subplots(
        2 + len(methods),
        1 + len(names),
        figsize=(1.7 * (1 + len(names)), 1.6 * (2 + len(methods))),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(grid.image.numpy(), cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("input", fontsize=9)
    axes[1, 0].text(0.5, 0.5, f"what {depth}\nkeeps", ha="center", va="center", fontsize=9)
    for i, method in enumerate(methods, start=2):
        axes[i, 0].text(0.5, 0.5, method.replace(", ", ",\n"), ha="center", va="center", fontsize=9)
    for j, name in enumerate(names, start=1):
        p = grid.probabilities[name]
        axes[0, j].set_axis_on()
        axes[0, j].bar(range(10), p.numpy(), color="C0")
        axes[0, j].set_ylim(0, 1)
        axes[0, j].set_xticks(range(10))
        axes[0, j].tick_params(labelsize=6)
        axes[0, j].set_yticks([])
        axes[0, j].set_title(f"{name}: {int(p.argmax())} ({p.max():.0%})", fontsize=9)
        labels = explorer.depths(name)
        k = labels.index(depth) + 1 if depth in labels else None
        if k is None:
            axes[1, j].text(0.5, 0.5, f"no {depth}", ha="center", va="center", fontsize=8)
            continue
        axes[1, j].imshow(grid.features[name, k].numpy(), cmap="RdBu_r", vmin=0, vmax=1)
        for i, method in enumerate(methods, start=2):
            recon = grid.reconstructions.get((method, name, k))
            if recon is None:
                axes[i, j].text(0.5, 0.5, "–", ha="center", va="center", fontsize=12, color="0.6")
            else:
                axes[i, j].imshow(recon.numpy(), cmap="gray", vmin=0, vmax=1)
    fig.suptitle(
        f"every method from {depth}: {grid.seconds * 1000:.0f} ms for the whole grid", fontsize=10
    )
    fig.tight_layout()
    return fig


# --- measurements of notebook 08 -----------------------------------------------------------------


def measure_latency(
    explorer: Explorer, images: torch.Tensor, digits: int, warm_up: int = 3, first: int = 0
) -> dict:
    """What one stroke costs: the whole grid of each of the first ``digits`` test ``images``, one at
    a time, after ``warm_up`` runs on image ``first`` (the first calls allocate). Returns
    ``{digits, median_ms, p90_ms, max_ms, per_method_ms}`` (each method's mean share, from a
    second pass)."""
    if not 1 <= digits <= len(images):
        raise ValueError(f"digits must be 1..{len(images)} (the images given), got {digits}")
    for _ in range(warm_up):
        explorer.run(images[first])
    times = torch.tensor([explorer.run(images[i]).seconds for i in range(digits)]) * 1000
    per_method = dict.fromkeys(explorer.methods, 0.0)
    for i in range(digits):
        for m, s in explorer.run(images[i]).method_seconds.items():
            per_method[m] += s * 1000 / digits
    return {
        "digits": digits,
        "median_ms": times.median().item(),
        "p90_ms": times.quantile(0.9).item(),
        "max_ms": times.max().item(),
        "per_method_ms": per_method,
    }


def latency_table(latency: dict) -> tuple[list[str], list[list[str]]]:
    """The header and rows of :func:`measure_latency`'s table (for ``plotting.markdown_table``)."""
    rows = [
        ["median, one digit's whole grid", f"{latency['median_ms']:.1f}"],
        ["90th percentile", f"{latency['p90_ms']:.1f}"],
        ["max", f"{latency['max_ms']:.1f}"],
    ]
    rows += [[f"of which {m} (mean)", f"{v:.1f}"] for m, v in latency["per_method_ms"].items()]
    return ["", "ms"], rows


def best_fast_methods(grid: Grid) -> dict[str, dict[str, list]]:
    """Per target, the fast method with the highest PSNR on the grid's digit from block 1 and from
    the logits: ``{target: {"block 1": [method, psnr], "logits": [method, psnr]}}`` (``["none",
    nan]`` where no method inverts that boundary)."""
    out = {}
    for name in dict.fromkeys(n for _, n, _ in grid.reconstructions):
        last = max(k for (_, n, k) in grid.reconstructions if n == name)
        out[name] = {}
        for label, k in (("block 1", 1), ("logits", last)):
            scored = {
                m: psnr(r[None, None], grid.image[None, None])
                for (m, n, kk), r in grid.reconstructions.items()
                if n == name and kk == k
            }
            best = max(scored.items(), key=lambda kv: kv[1]) if scored else ("none", math.nan)
            out[name][label] = [best[0], float(best[1])]
    return out


def grid_summary(grid: Grid, explorer: Explorer) -> dict:
    """What notebook 08's results record of one digit's grid: how many reconstructions, whether
    every one is a finite 28 x 28 image, the best fast method per target and boundary
    (:func:`best_fast_methods`) and each target's class probabilities."""
    return {
        "grid_reconstructions": len(grid.reconstructions),
        "grid_finite": all(
            r.shape == (28, 28) and bool(torch.isfinite(r).all())
            for r in grid.reconstructions.values()
        ),
        "best_fast": best_fast_methods(grid),
        "probabilities": {n: grid.probabilities[n].tolist() for n in explorer.blocks},
    }


def check_parameters(params: dict) -> None:
    """Notebook 08's parameters beyond their types (``notebook.require``)."""
    require(
        params,
        {
            "digit_index": (lambda v: 0 <= v < 10_000, "a test image, 0..9999"),
            "latency_digits": (lambda v: 1 <= v <= 10_000, "1..10000"),
            "opt_steps": AT_LEAST_1,
            "max_update_ms": (lambda v: v > 0, "> 0"),
            "chain_steps": AT_LEAST_0,
        },
    )
