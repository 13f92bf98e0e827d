"""How far another training seed moves a target's test accuracy (``make seed-spread``).

Trains each target that a published accuracy anchor is compared with (``anchors.TARGET_ACCURACY``
and ``anchors.LOGIT_RECLASS``, notebooks 01 and 04) under training seeds ``0 .. seeds-1`` with its
recipe, on one dataset, and writes ``results/[<dataset>/]target_seed_spread.json``: each seed's
accuracy and each target's spread (largest minus smallest). Nothing is saved to ``artifacts/``:
the notebooks' targets stay as they are.

``thresholds.ACCURACY_RERUN_TOLERANCE`` is the stated tolerance that the anchor verdicts of
notebooks 01 and 04 widen their intervals by; a test checks that every committed record's spread
lies within it, so a record that outgrows it fails the suite until the constant is raised.

    python scripts/measure_seed_spread.py                         # MNIST, 3 seeds
    python scripts/measure_seed_spread.py --dataset fashion_mnist --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys

from reversenet_utils.anchors import LOGIT_RECLASS, TARGET_ACCURACY
from reversenet_utils.artifacts import machine
from reversenet_utils.context import DATASETS, Context
from reversenet_utils.train import seed_accuracies

RECORD = "target_seed_spread"


def anchored_targets(dataset: str) -> list[str]:
    """The targets whose accuracy or re-classification a notebook compares with a published
    anchor on ``dataset``, in a stable order."""
    return sorted({*TARGET_ACCURACY.get(dataset, {}), *LOGIT_RECLASS.get(dataset, {})})


def measure(ctx: Context, targets: list[str], seeds: int) -> dict:
    """The record: per target, the test accuracy under each seed and their spread."""
    accuracies = {name: seed_accuracies(ctx, name, range(seeds)) for name in targets}
    return {
        "dataset": ctx.dataset,
        "seeds": list(range(seeds)),
        "accuracies": accuracies,
        "spread": {name: max(a) - min(a) for name, a in accuracies.items()},
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, default=DATASETS[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (>= 2)")
    parser.add_argument("--device", default="", help="cpu, cuda or cuda:N (default: CUDA if any)")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2 to measure a spread, got {args.seeds}")
    ctx = Context(args.dataset, args.device or None)
    record = measure(ctx, anchored_targets(args.dataset), args.seeds)
    path = ctx.results / f"{RECORD}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{path}: spread {json.dumps(record['spread'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
