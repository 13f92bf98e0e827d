"""Execute the numbered notebooks in order with papermill, in place (``make run``).

- ``--nb 04`` (or ``04,05``) runs only the notebooks whose number is given.
- ``--dataset fashion_mnist`` runs the notebooks that declare a ``dataset`` parameter on that
  dataset: ``params/<dataset>.yaml`` (where it exists: the dataset's own quality gates) is applied
  first, then ``--params``; the executed copies go to ``notebooks/runs/<dataset>/`` (the committed
  notebooks stay the MNIST run), their results and figures to ``results/<dataset>/`` and
  ``assets/<dataset>/``.
- ``--params file.yaml`` passes parameters. The file is a mapping: a top-level ``name: value`` goes
  to every selected notebook that declares ``name`` in its ``parameters`` cell; a key that is a
  notebook's number (``"04": {name: value}``) holds parameters for that notebook alone; a key that
  names a dataset (``fashion_mnist: {...}``, same structure) holds overrides for runs on that
  dataset only. Names *and* types are checked against the parameters cells before anything runs: a
  name no selected notebook declares, or a value of the wrong type (``epochs: three``, ``targets:
  mlp_leaky`` for a list, ``download: "false"`` for a bool), is an error (papermill itself would
  only warn, or run with a wrong value). The dataset of a run is ``--dataset`` alone (default
  MNIST): a file's ``dataset:`` may repeat it, and one that contradicts it is refused before
  anything runs (it would overwrite the committed MNIST notebooks, or file one dataset's outputs as
  the other's).
- A notebook is executed into a temporary file and replaces the committed one only when it ran to
  the end: a failed run never overwrites a good notebook, and its results file and figures are put
  back as they were. It names the notebook and the cell, and keeps the failed copy under
  ``artifacts/failed/`` to read. Later notebooks are not run (they build on earlier ones).
- At the end a summary lists each notebook, its wall time, its key metric (its one-line finding,
  read from the ``results/NN_name.json`` it wrote, as in README) and pass/fail.
- The kernels run with ``REVERSENET_BATCH=1`` (no widget front end): plain-text progress bars and
  the explorer's static panel, which the committed notebooks keep and GitHub renders.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill as pm
import yaml

# sibling scripts, also when loaded by a test
sys.path.insert(0, str(Path(__file__).resolve().parent))
# the one place that says what each notebook found
from readme_results import ResultsError, finding  # noqa: E402

from reversenet_utils.artifacts import DATASETS  # noqa: E402
from reversenet_utils.notebook import ParameterError, check_value  # noqa: E402
from reversenet_utils.progress import BATCH_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"
ASSETS = ROOT / "assets"
FAILED = ROOT / "artifacts" / "failed"
RUNS = NOTEBOOKS / "runs"  # executed copies of the series on a dataset other than MNIST
PARAMS = ROOT / "params"
DEFAULT_DATASET = DATASETS[0]  # MNIST: runs in place, as committed


def declares(book: Path, name: str) -> bool:
    """Whether ``book``'s parameters cell declares ``name``."""
    return name in pm.inspect_notebook(str(book))


