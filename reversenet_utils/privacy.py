"""Notebook 09's stages: split devices under attack, and the defences against an attacker who
adapts.

The attacks, scoring and the cheapest defence are ``split``'s; the defences ``defences``'. Here
they run as the notebook runs them, one target at a time, and return results rows; tables and
figures take the rows; the claims made from them live in :mod:`reversenet_utils.claims.privacy`.

- :func:`split_halves`: the device owner's half of the training images and the attacker's;
- :func:`attack_devices` (:func:`attack_device` for one): train the devices, attack every split
  with every attacker, on their own dataset's test images and on the other dataset's (shifted
  inputs);
- :func:`defend_device`: every defence setting at one split, each against a freshly trained
  adaptive attacker (and the naive one for feature defences);
- :func:`journal_anchors`: He et al.'s journal statements on the same ground (their ACSAC table,
  on their own LeNet: :mod:`reversenet_utils.he_lenet`);
- :func:`leak_table`, :func:`leaks_figure`, :func:`privacy_utility_figure`,
  :func:`defence_table`, :func:`journal_table`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .audit import AuditedNetwork
from .context import Context
from .data import MNISTSplit
from .defences import FEATURE_DEFENCES, TRAINING_DEFENCES, make_defence, train_defended
from .labels import THREATS
from .models import get_spec
from .notebook import AT_LEAST_0, AT_LEAST_1, FRACTION, require
from .plotting import image_grid, markdown_table
from .split import (
    CHAIN_SOURCES,
    analytic_attackers,
    attack_by_optimisation,
    attack_with_chain,
    defended_accuracy,
    device_blocks,
    score,
    split_points,
    strongest,
    chain_tasks,
    train_attacker,
    transmit,
)
from .train import run_side_by_side

__all__ = [
    "check_parameters",
    "split_halves",
    "attack_devices",
    "attack_device",
    "describe_device",
    "leak_table",
    "leaks_figure",
    "defence_strengths",
    "defend_device",
    "privacy_utility_figure",
    "defence_table",
    "journal_anchors",
    "journal_table",
]

#: He et al., IoTJ 2020 (MNIST): the accuracy a defence keeps in their statements, and the SSIM
#: each statement makes (noise keeping it leaves SSIM above the first; dropout reaches below the
#: second)
JOURNAL_ACCURACY, JOURNAL_NOISE_SSIM, JOURNAL_DROPOUT_SSIM = 0.95, 0.4, 0.25


def check_parameters(params: Mapping[str, Any]) -> None:
    """Notebook 09's parameters beyond their types (``notebook.require``)."""
    targets, split = params["targets"], params["defence_split"]

    def splittable(names: Sequence[str]) -> bool:
        try:
            return bool(names) and all(split_points(t) for t in names)
        except (KeyError, ValueError):
            return False

    problems = []
    if splittable(targets) and not all(split in split_points(t) for t in targets):
        problems.append(f"defence_split={split} must be a split of every target")
    require(
        params,
        {
            "targets": (splittable, "targets with block boundaries to split at"),
            **dict.fromkeys(
                (
                    "n_eval",
                    "n_opt",
                    "opt_steps",
                    "attack_steps",
                    "defence_attack_steps",
                    "n_anchor",
                    "rmle_steps",
                ),
                AT_LEAST_1,
            ),  # fmt: skip
            "device_epochs": AT_LEAST_0,
            "defence_epochs": AT_LEAST_0,
            "recognisable_ssim": (lambda v: 0 < v < 1, "in (0, 1)"),
            "max_accuracy_loss": FRACTION,
        },
        problems,
    )


def split_halves(train: MNISTSplit, generator: torch.Generator) -> tuple[MNISTSplit, MNISTSplit]:
    """The training set cut in two at random: the device owner's half (which trains the devices)
    and the attacker's own labelled images (never seen by a device)."""
    order = torch.randperm(len(train), generator=generator).to(train.images.device)
    half = len(train) // 2
    owner, attacker = order[:half], order[half:]
    return (
        MNISTSplit(train.images[owner], train.labels[owner]),
        MNISTSplit(train.images[attacker], train.labels[attacker]),
    )


