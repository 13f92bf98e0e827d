"""The repository scripts: Colab links come from one place; papermill parameters are checked."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_colab_links_match_pyproject() -> None:
    sync = _load("sync_links")
    assert sync.main(["--check"]) == 0, "run `python scripts/sync_links.py`"
    readme = (REPO / "README.md").read_text()
    for book in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert sync.colab_url(book.name) in readme, f"README lacks the Colab badge of {book.name}"
        assert sync.colab_url(book.name) in book.read_text(), f"{book.name} lacks its own Colab badge"


def test_rewrite_keeps_notebook_json_valid() -> None:
    sync = _load("sync_links")
    text = '"%pip install -q \\"pkg @ git+https://github.com/old/name@dev\\"\\n"'
    assert sync.rewrite(text, "new/repo", "main") == '"%pip install -q \\"pkg @ git+https://github.com/new/repo@main\\"\\n"'


def test_a_misspelled_parameter_is_an_error(tmp_path: Path) -> None:
    runner = _load("run_notebooks")
    books = runner.select("01")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"epochs": 1, "seed": 3}))
    assert runner.load_params(str(good), books)[books[0]] == {"epochs": 1, "seed": 3}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"epoch": 1}))
    with pytest.raises(SystemExit, match="unknown parameter.*epoch"):
        runner.load_params(str(bad), books)
    with pytest.raises(SystemExit, match="No notebook numbered 42"):
        runner.select("42")


def test_a_failing_notebook_is_named_with_its_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat

    runner = _load("run_notebooks")
    book = tmp_path / "99_broken.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book)
    monkeypatch.setattr(runner, "NOTEBOOKS", tmp_path)
    ok, message = runner.run(book, {})
    assert not ok
    assert message.startswith("cell 2 of 2 (In [2], `1 / 0`)") and "ZeroDivisionError" in message
    written = nbformat.read(book, as_version=4).cells  # still written, with the error in it
    assert any(o["output_type"] == "error" for c in written if c.cell_type == "code" for o in c.outputs)


def test_every_notebook_has_a_key_metric_from_its_committed_results() -> None:
    runner = _load("run_notebooks")
    for book in runner.select(None):
        metric = runner.key_metric(book)
        assert metric != "-" and "lacks" not in metric, (book.name, metric)
        assert any(ch.isdigit() for ch in metric), (book.name, metric)


def test_key_metric_without_or_with_a_broken_results_file(tmp_path: Path) -> None:
    runner = _load("run_notebooks")
    book = Path("04_zero_shot_progressive_inversion.ipynb")
    assert runner.key_metric(book, tmp_path) == "-"
    (tmp_path / "04_zero_shot_progressive_inversion.json").write_text('{"metrics": {"rows": []}}')
    assert runner.key_metric(book, tmp_path).startswith("(results file lacks")
