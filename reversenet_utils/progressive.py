"""Block-wise, progressive inversion (notebook 04), after "Deep Neural Networks are Surprisingly
Reversible: A Baseline for Zero-Shot Inversion".

Cut the target into shallow blocks (:func:`split_blocks`, boundaries in ``models.TargetSpec``), give
each block a small inverse module (:class:`BlockInverse`, held in an :class:`InverseChain`), and
train the modules with (a) a per-block reconstruction loss, (b) an image loss through the chain of
inverses and (c) a cycle-consistency loss through the frozen target (:func:`progressive_losses`),
under a progressive or joint depth schedule (:func:`train_inverse_chain`, whose defaults are the
recipe). The training images come from :func:`regime_sampler`: real digits, or ``synthetic`` inputs
(zero-shot). :func:`load_or_train_chain` reuses a chain saved for the same target weights, or trains
it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .analytic import invert
from .artifacts import effective_recipe, inverse_checkpoint, inverse_identity, load_or_train
from .context import Context, fast_layout, in_fast_layout
from .checks import image_batch
from .labels import GAUSSIAN_NOISE, REGIMES, SCHEDULES, chain_label
from .layer_inverses import InverseAffine, InverseBatchNorm, InverseLinear
from .synthetic import structured_noise
from .train import GLOBAL_RNG, train_loop

__all__ = [
    "split_blocks",
    "block_shapes",
    "ends_with_pool",
    "forward_features",
    "exact_path_applies",
    "transposed_conv_design",
    "ExactPath",
    "AnalyticPath",
    "BlockInverse",
    "InverseChain",
    "invert_from_every_depth",
    "LossWeights",
    "progressive_losses",
    "schedule_depths",
    "train_inverse_chain",
    "REGIMES",
    "regime_sampler",
    "chain_label",
    "load_or_train_chain",
    "target_shapes",
]


def split_blocks(model: nn.Sequential, ends: Sequence[int]) -> list[nn.Sequential]:
    """Cut ``model`` into consecutive blocks ending (exclusively) at ``ends``; the last end is
    ``len(model)``."""
    ends = list(ends)
    if not ends or ends[-1] != len(model) or any(b <= a for a, b in zip([0, *ends], ends)):
        raise ValueError(
            f"ends must increase strictly and finish at len(model) = {len(model)}, got {ends}"
        )
    return [model[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def block_shapes(blocks: Sequence[nn.Module], in_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes (without batch) of the input and of each block's output: ``[in_shape, s_1, ...,
    s_K]``. A block is any module, run as a black box."""
    param = next((p for b in blocks for p in b.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    h = torch.zeros(1, *in_shape, device=device)
    shapes = [tuple(in_shape)]
    with torch.no_grad():
        for block in blocks:
            h = block(h)
            shapes.append(tuple(h.shape[1:]))
    return shapes


def target_shapes(blocks: Mapping[str, Sequence[nn.Sequential]]) -> dict[str, dict]:
    """Per target cut into ``blocks``, what a results file records of its shape: the number of
    blocks and whether its first layer is a convolution."""
    return {
        name: {"blocks": len(bs), "conv": isinstance(bs[0][0], nn.Conv2d)}
        for name, bs in blocks.items()
    }


def ends_with_pool(block: nn.Module) -> bool:
    """True for a block (an ``nn.Sequential``) whose last layer is ``MaxPool2d``: its inverse may
    use the pooling indices."""
    return (
        isinstance(block, nn.Sequential) and len(block) > 0 and isinstance(block[-1], nn.MaxPool2d)
    )


#: images per chunk of :func:`forward_features` (larger batches run chunk by chunk)
FEATURE_CHUNK = 1000


@torch.no_grad()
def forward_features(
    blocks: Sequence[nn.Sequential],
    x: torch.Tensor,
    upto: int | None = None,
    with_indices: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """``[x, f_1, ..., f_k]`` (outputs of the blocks) and, if asked, each pooling block's max
    indices.

    Indices are the *privileged* information of the MaxUnpool variant: they come from the forward
    pass of the very image that is being reconstructed.

    More than :data:`FEATURE_CHUNK` images run in chunks of that size, so that a whole test set's
    forward pass holds one chunk's intermediate maps at a time (the outputs are concatenated).
    """
    if len(x) > FEATURE_CHUNK:
        parts = [
            forward_features(blocks, chunk, upto, with_indices) for chunk in x.split(FEATURE_CHUNK)
        ]
        feats = [torch.cat([p[0][i] for p in parts]) for i in range(len(parts[0][0]))]
        return feats, [
            None if parts[0][1][i] is None else torch.cat([p[1][i] for p in parts])
            for i in range(len(parts[0][1]))
        ]
    feats, indices = [x], []
    for block in blocks[:upto]:
        if with_indices and ends_with_pool(block):
            pre = block[:-1](feats[-1])
            pool = block[-1]
            out, idx = F.max_pool2d(
                pre, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode,
                return_indices=True,
            )  # fmt: skip
            feats.append(out)
            indices.append(idx)
        else:
            feats.append(block(feats[-1]))
            indices.append(None)
    return feats, indices


def exact_path_applies(
    block: nn.Sequential, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> bool:
    """True for a block ``Conv2d -> leaky ReLU`` whose activation can be undone exactly and whose
    convolution can have a left inverse of the transposed convolution's footprint.

    Counting, per output phase of the stride: the transposed convolution has ``c_out * prod(ceil(k /
    s))`` weights per input channel, and being a left inverse asks ``c_in * prod(k + s * (ceil(k /
    s) - 1))`` equations of them (the composite kernel's support). With fewer weights than equations
    no such left inverse exists, even where the block is injective. (``cnn_nopool``'s first block:
    64 >= 36.)
    """
    if not (
        isinstance(block, nn.Sequential)
        and len(block) == 2
        and isinstance(block[0], nn.Conv2d)
        and isinstance(block[1], nn.LeakyReLU)
        and block[1].negative_slope > 0
        and block[0].groups == 1
        and block[0].dilation == (1, 1)
        and isinstance(block[0].padding, tuple)
        and math.prod(out_shape) >= math.prod(in_shape)
    ):
        return False
    conv = block[0]
    taps = [math.ceil(k / st) for k, st in zip(conv.kernel_size, conv.stride)]
    support = [k + st * (t - 1) for k, st, t in zip(conv.kernel_size, conv.stride, taps)]
    return conv.out_channels * math.prod(taps) >= conv.in_channels * math.prod(support)


def transposed_conv_design(z: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """The design matrix of ``conv`` (groups 1, dilation 1) on the inputs ``z``: row (image, pixel)
    of its output, column ``(c_out, kh, kw)`` of its weight; so ``design @ weight[:, ci].flatten()``
    is output channel ``ci``.

    A transposed convolution is the correlation of the stride-zero-inserted, ``k - 1 -
    padding``-padded input with the flipped kernel, so the columns are an ``unfold`` of that input
    with the kernel's taps reversed. Every entry is a value of ``z`` or zero (no arithmetic), 50x
    faster on this CPU than the transposed convolution of one-hot kernels (whose float64 kernel does
    not vectorise) for cnn_nopool's first block on 64 images.
    """
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = (
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.output_padding,
    )
    n, c, h, w = z.shape
    spread = z.new_zeros(n, c, (h - 1) * sh + 1, (w - 1) * sw + 1)
    spread[:, :, ::sh, ::sw] = z
    spread = F.pad(spread, (kw - 1 - pw, kw - 1 - pw + ow, kh - 1 - ph, kh - 1 - ph + oh))
    # (n, c * kh * kw, pixels), taps in the flipped kernel's order
    cols = F.unfold(spread, (kh, kw))
    cols = cols.reshape(n, c, kh, kw, -1).flip(2, 3).reshape(n, c * kh * kw, -1)
    return cols.transpose(1, 2).reshape(-1, c * kh * kw)


def fit_db(recon: torch.Tensor, target: torch.Tensor) -> float:
    """How well an exact path inverts a block: PSNR (dB) of ``recon`` against ``target`` over the
    target's own range (1 where it is flat)."""
    mse = (recon - target).pow(2).mean().item()
    span = (target.max() - target.min()).item() or 1.0
    return 10 * math.log10(span**2 / max(mse, 1e-30))


#: An exact path whose least-squares fit reaches this many dB is used; below it, the learned module
#: inverts.
EXACT_FIT_DB = 50.0


class ExactPath(nn.Module):
    """Left inverse of an injective ``Conv2d -> leaky ReLU`` block: the activation undone exactly,
    then a transposed convolution of the block's geometry, fitted by least squares (:meth:`fit`).

    The fit is a linear least-squares problem, solved exactly in float64 on a few dozen images of
    the training regime (noise does as well as digits: the map is injective, its left inverse does
    not depend on the data). Frozen after the fit; used only where the fit reached
    :data:`EXACT_FIT_DB` (``fit_db``, saved with the chain). It serves the block's *true* output
    only: on an estimate (a deeper inverse's output) the inverse activation multiplies the
    estimate's error on the negative side by ``1 / negative_slope``, so the chain goes through its
    learned module there.
    """

    def __init__(
        self, block: nn.Sequential, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        if not exact_path_applies(block, in_shape, out_shape):
            raise ValueError(
                f"an exact path needs an injective Conv2d -> leaky ReLU block, got {block}"
            )
        conv = block[0]
        self.negative_slope = float(block[1].negative_slope)
        self.in_shape = tuple(in_shape)
        # the block's bias is known: subtracted exactly, so the fit is of a purely linear map
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias.clone().double()[:, None, None])
        self.linear = nn.ConvTranspose2d(
            conv.out_channels,
            conv.in_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            bias=False,
        )
        # output_padding so that the transposed convolution lands on the input's size
        with torch.no_grad():
            produced = self.linear(torch.zeros(1, *out_shape)).shape[-2:]
        extra = tuple(i - o for i, o in zip(in_shape[1:], produced))
        if any(e < 0 or e >= st for e, st in zip(extra, conv.stride)):
            raise ValueError(f"no transposed convolution maps {out_shape} back to {in_shape}")
        self.linear.output_padding = extra
        self.linear.double().requires_grad_(False)
        # the fit's quality (dB of the block input's range); the chain uses the path only once it
        # is exact
        self.register_buffer("fit_db", torch.tensor(-math.inf, dtype=torch.float64))

    @property
    def is_exact(self) -> bool:
        """Whether the fit reached :data:`EXACT_FIT_DB`: only then does the chain use this path."""
        return bool(self.fit_db >= EXACT_FIT_DB)

    def undo_activation(self, f: torch.Tensor) -> torch.Tensor:
        """The convolution's output without its bias: the activation undone, the bias subtracted
        (float64)."""
        f = f.double()
        return torch.where(f >= 0, f, f / self.negative_slope) - self.bias

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(self.undo_activation(f)).to(f.dtype)

    @torch.no_grad()
    def fit(self, h: torch.Tensor, f: torch.Tensor) -> float:
        """Least-squares fit of the transposed convolution that maps the bias-free,
        activation-undone ``f`` to ``h`` (the block's input and output on the same images), solved
        exactly in float64: every weight's contribution is one column of the design matrix
        (:func:`transposed_conv_design`), then ``lstsq``. Every image gives one equation per pixel:
        a few dozen images determine the few hundred weights. Returns the fit's quality in dB of
        ``h``'s range, also kept in ``fit_db``."""
        z, target = self.undo_activation(f), h.double()
        design = transposed_conv_design(z, self.linear)  # (images * pixels, weights)
        weight = self.linear.weight  # (c_out, c_in, kh, kw)
        c_out, c_in, kh, kw = weight.shape
        for ci in range(c_in):  # every input channel of the block has its own slice of the kernel
            goal = target[:, ci].reshape(-1, 1)
            solution = torch.linalg.lstsq(design, goal).solution
            weight[:, ci] = solution.reshape(c_out, kh, kw)
        self.fit_db.fill_(fit_db(self.linear(z), target))
        return float(self.fit_db)


#: the most weights a dense block inverse may have (inputs x outputs of the block): beyond it,
#: cut the network at a smaller boundary
MAX_DENSE_WEIGHTS = 5 * 10**7


def _spatial_core(
    c_from: int, hw_from: tuple[int, ...], in_shape: tuple[int, ...], hidden: int
) -> tuple[nn.Module, nn.Module]:
    """The linear path and the residual from ``c_from`` maps of size ``hw_from`` to ``in_shape``:

    - the same size: a 3x3 conv, plus 3x3 conv -> leaky ReLU -> 3x3 conv;
    - twice the size: a 4x4 stride-2 transposed conv, plus 3x3 conv -> leaky ReLU -> 4x4 stride-2
      transposed conv;
    - ``s`` times the size or a little more (``s >= 2`` per side, a remainder below ``s``): a
      stride-``s`` transposed conv with that remainder as ``output_padding``, plus two 3x3 convs
      of twice ``hidden`` channels at the small size and the same transposed conv (He et al.'s
      LeNet, 8x8 features from 24x24 maps: 15.4 dB / SSIM 0.50 where resizing reached 12.6 dB /
      0.19, in the same time; docs/design.md);
    - any other size: bilinear resizing to it, then as for the same size (the residual resizes
      between its two convolutions).
    """
    c_in, hw_in = in_shape[0], tuple(in_shape[1:])
    stride = tuple(b // a for a, b in zip(hw_from, hw_in))
    extra = tuple(b - a * s for a, b, s in zip(hw_from, hw_in, stride))
    if tuple(hw_from) == hw_in:
        linear = nn.Conv2d(c_from, c_in, 3, padding=1)
        residual = nn.Sequential(
            nn.Conv2d(c_from, hidden, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden, c_in, 3, padding=1),
        )
    elif all(2 * a == b for a, b in zip(hw_from, hw_in)):
        linear = nn.ConvTranspose2d(c_from, c_in, 4, stride=2, padding=1)
        residual = nn.Sequential(
            nn.Conv2d(c_from, hidden, 3, padding=1), nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(hidden, c_in, 4, stride=2, padding=1),
        )  # fmt: skip
    elif all(s >= 2 and e < s for s, e in zip(stride, extra)):
        kernel = tuple(s + 2 for s in stride)  # (n - 1) s - 2 + (s + 2) + e = n s + e

        def upsample(c: int) -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(c, c_in, kernel, stride, padding=1, output_padding=extra)

        wide = 2 * hidden
        linear = upsample(c_from)
        residual = nn.Sequential(
            nn.Conv2d(c_from, wide, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(wide, wide, 3, padding=1), nn.LeakyReLU(0.1), upsample(wide),
        )  # fmt: skip
    else:
        linear = nn.Sequential(
            nn.Upsample(size=hw_in, mode="bilinear"), nn.Conv2d(c_from, c_in, 3, padding=1)
        )
        residual = nn.Sequential(
            nn.Conv2d(c_from, hidden, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Upsample(size=hw_in, mode="bilinear"), nn.Conv2d(hidden, c_in, 3, padding=1),
        )  # fmt: skip
    return linear, residual


class BlockInverse(nn.Module):
    """Small learned inverse of one block, its architecture chosen by the block's input and output
    shapes alone (the block itself is a black box).

    A linear path plus a small nonlinear residual:

    - image-like to image-like (``(C, H, W)`` both): convolutions from the block's output size to
      its input's (:func:`_spatial_core`: a transposed convolution where the block divides the
      resolution by a whole factor, with ``output_padding`` for a remainder; bilinear resizing
      plus convolution for any other change; convolutions alone where it keeps it).
      ``unpool=True`` (a block ending in ``MaxPool2d``): ``MaxUnpool2d`` with the target's pooling
      indices first, back to the size before the pooling (``pooled_from``; by default the input's,
      with ``pool`` by default 2x2), then the same;
    - anything else (to or from a vector, or another rank): layer-normalised input, then a linear
      map plus a two-layer MLP (without the normalisation, dense inverses of ReLU features learn
      several times slower), at most :data:`MAX_DENSE_WEIGHTS` weights.

    The linear path lets an (almost) invertible block be inverted (almost) exactly; the residual
    handles what ReLU and pooling removed.
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        hidden: int = 32,
        hidden_dense: int = 512,
        unpool: bool = False,
        pool: nn.MaxPool2d | None = None,
        pooled_from: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.in_shape, self.out_shape, self.unpool = tuple(in_shape), tuple(out_shape), unpool
        self.norm = nn.Identity()
        spatial = len(in_shape) == 3 and len(out_shape) == 3
        if unpool and not spatial:
            raise ValueError("unpool=True needs an image-like block")
        if spatial and unpool:
            pool = pool if pool is not None else nn.MaxPool2d(2)
            pooled_from = tuple(pooled_from or (out_shape[0], *in_shape[1:]))
            self.unpooling = nn.MaxUnpool2d(pool.kernel_size, pool.stride, pool.padding)
            self.unpooled_size = pooled_from[1:]
            self.linear, self.residual = _spatial_core(
                out_shape[0], pooled_from[1:], in_shape, hidden
            )
        elif spatial:
            self.linear, self.residual = _spatial_core(
                out_shape[0], out_shape[1:], in_shape, hidden
            )
        else:
            n_in, n_out = math.prod(in_shape), math.prod(out_shape)
            if n_in * n_out > MAX_DENSE_WEIGHTS:
                raise ValueError(
                    f"a block from {in_shape} to {out_shape} needs a dense inverse of {n_in} x "
                    f"{n_out} weights (at most {MAX_DENSE_WEIGHTS:.0e}): cut the network at a "
                    f"boundary where both sides are image-like (C, H, W), or where the features "
                    f"are fewer"
                )
            self.norm = nn.Sequential(nn.Flatten(), nn.LayerNorm(n_out, elementwise_affine=False))
            self.linear = nn.Linear(n_out, n_in)
            self.residual = nn.Sequential(
                nn.Linear(n_out, hidden_dense), nn.LeakyReLU(0.1), nn.Linear(hidden_dense, n_in)
            )

    def forward(self, f: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if self.unpool:
            if indices is None:
                raise ValueError("this inverse uses MaxUnpool2d: pass the target's pooling indices")
            f = self.unpooling(f, indices, output_size=self.unpooled_size)
        f = self.norm(f)
        return (self.linear(f) + self.residual(f)).reshape(len(f), *self.in_shape)


def _pooling(block: nn.Sequential, in_shape: tuple[int, ...]) -> dict[str, Any]:
    """A pooling block's ``pool`` and the shape before it, for :class:`BlockInverse`."""
    return {"pool": block[-1], "pooled_from": block_shapes([block[:-1]], in_shape)[1]}


#: the identity pre-images and the softmax's constant: layers whose analytic inverse is not exact
_NOT_INJECTIVE = (nn.ReLU, nn.Hardtanh, nn.Hardsigmoid, nn.Softmax, nn.LogSoftmax, nn.Softmin)


class AnalyticPath(nn.Module):
    """The analytic inverse of a block whose every layer inverts exactly
    (:func:`analytic.invert`): injective affine layers (full column rank) and invertible
    activations. Nothing is fitted: :meth:`fit` measures how well it inverts the block's true
    outputs (dB of the input's range, ``fit_db``), and the chain uses it only where that reaches
    :data:`EXACT_FIT_DB`, as for :class:`ExactPath`."""

    def __init__(self, inverse: nn.Sequential) -> None:
        super().__init__()
        self.inverse = inverse
        self.register_buffer("fit_db", torch.tensor(-math.inf, dtype=torch.float64))

    @classmethod
    def build(
        cls, block: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
    ) -> AnalyticPath | None:
        """The path, or None where the block's layers do not all invert exactly (checked before
        any matrix is built where the layer kinds or a narrowing shape already say so)."""
        if not isinstance(block, nn.Sequential) or math.prod(out_shape) < math.prod(in_shape):
            return None
        if any(isinstance(m, _NOT_INJECTIVE) for m in block.modules()):
            return None
        try:
            inverse = invert(block, input_shape=in_shape)
        except (TypeError, ValueError):  # UnsupportedLayerError is a TypeError
            return None
        for m in inverse.modules():
            lost = (isinstance(m, InverseAffine) and not m.exact) or (
                isinstance(m, InverseBatchNorm) and m.lost
            )
            if lost or (isinstance(m, InverseLinear) and m.A.shape[1] < m.A.shape[0]):
                return None
        return cls(inverse)

    @property
    def is_exact(self) -> bool:
        return bool(self.fit_db >= EXACT_FIT_DB)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.inverse(f)

    @torch.no_grad()
    def fit(self, h: torch.Tensor, f: torch.Tensor) -> float:
        """Measure the inverse on the block's inputs ``h`` and outputs ``f``; returns ``fit_db``."""
        self.fit_db.fill_(fit_db(self.inverse(f), h))
        return float(self.fit_db)


class InverseChain(nn.Module):
    """One :class:`BlockInverse` per block; ``forward(f_k, k)`` maps block ``k``'s output to an
    image.

    With ``exact=True`` (the default) an injective ``Conv2d -> leaky ReLU`` block also gets an
    :class:`ExactPath`, fitted before training (:meth:`fit_exact`), and any other block whose every
    layer inverts exactly an :class:`AnalyticPath`; the path inverts the block's true output
    (``forward`` from that very block), and deeper inversions pass through the learned module.
    A block is any module: its inverse module is chosen by its input and output shapes.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Sequential],
        in_shape: tuple[int, ...] = (1, 28, 28),
        unpool: bool = False,
        hidden: int = 32,
        hidden_dense: int = 512,
        exact: bool = True,
    ) -> None:
        super().__init__()
        shapes = block_shapes(blocks, in_shape)
        self.uses_indices = [unpool and ends_with_pool(b) for b in blocks]
        self.inverses = nn.ModuleList(
            BlockInverse(
                shapes[j], shapes[j + 1], hidden, hidden_dense, unpool=self.uses_indices[j],
                **(_pooling(blocks[j], shapes[j]) if self.uses_indices[j] else {}),
            )
            for j in range(len(blocks))
        )  # fmt: skip
        # exact paths, keyed by block index (as a string: a ModuleDict's keys), for the injective
        # blocks: the fitted transposed convolution of a Conv2d -> leaky ReLU block, else the
        # analytic inverse of a block whose every layer inverts exactly
        paths: dict[str, nn.Module] = {}
        for j, b in enumerate(blocks):
            if not exact or self.uses_indices[j]:
                continue
            if exact_path_applies(b, shapes[j], shapes[j + 1]):
                paths[str(j)] = ExactPath(b, shapes[j], shapes[j + 1])
            elif (analytic := AnalyticPath.build(b, shapes[j], shapes[j + 1])) is not None:
                paths[str(j)] = analytic
        self.exact = nn.ModuleDict(paths)

    def fit_exact(self, blocks: Sequence[nn.Sequential], x: torch.Tensor) -> dict[int, float]:
        """Fit every exact path on the images ``x`` (their features through ``blocks``); ``{block:
        fit dB}``."""
        if not self.exact:
            return {}
        feats, _ = forward_features(blocks, x, upto=max(int(j) for j in self.exact) + 1)
        return {
            int(j) + 1: path.fit(feats[int(j)], feats[int(j) + 1]) for j, path in self.exact.items()
        }

    def __len__(self) -> int:
        return len(self.inverses)

    def step(
        self, j: int, f: torch.Tensor, indices: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """Invert block ``j`` (0-based): its output ``f`` -> its input."""
        idx = indices[j] if (indices is not None and self.uses_indices[j]) else None
        return self.inverses[j](f, idx)

    def forward(
        self, f: torch.Tensor, k: int, indices: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """Image from the output ``f`` of block ``k`` (1-based; ``k = len(self)`` means the
        logits)."""
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(self):
            raise ValueError(
                f"k must be a whole number in 1..{len(self)} (the block boundary; {len(self)} = "
                f"the logits), got {k!r}"
            )
        expected = self.inverses[k - 1].out_shape
        if not isinstance(f, torch.Tensor) or tuple(f.shape[1:]) != expected:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(
                f"the output of block {k} has shape (N, {', '.join(map(str, expected))}); got "
                f"{got}. Pass the features of block {k} (forward_features(blocks, x)[0][{k}]), or "
                f"the k they come from"
            )
        return self.descend(self.first_step(f, k, indices), k - 1, indices)

    def first_step(
        self, f: torch.Tensor, k: int, indices: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """Block ``k``'s input (1-based) from its true output ``f``: the exact path where the block
        has one, else its module."""
        path = self.exact[str(k - 1)] if str(k - 1) in self.exact else None
        return path(f) if path is not None and path.is_exact else self.step(k - 1, f, indices)

    def descend(
        self, h: torch.Tensor, j: int, indices: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """The image from ``h``, an estimate of block ``j``'s output (``j = 0``: ``h`` is already
        an image)."""
        for i in reversed(range(j)):
            h = self.step(i, h, indices)
        return h


@torch.inference_mode()
def invert_from_every_depth(
    chain: InverseChain,
    blocks: Sequence[nn.Sequential],
    x: torch.Tensor,
    batch_size: int = 500,
    seconds: dict[int, float] | None = None,
) -> dict[int, torch.Tensor]:
    """Reconstructions of ``x`` from the output of every block: ``{k: chain(f_k)}`` for k = 1..K.

    Runs in chunks of ``batch_size`` images (on a CPU faster than one batch of 10 000, whose feature
    maps do not fit in cache), in the fastest memory layout (``context.in_fast_layout``: 1.3x for
    ``cnn_nopool``'s and ``cnn_pool``'s unpooling chains, 2.8x for ``lenet_he``'s); the target's
    features of a chunk serve every depth. ``seconds``, if
    given, is filled with each depth's time in the chain (the target's features excluded): what
    inverting ``len(x)`` feature vectors from block ``k`` costs, so that a rate needs no second
    pass.
    """
    image_batch(x, "x")
    # fewer is fine: the chain inverts from the boundaries the blocks reach
    if len(blocks) > len(chain):
        raise ValueError(
            f"the chain inverts {len(chain)} blocks but {len(blocks)} blocks were given: pass the "
            f"blocks it was built for (split_blocks of its target), or their first {len(chain)}"
        )
    outputs: dict[int, list[torch.Tensor]] = {k: [] for k in range(1, len(blocks) + 1)}
    timed = dict.fromkeys(outputs, 0.0)
    chain, blocks = in_fast_layout(chain), [in_fast_layout(b) for b in blocks]
    for chunk in x.split(batch_size):
        feats, indices = forward_features(blocks, chunk, with_indices=any(chain.uses_indices))
        for k, out in outputs.items():
            start = time.perf_counter()
            out.append(chain(feats[k], k, indices))
            timed[k] += time.perf_counter() - start
    if seconds is not None:
        seconds.update(timed)
    return {k: torch.cat(out) for k, out in outputs.items()}


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three losses: per-block reconstruction, image, cycle consistency.

    ``class_cycle`` adds, when the chain inverts the logits, the cross-entropy between the target's
    logits on the reconstruction and the class it predicted for the original: the cycle loss on what
    a classifier's output *decides* (the MSE on raw logits weighs confident logits most). A KL
    divergence to the whole class distribution, tried first, asks an ambiguous digit to stay
    ambiguous, and such reconstructions flip class (notebook 04 measures the effect).

    The defaults are the project's recipe (notebook 04's, and every chain 07 trains): the block loss
    weighs most because every module must invert its own block; a class-decision weight of 3 (rather
    than 1 or 10) re-classified best from the logits in development runs.
    """

    block: float = 30.0
    image: float = 1.0
    cycle: float = 1.0
    class_cycle: float = 3.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"LossWeights.{name} must be a finite number >= 0, got {value!r}")


def progressive_losses(
    chain: InverseChain,
    blocks: Sequence[nn.Sequential],
    x: torch.Tensor,
    k: int,
    weights: LossWeights = LossWeights(),
    logits: bool = True,
) -> torch.Tensor:
    """The three losses of the inverse of blocks ``1..k`` on a batch ``x`` (target frozen).

    (a) every module ``j <= k`` reconstructs its block's input from the true block output (summed,
        not averaged, over modules: a module's weight must not shrink as deeper ones join; with the
        mean, the first module's share shrinks and its block's inverse degrades as training
        progresses);
    (b) the chain from ``f_k`` reconstructs the image; (c) the reconstruction, fed through the
    target's blocks ``1..k``, reproduces ``f_k``. At ``k = 1`` behind an exact path
    (:class:`ExactPath`) no module takes part in (b) and (c): they are constants, left out (the
    gradient is the same). Each squared error is divided by the mean square of what it compares
    against, so the weights mean the same for every block and every target. ``logits``: the last
    block's output is the network's logits, so that ``weights.class_cycle`` applies at ``k =
    len(blocks)``; pass ``False`` for a chain of part of a network (a split device), whose last
    output is a feature, not a class decision.
    """
    feats, indices = forward_features(blocks, x, upto=k, with_indices=any(chain.uses_indices))
    power = [f.pow(2).mean().clamp_min(1e-8) for f in feats]  # every loss is relative: scale-free
    steps = [chain.step(j, feats[j + 1], indices) for j in range(k)]
    block_loss = sum(F.mse_loss(h, feats[j]) / power[j] for j, h in enumerate(steps))
    # the chain from f_k: its first module's output on the true f_k is block k's term above
    # (computed once)
    exact_first = str(k - 1) in chain.exact and chain.exact[str(k - 1)].is_exact
    # the image is the frozen exact path's: the image and cycle terms are constants
    if exact_first and k == 1:
        return weights.block * block_loss
    first = chain.first_step(feats[k], k, indices) if exact_first else steps[k - 1]
    x_hat = chain.descend(first, k - 1, indices)
    image_loss = F.mse_loss(x_hat, x) / power[0]
    f_again = x_hat
    for block in blocks[:k]:
        f_again = block(f_again)
    cycle_loss = F.mse_loss(f_again, feats[k]) / power[k]
    loss = weights.block * block_loss + weights.image * image_loss + weights.cycle * cycle_loss
    # f_k are the logits: the reconstruction keeps the decision
    if logits and weights.class_cycle and k == len(blocks):
        if feats[k].dim() != 2:
            raise ValueError(
                f"the class-decision loss (LossWeights.class_cycle) needs logits, (batch, "
                f"classes), but the last block gives {tuple(feats[k].shape)}: pass logits=False "
                f"for a chain of part of a network"
            )
        loss = loss + weights.class_cycle * F.cross_entropy(f_again, feats[k].argmax(1))
    return loss


def schedule_depths(n_blocks: int, steps: int, schedule: str) -> list[int]:
    """The block depth ``k`` trained at each step: ``"progressive"`` (1, then 1..2, ... equal
    shares) or ``"joint"`` (all blocks from the first step)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be 'progressive' or 'joint', got {schedule!r}")
    if schedule == "joint":
        return [n_blocks] * steps
    return [min(n_blocks, 1 + (i * n_blocks) // steps) for i in range(steps)]


def train_inverse_chain(
    chain: InverseChain,
    blocks: Sequence[nn.Sequential],
    sample: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    batch_size: int = 64,
    lr: float = 4e-3,
    schedule: str = "progressive",
    weights: LossWeights = LossWeights(),
    seed: int = 0,
    desc: str = "inverse",
    exact_images: int = 64,
    logits: bool = True,
) -> list[dict[str, float]]:
    """Train ``chain`` for ``steps`` batches drawn by ``sample(indices)`` under a depth
    ``schedule``.

    The defaults (batch 64, Adam at 4e-3 with cosine decay, :class:`LossWeights`' defaults) are the
    project's recipe; the budget ``steps`` of each target is ``models.TargetSpec.chain_steps``.
    ``sample`` receives the batch's index tensor (``0..steps*batch_size``) and returns images: real
    training images, fresh noise, or synthesized inputs; the same budget for every data regime. Uses
    the project's one training loop (one epoch of ``steps`` batches). The chain's exact paths
    (:class:`ExactPath`) are fitted first, on ``exact_images`` images from ``sample``.
    ``logits=False``: the blocks are part of a network, their last output no class decision
    (:func:`progressive_losses`). The chain trains in the fastest memory layout here
    (``context.fast_layout``) and is returned in the standard one.
    """
    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("exact_images", exact_images),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    depths = schedule_depths(len(chain), steps, schedule)
    # exact paths first: a least-squares fit on images of the regime, the same for every schedule
    if chain.exact:
        chain.fit_exact(blocks, sample(torch.arange(exact_images)))
    # the fastest layout here (context.fast_layout): the chain trains in it and is returned in the
    # standard one; the frozen blocks run as copies in it (other chains may share them)
    layout = fast_layout(chain, *blocks)
    if layout != torch.contiguous_format:
        blocks = [in_fast_layout(b) for b in blocks]
        chain.to(memory_format=layout)
    step = 0

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        nonlocal step
        k = depths[min(step, steps - 1)]
        step += 1
        x = sample(idx)
        x = x.contiguous(memory_format=layout) if x.dim() == 4 else x
        return progressive_losses(chain, blocks, x, k, weights, logits)

    try:
        return train_loop(
            chain.parameters(), loss_fn, steps * batch_size, 1, batch_size, lr, seed=seed,
            desc=desc,
        )  # fmt: skip
    finally:
        chain.to(memory_format=torch.contiguous_format)


#: The training-data regimes of an inverse chain: real digits, or zero-shot (no MNIST image seen).
def regime_sampler(
    regime: str,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    real: torch.Tensor | None = None,
    synthesized: torch.Tensor | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batch sampler for :func:`train_inverse_chain` under a training-data regime (:data:`REGIMES`).

    - ``"real"``: random draws from ``real`` (MNIST training images; not zero-shot);
    - ``"noise"``: fresh ``synthetic.structured_noise`` every batch (no data at all);
    - ``"synthesized"``: random draws from ``synthesized`` (from ``synthetic.synthesize_inputs``);
    - ``"gaussian"`` (:data:`~reversenet_utils.labels.GAUSSIAN_NOISE`): N(0, 1) pixels, He et al.'s
      noise regime (a baseline: nothing image-like about it).

    The returned function maps a batch's index tensor to as many images, on ``device``, drawn with
    ``generator``.
    """
    pools = {"real": real, "synthesized": synthesized}
    if regime == "noise":
        return lambda idx: structured_noise(len(idx), generator, device)
    if regime == GAUSSIAN_NOISE:
        return lambda idx: torch.randn(len(idx), 1, 28, 28, generator=generator).to(device)
    if regime not in pools:
        raise ValueError(f"regime must be one of {(*REGIMES, GAUSSIAN_NOISE)}, got {regime!r}")
    pool = pools[regime]
    if pool is None or len(pool) == 0:
        raise ValueError(
            f"the {regime!r} regime needs its images: pass {regime}=<non-empty tensor of images>"
        )
    return lambda idx: pool[
        torch.randint(0, len(pool), (len(idx),), generator=generator).to(pool.device)
    ].to(device)


def load_or_train_chain(
    ctx: Context,
    name: str,
    net: nn.Sequential,
    blocks: Sequence[nn.Sequential],
    regime: str,
    steps: int,
    sample: Callable[[torch.Tensor], torch.Tensor],
    schedule: str = "progressive",
    unpool: bool = False,
    seed: int = 0,
    notebook: str = "",
    train_if_missing: bool = True,
    retrain: bool = False,
    **recipe: Any,
) -> InverseChain:
    """The inverse chain of target ``name`` (weights ``net``, cut into ``blocks``) for a regime and
    schedule.

    Loads ``artifacts/inverses/<name>__<label>.pt`` when it was saved for these very target weights
    (by fingerprint) and this dataset; otherwise trains it with :func:`train_inverse_chain`
    (``recipe`` overrides its defaults) on batches from ``sample`` and saves it. ``retrain=True``
    always trains (and replaces the file), as notebook 04 does. A file saved for other weights is
    refused with the fix; one trained for fewer than ``steps`` batches (a smoke run's) is trained
    again.
    """
    label = chain_label(regime, schedule, unpool)
    # a misspelled override is an error here, before a saved chain is loaded without ever reading
    # the recipe
    effective_recipe(train_inverse_chain, {**recipe, "schedule": schedule, "seed": seed})
    path = inverse_checkpoint(ctx, name, label)
    device = next(net.parameters()).device
    identity = inverse_identity(ctx, name, net, label)

    def build() -> InverseChain:
        with GLOBAL_RNG:  # seeded and initialised at once, also when chains train side by side
            torch.manual_seed(seed)
            return InverseChain(blocks, unpool=unpool).to(device)

    def train(chain: InverseChain) -> dict[str, Any]:
        start = time.perf_counter()
        train_inverse_chain(
            chain,
            blocks,
            sample,
            steps,
            schedule=schedule,
            seed=seed,
            desc=f"{name}: {label}",
            **recipe,
        )
        # the defaults too: what this chain was trained with
        used = effective_recipe(train_inverse_chain, {**recipe, "schedule": schedule, "seed": seed})
        used.pop("desc")
        return {
            "steps": steps,
            **used,
            "weights": asdict(used["weights"]),
            "train_s": time.perf_counter() - start,
            "notebook": notebook,
        }

    return load_or_train(
        build,
        path,
        train,
        identity,
        train_if_missing,
        fix=f"re-run notebooks/04_zero_shot_progressive_inversion.ipynb for {name!r}",
        retrain=retrain,
        budget={"steps": steps},
    )
