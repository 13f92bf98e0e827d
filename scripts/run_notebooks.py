"""Execute the numbered notebooks in order with papermill, in place (``make run``).

- ``--nb 04`` (or ``04,05``) runs only the notebooks whose number is given.
- ``--params file.yaml`` passes parameters. The file is a flat mapping; each notebook gets the
  names it declares in its ``parameters`` cell. A name that none of the selected notebooks
  declares is an error (papermill itself would only warn and run with the default).
- A failing notebook stops the run and names the notebook and the cell; the notebook is still
  written, with the error in its output. Later notebooks are not run (they build on earlier ones).
- At the end a summary lists each notebook, its wall time, its key metric (its one-line finding,
  read from the ``results/NN_name.json`` it wrote, as in README) and pass/fail.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling scripts, also when loaded by a test
from readme_results import finding  # noqa: E402  the one place that says what each notebook found

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"


def key_metric(book: Path, results: Path = RESULTS) -> str:
    """The notebook's headline: its one-line finding, read from its results file ('-' where there is none yet)."""
    return finding(book, results)


def select(numbers: str | None) -> list[Path]:
    """The numbered notebooks, all or those whose two-digit prefix is listed (comma-separated)."""
    books = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not numbers:
        return books
    wanted = {n.strip().zfill(2) for n in numbers.split(",") if n.strip()}
    chosen = [b for b in books if b.name[:2] in wanted]
    unknown = wanted - {b.name[:2] for b in chosen}
    if unknown:
        raise SystemExit(f"No notebook numbered {', '.join(sorted(unknown))}; have: {', '.join(b.name for b in books)}")
    return chosen


def load_params(path: str | None, books: list[Path]) -> dict[Path, dict]:
    """Per-notebook parameters from a flat YAML file; unknown names are an error."""
    params = {}
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"{path}: expected a mapping of parameter names to values, got {type(loaded).__name__}")
        params = loaded
    declared = {book: set(pm.inspect_notebook(str(book))) for book in books}
    unused = set(params) - set().union(*declared.values())
    if unused:
        known = sorted(set().union(*declared.values()))
        raise SystemExit(f"{path}: unknown parameter(s) {sorted(unused)}; the selected notebooks declare {known}")
    return {book: {k: v for k, v in params.items() if k in names} for book, names in declared.items()}


def run(book: Path, params: dict) -> tuple[bool, str]:
    """Execute one notebook in place; return (ok, message naming the failing cell)."""
    cells = nbformat.read(book, as_version=4).cells
    try:
        pm.execute_notebook(str(book), str(book), parameters=params, cwd=str(NOTEBOOKS), kernel_name="python3")
    except pm.PapermillExecutionError as exc:
        first_line = cells[exc.cell_index].source.strip().splitlines()[0] if cells[exc.cell_index].source.strip() else ""
        return False, (f"cell {exc.cell_index + 1} of {len(cells)} (In [{exc.exec_count}], `{first_line[:60]}`): "
                       f"{exc.ename}: {exc.evalue}")
    return True, "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the ReverseNet notebooks with papermill, in place.")
    parser.add_argument("--nb", help="two-digit numbers of the notebooks to run, comma-separated (default: all)")
    parser.add_argument("--params", help="YAML file of parameters passed to the notebooks")
    args = parser.parse_args(argv)
    books = select(args.nb)
    params = load_params(args.params, books)
    summary = []
    failed = False
    for book in books:
        print(f"== {book.relative_to(ROOT)}  {params[book] or '(default parameters)'}", flush=True)
        start = time.perf_counter()
        ok, message = run(book, params[book])
        summary.append((book.name, time.perf_counter() - start, "pass" if ok else "FAIL", key_metric(book) if ok else ""))
        if not ok:
            print(f"FAILED: {book.relative_to(ROOT)}, {message}", file=sys.stderr)
            failed = True
            break
    print(f"\n{'notebook':<42} {'time':>8}  status  key metric")
    for name, seconds, status, metric in summary:
        print(f"{name:<42} {seconds:7.1f}s  {status:<6}  {metric}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
