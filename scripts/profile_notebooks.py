"""Where the study's time goes (``make profile``): seconds per notebook and per cell, and the
slowest cells.

Reads the executed notebooks' papermill metadata (each cell's ``duration``, written by ``make
run``): the MNIST series in ``notebooks/`` and, with ``--dataset``, the executed copies in
``notebooks/runs/<dataset>/``. Nothing is run; the figures are those of the last ``make run`` of
each notebook (an idle machine's only if it ran alone).

    make profile                       # MNIST: per notebook, then the ten slowest cells of the
    series make profile DATASET=fashion_mnist python scripts/profile_notebooks.py --cells 04   #
    every cell of notebook 04
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import dataset_books, output_path, select  # noqa: E402

# the same names as the results' stage_seconds
from reversenet_utils.notebook import stage_name  # noqa: E402


def cell_times(book: Path) -> list[tuple[int, float, str]]:
    """``(cell index, seconds, what the cell does)`` of every code cell papermill timed in
    ``book``."""
    nb = nbformat.read(book, as_version=4)
    rows = []
    for i, cell in enumerate(nb.cells):
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.cell_type == "code" and duration is not None:
            rows.append((i, float(duration), stage_name(cell.source)))
    return rows


def profile(books: list[Path], slowest: int = 10, cells_of: str | None = None) -> str:
    """The report: a table of notebooks (seconds, share of the series), then the ``slowest``
    cells."""
    timed = {book: cell_times(book) for book in books}
    missing = [b.name for b, rows in timed.items() if not rows]
    total = sum(s for rows in timed.values() for _, s, _ in rows)
    lines = [f"{'notebook':<44} {'seconds':>8} {'share':>6}"]
    for book, rows in timed.items():
        seconds = sum(s for _, s, _ in rows)
        lines.append(f"{book.name:<44} {seconds:8.0f} {seconds / total if total else 0:6.1%}")
    lines.append(f"{'series':<44} {total:8.0f} ({total / 60:.1f} min)")
    if missing:
        lines.append("never executed by papermill (no cell times): " + ", ".join(missing))
    everything = sorted(
        ((s, book.name[:2], i, src) for book, rows in timed.items() for i, s, src in rows),
        reverse=True,
    )
    lines += [
        "",
        f"the {min(slowest, len(everything))} slowest cells:",
        f"{'seconds':>8}  nb cell  code",
    ]
    lines += [f"{s:8.1f}  {nb}  {i:>4}  {src}" for s, nb, i, src in everything[:slowest]]
    if cells_of:
        for book, rows in timed.items():
            if book.name.startswith(cells_of):
                lines += ["", f"every cell of {book.name}:"] + [
                    f"{s:8.1f}  {i:>4}  {src}" for i, s, src in rows
                ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", help="profile the executed copies on this dataset (default mnist)"
    )
    parser.add_argument(
        "--nb", help="two-digit numbers of the notebooks, comma-separated (default: all)"
    )
    parser.add_argument(
        "--slowest", type=int, default=10, help="how many of the slowest cells to list"
    )
    parser.add_argument("--cells", metavar="NN", help="also list every cell of notebook NN")
    args = parser.parse_args(argv)
    if args.slowest < 0:
        parser.error(f"--slowest must be >= 0, got {args.slowest}")
    books = [output_path(b, args.dataset) for b in dataset_books(select(args.nb), args.dataset)]
    absent = [str(b) for b in books if not b.is_file()]
    if absent:
        parser.error(
            f"no executed notebook at {', '.join(absent)}: run `make run` (with that DATASET) first"
        )
    print(profile(books, args.slowest, args.cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
