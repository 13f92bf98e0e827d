"""He, Zhang and Lee's LeNet under their own attacks: notebook 09's anchor table.

He et al. (ACSAC 2019) split an MNIST LeNet (``models.lenet_he``) after its first convolution
(split 1, the raw convolution output) and after its second ReLU (split 2), and attacked both splits
with five attackers (``anchors.HE_2019_SPLIT_PSNR`` / ``HE_2019_SPLIT_SSIM``). This module runs the
same five here, on the device notebook 09 trained on the owner's half:

- ``"rMLE"``: white box, feature matching plus total variation from grey, its weight tuned on the
  attacker's own images (``split.attack_by_rmle``, ``split.tune_tv_weight``);
- ``"inverse net, same data"`` / ``"other data"`` / ``"N(0, 1) noise"``: the progressive inverse
  chain trained on the owner's images, on the attacker's own, on N(0, 1) pixels; and this study's
  data-free chain (structured noise), which their table has no row for;
- ``"query-free"``: a shadow device trained by the attacker under the server's part, then rMLE
  through the shadow (``split.train_shadow``).

Every attack is scored on ``n_anchor`` test images (they scored one per class) with the standard
SSIM and with theirs (``data_range`` the reconstruction's range); :func:`comparisons` gives each of
their numbers a verdict from the interval, :func:`anchor_table` their table's layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .anchors import HE_2019_SPLIT_PSNR, HE_2019_SPLIT_SSIM
from .context import Context
from .data import MNISTSplit
from .defences import train_defended
from .labels import GAUSSIAN_NOISE, HE_ATTACKERS, QUERY_FREE, RMLE
from .metrics import verdict
from .models import get_spec
from .plotting import image_grid, markdown_table
from .progressive import InverseChain, split_blocks
from .split import (
    CHAIN_SOURCES,
    RMLE_TUNE_IMAGES,
    attack_by_rmle,
    attack_with_chain,
    chain_tasks,
    device_blocks,
    score,
    split_points,
    train_shadow,
    transmit,
    tune_tv_weight,
)
from .thresholds import RERUN_TOLERANCE_DB
from .train import predict, run_side_by_side

__all__ = [
    "TARGET",
    "run",
    "device",
    "attack",
    "figure",
    "comparisons",
    "anchor_table",
]

#: He et al.'s network in the registry
TARGET = "lenet_he"
#: He et al.'s noise-trained inverse network (:data:`~reversenet_utils.split.CHAIN_SOURCES`' form)
N01_SOURCE = {"N(0, 1) noise": (GAUSSIAN_NOISE, None)}
#: the attackers whose score moves when their training is re-run (their PSNR verdicts widen by
#: ``thresholds.RERUN_TOLERANCE_DB``)
TRAINED = frozenset(a for a in HE_ATTACKERS if a.startswith("inverse net")) | {QUERY_FREE}
#: the dataset of He et al.'s numbers
ANCHOR_DATASET = "mnist"
#: He et al.'s names of the splits
SPLIT_NAMES = {1: "conv1", 2: "ReLU2"}


def run(
    ctx: Context,
    owner: MNISTSplit,
    attacker: MNISTSplit,
    test: MNISTSplit,
    params: Mapping[str, Any],
    trained: tuple[Mapping[str, dict], Mapping[str, nn.Sequential], Mapping[str, Mapping]],
) -> tuple[dict, dict[tuple[str, int], torch.Tensor]]:
    """Notebook 09's anchor table, whole: the device (:func:`device`; ``trained`` are notebook
    09's ``devices``, ``nets`` and ``chains``, reused where ``lenet_he`` is among its targets),
    every attacker (:func:`attack`) and the comparisons on the context's dataset. Returns the
    results entry ``{"device", "tv_weights", "shadow_accuracy", "rows", "comparisons"}`` and the
    first 8 reconstructions of each (attacker, split)."""
    devices, nets, chains = trained
    summary, net = device(ctx, owner, test, params, devices, nets)
    info, rows, shown = attack(ctx, net, chains.get(TARGET, {}), owner, attacker, test, params)
    entry = {"device": summary, **info, "rows": rows, "comparisons": comparisons(rows, ctx.dataset)}
    return entry, shown


def device(
    ctx: Context,
    owner: MNISTSplit,
    test: MNISTSplit,
    params: Mapping[str, Any],
    devices: Mapping[str, dict],
    nets: Mapping[str, nn.Sequential],
) -> tuple[dict, nn.Sequential]:
    """He et al.'s LeNet as a device: the one notebook 09 trained among its ``targets`` (its
    summary in ``devices``, the network in ``nets``), else trained here on the owner's half the same
    way (``device_epochs``, else the recipe's)."""
    if TARGET in nets:
        return dict(devices[TARGET]), nets[TARGET]
    epochs = params["device_epochs"] or get_spec(TARGET).on(ctx.dataset).epochs
    net, meta = train_defended(ctx, TARGET, owner, test, epochs, seed=params["seed"])
    summary = {"accuracy": meta["accuracy"], "epochs": epochs, "train_s": meta["train_s"],
               "splits": split_points(TARGET), "conv": True}  # fmt: skip
    return summary, net


def attack(
    ctx: Context,
    net: nn.Sequential,
    chains: Mapping[str, InverseChain],
    owner: MNISTSplit,
    attacker: MNISTSplit,
    test: MNISTSplit,
    params: Mapping[str, Any],
) -> tuple[dict, list[dict], dict[tuple[str, int], torch.Tensor]]:
    """Every attacker of He et al.'s table against both splits of the device ``net``, on the first
    ``n_anchor`` test images. ``chains``: the inverse chains notebook 09 already trained for this
    device (by threat); the rest of ``split.CHAIN_SOURCES``, and the N(0, 1) chain, are trained
    here.
    The rMLE attacks run ``rmle_steps`` L-BFGS iterations with the weight each attacker tunes on its
    last :data:`~reversenet_utils.split.RMLE_TUNE_IMAGES` images; the query-free attacker's shadow
    trains as long as the device did (``device_epochs``, else the recipe) on the attacker's half.

    Returns ``{"tv_weights": {attacker: {split: weight}}, "shadow_accuracy": ...}``, one row per
    (attacker, split), with both SSIM conventions (``split.score``), and the first 8
    reconstructions of each (attacker, split)."""
    seed, steps, n = params["seed"], params["rmle_steps"], params["n_anchor"]
    splits = split_points(TARGET)
    ends = get_spec(TARGET).block_ends[: splits[-1]]
    blocks = device_blocks(TARGET, net, splits[-1])
    wanted = CHAIN_SOURCES | N01_SOURCE
    missing = {w: s for w, s in wanted.items() if f"inverse net, {w}" not in chains}
    images = {"owner": owner.images, "attacker": attacker.images}
    epochs = params["device_epochs"] or get_spec(TARGET).on(ctx.dataset).epochs
    # the missing chains and the shadow device train side by side (train.run_side_by_side)
    *trained, shadow = run_side_by_side(
        [*chain_tasks(blocks, missing, images, params["attack_steps"], seed, TARGET),
         partial(train_shadow, net, ends[-1], attacker, epochs, seed,
                 desc=f"{TARGET}: shadow device")],
        ctx.device,
    )  # fmt: skip
    chains = {**chains, **{f"inverse net, {what}": c for what, c in zip(missing, trained)}}
    shadow_accuracy = _accuracy(nn.Sequential(shadow, net[ends[-1] :]), test)
    through = {RMLE: blocks, QUERY_FREE: split_blocks(shadow, ends)}
    own = attacker.images[-RMLE_TUNE_IMAGES:]  # the attacker's images, never a test image
    jobs = [(who, k) for who in through for k in splits]
    weights = run_side_by_side(
        [partial(tune_tv_weight, through[who][:k], own, steps) for who, k in jobs], ctx.device
    )
    x = test.images[:n]
    sent = {k: transmit(blocks[:k], x) for k in splits}  # what the device sends: the attacks' input
    found = run_side_by_side(
        [partial(attack_by_rmle, through[who][:k], sent[k], steps, w)
         for (who, k), w in zip(jobs, weights)],
        ctx.device,
    )  # fmt: skip
    recons = dict(zip(jobs, found))
    for threat in [t for t in HE_ATTACKERS if t in chains]:
        found = attack_with_chain(chains[threat], blocks, x)
        recons |= {(threat, k): r for k, r in found.items()}
    rows = [
        score(x, r, None, None, params["recognisable_ssim"], both_conventions=True, target=TARGET,
              split=k, threat=threat, inputs=ctx.dataset)
        for (threat, k), r in recons.items()
    ]  # fmt: skip
    tv = {who: {k: w for (a, k), w in zip(jobs, weights) if a == who} for who in through}
    shown = {key: r[:8] for key, r in recons.items()}
    return {"tv_weights": tv, "shadow_accuracy": shadow_accuracy}, rows, shown


def figure(
    originals: torch.Tensor, shown: Mapping[tuple[str, int], torch.Tensor], title: str
) -> Figure:
    """The same 8 test images reconstructed by each attacker of He et al.'s table, from each split
    (columns), under the originals."""
    splits = sorted({k for _, k in shown})
    threats = [t for t in HE_ATTACKERS if any((t, k) in shown for k in splits)]
    fig, axes = plt.subplots(len(threats) + 1, len(splits), squeeze=False,
                             figsize=(4.2 * len(splits), 0.75 * (len(threats) + 1)))  # fmt: skip
    for j, k in enumerate(splits):
        panels = [("original", originals[:8])] + [(t, shown.get((t, k))) for t in threats]
        for ax, (label, images) in zip(axes[:, j], panels):
            if images is not None:
                ax.imshow(image_grid(images.cpu(), nrow=8), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        axes[0, j].set_title(f"split {k}: {SPLIT_NAMES.get(k, k)}", fontsize=9)
    fig.suptitle(f"He et al.'s LeNet under their attackers ({title})", y=1.0)
    return fig


@torch.no_grad()
def _accuracy(net: nn.Module, test: MNISTSplit) -> float:
    return (predict(net, test.images).argmax(1).cpu() == test.labels.cpu()).double().mean().item()


def comparisons(rows: Sequence[dict], dataset: str) -> list[dict]:
    """Each attacker and split of He et al.'s table against the row here: their PSNR and SSIM, ours
    with its 95 % interval, and three verdicts from the intervals (``metrics.verdict``): PSNR
    (widened by ``thresholds.RERUN_TOLERANCE_DB`` where the attacker is trained), SSIM in the
    standard convention and in theirs. Attackers here without a number of theirs (the data-free
    chain), and every attacker on a dataset other than theirs (:data:`ANCHOR_DATASET`), get
    ``None`` anchors and no verdicts."""
    anchored = dataset == ANCHOR_DATASET
    found = []
    for threat in HE_ATTACKERS:
        for r in sorted((r for r in rows if r["threat"] == threat), key=lambda r: r["split"]):
            psnr_anchor = HE_2019_SPLIT_PSNR.get((threat, r["split"])) if anchored else None
            ssim_anchor = HE_2019_SPLIT_SSIM.get((threat, r["split"])) if anchored else None
            keep = ("psnr", "psnr_ci", "ssim", "ssim_ci", "ssim_recon_range",
                    "ssim_recon_range_ci", "n_images")  # fmt: skip
            c = {"threat": threat, "split": r["split"], **{k: r[k] for k in keep},
                 "anchor_psnr": psnr_anchor and psnr_anchor.value,
                 "anchor_ssim": ssim_anchor and ssim_anchor.value}  # fmt: skip
            if psnr_anchor is not None:
                tolerance = RERUN_TOLERANCE_DB if threat in TRAINED else 0.0
                c |= {
                    "psnr_verdict": verdict(r["psnr_ci"], psnr_anchor.value, tolerance),
                    "ssim_verdict": verdict(r["ssim_ci"], ssim_anchor.value),
                    "their_ssim_verdict": verdict(r["ssim_recon_range_ci"], ssim_anchor.value),
                }
            found.append(c)
    return found


def anchor_table(found: Sequence[dict]) -> str:
    """Markdown in He et al.'s layout: one row per attacker, per split their PSNR / SSIM and ours
    with 95 % intervals (SSIM in their convention too, where it differs in the third decimal) and
    the verdicts (PSNR, SSIM)."""
    splits = sorted({c["split"] for c in found})
    body = []
    for threat in HE_ATTACKERS:
        cells = [threat]
        for k in splits:
            c = next((c for c in found if c["threat"] == threat and c["split"] == k), None)
            cells += _cells(c)
        body.append(cells)
    header = ["attacker"]
    for k in splits:
        name = SPLIT_NAMES.get(k, f"split {k}")
        header += [f"{name}: theirs", f"{name}: here (95 % CI)", f"{name}: verdict"]
    return markdown_table(header, body)


def _cells(c: Mapping | None) -> list[str]:
    """The three cells of one attacker at one split: theirs, ours, the verdicts."""
    if c is None:
        return ["–", "not run", "–"]
    lo, hi = c["ssim_ci"]
    ours = (
        f"{c['psnr']:.2f} [{c['psnr_ci'][0]:.2f}, {c['psnr_ci'][1]:.2f}] / "
        f"{c['ssim']:.3f} [{lo:.3f}, {hi:.3f}]"
    )
    if round(c["ssim_recon_range"], 3) != round(c["ssim"], 3):
        t_lo, t_hi = c["ssim_recon_range_ci"]
        ours += f"; their SSIM {c['ssim_recon_range']:.3f} [{t_lo:.3f}, {t_hi:.3f}]"
    if c["anchor_psnr"] is None:
        return ["–", ours, "no number of theirs"]
    theirs = f"{c['anchor_psnr']:.2f} / {c['anchor_ssim']:.3f}"
    ssim = f"{c['ssim_verdict']} theirs"
    if c["their_ssim_verdict"] != c["ssim_verdict"]:
        ssim += f" (their convention: {c['their_ssim_verdict']} theirs)"
    return [theirs, ours, f"PSNR {c['psnr_verdict']} theirs, SSIM {ssim}"]
