"""Execute the numbered notebooks in order with papermill, in place (``make run``).

- ``--nb 04`` (or ``04,05``) runs only the notebooks whose number is given.
- ``--params file.yaml`` passes parameters. The file is a mapping: a top-level ``name: value`` goes to
  every selected notebook that declares ``name`` in its ``parameters`` cell; a key that is a notebook's
  number (``"04": {name: value}``) holds parameters for that notebook alone. Names *and* types are
  checked against the parameters cells before anything runs: a name no selected notebook declares, or
  a value of the wrong type (``epochs: three``, ``targets: mlp_leaky`` for a list, ``download: "false"``
  for a bool), is an error (papermill itself would only warn, or run with a wrong value).
- A notebook is executed into a temporary file and replaces the committed one only when it ran to the
  end: a failed run never overwrites a good notebook. It names the notebook and the cell, and keeps
  the failed copy under ``artifacts/failed/`` to read. Later notebooks are not run (they build on
  earlier ones).
- At the end a summary lists each notebook, its wall time, its key metric (its one-line finding,
  read from the ``results/NN_name.json`` it wrote, as in README) and pass/fail.
- The kernels run with ``REVERSENET_BATCH=1`` (no widget front end): plain-text progress bars and the
  explorer's static panel, which the committed notebooks keep and GitHub renders.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling scripts, also when loaded by a test
from readme_results import ResultsError, finding  # noqa: E402  the one place that says what each notebook found

from reversenet_utils.notebook import ParameterError, check_value  # noqa: E402
from reversenet_utils.progress import BATCH_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"
FAILED = ROOT / "artifacts" / "failed"


def key_metric(book: Path, results: Path = RESULTS) -> str:
    """The notebook's headline: its one-line finding, read from its results file ('-' where there is none yet)."""
    return finding(book, results)