def dataset_books(books: list[Path], dataset: str | None) -> list[Path]:
    """The notebooks a run on ``dataset`` executes: all for MNIST, those with a ``dataset``
    parameter for another."""
    if dataset in (None, DEFAULT_DATASET):
        return books
    if dataset not in DATASETS:
        raise SystemExit(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    chosen = [b for b in books if declares(b, "dataset")]
    if not chosen:
        raise SystemExit(f"none of {', '.join(b.name for b in books)} takes a dataset parameter")
    return chosen


def dataset_params(dataset: str | None, params: str | None) -> list[str]:
    """The parameter files of a run, in order: ``params/<dataset>.yaml`` where it exists, then
    ``params``."""
    files = []
    if dataset not in (None, DEFAULT_DATASET) and (PARAMS / f"{dataset}.yaml").is_file():
        files.append(str(PARAMS / f"{dataset}.yaml"))
    return files + ([params] if params else [])


def output_path(book: Path, dataset: str | None) -> Path:
    """Where the executed copy goes: in place for MNIST, ``notebooks/runs/<dataset>/`` for another
    dataset."""
    return book if dataset in (None, DEFAULT_DATASET) else RUNS / dataset / book.name


def results_folder(dataset: str | None) -> Path:
    return RESULTS if dataset in (None, DEFAULT_DATASET) else RESULTS / dataset


def key_metric(book: Path, results: Path = RESULTS) -> str:
    """The notebook's headline: its one-line finding, read from its results file ('-' where there
    is none yet)."""
    return finding(book, results)


def select(numbers: str | None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks, all or those whose two-digit prefix is listed (comma-separated)."""
    books = sorted((folder or NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))
    if numbers is None or not numbers.strip():
        if numbers is not None:
            raise SystemExit(
                f"--nb {numbers!r} names no notebook: give two-digit numbers such as 04 or 04,05, "
                f"or leave --nb out to run all"
            )
        return books
    wanted = {n.strip().zfill(2) for n in numbers.split(",") if n.strip()}
    if not wanted:
        raise SystemExit(
            f"--nb {numbers!r} names no notebook: give two-digit numbers such as 04 or 04,05"
        )
    malformed = sorted(n for n in wanted if not (n.isdigit() and len(n) == 2))
    if malformed:
        raise SystemExit(
            f"--nb {numbers!r}: {', '.join(malformed)} is not a notebook number (two digits, e.g. "
            f"04)"
        )
    chosen = [b for b in books if b.name[:2] in wanted]
    unknown = wanted - {b.name[:2] for b in chosen}
    if unknown:
        raise SystemExit(
            f"No notebook numbered {', '.join(sorted(unknown))}; have: "
            f"{', '.join(b.name for b in books)}"
        )
    return chosen


def _read_params(path: str) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"{path}: cannot read the parameter file ({exc})") from None
    if not isinstance(loaded, dict):
        raise SystemExit(
            f"{path}: expected a mapping of parameter names to values, got {type(loaded).__name__}"
        )
    return loaded


def _merged_files(paths: list[str], dataset: str | None) -> dict:
    """The values of the parameter files ``paths`` merged in order (a notebook's section name by
    name), with the ``dataset`` run's own section applied after each file's shared values."""
    loaded: dict = {"dataset": dataset} if dataset not in (None, DEFAULT_DATASET) else {}

    def merge(values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(loaded.get(key), dict):
                loaded[key] = {**loaded[key], **value}
            else:
                loaded[key] = value

    for one in paths:
        values = _read_params(one)
        # a section named after a dataset holds overrides for runs on that dataset only (e.g. its
        # smoke gates)
        own = values.get(dataset or DEFAULT_DATASET, {})
        if not isinstance(own, dict):
            raise SystemExit(
                f"{one}: the section {dataset or DEFAULT_DATASET!r} must be a mapping, got {own!r}"
            )
        merge({k: v for k, v in values.items() if k not in DATASETS})
        merge(own)
    return loaded


def load_params(
    path: str | list[str] | None, books: list[Path], dataset: str | None = None
) -> dict[Path, dict]:
    """Per-notebook parameters from YAML files, every name and type checked against the parameters
    cells.

    ``path`` is one file or a list of files applied in order (a later file's value wins; a
    notebook's section is merged name by name). ``dataset`` (other than MNIST) is given to every
    notebook as its ``dataset``.

    Raises:
        SystemExit: a file is not a mapping, names a parameter no selected notebook declares, or
            gives a value of the wrong type; the message names the file, the parameter and what was
            expected.
    """
    paths = [path] if isinstance(path, str) else list(path or [])
    run_dataset = dataset or DEFAULT_DATASET
    loaded = _merged_files(paths, dataset)
    path = " + ".join(paths) or "--dataset"
    numbers = {b.name[:2]: b for b in books}
    # a section of a notebook that is not selected is skipped, not an unknown name
    every_number = {b.name[:2] for b in select(None, books[0].parent)} if books else set()
    shared = {k: v for k, v in loaded.items() if str(k).zfill(2) not in every_number}
    sections = {
        numbers[str(k).zfill(2)]: v for k, v in loaded.items() if str(k).zfill(2) in numbers
    }
    for book, section in sections.items():
        if not isinstance(section, dict):
            raise SystemExit(
                f"{path}: the section for notebook {book.name[:2]} must be a mapping, got "
                f"{section!r}"
            )
    declared = {book: pm.inspect_notebook(str(book)) for book in books}
    problems = []
    unused = set(shared) - set().union(*(set(d) for d in declared.values()))
    if unused:
        known = sorted(set().union(*(set(d) for d in declared.values())))
        problems.append(
            f"unknown parameter(s) {sorted(map(str, unused))}; the selected notebooks declare "
            f"{known}"
        )
    out = {}
    for book, cell in declared.items():
        section = sections.get(book, {})
        for name in sorted(set(section) - set(cell)):
            problems.append(
                f"unknown parameter {name!r} for {book.name}; it declares {sorted(cell)}"
            )
        values = {
            **{k: v for k, v in shared.items() if k in cell},
            **{k: v for k, v in section.items() if k in cell},
        }
        if "dataset" in values and values["dataset"] not in DATASETS:
            problems.append(
                f"{book.name}: dataset {values['dataset']!r} is not one of {', '.join(DATASETS)}"
            )
        elif values.get("dataset", run_dataset) != run_dataset:
            # the run's dataset decides where the executed notebooks, results and figures go: a file
            # that says otherwise would overwrite the committed MNIST notebooks with another
            # dataset's run, or file one dataset's outputs under the other's name
            given = "--dataset" if dataset else "the default, no --dataset"
            problems.append(
                f"{book.name}: the parameter file sets dataset {values['dataset']!r}, but this run "
                f"is on {run_dataset!r} ({given}). The dataset of a run is chosen by --dataset "
                f"alone (`make run DATASET={values['dataset']}`): pass that, or remove `dataset:` "
                f"from the file"
            )
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
    """'cell N of M (In [k], `first line`): Error: message', numbered as in the notebook the user
    edits.

    The executed copy holds papermill's injected-parameters cell, and the markdown cells papermill
    adds to point at an error; neither is counted, so N and M are the positions in the notebook on
    disk.
    """
    cells = [
        c
        for c in nbformat.read(executed, as_version=4).cells
        if "papermill-error-cell-tag" not in c.metadata.get("tags", [])
    ]  # exc.cell_index counts without them
    injected = [
        i for i, c in enumerate(cells) if "injected-parameters" in c.metadata.get("tags", [])
    ]
    index = exc.cell_index
    own = [i for i in range(len(cells)) if i not in injected]
    if 0 <= index < len(cells) and index not in injected:
        source = cells[index].source.strip()
        first_line = source.splitlines()[0] if source else ""
        where = (
            f"cell {own.index(index) + 1} of {len(own)} "
            f"(In [{exc.exec_count}], `{first_line[:60]}`)"
        )
    else:
        where = f"the injected parameters cell (In [{exc.exec_count}])"
    return f"{where}: {exc.ename}: {exc.evalue}"


def _relative_metadata(path: Path, book: Path, target: Path | None = None) -> None:
    """Papermill records absolute (temporary) input/output paths; keep the repository-relative
    ones."""
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("papermill", {})
    out = (target or book).resolve()
    where = {
        "input_path": f"notebooks/{book.name}",
        "output_path": out.relative_to(ROOT).as_posix()
        if out.is_relative_to(ROOT)
        else f"notebooks/{book.name}",
    }
    for key, value in where.items():
        if meta.get(key):
            meta[key] = value
    nbformat.write(nb, path)


def without_injected(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without the injected-parameters cell an earlier parameterized run left in it.

    Papermill replaces that cell when it is given parameters but keeps it when it is given none, so
    a default run after ``make run PARAMS=params/smoke.yaml`` would silently execute the smoke
    values.
    """
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    # papermill's parameterize reads every cell's tags: a cell added by hand may have none
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    # and writes to the notebook's papermill metadata: a new one has none
    nb.metadata.setdefault("papermill", {})
    return nb


def outputs_of(book: Path, dataset: str | None) -> list[Path]:
    """The files a run of ``book`` writes besides the notebook: its results JSON and its figures
    (``NN_*``)."""
    assets = ASSETS if dataset in (None, DEFAULT_DATASET) else ASSETS / dataset
    return [
        results_folder(dataset) / f"{book.stem}.json",
        *sorted(assets.glob(f"{book.name[:2]}_*")),
    ]


@contextlib.contextmanager
def kept_on_failure(book: Path, dataset: str | None, ok: list[bool]):
    """Copy the notebook's results file and figures aside; unless ``ok[0]`` is set by the end, put
    them back (and remove the figures the failed run added), so that a failed run leaves the
    committed outputs as they were."""
    before = {path: path.read_bytes() for path in outputs_of(book, dataset) if path.is_file()}
    try:
        yield
    finally:
        if not ok[0]:
            for path in outputs_of(book, dataset):
                if path not in before and path.is_file():
                    path.unlink()
            for path, data in before.items():
                path.write_bytes(data)


def run(
    book: Path, params: dict, target: Path | None = None, dataset: str | None = None
) -> tuple[bool, str]:
    """Execute one notebook into ``target`` (default: in place); replace ``target`` only if it ran
    to the end, and on failure put back the results file and figures it had. Return (ok, message
    naming the failing cell)."""
    target = target or book
    ok = [False]
    with kept_on_failure(book, dataset, ok):
        found = _run(book, params, target)
        ok[0] = found[0]
    return found


def _run(book: Path, params: dict, target: Path) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / f"input_{book.name}", Path(tmp) / book.name
        nbformat.write(without_injected(nbformat.read(book, as_version=4)), source)
        try:
            pm.execute_notebook(
                str(source),
                str(out),
                parameters=params,
                cwd=str(book.parent),
                kernel_name="python3",
            )
        except pm.PapermillExecutionError as exc:
            message = describe_failure(out, exc)
            failed = (
                FAILED / target.parent.relative_to(RUNS)
                if target.parent.is_relative_to(RUNS)
                else FAILED
            )
            failed.mkdir(parents=True, exist_ok=True)
            kept = failed / book.name
            shutil.copyfile(out, kept)
            return False, (
                f"{message}\n  "
                f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}, its "
                f"results file and its figures are unchanged; the failed run is in {kept}"
            )
        _relative_metadata(out, book, target if target != book else None)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, target)
    return True, "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the ReverseNet notebooks with papermill, in place."
    )
    parser.add_argument(
        "--nb", help="two-digit numbers of the notebooks to run, comma-separated (default: all)"
    )
    parser.add_argument("--params", help="YAML file of parameters passed to the notebooks")
    parser.add_argument(
        "--dataset",
        help="run the series on this dataset (default mnist, in place; fashion_mnist: "
        "the notebooks with a dataset parameter, executed into notebooks/runs/fashion_mnist/)",
    )
    args = parser.parse_args(argv)
    books = dataset_books(select(args.nb), args.dataset)
    params = load_params(dataset_params(args.dataset, args.params), books, args.dataset)
    os.environ[BATCH_ENV] = "1"  # the kernels inherit it: no widget front end here
    summary = []
    failed = False
    for book in books:
        target = output_path(book, args.dataset)
        print(
            f"== {target.relative_to(ROOT)}  {params[book] or '(default parameters)'}", flush=True
        )
        start = time.perf_counter()
        ok, message = run(book, params[book], target, args.dataset)
        metric = ""
        if ok:
            try:
                metric = key_metric(book, results_folder(args.dataset))
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