def attack_devices(
    ctx: Context,
    targets: Sequence[str],
    owner: MNISTSplit,
    attacker_images: torch.Tensor,
    test: MNISTSplit,
    inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    judge: nn.Module,
    params: Mapping[str, Any],
    audited: Mapping[str, AuditedNetwork] | None = None,
) -> tuple[dict[str, dict], dict[str, nn.Sequential], dict[str, dict], list[dict], dict]:
    """Each target of ``targets`` trained on the owner's half as a device (``device_epochs``, else
    its recipe on the context's dataset), then every attacker against every split: the three
    inverse chains, optimisation on the first ``n_opt`` images, and the analytic inverse where
    every layer inverts. The chains of every device train in one pool, two side by side on a CPU
    (``train.run_side_by_side``): no core waits while one device's last chain trains alone.
    ``inputs``: per dataset name, the test images and their labels (None for the shifted dataset:
    no judge there). ``audited``: per target, a user's network (:mod:`reversenet_utils.audit`),
    used as given where it came with weights (0 epochs here).

    Returns, by target, each device's summary (accuracy, epochs, seconds, splits, whether it starts
    with a convolution), the network and its attackers' chains; the results rows of all; and by
    target the first 8 reconstructions of each ``(dataset, threat, split)``.
    """
    audited = audited or {}
    found = run_side_by_side(
        [partial(_device, ctx, name, owner, test, params, audited.get(name)) for name in targets],
        ctx.device,
    )  # the devices train side by side, each from its own seeded start
    devices = {name: device for name, (device, _) in zip(targets, found)}
    nets = {name: net for name, (_, net) in zip(targets, found)}
    blocks = {
        name: device_blocks(name, nets[name], devices[name]["splits"][-1]) for name in targets
    }
    images = {"owner": owner.images, "attacker": attacker_images}
    tasks = [task for name in targets
             for task in chain_tasks(blocks[name], CHAIN_SOURCES, images, params["attack_steps"],
                                     params["seed"], name)]  # fmt: skip
    trained = iter(run_side_by_side(tasks, ctx.device))
    chains = {name: {f"inverse net, {what}": next(trained) for what in CHAIN_SOURCES}
              for name in targets}  # fmt: skip
    rows, recons = [], {}
    for name in targets:
        found, recons[name] = _attack_splits(
            name, nets[name], devices[name], blocks[name], chains[name], attacker_images, inputs,
            judge, params,
        )  # fmt: skip
        rows += found
    return devices, nets, chains, rows, recons


def attack_device(
    ctx: Context,
    name: str,
    owner: MNISTSplit,
    attacker_images: torch.Tensor,
    test: MNISTSplit,
    inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    judge: nn.Module,
    params: Mapping[str, Any],
    audited: AuditedNetwork | None = None,
) -> tuple[dict, nn.Sequential, dict, list[dict], dict]:
    """:func:`attack_devices` of one target: its device's summary, the network, its attackers'
    chains, the results rows and the first 8 reconstructions of each ``(dataset, threat,
    split)``."""
    devices, nets, chains, rows, recons = attack_devices(
        ctx, [name], owner, attacker_images, test, inputs, judge, params,
        {name: audited} if audited is not None else None,
    )  # fmt: skip
    return devices[name], nets[name], chains[name], rows, recons[name]


def _device(
    ctx: Context,
    name: str,
    owner: MNISTSplit,
    test: MNISTSplit,
    params: Mapping[str, Any],
    audited: AuditedNetwork | None,
) -> tuple[dict, nn.Sequential]:
    """Target ``name`` as a device, trained on the owner's half (or a user's trained network as
    given), and its summary."""
    if audited is not None and audited.net is not None:  # the user's trained weights
        net, epochs, meta = audited.net, 0, {"accuracy": audited.accuracy, "train_s": 0.0}
    else:
        epochs = params["device_epochs"] or get_spec(name).on(ctx.dataset).epochs
        net, meta = train_defended(ctx, name, owner, test, epochs, seed=params["seed"])
    device = {"accuracy": meta["accuracy"], "epochs": epochs, "train_s": meta["train_s"],
              "splits": split_points(name), "conv": isinstance(net[0], nn.Conv2d)}  # fmt: skip
    if audited is not None:
        device["audit"] = audited.summary()
    return device, net


def _attack_splits(
    name: str,
    net: nn.Sequential,
    device: Mapping[str, Any],
    blocks: Sequence[nn.Module],
    chains: Mapping[str, nn.Module],
    attacker_images: torch.Tensor,
    inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
    judge: nn.Module,
    params: Mapping[str, Any],
) -> tuple[list[dict], dict]:
    """Every attacker of one device against every split, on each dataset of ``inputs``: the
    results rows and the first 8 reconstructions of each ``(dataset, threat, split)``."""
    analytic = analytic_attackers(name, net, attacker_images[:10000])  # none through max-pooling
    rows, recons = [], {}
    for dataset, (images, labels) in inputs.items():
        found = _attacks(chains, analytic, blocks, device["splits"], images, params)
        for (threat, k), (r, originals) in found.items():
            recons[dataset, threat, k] = r[:8]
            lab = None if labels is None else labels[: len(originals)]
            rows.append(score(originals, r, lab, None if labels is None else judge,
                              params["recognisable_ssim"], target=name, split=k, threat=threat,
                              defence="none", strength=0.0, accuracy=device["accuracy"],
                              inputs=dataset))  # fmt: skip
    return rows, recons


