"""Learned inverses: modules that map a target's features back to images, and their losses.

``InverseWeights`` reproduces the "inverse weight matrices trained after the fact" of the
learned-inverse write-up for a sigmoid MLP ``784 -> h1 -> h2 -> 10``: from the last hidden layer
``h2`` it undoes the sigmoid exactly (logit), subtracts the known bias ``b2``, applies a *learned*
matrix ``W2_inv``, squashes each sample's vector into (0, 1) so that the next logit is defined,
undoes the first sigmoid, subtracts ``b1`` and applies a learned ``W1_inv``. Its loss is the L1
reconstruction error plus a penalty that pulls the intermediate vector into [0, 1], so that the
squash has less to do.

``MLPDecoder`` is the improvement: a small nonlinear network from the features to the image.

The second half is the block-wise, progressive inversion of "Deep Neural Networks are
Surprisingly Reversible": ``split_blocks`` cuts a target, ``InverseChain`` holds one small
``BlockInverse`` per block, ``progressive_losses`` combines the per-block, image and
cycle-consistency losses, ``train_inverse_chain`` trains under a progressive or joint schedule,
and ``structured_noise`` / ``synthesize_inputs`` provide training inputs that are not MNIST
(zero-shot). ``invert_by_optimisation`` is the optimisation-based baseline it is compared with.

Everything trains with the project's one training loop, ``train.train_loop``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .artifacts import checkpoint_path, load_checkpoint, save_checkpoint
from .invert import InverseActivation, optimise_preimage, total_variation
from .train import predict, train_loop

__all__ = [
    "squash",
    "InverseWeights",
    "inverse_weights_loss",
    "train_inverse_weights",
    "MLPDecoder",
    "optimise_hidden_for_classes",
    "split_blocks",
    "block_shapes",
    "forward_features",
    "BlockInverse",
    "InverseChain",
    "LossWeights",
    "progressive_losses",
    "schedule_depths",
    "train_inverse_chain",
    "CHAIN_RECIPE",
    "regime_sampler",
    "inverse_checkpoint",
    "save_chain",
    "load_chain",
    "invert_from_every_depth",
    "random_strokes",
    "structured_noise",
    "synthesize_inputs",
    "invert_by_optimisation",
]


def squash(p: torch.Tensor, margin: float = 0.005) -> torch.Tensor:
    """Min-max scale each row of ``p`` into ``[margin, 1 - margin]`` (strictly inside (0, 1)).

    A constant row has no range to scale and maps to 0.5.
    """
    lo = p.min(dim=1, keepdim=True).values
    span = p.max(dim=1, keepdim=True).values - lo
    unit = torch.where(span > 0, (p - lo) / span.clamp_min(torch.finfo(p.dtype).tiny), torch.full_like(p, 0.5))
    return margin + (1 - 2 * margin) * unit


class InverseWeights(nn.Module):
    """Learned inverse matrices for a sigmoid MLP ``Flatten, Linear, Sigmoid, Linear, Sigmoid, Linear``.

    ``forward(h2)`` maps the last hidden layer (after its sigmoid) to a flat image (N, 784);
    ``from_pre_activation(z2)`` starts from the pre-sigmoid value instead. The target's biases are
    copied and frozen; only ``w2_inv`` and ``w1_inv`` are trained. Weights start from a truncated
    normal with standard deviation ``init_std``, as in the original.
    """

    def __init__(self, target: nn.Sequential, init_std: float = 0.1, eps: float = 1e-6) -> None:
        super().__init__()
        kinds = [type(m).__name__ for m in target]
        if kinds != ["Flatten", "Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]:
            raise TypeError(f"InverseWeights needs a 2-hidden-layer sigmoid MLP, got layers {kinds}")
        first, second = target[1], target[3]
        self.register_buffer("b1", first.bias.detach().clone())
        self.register_buffer("b2", second.bias.detach().clone())
        self.w2_inv = nn.Parameter(torch.empty(second.out_features, second.in_features))
        self.w1_inv = nn.Parameter(torch.empty(first.out_features, first.in_features))
        for w in (self.w2_inv, self.w1_inv):
            nn.init.trunc_normal_(w, std=init_std, a=-2 * init_std, b=2 * init_std)
        self.sigmoid_inverse = InverseActivation("sigmoid", eps=eps)  # clamps and counts
        self.last_hidden: torch.Tensor | None = None  # the un-squashed h1 estimate of the last call

    def from_pre_activation(self, z2: torch.Tensor) -> torch.Tensor:
        """Flat image from the pre-sigmoid last hidden layer ``z2``."""
        h1 = (z2 - self.b2) @ self.w2_inv
        self.last_hidden = h1
        z1 = self.sigmoid_inverse(squash(h1))
        return (z1 - self.b1) @ self.w1_inv

    def forward(self, h2: torch.Tensor) -> torch.Tensor:
        return self.from_pre_activation(self.sigmoid_inverse(h2))


def inverse_weights_loss(x: torch.Tensor, x_inv: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The original objective: summed L1 error plus ``(min h1)^2 / 2 + (max h1 - 1)^2 / 2`` over the batch."""
    l1 = (x.flatten(1) - x_inv.flatten(1)).abs().sum()
    excess = 0.5 * hidden.min().pow(2) + 0.5 * (hidden.max() - 1).pow(2)
    return l1 + excess


