"""Split computing under attack (notebook 09): a device runs a network's first blocks and sends the
features; an honest-but-curious server runs the rest and tries to recover the device's input.

The attacks are the library's inversions, seen from the server:

- ``"optimisation"`` (white box): the device's weights known, the input optimised to match the
  features (L-BFGS feature matching, ``optimise.match_features``);
- ``"inverse net, same data"`` / ``"inverse net, other data"``: a progressive inverse chain
  (``progressive.train_inverse_chain``) trained on the device owner's training images, or on a
  disjoint set of the same distribution the device never saw;
- ``"inverse net, data-free"``: the same chain trained on structured noise only (the zero-shot
  regime);
- ``"analytic"``: the pseudo-inverse / Gaussian-prior pre-image of notebook 02, where every layer
  inverts (none through max-pooling, whose positions the server never receives);
- ``"rMLE"`` (white box, as He, Zhang and Lee ran it): feature matching with a total-variation
  prior, from grey (:func:`attack_by_rmle`), its weight tuned on the attacker's own images
  (:func:`tune_tv_weight`);
- ``"query-free"`` (He et al.): the attacker knows the device's architecture and runs the server's
  part, but has neither the device's weights nor any query to it. It trains a *shadow* device
  under the frozen server part to classify its own labelled images (:func:`train_shadow`), then
  inverts the features it receives through the shadow (:func:`attack_by_rmle`).

A defence (``defences``) is appended to the device's last block, so a chain trained through the
defended device is the *adaptive* attacker; a chain trained on undefended features and applied to
defended ones is the naive one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from torch import nn

from .analytic import boundary_inverses
from .checks import image_batch
from .data import MNISTSplit
from .labels import PRIOR, THREATS
from .metrics import clip_images, psnr, reconstruction_report
from .models import get_spec
from .optimise import match_features, smooth_total_variation
from .progressive import (
    InverseChain,
    invert_from_every_depth,
    regime_sampler,
    split_blocks,
    train_inverse_chain,
)
from .train import GLOBAL_RNG, fit, predict

__all__ = [
    "THREATS",
    "split_points",
    "device_blocks",
    "defended_accuracy",
    "transmit",
    "train_attacker",
    "CHAIN_SOURCES",
    "chain_tasks",
    "attack_with_chain",
    "attack_by_optimisation",
    "RMLE_TV_GRID",
    "RMLE_TUNE_IMAGES",
    "attack_by_rmle",
    "tune_tv_weight",
    "train_shadow",
    "analytic_attackers",
    "score",
    "strongest",
    "cheapest_defence",
]


def split_points(name: str) -> list[int]:
    """The split points of target ``name``: after each block but the last (the logits), 1-based."""
    ends = get_spec(name).block_ends
    if len(ends) < 2:
        raise ValueError(
            f"target {name!r} has no block boundaries to split at (models.TargetSpec.block_ends)"
        )
    return list(range(1, len(ends)))


def device_blocks(
    name: str, net: nn.Sequential, split: int, defence: nn.Module | None = None
) -> list[nn.Sequential]:
    """The device's part of ``net`` (target ``name``) up to ``split``, as blocks; ``defence`` after
    the last one."""
    if split not in split_points(name):
        raise ValueError(f"{name!r} splits after blocks {split_points(name)}, not {split!r}")
    blocks = split_blocks(net, get_spec(name).block_ends)[:split]
    if defence is not None:
        blocks[-1] = nn.Sequential(*blocks[-1], defence)
    return blocks


@torch.no_grad()
def transmit(blocks: Sequence[nn.Module], x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """What the device sends for images ``x``: the output of ``blocks`` (its defence included), in
    batches."""
    image_batch(x, "x")
    out = []
    for start in range(0, len(x), batch_size):
        f = x[start : start + batch_size]
        for block in blocks:
            f = block(f)
        out.append(f)
    return torch.cat(out)


@torch.no_grad()
def defended_accuracy(
    name: str, net: nn.Sequential, split: int, defence: nn.Module | None, test: MNISTSplit
) -> float:
    """Task accuracy of the whole network on ``test`` when the features after ``split`` pass
    ``defence``."""
    blocks = device_blocks(name, net, split, defence)  # checks the split first
    end = get_spec(name).block_ends[split - 1]
    device = next(net.parameters()).device
    features = transmit(blocks, test.images.to(device))
    logits = predict(net[end:], features)
    return (logits.argmax(1).cpu() == test.labels.cpu()).double().mean().item()


def train_attacker(
    blocks: Sequence[nn.Module],
    regime: str,
    steps: int,
    images: torch.Tensor | None = None,
    seed: int = 0,
    desc: str = "attacker",
    **recipe,
) -> InverseChain:
    """A progressive inverse chain of the device ``blocks`` (defence included: the adaptive
    attacker), trained for ``steps`` batches on ``images`` (``regime="real"``: the attacker's own
    images), on structured noise (``regime="noise"``: data-free) or on N(0, 1) pixels
    (``regime="gaussian"``: He et al.'s noise baseline), with the project's recipe
    (``recipe`` overrides it). The device ends at a split, never at the logits, so the recipe's
    class-decision loss does not apply (``logits=False``)."""
    device = next(p for b in blocks for p in b.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    sample = regime_sampler(regime, generator, device, real=images)
    with GLOBAL_RNG:  # seeded and initialised at once, also when attackers train side by side
        torch.manual_seed(seed)
        chain = InverseChain(list(blocks)).to(device)
    train_inverse_chain(
        chain, list(blocks), sample, steps, seed=seed, desc=desc, logits=False, **recipe
    )
    return chain.eval()


#: the inverse chains of notebook 09, by what they train on: ``{what: (regime, whose images)}``
CHAIN_SOURCES = {
    "same data": ("real", "owner"),
    "other data": ("real", "attacker"),
    "data-free": ("noise", None),
}


def chain_tasks(
    blocks: Sequence[nn.Module],
    sources: Mapping[str, tuple[str, str | None]],
    images: Mapping[str, torch.Tensor],
    steps: int,
    seed: int,
    name: str,
) -> list[Callable[[], InverseChain]]:
    """One task per source (``{what: (regime, whose images)}`` as :data:`CHAIN_SOURCES`,
    ``images[whose]`` the images): training the inverse chain of the device ``blocks`` of target
    ``name`` for ``steps`` batches (:func:`train_attacker`), in the order of ``sources``; to run
    with ``train.run_side_by_side``, alone or beside other devices' tasks."""
    return [
        partial(train_attacker, blocks, regime, steps, images[whose] if whose else None, seed,
                f"{name}: {what}")
        for what, (regime, whose) in sources.items()
    ]  # fmt: skip


def attack_with_chain(
    chain: InverseChain, blocks: Sequence[nn.Module], x: torch.Tensor
) -> dict[int, torch.Tensor]:
    """Reconstructions of ``x`` from every split of ``blocks`` by ``chain``: ``{split: images}``,
    clipped to [0, 1]."""
    image_batch(x, "x")
    return {k: clip_images(r) for k, r in invert_from_every_depth(chain, list(blocks), x).items()}


def attack_by_optimisation(
    blocks: Sequence[nn.Module], x: torch.Tensor, steps: int, batch_size: int = 64
) -> torch.Tensor:
    """White-box attack: the input matched to the features the device sends for ``x`` by L-BFGS in
    float32 from grey (``optimise.match_features``; at an injective split its only minimum is the
    input), clipped to [0, 1]. float32, not float64: at this budget (notebook 09: 200 iterations)
    the PSNR of MNIST test images is the same to 0.1 dB at every split of the CNNs and the attack
    1.2-3.9x faster (docs/design.md, "Time budgets")."""
    features = transmit(blocks, x)  # checks x
    return clip_images(
        match_features(
            nn.Sequential(*blocks),
            features,
            steps=steps,
            batch_size=batch_size,
            dtype=torch.float32,
        ).images
    )


#: the rMLE attacker's choice of total-variation weight (per image, on [0, 1] images): it picks the
#: one that reconstructs its own images best (:func:`tune_tv_weight`)
RMLE_TV_GRID = (1e-4, 1e-3, 1e-2)
#: how many of its own images the rMLE attacker tunes the weight on
RMLE_TUNE_IMAGES = 32


def attack_by_rmle(
    blocks: Sequence[nn.Module],
    features: torch.Tensor,
    steps: int,
    tv_weight: float,
    shape: tuple[int, ...] = (1, 28, 28),
    batch_size: int = 256,
) -> torch.Tensor:
    """He et al.'s regularised maximum-likelihood attack: the image whose features through
    ``blocks`` match ``features`` (relative squared error) plus ``tv_weight`` times its total
    variation, by L-BFGS in float32 from grey, clipped to [0, 1]. ``blocks`` are the device's (white
    box) or a shadow's (:func:`train_shadow`: query-free); ``features`` what the device sent;
    ``tv_weight`` the attacker's (:func:`tune_tv_weight`). The search is unconstrained and the
    result clipped: a search inside [0, 1] (``bounded``) reached 50 dB at He et al.'s first
    convolution where the unconstrained one reaches 96 dB, and 14.6 against 26.2 dB at their second
    ReLU (256 MNIST test images, 200 iterations; docs/design.md)."""
    if not (isinstance(tv_weight, (int, float)) and tv_weight >= 0):
        raise ValueError(f"tv_weight must be a number >= 0, got {tv_weight!r}")
    return clip_images(
        match_features(
            nn.Sequential(*blocks),
            features,
            steps=steps,
            shape=shape,
            batch_size=batch_size,
            prior=(lambda x: tv_weight * smooth_total_variation(x)) if tv_weight else None,
            dtype=torch.float32,
        ).images
    )


def tune_tv_weight(
    blocks: Sequence[nn.Module],
    own: torch.Tensor,
    steps: int,
    grid: Sequence[float] = RMLE_TV_GRID,
) -> float:
    """The rMLE attacker's total-variation weight: of ``grid``, the one whose reconstructions of
    the attacker's ``own`` images, from their features through ``blocks`` (the device's, or its
    shadow), have the highest mean PSNR. The attacker needs no test image and no query for this:
    it runs ``blocks`` on images it holds."""
    image_batch(own, "own")
    if not grid or not all(isinstance(w, (int, float)) and w >= 0 for w in grid):
        raise ValueError(f"grid must list weights >= 0, got {grid!r}")
    features = transmit(blocks, own)
    found = {
        w: psnr(attack_by_rmle(blocks, features, steps, w, tuple(own.shape[1:])), own) for w in grid
    }
    return max(found, key=found.get)


def train_shadow(
    net: nn.Sequential,
    end: int,
    train: MNISTSplit,
    epochs: int = 1,
    seed: int = 0,
    lr: float = 1e-3,
    desc: str = "shadow device",
) -> nn.Sequential:
    """The query-free attacker's shadow of the device ``net[:end]``: the same layers, initialised
    afresh (seeded ``seed``), trained for ``epochs`` with the server's part ``net[end:]`` frozen
    (weights and eval mode) behind them to classify the attacker's own labelled images ``train``.
    Returns the shadow device (eval mode, frozen); ``net`` is not modified."""
    if not isinstance(end, int) or not 1 <= end < len(net):
        raise ValueError(f"end must split net's {len(net)} layers (1..{len(net) - 1}), got {end!r}")
    shadow = copy.deepcopy(net[:end]).requires_grad_(True)
    with GLOBAL_RNG:
        torch.manual_seed(seed)
        for module in shadow.modules():
            if hasattr(module, "reset_parameters") and module is not shadow:
                module.reset_parameters()
    server = _Frozen(copy.deepcopy(net[end:]).requires_grad_(False))
    fit(nn.Sequential(shadow, server), train, None, epochs=epochs, lr=lr, seed=seed, desc=desc)
    return shadow.requires_grad_(False).eval()


class _Frozen(nn.Module):
    """The server's part as the shadow trains under it: fixed weights and always in eval mode (its
    batch norms keep their statistics, its dropout stays off), whatever ``train()`` asks."""

    def __init__(self, part: nn.Module) -> None:
        super().__init__()
        self.part = part.eval()

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.part(x)


def analytic_attackers(
    name: str,
    net: nn.Sequential,
    images: torch.Tensor,
    grid: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0),
) -> dict[int, nn.Module]:
    """Notebook 02's analytic inverse of the device at every split of target ``name``, built from
    the attacker's ``images`` (the Gaussian prior of each dense layer's input; its ridge chosen on
    the last fifth of them): ``{split: inverse}``, empty where a layer does not invert (max-pooling:
    the server never sees its positions)."""
    ends = get_spec(name).block_ends[: split_points(name)[-1]]
    cut = len(images) * 4 // 5
    found = boundary_inverses(net[: ends[-1]], ends, images[:cut], images[cut:], grid)
    return {k: inverse for (method, k), inverse in found.items() if method == PRIOR}