def describe_device(name: str, device: Mapping[str, Any], title: str) -> str:
    """One line on a trained device: its accuracy and how it was trained."""
    trained = (
        f"{device['epochs']} epochs on the owner's half, {device['train_s']:.0f} s"
        if device["epochs"]
        else "its given weights"
    )
    return f"{name}: accuracy {device['accuracy']:.2%} on {title} ({trained})"


def _attacks(
    chains: Mapping[str, nn.Module],
    analytic: Mapping[int, nn.Module],
    blocks: Sequence[nn.Module],
    splits: Sequence[int],
    images: torch.Tensor,
    params: Mapping[str, Any],
) -> dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]:
    """Every attacker's reconstructions of ``images`` from every split, with the originals each
    scored (the optimisation attack: the first ``n_opt``)."""
    found = {}
    for threat, chain in chains.items():
        for k, r in attack_with_chain(chain, blocks, images).items():
            found[threat, k] = (r, images)
    n_opt = params["n_opt"]
    for k in splits:
        r = attack_by_optimisation(blocks[:k], images[:n_opt], params["opt_steps"])
        found["optimisation", k] = (r, images[:n_opt])
        if k in analytic:
            with torch.no_grad():
                r = analytic[k](transmit(blocks[:k], images)).clamp(0, 1)
            found["analytic", k] = (r, images)
    return found


def leak_table(rows: Sequence[dict], devices: Mapping[str, dict], inputs: str) -> str:
    """Markdown: every undefended attack at every split of every device, on the test images of
    ``inputs`` (PSNR / SSIM / share recognisable)."""
    body = []
    for name, device in devices.items():
        for k in device["splits"]:
            cells = []
            for threat in THREATS:
                match = {"target": name, "split": k, "threat": threat, "inputs": inputs,
                         "defence": "none"}  # fmt: skip
                r = [r for r in rows if all(r[key] == v for key, v in match.items())]
                cells.append(
                    f"{r[0]['psnr']:.1f} / {r[0]['ssim']:.2f} / {r[0]['recognisable']:.0%}"
                    if r
                    else "–"
                )
            body.append([f"`{name}`", k, *cells])
    return markdown_table(["target", "split", *THREATS], body)


def leaks_figure(
    rows: Sequence[dict],
    recons: Mapping[str, Mapping[tuple, torch.Tensor]],
    devices: Mapping[str, dict],
    originals: torch.Tensor,
    inputs: str,
    title: str,
) -> Figure:
    """For each target and split, the strongest undefended attack's reconstructions of the same 8
    test images, under the originals."""
    panels = [("original", originals[:8])]
    for name, device in devices.items():
        for k in device["splits"]:
            best = strongest(rows, target=name, split=k, defence="none", inputs=inputs)
            label = f"{name}, split {k}\n{best['threat']}\nSSIM {best['ssim']:.2f}"
            panels.append((label, recons[name][inputs, best["threat"], k]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.05 * len(panels)))
    for ax, (label, images) in zip(axes, panels):
        ax.imshow(image_grid(images.cpu(), nrow=8), cmap="gray", vmin=0, vmax=1)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"What the server recovers ({title}): the strongest attack at each split", y=1.0)
    return fig


def defence_strengths(params: Mapping[str, Any]) -> dict[str, list]:
    """Each defence's strengths from the parameters, in the order they run."""
    noise = params["noise_strengths"]
    return {"gaussian": noise, "laplace": noise, "dropout": params["dropout_rates"],
            "quantise": params["quant_bits"], "nopeek": params["nopeek_weights"],
            "dp": params["dp_noise"], "adversarial": params["adversarial_weights"]}  # fmt: skip