def train_inverse_weights(
    target: nn.Sequential,
    images: torch.Tensor,
    confidence_threshold: float = 0.8,
    steps: int = 1000,
    batch_size: int = 1000,
    lr: float = 0.01,
    seed: int = 0,
) -> tuple[InverseWeights, list[dict[str, float]], int]:
    """Train :class:`InverseWeights` of a sigmoid MLP ``target`` as the original write-up did.

    Only the ``images`` that ``target`` classifies with softmax confidence above
    ``confidence_threshold`` are used; Adagrad (no decay) on :func:`inverse_weights_loss` for about
    ``steps`` batches of ``batch_size``. Returns the inverse (eval mode, clamping counters reset),
    the training history, and how many images were kept.
    """
    if not 0 < confidence_threshold < 1:
        raise ValueError(f"confidence_threshold must be in (0, 1), got {confidence_threshold}")
    device = next(target.parameters()).device
    hidden = predict(target[:5], images).to(device)  # the last hidden layer (after its sigmoid)
    confidence = torch.softmax(predict(target, images), 1).max(1).values
    keep = torch.nonzero(confidence > confidence_threshold)[:, 0].to(device)
    if len(keep) == 0:
        raise ValueError(f"no image is classified with confidence > {confidence_threshold} "
                         f"(highest {confidence.max():.3f}): lower confidence_threshold, or train the target first")
    x_keep, h_keep = images[keep].to(device), hidden[keep]
    torch.manual_seed(seed)
    inverse = InverseWeights(target).to(device)

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        return inverse_weights_loss(x_keep[idx], inverse(h_keep[idx]), inverse.last_hidden)

    history = train_loop(
        inverse.parameters(), loss_fn, len(keep), epochs=math.ceil(steps * batch_size / len(keep)),
        batch_size=batch_size, lr=lr, optimizer="adagrad", cosine=False, seed=seed, desc="inverse weights",
    )
    inverse.sigmoid_inverse.clamped = inverse.sigmoid_inverse.seen = 0
    return inverse.eval(), history, len(keep)


class MLPDecoder(nn.Module):
    """A small nonlinear inverse: features -> hidden (ReLU) -> image in (0, 1) via a sigmoid."""

    def __init__(self, in_features: int, hidden: int = 512, image_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        self.image_shape = image_shape
        n_out = 1
        for d in image_shape:
            n_out *= d
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, n_out), nn.Sigmoid())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features.flatten(1)).reshape(len(features), *self.image_shape)