def select(numbers: str | None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks, all or those whose two-digit prefix is listed (comma-separated)."""
    books = sorted((folder or NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))
    if not numbers:
        return books
    wanted = {n.strip().zfill(2) for n in numbers.split(",") if n.strip()}
    chosen = [b for b in books if b.name[:2] in wanted]
    unknown = wanted - {b.name[:2] for b in chosen}
    if unknown:
        raise SystemExit(f"No notebook numbered {', '.join(sorted(unknown))}; have: {', '.join(b.name for b in books)}")
    return chosen


def load_params(path: str | None, books: list[Path]) -> dict[Path, dict]:
    """Per-notebook parameters from a YAML file, every name and type checked against the parameters cells.

    Raises:
        SystemExit: the file is not a mapping, names a parameter no selected notebook declares, or gives a
            value of the wrong type; the message names the file, the parameter and what was expected.
    """
    loaded: dict = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SystemExit(f"{path}: cannot read the parameter file ({exc})") from None
        if not isinstance(loaded, dict):
            raise SystemExit(f"{path}: expected a mapping of parameter names to values, got {type(loaded).__name__}")
    numbers = {b.name[:2]: b for b in books}
    # a section of a notebook that is not selected is skipped, not an unknown name
    every_number = {b.name[:2] for b in select(None, books[0].parent)} if books else set()
    shared = {k: v for k, v in loaded.items() if str(k).zfill(2) not in every_number}
    sections = {numbers[str(k).zfill(2)]: v for k, v in loaded.items() if str(k).zfill(2) in numbers}
    for book, section in sections.items():
        if not isinstance(section, dict):
            raise SystemExit(f"{path}: the section for notebook {book.name[:2]} must be a mapping, got {section!r}")
    declared = {book: pm.inspect_notebook(str(book)) for book in books}
    problems = []
    unused = set(shared) - set().union(*(set(d) for d in declared.values()))
    if unused:
        known = sorted(set().union(*(set(d) for d in declared.values())))
        problems.append(f"unknown parameter(s) {sorted(map(str, unused))}; the selected notebooks declare {known}")
    out = {}
    for book, cell in declared.items():
        section = sections.get(book, {})
        for name in sorted(set(section) - set(cell)):
            problems.append(f"unknown parameter {name!r} for {book.name}; it declares {sorted(cell)}")
        values = {**{k: v for k, v in shared.items() if k in cell}, **{k: v for k, v in section.items() if k in cell}}
        for name, value in values.items():
            try:
                default = ast.literal_eval(cell[name]["default"] or "None")
            except (ValueError, SyntaxError):
                default = None
            try:
                check_value(name, value, cell[name]["inferred_type_name"] or "", default)
            except ParameterError as exc:
                problems.append(f"{book.name}: {exc}")
        out[book] = values
    if problems:
        raise SystemExit(f"{path}: " + "\n  ".join(problems))
    return out


def describe_failure(executed: Path, exc: pm.PapermillExecutionError) -> str:
    """'cell N of M (In [k], `first line`): Error: message', numbered as in the notebook the user edits.

    The executed copy holds papermill's injected-parameters cell, and the markdown cells papermill adds to
    point at an error; neither is counted, so N and M are the positions in the notebook on disk.
    """
    cells = [c for c in nbformat.read(executed, as_version=4).cells
             if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]  # exc.cell_index counts without them
    injected = [i for i, c in enumerate(cells) if "injected-parameters" in c.metadata.get("tags", [])]
    index = exc.cell_index
    own = [i for i in range(len(cells)) if i not in injected]
    if 0 <= index < len(cells) and index not in injected:
        source = cells[index].source.strip()
        first_line = source.splitlines()[0] if source else ""
        where = f"cell {own.index(index) + 1} of {len(own)} (In [{exc.exec_count}], `{first_line[:60]}`)"
    else:
        where = f"the injected parameters cell (In [{exc.exec_count}])"
    return f"{where}: {exc.ename}: {exc.evalue}"


def _relative_metadata(path: Path, book: Path) -> None:
    """Papermill records absolute (temporary) input/output paths; keep the notebook's repository-relative one."""
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = f"notebooks/{book.name}"
    nbformat.write(nb, path)


def without_injected(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without the injected-parameters cell an earlier parameterized run left in it.

    Papermill replaces that cell when it is given parameters but keeps it when it is given none, so a
    default run after ``make run PARAMS=params/smoke.yaml`` would silently execute the smoke values.
    """
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    return nb


def run(book: Path, params: dict) -> tuple[bool, str]:
    """Execute one notebook; replace it only if it ran to the end. Return (ok, message naming the failing cell)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / f"input_{book.name}", Path(tmp) / book.name
        nbformat.write(without_injected(nbformat.read(book, as_version=4)), source)
        try:
            pm.execute_notebook(str(source), str(out), parameters=params, cwd=str(book.parent), kernel_name="python3")
        except pm.PapermillExecutionError as exc:
            message = describe_failure(out, exc)
            FAILED.mkdir(parents=True, exist_ok=True)
            kept = FAILED / book.name
            shutil.copyfile(out, kept)
            return False, f"{message}\n  {book.name} is unchanged; the failed run is in {kept}"
        _relative_metadata(out, book)
        shutil.copyfile(out, book)
    return True, "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the ReverseNet notebooks with papermill, in place.")
    parser.add_argument("--nb", help="two-digit numbers of the notebooks to run, comma-separated (default: all)")
    parser.add_argument("--params", help="YAML file of parameters passed to the notebooks")
    args = parser.parse_args(argv)
    books = select(args.nb)
    params = load_params(args.params, books)
    os.environ[BATCH_ENV] = "1"  # the kernels inherit it: no widget front end here
    summary = []
    failed = False
    for book in books:
        print(f"== {book.relative_to(ROOT)}  {params[book] or '(default parameters)'}", flush=True)
        start = time.perf_counter()
        ok, message = run(book, params[book])
        metric = ""
        if ok:
            try:
                metric = key_metric(book)
            except ResultsError as exc:
                ok, message = False, str(exc)
        summary.append((book.name, time.perf_counter() - start, "pass" if ok else "FAIL", metric))
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