def defend_device(
    ctx: Context,
    name: str,
    net: nn.Sequential,
    device: dict,
    naive: nn.Module,
    owner: MNISTSplit,
    attacker_images: torch.Tensor,
    test: MNISTSplit,
    scored: tuple[torch.Tensor, torch.Tensor],
    judge: nn.Module,
    params: Mapping[str, Any],
) -> list[dict]:
    """Every defence setting at the split ``defence_split`` of device ``name``: feature defences
    on the trained device at inference (their cost against it undefended), training-time defences
    retrained for ``defence_epochs`` (their cost against the same recipe undefended, trained as
    long). Each setting gets an adaptive attacker trained anew through the defended device (two side
    by side on a CPU, each from its own generator); feature defences are also attacked by the
    ``naive`` chain, trained on undefended features. Records in ``device`` the settings tried and
    the training-time baseline; returns the rows, scored on ``scored`` (images, labels)."""
    s, seed, strengths = params["defence_split"], params["seed"], defence_strengths(params)
    base = device["accuracy"]
    calibration = transmit(device_blocks(name, net, s), owner.images[:2000])
    left_out = device.get("audit", {}).get("left_out", {})  # what cannot run on a user's network
    settings = [(kind, v) for kind in FEATURE_DEFENCES + TRAINING_DEFENCES for v in strengths[kind]
                if kind not in left_out]  # fmt: skip
    # given weights (0 epochs here): the training-time defences retrain with the target's recipe
    epochs = params["defence_epochs"] or device["epochs"] or get_spec(name).on(ctx.dataset).epochs
    retrains = any(kind in TRAINING_DEFENCES for kind, _ in settings)
    trained_base = (
        train_defended(ctx, name, owner, test, epochs, seed=seed)[1]["accuracy"]
        if retrains and epochs != device["epochs"]
        else base
    )
    device |= {"defence_settings": len(settings), "defence_epochs": epochs,
               "defence_baseline_accuracy": trained_base}  # fmt: skip
    prepared = []  # per setting: the defended device's blocks, its accuracy, the baseline's
    for kind, strength in settings:
        if kind in FEATURE_DEFENCES:
            defence = make_defence(kind, strength, calibration)
            info = {"accuracy": defended_accuracy(name, net, s, defence, test)}
            prepared.append((device_blocks(name, net, s, defence), info, base))
        else:
            end = get_spec(name).block_ends[s - 1]
            defended, info = train_defended(ctx, name, owner, test, epochs, kind, strength, end,
                                            seed=seed)  # fmt: skip
            prepared.append((device_blocks(name, defended, s), info, trained_base))
    adaptive = run_side_by_side(
        [
            partial(
                train_attacker,
                blocks,
                "real",
                params["defence_attack_steps"],
                attacker_images,
                seed,
                f"{name}: {kind} {strength:g}",
            )
            for (kind, strength), (blocks, _, _) in zip(settings, prepared)
        ],  # fmt: skip
        ctx.device,
    )
    x, labels = scored
    rows = []
    for (kind, strength), (blocks, info, baseline), chain in zip(settings, prepared, adaptive):
        attackers = {"adaptive": chain} | ({"naive": naive} if kind in FEATURE_DEFENCES else {})
        for who, attacker in attackers.items():
            r = attack_with_chain(attacker, blocks, x)[s]
            extra = {key: info[key] for key in ("epsilon", "adversary_mse") if key in info}
            rows.append(score(x, r, labels, judge, params["recognisable_ssim"], target=name,
                              split=s, threat=f"inverse net, other data ({who})", defence=kind,
                              strength=float(strength), accuracy=info["accuracy"],
                              accuracy_loss=baseline - info["accuracy"], inputs=ctx.dataset,
                              **extra))  # fmt: skip
    return rows


