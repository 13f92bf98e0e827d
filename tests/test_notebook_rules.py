"""The cell rules of docs/design.md ("Notebooks read like paper sections"), checked on every
committed notebook: short cells that call the library, one job each, and no measured number typed
in prose."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from reversenet_utils import anchors

REPO = Path(__file__).resolve().parents[1]
BOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: a code cell's most non-blank lines (the parameters and Colab install cells are exempt) and
#: its longest line
MAX_LINES, MAX_WIDTH = 15, 100
#: a number with the unit of a measurement, in prose: "12.5 dB", "97.69 %", "40x faster"; not an
#: interval's level ("95 % interval", "95 % Wilson intervals", "95 % CI")
MEASURED = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s?(dB|%|x faster)(?!\s*(?:\w+\s+)?(?:intervals?|CI|confidence))"
)


def _code_cells(book: Path) -> list[tuple[int, nbformat.NotebookNode]]:
    nb = nbformat.read(book, as_version=4)
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _exempt(cell: nbformat.NotebookNode) -> bool:
    """The parameters cell (papermill's tag) and the Colab install cell."""
    return "parameters" in cell.metadata.get("tags", []) or "google.colab" in cell.source


def _python(source: str) -> ast.Module:
    """The cell as Python, its IPython magics (``%pip``) blanked."""
    return ast.parse(re.sub(r"^(\s*)[%!].*$", r"\1pass", source, flags=re.MULTILINE))


def test_there_are_notebooks_to_check() -> None:
    assert len(BOOKS) >= 9, BOOKS


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem[:2])
def test_code_cells_are_short_and_narrow(book: Path) -> None:
    wrong = []
    for i, cell in _code_cells(book):
        lines = [line for line in cell.source.splitlines() if line.strip()]
        if len(lines) > MAX_LINES and not _exempt(cell):
            wrong.append(f"cell {i}: {len(lines)} lines (at most {MAX_LINES})")
        wide = [len(line) for line in lines if len(line) > MAX_WIDTH]
        if wide:
            wrong.append(f"cell {i}: lines of {wide} characters (at most {MAX_WIDTH})")
    assert not wrong, f"{book.name}: " + "; ".join(wrong)


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem[:2])
def test_cells_define_nothing_and_nest_no_loops(book: Path) -> None:
    """No ``def``, ``class`` or ``lambda`` (they belong in the package, where tests reach them), and
    no loop inside a loop (targets x methods: an experiment loop, the package's too)."""
    wrong = []
    for i, cell in _code_cells(book):
        for node in ast.walk(_python(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                wrong.append(f"cell {i} defines {getattr(node, 'name', 'a lambda')}")
            if isinstance(node, (ast.For, ast.While)) and any(
                isinstance(inner, (ast.For, ast.While))
                for child in node.body
                for inner in ast.walk(child)
            ):
                wrong.append(f"cell {i} nests a loop in a loop (line {node.lineno})")
    assert not wrong, f"{book.name}: " + "; ".join(wrong)


def _published() -> set[float]:
    """Every published number in anchors.py, as a percentage and as it is written."""
    values = set()
    for table in (anchors.TARGET_ACCURACY, anchors.LOGIT_RECLASS, anchors.HE_2019_SPLIT_PSNR):
        stack = [table]
        while stack:
            found = stack.pop()
            if isinstance(found, dict):
                stack.extend(found.values())
            elif isinstance(found, anchors.Anchor):
                values |= {round(found.value, 4), round(100 * found.value, 2)}
    return values


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem[:2])
def test_prose_types_no_measured_number(book: Path) -> None:
    """Markdown states the question, the method and its math; a number with a measurement's unit is
    allowed only where it is a published anchor (anchors.py). Everything this study measured comes
    from the claims modules, in generated cells."""
    nb = nbformat.read(book, as_version=4)
    typed = [
        f"cell {i}: {m.group(0)!r}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for m in MEASURED.finditer(cell.source)
        if round(float(m.group(1)), 4) not in _published()
    ]
    assert not typed, f"{book.name} types measured numbers in prose: " + "; ".join(typed)


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem[:2])
def test_the_gates_are_one_call(book: Path) -> None:
    """``check_gates`` runs once, on the claims module's gates (the objects the conclusion and
    README print)."""
    calls = [
        i
        for i, cell in _code_cells(book)
        for node in ast.walk(_python(cell.source))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "check_gates"
    ]
    assert len(calls) <= 1, f"{book.name}: check_gates is called in cells {calls}"
    if calls:
        source = next(c.source for i, c in _code_cells(book) if i == calls[0])
        assert "gates(" in source.replace("check_gates(", ""), f"{book.name}: {source}"


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem[:2])
def test_papermill_reads_every_parameter(book: Path) -> None:
    """Every line of the parameters cell declares one parameter that papermill parses (a comment
    holding ``=`` or an unbalanced bracket stops it: the parameter then cannot be set from a YAML
    file)."""
    import papermill as pm

    cell = next(c for i, c in _code_cells(book) if "parameters" in c.metadata.get("tags", []))
    declared = [line.split(":")[0] for line in cell.source.splitlines() if line.strip()]
    assert sorted(pm.inspect_notebook(str(book))) == sorted(declared), book.name