def optimise_hidden_for_classes(
    readout: nn.Module, n_hidden: int, classes: list[int], steps: int = 1000, lr: float = 1.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Find pre-sigmoid hidden vectors that ``readout(sigmoid(z))`` classifies as ``classes``.

    Gradient descent on the L1 distance between the softmax and the one-hot targets, all classes
    in one batch, starting from zeros (as in the original). Returns ``(z, probabilities)``.
    """
    torch.manual_seed(seed)
    device = next(readout.parameters()).device
    z = torch.zeros(len(classes), n_hidden, device=device, requires_grad=True)
    target = F.one_hot(torch.tensor(classes, device=device), 10).float()
    opt = torch.optim.SGD([z], lr=lr)
    for _ in range(steps):
        loss = (torch.softmax(readout(torch.sigmoid(z)), 1) - target).abs().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        probs = torch.softmax(readout(torch.sigmoid(z)), 1)
    return z.detach(), probs


# --- progressive, block-wise inversion ----------------------------------------------------------
# After "Deep Neural Networks are Surprisingly Reversible: A Baseline for Zero-Shot Inversion":
# cut the target into shallow blocks, give each block a small inverse module, train the modules
# progressively with (a) a per-block reconstruction loss, (b) an image loss through the chain of
# inverses and (c) a cycle-consistency loss through the frozen target.


def split_blocks(model: nn.Sequential, ends: Sequence[int]) -> list[nn.Sequential]:
    """Cut ``model`` into consecutive blocks ending (exclusively) at ``ends``; the last end is ``len(model)``."""
    ends = list(ends)
    if not ends or ends[-1] != len(model) or any(b <= a for a, b in zip([0, *ends], ends)):
        raise ValueError(f"ends must increase strictly and finish at len(model) = {len(model)}, got {ends}")
    return [model[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def block_shapes(blocks: Sequence[nn.Module], in_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes (without batch) of the input and of each block's output: ``[in_shape, s_1, ..., s_K]``."""
    device = next(p for b in blocks for p in b.parameters()).device
    h = torch.zeros(1, *in_shape, device=device)
    shapes = [tuple(in_shape)]
    with torch.no_grad():
        for block in blocks:
            h = block(h)
            shapes.append(tuple(h.shape[1:]))
    return shapes


def ends_with_pool(block: nn.Sequential) -> bool:
    """True for a block whose last layer is ``MaxPool2d`` (its inverse may use the pooling indices)."""
    return isinstance(block[-1], nn.MaxPool2d)


@torch.no_grad()
def forward_features(
    blocks: Sequence[nn.Sequential], x: torch.Tensor, upto: int | None = None, with_indices: bool = False
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """``[x, f_1, ..., f_k]`` (outputs of the blocks) and, if asked, each pooling block's max indices.

    Indices are the *privileged* information of the MaxUnpool variant: they come from the forward
    pass of the very image that is being reconstructed.
    """
    feats, indices = [x], []
    for block in blocks[:upto]:
        if with_indices and ends_with_pool(block):
            pre = block[:-1](feats[-1])
            pool = block[-1]
            out, idx = F.max_pool2d(pre, pool.kernel_size, pool.stride, pool.padding, return_indices=True)
            feats.append(out)
            indices.append(idx)
        else:
            feats.append(block(feats[-1]))
            indices.append(None)
    return feats, indices


class BlockInverse(nn.Module):
    """Small learned inverse of one block, chosen by the block's input and output shapes.

    A linear path plus a small nonlinear residual:

    - image-like to image-like at half the resolution: a 4x4 stride-2 transposed conv, plus
      3x3 conv -> leaky ReLU -> 4x4 stride-2 transposed conv (``unpool=True``: ``MaxUnpool2d`` with the
      target's pooling indices first, then 3x3 convs at full resolution);
    - anything to or from a vector: layer-normalised input, then a linear map plus a two-layer MLP
      (without the normalisation, dense inverses of ReLU features learn several times slower).

    The linear path lets an (almost) invertible block be inverted (almost) exactly; the residual
    handles what ReLU and pooling removed.
    """

    def __init__(
        self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], hidden: int = 32, hidden_dense: int = 512,
        unpool: bool = False,
    ) -> None:
        super().__init__()
        self.in_shape, self.out_shape, self.unpool = tuple(in_shape), tuple(out_shape), unpool
        self.norm = nn.Identity()
        spatial = len(in_shape) == 3 and len(out_shape) == 3
        c_in, c_out = (in_shape[0], out_shape[0]) if spatial else (0, 0)
        if unpool and not spatial:
            raise ValueError("unpool=True needs an image-like block")
        if spatial and unpool:
            self.unpooling = nn.MaxUnpool2d(2)
            self.linear = nn.Conv2d(c_out, c_in, 3, padding=1)
            self.residual = nn.Sequential(
                nn.Conv2d(c_out, hidden, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(hidden, c_in, 3, padding=1)
            )
        elif spatial:
            if in_shape[1] != 2 * out_shape[1]:
                raise ValueError(f"spatial blocks must halve the resolution: {in_shape} -> {out_shape}")
            self.linear = nn.ConvTranspose2d(c_out, c_in, 4, stride=2, padding=1)
            self.residual = nn.Sequential(
                nn.Conv2d(c_out, hidden, 3, padding=1), nn.LeakyReLU(0.1),
                nn.ConvTranspose2d(hidden, c_in, 4, stride=2, padding=1),
            )  # fmt: skip
        else:
            n_in, n_out = math.prod(in_shape), math.prod(out_shape)
            self.norm = nn.Sequential(nn.Flatten(), nn.LayerNorm(n_out, elementwise_affine=False))
            self.linear = nn.Linear(n_out, n_in)
            self.residual = nn.Sequential(nn.Linear(n_out, hidden_dense), nn.LeakyReLU(0.1), nn.Linear(hidden_dense, n_in))

    def forward(self, f: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if self.unpool:
            if indices is None:
                raise ValueError("this inverse uses MaxUnpool2d: pass the target's pooling indices")
            f = self.unpooling(f, indices)
        f = self.norm(f)
        return (self.linear(f) + self.residual(f)).reshape(len(f), *self.in_shape)


class InverseChain(nn.Module):
    """One :class:`BlockInverse` per block; ``forward(f_k, k)`` maps block ``k``'s output to an image."""

    def __init__(
        self, blocks: Sequence[nn.Sequential], in_shape: tuple[int, ...] = (1, 28, 28), unpool: bool = False,
        hidden: int = 32, hidden_dense: int = 512,
    ) -> None:
        super().__init__()
        shapes = block_shapes(blocks, in_shape)
        self.uses_indices = [unpool and ends_with_pool(b) for b in blocks]
        self.inverses = nn.ModuleList(
            BlockInverse(shapes[j], shapes[j + 1], hidden, hidden_dense, unpool=self.uses_indices[j])
            for j in range(len(blocks))
        )

    def __len__(self) -> int:
        return len(self.inverses)

    def step(self, j: int, f: torch.Tensor, indices: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Invert block ``j`` (0-based): its output ``f`` -> its input."""
        idx = indices[j] if (indices is not None and self.uses_indices[j]) else None
        return self.inverses[j](f, idx)

    def forward(self, f: torch.Tensor, k: int, indices: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Image from the output ``f`` of block ``k`` (1-based; ``k = len(self)`` means the logits)."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be in 1..{len(self)}, got {k}")
        for j in reversed(range(k)):
            f = self.step(j, f, indices)
        return f


@torch.inference_mode()
def invert_from_every_depth(
    chain: InverseChain, blocks: Sequence[nn.Sequential], x: torch.Tensor, batch_size: int = 500
) -> dict[int, torch.Tensor]:
    """Reconstructions of ``x`` from the output of every block: ``{k: chain(f_k)}`` for k = 1..K.

    Runs in chunks of ``batch_size`` images (on a CPU ~2.5x faster than one batch of 10 000,
    whose feature maps do not fit in cache); the target's features of a chunk serve every depth.
    """
    outputs: dict[int, list[torch.Tensor]] = {k: [] for k in range(1, len(blocks) + 1)}
    for chunk in x.split(batch_size):
        feats, indices = forward_features(blocks, chunk, with_indices=any(chain.uses_indices))
        for k, out in outputs.items():
            out.append(chain(feats[k], k, indices))
    return {k: torch.cat(out) for k, out in outputs.items()}


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three losses: per-block reconstruction, image, cycle consistency.

    ``class_cycle`` adds, when the chain inverts the logits, the cross-entropy between the target's
    logits on the reconstruction and the class it predicted for the original: the cycle loss on what a
    classifier's output *decides* (the MSE on raw logits weighs confident logits most). A KL divergence
    to the whole class distribution, tried first, asks an ambiguous digit to stay ambiguous, and such
    reconstructions flip class (re-classified from the logits, class_cycle 3: mlp_relu 97.6 % with the
    KL, 97.8 % with the cross-entropy; cnn_pool 98.7 % and 98.8 %).
    """

    block: float = 1.0
    image: float = 1.0
    cycle: float = 1.0
    class_cycle: float = 0.0


def progressive_losses(
    chain: InverseChain, blocks: Sequence[nn.Sequential], x: torch.Tensor, k: int, weights: LossWeights = LossWeights()
) -> torch.Tensor:
    """The three losses of the inverse of blocks ``1..k`` on a batch ``x`` (target frozen).

    (a) every module ``j <= k`` reconstructs its block's input from the true block output (summed,
        not averaged, over modules: a module's weight must not shrink as deeper ones join; with the
        mean, ``cnn_nopool``'s first-block inverse lost 1-2 dB by the end of progressive training);
    (b) the chain from ``f_k`` reconstructs the image;
    (c) the reconstruction, fed through the target's blocks ``1..k``, reproduces ``f_k``.
    Each squared error is divided by the mean square of what it compares against, so the weights
    mean the same for every block and every target.
    """
    feats, indices = forward_features(blocks, x, upto=k, with_indices=any(chain.uses_indices))
    power = [f.pow(2).mean().clamp_min(1e-8) for f in feats]  # every loss is relative: scale-free
    block_loss = sum(F.mse_loss(chain.step(j, feats[j + 1], indices), feats[j]) / power[j] for j in range(k))
    x_hat = chain(feats[k], k, indices)
    image_loss = F.mse_loss(x_hat, x) / power[0]
    f_again = x_hat
    for block in blocks[:k]:
        f_again = block(f_again)
    cycle_loss = F.mse_loss(f_again, feats[k]) / power[k]
    loss = weights.block * block_loss + weights.image * image_loss + weights.cycle * cycle_loss
    if weights.class_cycle and k == len(blocks):  # f_k are the logits: the reconstruction keeps the decision
        loss = loss + weights.class_cycle * F.cross_entropy(f_again, feats[k].argmax(1))
    return loss


def schedule_depths(n_blocks: int, steps: int, schedule: str) -> list[int]:
    """The block depth ``k`` trained at each step: ``"progressive"`` (1, then 1..2, ... equal shares)
    or ``"joint"`` (all blocks from the first step)."""
    if schedule == "joint":
        return [n_blocks] * steps
    if schedule == "progressive":
        return [min(n_blocks, 1 + (i * n_blocks) // steps) for i in range(steps)]
    raise ValueError(f"schedule must be 'progressive' or 'joint', got {schedule!r}")


def train_inverse_chain(
    chain: InverseChain,
    blocks: Sequence[nn.Sequential],
    sample: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    schedule: str = "progressive",
    weights: LossWeights = LossWeights(),
    seed: int = 0,
    desc: str = "inverse",
) -> list[dict[str, float]]:
    """Train ``chain`` for ``steps`` batches drawn by ``sample(indices)`` under a depth ``schedule``.

    ``sample`` receives the batch's index tensor (``0..steps*batch_size``) and returns images: real
    training images, fresh noise, or synthesized inputs; the same budget for every data regime.
    Uses the project's one training loop (one epoch of ``steps`` batches).
    """
    depths = schedule_depths(len(chain), steps, schedule)
    step = 0

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        nonlocal step
        k = depths[min(step, steps - 1)]
        step += 1
        return progressive_losses(chain, blocks, sample(idx), k, weights)

    return train_loop(chain.parameters(), loss_fn, steps * batch_size, 1, batch_size, lr, seed=seed, desc=desc)


#: Notebook 04's default recipe for an inverse chain (keyword arguments of :func:`train_inverse_chain`
#: besides the budget); notebook 07 trains the chains that 04 did not save with it. The block loss weighs
#: most because every module must invert its own block; the class-decision cycle term at 3 (not 1 or 10)
#: gave the best re-classification from the logits in development runs.
CHAIN_RECIPE: dict[str, Any] = {"batch_size": 64, "lr": 4e-3, "weights": LossWeights(block=30.0, image=1.0, cycle=1.0, class_cycle=3.0)}


def regime_sampler(
    regime: str,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    real: torch.Tensor | None = None,
    synthesized: torch.Tensor | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batch sampler for :func:`train_inverse_chain` under a training-data regime.

    - ``"real"``: random draws from ``real`` (MNIST training images; not zero-shot);
    - ``"noise"``: fresh :func:`structured_noise` every batch (no data at all);
    - ``"synthesized"``: random draws from ``synthesized`` (from :func:`synthesize_inputs`).

    The returned function maps a batch's index tensor (``0..steps*batch_size``) to images on ``device``.
    """
    pools = {"real": real, "synthesized": synthesized}
    if regime == "noise":
        return lambda idx: structured_noise(len(idx), generator, device)
    if regime not in pools:
        raise ValueError(f"regime must be 'real', 'noise' or 'synthesized', got {regime!r}")
    pool = pools[regime]
    if pool is None:
        raise ValueError(f"the {regime!r} regime needs its images: pass {regime}=<tensor of images>")
    order = torch.randint(0, len(pool), (steps * batch_size,), generator=generator).to(pool.device)
    return lambda idx: pool[order[idx.to(pool.device)]].to(device)


def inverse_checkpoint(target: str, label: str) -> Path:
    """``artifacts/inverses/<target>__<label>.pt``: where a learned inverse of ``target`` is saved, so that
    later notebooks reuse it (label e.g. ``"real, progressive"`` for a chain, ``"inverse weights"``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    return checkpoint_path(f"{target}__{slug}", kind="inverses")


def save_chain(chain: InverseChain, target: str, label: str, meta: Mapping[str, Any]) -> Path:
    """Save a trained chain (weights only) with its training recipe, so later notebooks reuse it."""
    return save_checkpoint(chain, inverse_checkpoint(target, label), {"target": target, "label": label, **meta})


def load_chain(blocks: Sequence[nn.Sequential], target: str, label: str, unpool: bool = False) -> InverseChain | None:
    """The chain saved by :func:`save_chain` for ``target`` and ``label``, in eval mode with its recipe in
    ``chain.meta``; ``None`` if none was saved (train it then). A checkpoint that no longer fits the
    blocks raises ``CheckpointMismatchError`` naming the file to delete."""
    path = inverse_checkpoint(target, label)
    if not path.is_file():
        return None
    device = next(p for b in blocks for p in b.parameters()).device
    chain = InverseChain(blocks, unpool=unpool)
    chain.meta = load_checkpoint(chain, path)
    return chain.to(device).eval()


# --- training inputs that are not MNIST ---------------------------------------------------------


def random_strokes(n: int, generator: torch.Generator | None = None, size: int = 28) -> torch.Tensor:
    """Pen-stroke-like images in [0, 1], (n, 1, size, size): 1-3 random quadratic Bezier curves each.

    Every curve is sampled at 24 points; a pixel's ink falls off as a Gaussian of its distance to the
    nearest point (random pen width), clipped to 1. A generic prior of line drawings, learned from no data.
    """
    n_curves, n_points = 3, 24
    ctrl = torch.rand(n, n_curves, 3, 2, generator=generator) * 0.8 + 0.1  # control points in the central 80 %
    t = torch.linspace(0, 1, n_points)[:, None]
    bezier = torch.cat([(1 - t) ** 2, 2 * t * (1 - t), t**2], 1)  # Bernstein weights, (n_points, 3)
    points = torch.einsum("pc,nkcd->nkpd", bezier, ctrl) * (size - 1)  # (n, curves, points, 2)
    keep = torch.arange(n_curves) < torch.randint(1, n_curves + 1, (n, 1), generator=generator)  # 1..3 curves
    width = torch.rand(n, 1, 1, 1, generator=generator) * 0.6 + 0.7  # pen profile's std in pixels
    grid = torch.arange(size, dtype=torch.float32)
    points = points.flatten(1, 2)  # (n, curves*points, 2)
    d2 = (grid[None, None, :, None] - points[..., 0, None, None]) ** 2 + (grid[None, None, None, :] - points[..., 1, None, None]) ** 2
    d2 = d2.masked_fill(~keep[..., None].expand(-1, -1, n_points).flatten(1)[..., None, None], float("inf"))
    ink = 1.5 * torch.exp(-d2.amin(1) / (2 * width[:, 0] ** 2))  # distance to the nearest point of any curve
    return ink.clamp(0, 1)[:, None]


def structured_noise(n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Image-like inputs in [0, 1], (n, 1, 28, 28), from no data at all.

    Half are smooth Gaussian noise at a random coarse resolution (4x4, 7x7 or 14x14), upsampled and
    passed through a sigmoid with a random threshold and contrast (soft blobs, sharp-edged shapes
    and thin ridges on a dark background); the other half are :func:`random_strokes`.
    """
    sizes = torch.tensor([4, 7, 14])[torch.randint(0, 3, (n,), generator=generator)]
    smooth = torch.empty(n, 1, 28, 28)
    for size in (4, 7, 14):
        pick = sizes == size
        if pick.any():
            low = torch.randn(int(pick.sum()), 1, size, size, generator=generator)
            smooth[pick] = F.interpolate(low, size=(28, 28), mode="bicubic", align_corners=False)
    threshold = torch.rand(n, 1, 1, 1, generator=generator) * 1.5 + 0.3
    contrast = torch.rand(n, 1, 1, 1, generator=generator) * 12 + 2
    images = torch.sigmoid(contrast * (smooth - threshold))
    strokes = torch.rand(n, generator=generator) < 0.5
    images[strokes] = random_strokes(int(strokes.sum()), generator)
    return images.to(device)


def synthesize_inputs(
    target: nn.Module, n: int, steps: int = 60, lr: float = 0.1, tv_weight: float = 0.05, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs synthesized from the target alone (DeepInversion-style, without batch-norm statistics).

    Start from :func:`structured_noise`, parameterise each image as ``sigmoid(z)`` so it stays in
    [0, 1], and minimise the cross-entropy towards a random class plus a total-variation prior.
    Returns ``(images, confidence of the target in the chosen class)``.
    """
    g = torch.Generator().manual_seed(seed)
    device = next(target.parameters()).device
    init = torch.logit(structured_noise(n, g).clamp(0.02, 0.98)).to(device)
    classes = torch.randint(0, 10, (n,), generator=g).to(device)
    z = optimise_preimage(
        lambda z: target(torch.sigmoid(z)), classes, init, lambda logits, c: F.cross_entropy(logits, c, reduction="none"),
        steps=steps, lr=lr, batch_size=1024, prior=lambda z: tv_weight * total_variation(torch.sigmoid(z)),
        desc="synthesizing inputs",
    )
    with torch.no_grad():
        images = torch.sigmoid(z)
        confidence = torch.softmax(target(images), 1).gather(1, classes[:, None])[:, 0]
    return images, confidence


def invert_by_optimisation(
    feature_fn: nn.Module, features: torch.Tensor, steps: int = 200, lr: float = 0.05, tv_weight: float = 0.01,
    shape: tuple[int, ...] = (1, 28, 28),
) -> torch.Tensor:
    """Optimisation-based inversion: Adam on the input (``x = sigmoid(z)``, from mid-grey), minimising the
    relative squared error ``||feature_fn(x) - f||^2 / ||f||^2`` plus a total-variation prior."""
    init = torch.zeros(len(features), *shape, device=features.device)
    z = optimise_preimage(
        lambda z: feature_fn(torch.sigmoid(z)), features, init,
        lambda out, f: (out - f).pow(2).flatten(1).sum(1) / f.pow(2).flatten(1).sum(1).clamp_min(1e-12),
        steps=steps, lr=lr, batch_size=len(features), prior=lambda z: tv_weight * total_variation(torch.sigmoid(z)),
        desc="optimisation-based inversion",
    )
    return torch.sigmoid(z)