# --- scoring -----------------------------------------------------------------------------------


def score(
    originals: torch.Tensor,
    recon: torch.Tensor,
    labels: torch.Tensor | None,
    judge: nn.Module | None,
    recognisable_ssim: float,
    both_conventions: bool = False,
    **fields,
) -> dict:
    """One results row: ``fields`` (target, split, threat, defence, strength, accuracy, ...) and the
    reconstruction's PSNR, SSIM, share recognisable (SSIM >= ``recognisable_ssim``) and, with a
    ``judge``, re-classification, each with its 95 % bootstrap interval over the images.
    ``both_conventions``: also SSIM in He et al.'s convention (``ssim_recon_range``)."""
    report = reconstruction_report(
        originals,
        recon,
        labels if judge is not None else None,
        judge,
        recognisable_ssim,
        ssim_by_reconstruction_range=both_conventions,
    )
    keep = (
        "psnr",
        "psnr_ci",
        "ssim",
        "ssim_ci",
        "recognisable",
        "recognisable_ci",
        "reclass",
        "reclass_ci",
        "ssim_recon_range",
        "ssim_recon_range_ci",
    )
    return {**fields, **{k: report[k] for k in keep if k in report}, "n_images": len(originals)}


def strongest(rows: Sequence[dict], **match) -> dict:
    """The row of highest SSIM among ``rows`` matching ``match`` (the best attacker there)."""
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if not found:
        raise KeyError(f"no row matches {match}")
    return max(found, key=lambda r: r["ssim"])


def cheapest_defence(
    rows: Sequence[dict], target: str, split: int, max_loss: float, below_ssim: float
) -> dict | None:
    """The defence setting at ``split`` that loses the least accuracy (its rows' ``accuracy_loss``,
    against the same network undefended, at most ``max_loss``) while its best attacker's SSIM
    interval lies wholly below ``below_ssim``; ``None`` where none does."""
    settings = {
        (r["defence"], r["strength"])
        for r in rows
        if r["target"] == target and r["split"] == split and r["defence"] != "none"
    }
    ok = []
    for defence, strength in settings:
        best = strongest(rows, target=target, split=split, defence=defence, strength=strength)
        if best["accuracy_loss"] <= max_loss and best["ssim_ci"][1] < below_ssim:
            ok.append(best)
    return min(ok, key=lambda r: (r["accuracy_loss"], r["ssim"])) if ok else None
