"""Audit your own split model (``make audit MODEL=... SPLIT=...``): notebook 09's report on a
network this project did not design.

    python scripts/audit.py --model audit_examples/small_bn_net.py:build --split 8
    python scripts/audit.py --model net.pt --split 3 --dataset fashion_mnist
    python scripts/audit.py --model mynet.py:build --weights mynet_state.pt --split 4 \\
        --params params/smoke.yaml

The network is loaded and checked here first (``audit.check_network``: a layer the attackers
cannot handle is named in seconds, before a kernel starts); then notebook 09 runs with the
``audit_*`` parameters into ``audit/<name>/`` (``--out``): the executed notebook
``09_audit_<name>.ipynb`` (``..._fashion_mnist.ipynb`` on Fashion-MNIST), the results under
``results/`` and the figures under ``assets/`` (per dataset, as the study's), never over the
study's own files. ``data/`` and ``artifacts/`` are shared (links), so the judge that
notebook 01 trained is reused. ``--params`` files apply as in ``make run`` (their ``"09"`` section
and shared names). At the end the audit's answer is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import NOTEBOOKS, ROOT, _run, load_params  # noqa: E402

from reversenet_utils import audit  # noqa: E402
from reversenet_utils.claims import privacy as claims  # noqa: E402
from reversenet_utils.context import DATASETS  # noqa: E402
from reversenet_utils.data import SPECS  # noqa: E402
from reversenet_utils.progress import BATCH_ENV  # noqa: E402

BOOK = NOTEBOOKS / "09_split_computing_privacy.ipynb"
SHARED = ("data", "artifacts")  # linked into the audit's root: the datasets, the judge


def _absolute(path: str) -> str:
    """A path given on the command line, absolute (the notebook runs in another folder); a
    ``module:function`` without a file is kept as given."""
    if not path:
        return path
    where, colon, function = path.rpartition(":")
    if colon and not where.endswith(".py"):  # a module: its file, as imported from here
        sys.path.insert(0, str(Path.cwd()))
        try:
            found = importlib.util.find_spec(where)
        except ImportError:
            found = None
        finally:
            sys.path.pop(0)
        return f"{found.origin}:{function}" if found and found.origin else path
    file = Path(where if colon else path).expanduser()
    file = str(file if file.is_absolute() else (Path.cwd() / file).resolve())
    return f"{file}:{function}" if colon else file


def preflight(model: str, weights: str, split: int) -> str:
    """Load and check the network as notebook 09 will (data-free); the check's summary."""
    layers, ends, _, _ = audit.load_checked(model, weights, split, ROOT)
    return (
        f"{len(layers)} layers, device blocks ending after layers {', '.join(map(str, ends[:-1]))}"
    )


def prepare_root(out: Path) -> None:
    """The audit's root: its own results and figures, the repository's data and artifacts."""
    out.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        (ROOT / name).mkdir(exist_ok=True)
        link = out / name
        if not link.exists():
            link.symlink_to(ROOT / name, target_is_directory=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="file.py:function, module:function or a "
                        "TorchScript file")  # fmt: skip
    parser.add_argument("--split", required=True, type=int, help="layers on the device")
    parser.add_argument("--weights", default="", help="the network's state dict (default: none, "
                        "trained on the device owner's half)")  # fmt: skip
    parser.add_argument("--dataset", default=DATASETS[0], choices=DATASETS)
    parser.add_argument("--params", action="append", default=[], help="YAML parameters file(s)")
    parser.add_argument("--out", help="the audit's folder (default: audit/<name>)")
    args = parser.parse_args(argv)
    model, weights = _absolute(args.model), _absolute(args.weights)
    try:
        print(f"checking {args.model}: {preflight(model, weights, args.split)}", flush=True)
    except audit.AuditError as exc:
        print(f"cannot audit {args.model}: {exc}", file=sys.stderr)
        return 2
    name = audit.results_name(BOOK.stem, args.model)
    out = Path(args.out).resolve() if args.out else ROOT / "audit" / name.split("_audit_")[-1]
    prepare_root(out)
    params = load_params(args.params, [BOOK], args.dataset)[BOOK]
    params |= {"audit_model": model, "audit_weights": weights, "audit_split": args.split,
               "dataset": args.dataset}  # fmt: skip
    os.environ |= {BATCH_ENV: "1", "REVERSENET_ROOT": str(out)}  # the kernel inherits both
    target = out / f"{name}{'' if args.dataset == DATASETS[0] else '_' + args.dataset}.ipynb"
    print(f"running notebook 09 on it into {target}", flush=True)
    ok, message = _run(BOOK, params, target)
    if not ok:
        print(f"the audit failed: {message}", file=sys.stderr)
        return 1
    folder = out / "results" / ("" if args.dataset == DATASETS[0] else args.dataset)
    metrics = json.loads((folder / f"{name}.json").read_text())["metrics"]
    title = SPECS[args.dataset].title
    print("\n" + claims.privacy_answer(metrics, title))
    print("\n".join(["", *claims.audit_notes(metrics)]))
    print(f"\nthe report: {target}\nits results: {folder / f'{name}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
