"""Feature visualisation against lucent, side by side in one run: seconds and class probability.

The objective is notebook 06's: the logits of 4 ImageNet classes of EfficientNet-Lite0, one class
per image, rendered as one batch at 224 px for 256 Adam steps (lr 0.05) from an FFT parameterisation
with decorrelated colour and Distill's transforms (pad 12, jitter 8, scale 0.9-1.1, rotate ±10°,
jitter 4). lucent renders with its own ``render_vis``, ``param.image`` and
``transform.standard_transforms``; ReverseNet with ``featureviz.render`` and
``featureviz.robustness``. Both get the same model object, untouched. Runs alternate (lucent, ours,
lucent, ours, ...) so that a noisy, shared machine slows both alike; the ratio is of the median
seconds. Class probability is the softmax of each image's class on the final, untransformed image.

lucent is not a dependency of this repository (it pins kornia <= 0.4.1); ``make compare-lucent``
installs it in its own folder and runs this script:

    make compare-lucent [ROUNDS=3]          # writes results/peer/lucent.json and
    assets/peer_lucent.png PYTHONPATH=.cache/lucent .venv/bin/python scripts/compare_lucent.py
    [--rounds 3] [--steps 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reversenet_utils.featureviz import class_logit, load_efficientnet_lite0, render, robustness

CLASSES = [130, 309, 945, 980]  # notebook 06's defaults: flamingo, bee, bell pepper, volcano
INSTALL = "make compare-lucent (installs torch-lucent 0.1.8 and kornia 0.4.1 in .cache/lucent)"


def _lucent():
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from lucent.optvis import objectives, param, render as lucent_render, transform
    except ImportError as exc:
        sys.exit(f"lucent is not importable ({exc}); to compare, run:\n    {INSTALL}")
    return objectives, param, lucent_render, transform


def run_lucent(
    model, classes: list[int], size: int, steps: int, lr: float, seed: int
) -> tuple[torch.Tensor, float]:
    """lucent's ``render_vis`` on the same objective; returns the final images (B, 3, H, W) and
    seconds."""
    objectives, param, lucent_render, transform = _lucent()
    torch.manual_seed(seed)
    np.random.seed(seed)  # lucent draws its transforms with numpy
    objective = sum(objectives.channel("_fc", c, batch=i) for i, c in enumerate(classes))

    def to_signed(x):  # EfficientNet-Lite0 expects [-1, 1], as featureviz's preprocess gives
        return x * 2 - 1

    start = time.perf_counter()
    images = lucent_render.render_vis(
        model,
        objective,
        param_f=lambda: param.image(size, batch=len(classes)),
        optimizer=lambda p: torch.optim.Adam(p, lr=lr),
        transforms=transform.standard_transforms + [to_signed],
        thresholds=(steps,),
        preprocess=False,
        progress=False,
        show_image=False,
    )[-1]
    return torch.from_numpy(images).permute(0, 3, 1, 2).float(), time.perf_counter() - start


def run_ours(
    net, classes: list[int], size: int, steps: int, lr: float, seed: int
) -> tuple[torch.Tensor, float]:
    result = render(
        net.model,
        class_logit(classes),
        batch=len(classes),
        size=size,
        steps=steps,
        lr=lr,
        transform=robustness(),
        preprocess=net.preprocess,
        seed=seed,
        desc="reversenet",
    )
    return result.images, result.seconds


def part_costs(net, size: int, batch: int, repeats: int = 10) -> dict[str, float]:
    """Milliseconds per optimisation step of each part, lucent's and ours, measured here: what the
    ratio rests on.

    The parameterisation and transforms (forward and backward, no network), and the network's
    forward and backward on the transformed size: as lucent runs it (PyTorch's default memory
    layout), channels-last alone, and as ``featureviz.render`` runs it (channels-last, BatchNorm
    folded into the convolutions)."""
    from reversenet_utils.featureviz import ImageParam, folded_batchnorm

    _, param, _, transform = _lucent()

    def timed(step) -> float:
        step()  # warm-up: allocations, oneDNN kernel selection
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        return (time.perf_counter() - start) / repeats * 1000

    _, lucent_image = param.image(size, batch=batch)
    lucent_transform = transform.compose(transform.standard_transforms)
    ours, ours_transform = ImageParam(batch, size), robustness()
    # the transforms' output size (pad 12 on each side, crop 12)
    x = torch.rand(batch, 3, size + 12, size + 12)

    def network(layout: torch.memory_format) -> None:
        inp = (x * 2 - 1).requires_grad_()
        net.model(inp.contiguous(memory_format=layout))[:, 0].sum().backward()

    def folded() -> float:
        with folded_batchnorm(net.model):  # once, as render does for a whole run
            return timed(lambda: network(torch.channels_last))

    return {
        "lucent: parameterisation + transforms": timed(
            lambda: lucent_transform(lucent_image()).sum().backward()
        ),
        "reversenet: parameterisation + transforms": timed(
            lambda: ours_transform(ours()).sum().backward()
        ),
        "network, default layout (lucent)": timed(lambda: network(torch.contiguous_format)),
        "network, channels-last": timed(lambda: network(torch.channels_last)),
        "network, channels-last, BatchNorm folded (reversenet)": folded(),
    }


def class_probability(net, images: torch.Tensor, classes: list[int]) -> list[float]:
    with torch.no_grad():
        probs = torch.softmax(net.model(net.preprocess(images)), 1)
    return probs[torch.arange(len(classes)), classes].tolist()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating runs of each (the median is reported)"
    )
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--json", help="also write the result to this file")
    parser.add_argument(
        "--figure", help="also save the last round's images, lucent above ReverseNet, to this PNG"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.size < 64:
        parser.error("--rounds and --steps must be >= 1 and --size >= 64")
    _lucent()  # fail before loading anything when lucent is missing

    net = load_efficientnet_lite0()
    seconds = {"lucent": [], "reversenet": []}
    probability, last = {}, {}
    for r in range(args.rounds):
        for name, fn in (("lucent", run_lucent), ("reversenet", run_ours)):
            # lucent takes the model as users pass it (eval mode); ours freezes it the same way
            # render does
            model_or_net = net.model.eval() if name == "lucent" else net
            images, s = fn(model_or_net, CLASSES, args.size, args.steps, args.lr, seed=r)
            seconds[name].append(s)
            last[name] = images
            probability.setdefault(name, []).extend(class_probability(net, images, CLASSES))
            print(
                f"round {r + 1}: {name:10s} {s:6.1f} s, class probability "
                f"{min(probability[name][-len(CLASSES) :]):.3f} (min of {len(CLASSES)})",
                flush=True,
            )
    median = {k: statistics.median(v) for k, v in seconds.items()}
    parts = part_costs(net, args.size, len(CLASSES))
    print(
        "milliseconds per step: " + "; ".join(f"{k} {v:.0f}" for k, v in parts.items()), flush=True
    )
    out = {
        "classes": CLASSES,
        "size": args.size,
        "steps": args.steps,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seconds": seconds,
        "median_seconds": median,
        "probability_mean": {k: float(np.mean(v)) for k, v in probability.items()},
        "probability_min": {k: float(np.min(v)) for k, v in probability.items()},
        "lucent_ratio": median["lucent"] / median["reversenet"],
        "step_ms": parts,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.figure:
        save_figure(last, probability, args.figure)
    return out


def save_figure(
    images: dict[str, torch.Tensor], probability: dict[str, list[float]], path: str
) -> None:
    """One row per renderer (the last round's images), each titled with its class probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(images), len(CLASSES), figsize=(2.2 * len(CLASSES), 2.4 * len(images)), squeeze=False
    )
    for row, (name, batch) in zip(axes, images.items()):
        for ax, image, p in zip(row, batch, probability[name][-len(CLASSES) :]):
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title(f"{name}: p = {p:.3f}", fontsize=9)
            ax.set_axis_off()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