def privacy_utility_figure(rows: Sequence[dict], params: Mapping[str, Any], title: str) -> Figure:
    """Per target: the best attacker's SSIM against the accuracy lost, for every defence's settings,
    the undefended device as a point; the recognisable line and the accuracy budget."""
    s, targets, inputs = params["defence_split"], params["targets"], params["dataset"]
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, name in zip(axes[0], targets):
        undefended = strongest(rows, target=name, split=s, defence="none", inputs=inputs)
        ax.scatter([0], [undefended["ssim"]], color="black", zorder=3, label="undefended")
        for kind in FEATURE_DEFENCES + TRAINING_DEFENCES:
            points = sorted(
                {r["strength"] for r in rows if r["target"] == name and r["defence"] == kind}
            )
            best = [strongest(rows, target=name, split=s, defence=kind, strength=v, inputs=inputs)
                    for v in points]  # fmt: skip
            ax.plot([100 * b["accuracy_loss"] for b in best], [b["ssim"] for b in best],
                    marker="o", label=kind)  # fmt: skip
        ax.axhline(params["recognisable_ssim"], color="grey", ls="--", lw=1)
        ax.axvline(100 * params["max_accuracy_loss"], color="grey", ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_title(f"{name}, split {s}")
        ax.set_xlabel("accuracy lost (points; symlog)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("best attacker's SSIM")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Privacy against utility ({title}): lower left is better; dashed: recognisable, "
                 "dotted: 1 point lost")  # fmt: skip
    fig.tight_layout()
    return fig


def defence_table(rows: Sequence[dict], params: Mapping[str, Any]) -> str:
    """Markdown: every defence setting's accuracy, the adaptive and the naive attacker's SSIM, and
    the best attacker's PSNR, share recognisable and judge re-classification (and DP's epsilon)."""
    strengths, body = defence_strengths(params), []
    for name in params["targets"]:
        for kind in FEATURE_DEFENCES + TRAINING_DEFENCES:
            for v in strengths[kind]:
                found = {r["threat"].split("(")[-1][:-1]: r for r in rows if r["target"] == name
                         and r["defence"] == kind and r["strength"] == float(v)}  # fmt: skip
                if not found:  # a defence left out of an audit (its device's "audit")
                    continue
                best, a = max(found.values(), key=lambda r: r["ssim"]), found["adaptive"]
                body.append([
                    f"`{name}`", kind, f"{v:g}",
                    f"{a['accuracy']:.2%} ({0.0 - a['accuracy_loss']:+.2%})",
                    f"{a['ssim']:.2f} [{a['ssim_ci'][0]:.2f}, {a['ssim_ci'][1]:.2f}]",
                    f"{found['naive']['ssim']:.2f}" if "naive" in found else "–",
                    f"{best['psnr']:.1f}", f"{best['recognisable']:.0%}", f"{best['reclass']:.0%}",
                    f"{a['epsilon']:.2f}" if "epsilon" in a else "",
                ])  # fmt: skip
    header = ["target", "defence", "strength", "accuracy (change)", "SSIM, adaptive attacker",
              "SSIM, naive", "best PSNR (dB)", "recognisable (best)",
              "judge re-classifies (best)", "ε (DP)"]  # fmt: skip
    return markdown_table(header, body)


def journal_anchors(rows: Sequence[dict], targets: Sequence[str], split: int) -> list[dict]:
    """He et al., IoTJ 2020 (MNIST), on each target: noise that keeps accuracy above 95 % leaves
    SSIM above 0.4; dropout on the split layer reaches SSIM below 0.25 at above 95 % accuracy. Each
    judged on the whole SSIM interval of the lowest-SSIM setting that keeps the accuracy."""
    statements = (
        ("gaussian", f"noise keeping > {JOURNAL_ACCURACY:.0%} accuracy leaves SSIM > "
                     f"{JOURNAL_NOISE_SSIM}"),
        ("dropout", f"dropout reaches SSIM < {JOURNAL_DROPOUT_SSIM} at > {JOURNAL_ACCURACY:.0%} "
                    "accuracy"),
    )  # fmt: skip
    found = []
    for name in targets:
        for kind, claim in statements:
            strengths = sorted(
                {r["strength"] for r in rows if r["target"] == name and r["defence"] == kind}
            )
            kept = [
                strongest(rows, target=name, split=split, defence=kind, strength=v)
                for v in strengths
            ]
            kept = [r for r in kept if r["accuracy"] > JOURNAL_ACCURACY]
            if not kept:
                measured = f"no setting keeps {JOURNAL_ACCURACY:.0%} accuracy"
                found.append({"target": name, "claim": claim, "holds": None, "measured": measured})
                continue
            low = min(kept, key=lambda r: r["ssim"])
            lo, hi = low["ssim_ci"]
            holds = lo > JOURNAL_NOISE_SSIM if kind == "gaussian" else hi < JOURNAL_DROPOUT_SSIM
            found.append({"target": name, "claim": claim, "holds": holds,
                          "measured": f"lowest SSIM at > {JOURNAL_ACCURACY:.0%}: {low['ssim']:.2f} "
                                      f"[{lo:.2f}, {hi:.2f}] ({kind} {low['strength']:g}, "
                                      f"{low['accuracy']:.2%})"})  # fmt: skip
    return found


def journal_table(journal: Sequence[dict]) -> str:
    """Markdown: each of the journal's statements, what this run measured, and whether it holds."""
    body = [
        [
            f"`{j['target']}`",
            j["claim"],
            j["measured"],
            {True: "yes", False: "no", None: "–"}[j["holds"]],
        ]  # fmt: skip
        for j in journal
    ]
    return markdown_table(["target", "IoTJ 2020 (MNIST)", "here", "holds?"], body)
