"""Run every numbered notebook under nbval in a temporary project root (``make test``, ``make
test-full``).

The notebooks are copied into a fresh folder with the parameters of ``--params`` injected
(papermill's own injection, so exactly what ``make run PARAMS=...`` would run; names and types
checked the same way), and executed there by ``pytest --nbval-lax`` with ``REVERSENET_ROOT``
pointing at that folder: figures, results and checkpoints land there, never in the checkout, and
every notebook trains what it needs (in order, so 02-07 reuse what 01 trained). ``data/`` (MNIST,
verified) is shared by a link.

- ``--params params/smoke.yaml``: the fast tier of ``make test`` (small budgets, the same code
  paths, gates scaled to the budget);
- no ``--params``: the defaults and the full quality gates, as ``make run`` commits them (``make
  test-full``);
- ``--dataset fashion_mnist``: the same on the second dataset (``make test-fashion``: at smoke
  budgets);
- ``--artifacts DIR``: the root's ``artifacts/`` is a link to ``DIR`` (which must hold no checkpoint
  yet), so what the tier trains is kept: CI passes the fresh checkout's ``artifacts/`` to the full
  tier, and the browser tests (which share that folder) then load the targets and inverses instead
  of training them a second time.

Each tier ends by printing its wall time and its ten slowest cells (pytest's ``--durations``;
nbval's items are the cells). The temporary root is removed after a pass and kept (its path printed)
after a failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from papermill.parameterize import parameterize_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import (
    BATCH_ENV,
    ROOT,
    dataset_books,
    dataset_params,
    load_params,
    output_path,
    select,  # noqa: E402
    without_injected,
)


#: how many of the slowest cells each tier lists
SLOWEST_CELLS = 10


def share_artifacts(root: Path, folder: Path) -> None:
    """Link ``root/artifacts`` to ``folder``; refused where ``folder`` already holds checkpoints
    (notebook 01 trains its targets again, and inverses saved for the old ones would no longer load:
    nothing is overwritten)."""
    folder = folder.resolve()
    held = sorted(folder.rglob("*.pt"))[:3] if folder.is_dir() else []
    if held:
        raise SystemExit(
            f"--artifacts {folder}: it already holds checkpoints ({', '.join(map(str, held))}, "
            f"...); the "
            "tier would train its targets again over them. Pass an empty folder (CI: the fresh "
            "checkout's artifacts/), or leave --artifacts out to use a temporary one."
        )
    folder.mkdir(parents=True, exist_ok=True)
    (root / "artifacts").symlink_to(folder, target_is_directory=True)


CHECKED = "NBVAL_CHECK_OUTPUT"


def with_checked_outputs(
    nb: nbformat.NotebookNode, reference: nbformat.NotebookNode, where: Path
) -> nbformat.NotebookNode:
    """``nb`` with each ``# NBVAL_CHECK_OUTPUT`` cell's outputs taken from the cell of ``reference``
    (an executed copy at ``where``) that has the same code; a checked cell whose code the copy lacks
    is an error (re-run it)."""
    outputs = {c.source: c.outputs for c in reference.cells if c.cell_type == "code"}
    for cell in nb.cells:
        if cell.cell_type == "code" and CHECKED in cell.source:
            if cell.source not in outputs:
                raise SystemExit(
                    f"{where}: lacks the outputs of a checked cell whose code changed "
                    f"({cell.source.splitlines()[0][:60]!r}...); re-run it with `make run` on that "
                    f"dataset"
                )
            cell.outputs = outputs[cell.source]
    return nb


def prepare(
    params_file: str | None, numbers: str | None, root: Path, dataset: str | None = None
) -> list[Path]:
    """Parameterized copies of the selected notebooks in ``root/notebooks``, and ``root/data``
    linked.

    ``dataset`` (``fashion_mnist``): the notebooks that take a dataset, on it, with
    ``params/<dataset>.yaml`` (its gates) applied before ``params_file``, as ``make run
    DATASET=...`` would run them."""
    books = dataset_books(select(numbers), dataset)
    params = load_params(dataset_params(dataset, params_file), books, dataset)
    (root / "notebooks").mkdir(parents=True)
    (ROOT / "data").mkdir(exist_ok=True)
    (root / "data").symlink_to(ROOT / "data", target_is_directory=True)
    copies = []
    for book in books:
        # the notebook's current code; nbval compares its `# NBVAL_CHECK_OUTPUT` cells with the
        # committed outputs of the same dataset's run (the executed copy in
        # notebooks/runs/<dataset>/ for a dataset other than MNIST)
        nb = without_injected(nbformat.read(book, as_version=4))
        reference = output_path(book, dataset)
        if reference != book and reference.is_file():
            nb = with_checked_outputs(nb, nbformat.read(reference, as_version=4), reference)
        if params[book]:
            nb = parameterize_notebook(nb, params[book])
        copy = root / "notebooks" / book.name
        nbformat.write(nb, copy)
        copies.append(copy)
    return copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", help="YAML parameter file (default: the notebooks' own defaults)"
    )
    parser.add_argument(
        "--nb", help="two-digit numbers of the notebooks to check, comma-separated (default: all)"
    )
    parser.add_argument("--dataset", help="check the series on this dataset (default mnist)")
    parser.add_argument(
        "--artifacts",
        type=Path,
        help="keep what the tier trains in this folder (no checkpoints in it yet)",
    )
    args, pytest_args = parser.parse_known_args(argv)
    root = Path(tempfile.mkdtemp(prefix="reversenet-nbval-"))
    try:
        if args.artifacts:
            share_artifacts(root, args.artifacts)
        copies = prepare(args.params, args.nb, root, args.dataset)
    except BaseException:  # a refused selection or parameter file: nothing ran, nothing to inspect
        shutil.rmtree(root, ignore_errors=True)
        raise
    # no widget front end under nbval
    env = {
        **os.environ,
        "REVERSENET_ROOT": str(root),
        BATCH_ENV: "1",
    }
    print(
        f"nbval: {len(copies)} notebooks on {args.dataset or 'mnist'} with "
        f"{args.params or 'default parameters'} in {root}",
        flush=True,
    )
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(ROOT / "pyproject.toml"),
        "--rootdir",
        str(root),
        "--nbval-lax",
        "--nbval-current-env",
        f"--durations={SLOWEST_CELLS}",
        "--durations-min=1.0",
        *pytest_args,
        *map(str, copies),
    ]
    start = time.perf_counter()
    code = subprocess.call(cmd, env=env, cwd=root)
    print(
        f"nbval: {len(copies)} notebooks on {args.dataset or 'mnist'} with "
        f"{args.params or 'default parameters'}: "
        f"{time.perf_counter() - start:.0f} s wall time (the slowest cells are listed above)",
        flush=True,
    )
    if code == 0:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"nbval failed; the temporary root is kept for inspection: {root}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
