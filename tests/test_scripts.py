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
        assert sync.colab_url(book.name) in book.read_text(), (
            f"{book.name} lacks its own Colab badge"
        )


@pytest.mark.parametrize(
    "url, slug",
    [
        ("https://github.com/alice/reversenet.git", "alice/reversenet"),
        ("https://github.com/alice/reversenet", "alice/reversenet"),
        ("https://token@github.com/alice/rev.net/", "alice/rev.net"),
        ("git@github.com:alice/reversenet.git", "alice/reversenet"),
        ("ssh://git@github.com/alice/reversenet.git\n", "alice/reversenet"),
        ("https://gitlab.com/alice/reversenet.git", None),
        ("/work/main", None),
        ("https://github.com/alice", None),
    ],
)
def test_the_colab_repository_comes_from_a_github_origin(url: str, slug: str | None) -> None:
    assert _load("sync_links").github_slug(url) == slug


def test_links_follow_the_origin_and_fall_back_to_pyproject(tmp_path: Path) -> None:
    import shutil
    import subprocess

    sync = _load("sync_links")
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    github, branch = sync.config(tmp_path)
    assert sync.repo_config(tmp_path) == (github, branch)  # not a git checkout: pyproject's
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "remote", "add", "origin", "/somewhere/local"], check=True
    )
    assert sync.repo_config(tmp_path) == (github, branch)  # origin not on GitHub: pyproject's
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "remote",
            "set-url",
            "origin",
            "git@github.com:fork/study.git",
        ],
        check=True,
    )
    assert sync.repo_config(tmp_path) == ("fork/study", branch)
    assert sync.colab_url("01_x.ipynb", tmp_path).startswith(
        "https://colab.research.google.com/github/fork/study/blob/"
    )
    (tmp_path / "pyproject.toml").write_text('[tool.reversenet]\ngithub = "a/b"\n')
    with pytest.raises(SystemExit, match=r"lacks 'branch'"):
        sync.config(tmp_path)


def test_rewrite_keeps_notebook_json_valid() -> None:
    sync = _load("sync_links")
    text = '"%pip install -q \\"pkg @ git+https://github.com/old/name@dev\\"\\n"'
    assert (
        sync.rewrite(text, "new/repo", "main")
        == '"%pip install -q \\"pkg @ git+https://github.com/new/repo@main\\"\\n"'
    )


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


def test_a_failing_notebook_is_named_with_its_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat

    runner = _load("run_notebooks")
    book = tmp_path / "99_broken.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, book)
    monkeypatch.setattr(runner, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(runner, "FAILED", tmp_path / "failed")
    before = book.read_bytes()
    ok, message = runner.run(book, {})
    assert not ok
    assert message.startswith("cell 2 of 2 (In [2], `1 / 0`)") and "ZeroDivisionError" in message
    assert book.read_bytes() == before  # a failed run never overwrites the notebook
    kept = nbformat.read(
        tmp_path / "failed" / book.name, as_version=4
    ).cells  # the failed run, with its error
    assert any(
        o["output_type"] == "error" for c in kept if c.cell_type == "code" for o in c.outputs
    )


def test_a_failing_notebook_leaves_its_results_and_figures_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat

    runner = _load("run_notebooks")
    results, assets = tmp_path / "results", tmp_path / "assets"
    results.mkdir(), assets.mkdir()
    (results / "99_broken.json").write_text('{"metrics": {"psnr": 20.0}}')
    (assets / "99_figure.png").write_bytes(b"committed")
    (assets / "98_other.png").write_bytes(b"another notebook's")
    book = tmp_path / "99_broken.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"from pathlib import Path\nPath({str(results)!r}, '99_broken.json').write_text('half "
            f"written')\n"
            f"Path({str(assets)!r}, '99_figure.png').write_bytes(b'new')\nPath({str(assets)!r}, "
            f"'99_added.png').write_bytes(b'x')"
        ),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, book)
    monkeypatch.setattr(runner, "RESULTS", results)
    monkeypatch.setattr(runner, "ASSETS", assets)
    monkeypatch.setattr(runner, "FAILED", tmp_path / "failed")
    ok, message = runner.run(book, {})
    assert not ok and "its results file and its figures are unchanged" in message
    assert (results / "99_broken.json").read_text() == '{"metrics": {"psnr": 20.0}}'
    assert (assets / "99_figure.png").read_bytes() == b"committed" and not (
        assets / "99_added.png"
    ).exists()
    assert (assets / "98_other.png").read_bytes() == b"another notebook's"


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
    with pytest.raises(
        runner.ResultsError,
        match="04_zero_shot_progressive_inversion.json: lacks what README reads",
    ):
        runner.key_metric(book, tmp_path)


def test_readme_numbers_are_the_results_json() -> None:
    readme = _load("readme_results")
    assert readme.main(["--check"]) == 0, "README differs from results/*.json: run `make readme`"
    text = (REPO / "README.md").read_text()
    for book in readme.notebooks():  # every notebook listed, with its finding from its own JSON
        assert readme.finding(book) in text, book.name


def test_readme_check_fails_when_a_number_changes(tmp_path: Path) -> None:
    import json
    import shutil

    readme = _load("readme_results")
    shutil.copytree(REPO / "results", tmp_path, dirs_exist_ok=True)
    text = (REPO / "README.md").read_text()
    assert readme.render(text, tmp_path) == text
    path = tmp_path / "07_inversion_benchmark.json"
    data = json.loads(path.read_text())
    data["metrics"]["rows"][0]["psnr"] += 1.0  # one measured number moves
    path.write_text(json.dumps(data))
    assert readme.render(text, tmp_path) != text
    with pytest.raises(SystemExit, match="marker pair"):
        readme.render("# README without markers\n", tmp_path)


def test_papermill_injects_a_parameter_file(tmp_path: Path) -> None:
    """The real client: papermill's CLI runs notebook 01 with a parameter file; the parameters take
    effect."""
    import json
    import os
    import subprocess

    import nbformat

    if not (REPO / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file():
        pytest.skip("MNIST not fetched: run `make data`")
    # the notebook writes its checkpoint, figures and results here, not into the repo
    root = tmp_path / "root"
    root.mkdir()
    (root / "data").symlink_to(REPO / "data")
    params = tmp_path / "params.yaml"
    # 4 epochs: above its floor
    params.write_text(yaml.safe_dump({"targets": ["mlp_leaky"], "epochs": 4, "seed": 7}))
    out = tmp_path / "out.ipynb"
    env = {**os.environ, "REVERSENET_ROOT": str(root), "TQDM_DISABLE": "1"}
    papermill = Path(sys.executable).with_name("papermill")
    subprocess.run(
        [
            str(papermill),
            str(REPO / "notebooks" / "01_train_targets.ipynb"),
            str(out),
            "-f",
            str(params),
            "--kernel",
            "python3",
            "--cwd",
            str(tmp_path),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    injected = [
        c
        for c in nbformat.read(out, as_version=4).cells
        if "injected-parameters" in c.metadata.get("tags", [])
    ]
    assert (
        len(injected) == 1
        and "epochs = 4" in injected[0].source
        and "seed = 7" in injected[0].source
    )
    results = json.loads((root / "results" / "01_train_targets.json").read_text())
    assert (
        results["params"]["targets"] == ["mlp_leaky"]
        and results["params"]["epochs"] == 4
        and results["params"]["seed"] == 7
    )
    assert (
        list(results["metrics"]["targets"]) == ["mlp_leaky"]
        and results["metrics"]["targets"]["mlp_leaky"]["epochs"] == 4
    )

    # a misspelled name: papermill alone only warns and runs the default; `make run`'s runner
    # refuses it
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"epoch": 1}))
    runner = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "run_notebooks.py"),
            "--nb",
            "01",
            "--params",
            str(bad),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert runner.returncode != 0 and "unknown parameter(s) ['epoch']" in runner.stderr


@pytest.mark.parametrize(
    "name, dataset",
    [
        ("smoke.yaml", None),
        ("full.yaml", None),
        ("smoke.yaml", "fashion_mnist"),
        ("fashion_mnist.yaml", "fashion_mnist"),
    ],
)
def test_the_shipped_parameter_files_fit_the_notebooks(name: str, dataset: str | None) -> None:
    runner = _load("run_notebooks")
    books = runner.dataset_books(runner.select(None), dataset)
    files = runner.dataset_params(dataset, str(REPO / "params" / name))
    params = runner.load_params(files, books, dataset)  # names and types checked
    assert any(params.values())
    for book in books:  # one notebook alone: the other notebooks' sections are not unknown names
        assert runner.load_params(files, [book], dataset)[book] == params[book]


def test_committed_notebooks_show_plain_progress_and_no_widget_state() -> None:
    """`make run` executes with REVERSENET_BATCH: text bars, no widget views GitHub cannot render,
    no tqdm warning."""
    import nbformat

    for book in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(book, as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
                assert "IProgress not found" not in text and "TqdmWarning" not in text, (
                    book.name,
                    text[:200],
                )
                assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), (
                    f"{book.name} holds a widget view: run it with `make run` "
                    f"(REVERSENET_BATCH=1), not in a browser"
                )


def test_a_run_on_fashion_mnist_takes_the_dataset_notebooks_and_writes_beside_them(
    tmp_path: Path,
) -> None:
    runner = _load("run_notebooks")
    books = runner.dataset_books(runner.select(None), "fashion_mnist")
    assert [b.name[:2] for b in books] == [
        "01",
        "02",
        "03",
        "04",
        "05",
        "07",
        "08",
        "09",
    ]  # 06 (ImageNet) takes no dataset
    assert runner.dataset_books(runner.select(None), "mnist") == runner.select(None)
    with pytest.raises(SystemExit, match="unknown dataset 'cifar'"):
        runner.dataset_books(runner.select(None), "cifar")
    params = runner.load_params(
        runner.dataset_params("fashion_mnist", None), books, "fashion_mnist"
    )
    assert all(p["dataset"] == "fashion_mnist" for p in params.values())
    assert (
        runner.output_path(books[0], "fashion_mnist")
        == REPO / "notebooks" / "runs" / "fashion_mnist" / books[0].name
    )
    assert runner.output_path(books[0], None) == books[0]  # MNIST: in place, as committed
    assert runner.results_folder("fashion_mnist") == REPO / "results" / "fashion_mnist"
    # files apply in order: a later value wins, a notebook's section is merged name by name
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump({"seed": 1, "04": {"chain_steps": 10, "opt_images": 8}}))
    second.write_text(yaml.safe_dump({"seed": 2, "04": {"chain_steps": 20}}))
    four = runner.select("04")
    merged = runner.load_params([str(first), str(second)], four, "fashion_mnist")[four[0]]
    assert merged == {"dataset": "fashion_mnist", "seed": 2, "chain_steps": 20, "opt_images": 8}


def test_the_generalisation_table_says_where_a_claim_fails(tmp_path: Path) -> None:
    readme = _load("readme_results")
    import json

    def write(folder: Path, accuracy: float, floor: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "01_train_targets.json").write_text(
            json.dumps(
                {
                    "notebook": "01_train_targets",
                    "runtime_s": 1.0,
                    "params": {},
                    "metrics": {
                        "targets": {"cnn_pool": {"test_accuracy": accuracy, "floor": floor}}
                    },
                }
            )
        )

    write(tmp_path, 0.99, 0.985)
    write(tmp_path / "fashion_mnist", 0.90, 0.91)
    table = readme.generalise_table(tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| 01 "))
    assert (
        "✓ 99.00%" in row
        and "✗ 90.00%" in row
        and "holds on MNIST, **not on Fashion-MNIST**" in row
    )
    assert "| 02 " in table and "neither dataset run yet" in table


def test_a_section_named_after_a_dataset_applies_to_that_dataset_only(tmp_path: Path) -> None:
    runner = _load("run_notebooks")
    four = runner.select("04")
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {"04": {"min_logit_reclass": 0.8}, "fashion_mnist": {"04": {"min_logit_reclass": 0.5}}}
        )
    )
    assert runner.load_params(str(path), four)[four[0]] == {"min_logit_reclass": 0.8}
    assert runner.load_params(str(path), four, "fashion_mnist")[four[0]] == {
        "dataset": "fashion_mnist",
        "min_logit_reclass": 0.5,
    }
    path.write_text(yaml.safe_dump({"fashion_mnist": {"04": {"min_logit_reclas": 0.5}}}))
    with pytest.raises(SystemExit, match="unknown parameter 'min_logit_reclas'"):
        runner.load_params(str(path), four, "fashion_mnist")
    path.write_text(yaml.safe_dump({"fashion_mnist": [1, 2]}))
    with pytest.raises(SystemExit, match="section 'fashion_mnist' must be a mapping"):
        runner.load_params(str(path), four, "fashion_mnist")


def test_an_unknown_dataset_in_a_parameter_file_is_refused(tmp_path: Path) -> None:
    runner = _load("run_notebooks")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"dataset": "cifar10"}))
    with pytest.raises(SystemExit, match="dataset 'cifar10' is not one of mnist, fashion_mnist"):
        runner.load_params(str(path), runner.select("01"))


@pytest.mark.parametrize(
    "values, dataset",
    [
        # without --dataset the run would go in place over the MNIST notebooks
        (
            {"dataset": "fashion_mnist"},
            None,
        ),
        ({"dataset": "mnist"}, "fashion_mnist"),  # one dataset run, filed as the other
        ({"01": {"dataset": "fashion_mnist"}}, None),  # the same in a notebook's own section
        ({"mnist": {"dataset": "fashion_mnist"}}, None),  # and in the section of the run's dataset
    ],
)
def test_a_parameter_file_cannot_contradict_the_runs_dataset(
    tmp_path: Path, values: dict, dataset: str | None
) -> None:
    runner = _load("run_notebooks")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(SystemExit, match=r"sets dataset .* but this run is on .*--dataset alone"):
        runner.load_params(str(path), runner.select("01"), dataset)
    before = {b: b.stat().st_mtime_ns for b in runner.select(None)}
    # refused before anything runs: no notebook touched
    with pytest.raises(SystemExit, match="--dataset alone"):
        runner.main(
            ["--nb", "01", "--params", str(path)] + (["--dataset", dataset] if dataset else [])
        )
    assert {b: b.stat().st_mtime_ns for b in runner.select(None)} == before


def test_a_parameter_file_may_repeat_the_runs_dataset(tmp_path: Path) -> None:
    runner = _load("run_notebooks")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"dataset": "fashion_mnist"}))
    books = runner.select("01")
    assert (
        runner.load_params(str(path), books, "fashion_mnist")[books[0]]["dataset"]
        == "fashion_mnist"
    )
    path.write_text(yaml.safe_dump({"dataset": "mnist"}))
    assert runner.load_params(str(path), books)[books[0]] == {"dataset": "mnist"}


@pytest.mark.parametrize("numbers", [",", " ", ", ,", "4a", "123"])
def test_an_empty_or_malformed_selection_is_refused(numbers: str) -> None:
    with pytest.raises(SystemExit, match="names no notebook|is not a notebook number"):
        _load("run_notebooks").select(numbers)


def test_a_tier_keeps_its_artifacts_only_in_a_folder_without_checkpoints(tmp_path: Path) -> None:
    tn = _load("test_notebooks")
    kept = tmp_path / "kept"
    root = tmp_path / "root"
    root.mkdir()
    tn.share_artifacts(root, kept)  # created, linked: what the tier trains lands in kept/
    (root / "artifacts" / "targets").mkdir()
    (root / "artifacts" / "targets" / "cnn_pool.pt").write_bytes(b"weights")
    assert (kept / "targets" / "cnn_pool.pt").read_bytes() == b"weights"
    other = tmp_path / "other"
    other.mkdir()
    # a user's trained checkpoints are never retrained over
    with pytest.raises(SystemExit, match="already holds checkpoints"):
        tn.share_artifacts(other, kept)
    assert not (other / "artifacts").exists() and (kept / "targets" / "cnn_pool.pt").is_file()


def test_the_privacy_answer_comes_from_notebook_09s_results(tmp_path: Path) -> None:
    import json
    import shutil

    readme = _load("readme_results")
    shutil.copy(REPO / "results" / "09_split_computing_privacy.json", tmp_path)
    section = readme.privacy_section(tmp_path)
    metrics = json.loads((tmp_path / "09_split_computing_privacy.json").read_text())["metrics"]
    assert "### MNIST" in section and "Not run on Fashion-MNIST yet" in section
    for target, device in metrics[
        "devices"
    ].items():  # one row per split of every device, and what to deploy on it
        assert section.count(f"| `{target}` |") == len(device["splits"]) + 1
        r = metrics["recommended"][target]
        assert f"| `{target}` | split {r['split']}, " in section
        assert f"{r['accuracy']:.2%}" in section and f"{r['ssim']:.2f}" in section
    # He et al.'s table, and each line on what the leak table understates, where 09 ran it
    he_table = "He, Zhang and Lee's LeNet in their own table" in section
    assert he_table == bool(metrics.get("he_lenet"))
    if he_table:
        for line in readme.privacy_claims.understated_leaks(metrics):
            assert line.removeprefix("- ") in section
        metrics["he_lenet"] = None  # not run (anchor_table=False): no table
        (tmp_path / "09_split_computing_privacy.json").write_text(json.dumps({"metrics": metrics}))
        assert "in their own table" not in readme.privacy_section(tmp_path)


def test_a_notebook_never_run_by_papermill_takes_parameters() -> None:
    import nbformat
    from papermill.parameterize import parameterize_notebook

    runner = _load("run_notebooks")
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}
        }
    )
    # a new notebook: no papermill metadata, a cell without tags
    nb.cells = [
        nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    assert "papermill" not in nb.metadata and "tags" not in nb.cells[1].metadata
    out = parameterize_notebook(runner.without_injected(nb), {"seed": 3})
    assert "seed = 3" in out.cells[1].source and out.metadata.papermill["parameters"] == {"seed": 3}


def test_profile_lists_notebooks_and_slowest_cells(tmp_path: Path) -> None:
    """`make profile` reads papermill's cell durations: seconds per notebook, the series, the
    slowest cells."""
    import nbformat

    prof = _load("profile_notebooks")
    books = []
    for name, durations in (("01_a.ipynb", [1.0, 30.0]), ("02_b.ipynb", [5.0, 0.5])):
        nb = nbformat.v4.new_notebook()
        for i, d in enumerate(durations):
            cell = nbformat.v4.new_code_cell(f"# stage {i} of {name}\nx = {i}")
            cell.metadata["papermill"] = {"duration": d}
            nb.cells.append(cell)
        nb.cells.append(nbformat.v4.new_markdown_cell("no time"))
        nbformat.write(nb, tmp_path / name)
        books.append(tmp_path / name)
    never = tmp_path / "03_c.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), never)
    report = prof.profile([*books, never], slowest=2, cells_of="02")
    lines = report.splitlines()
    assert any(line.startswith("01_a.ipynb") and " 31 " in line for line in lines), report
    assert (
        "series" in report
        and "36" in report
        and "never executed by papermill (no cell times): 03_c.ipynb" in report
    )
    slow = lines[lines.index("the 2 slowest cells:") + 2 :][:2]
    assert "30.0" in slow[0] and "stage 1 of 01_a.ipynb" in slow[0] and "5.0" in slow[1], slow
    assert "every cell of 02_b.ipynb:" in report
    with pytest.raises(SystemExit):
        prof.main(["--slowest", "-1"])


def test_a_dataset_tier_runs_the_current_code_with_that_datasets_checked_outputs(
    tmp_path: Path,
) -> None:
    """The Fashion tier executes the notebook's own code (not the executed copy's, which may predate
    it); its NBVAL_CHECK_OUTPUT cells take the outputs of the Fashion run; a checked cell whose code
    changed is refused."""
    import nbformat

    tn = _load("test_notebooks")
    root = tmp_path / "root"
    copies = tn.prepare(None, "01", root, "fashion_mnist")
    nb = nbformat.read(copies[0], as_version=4)
    current = nbformat.read(REPO / "notebooks" / "01_train_targets.ipynb", as_version=4)
    executed = nbformat.read(
        REPO / "notebooks" / "runs" / "fashion_mnist" / "01_train_targets.ipynb", as_version=4
    )
    code = [
        c.source
        for c in nb.cells
        if c.cell_type == "code" and "injected-parameters" not in c.metadata.tags
    ]
    assert code == [c.source for c in current.cells if c.cell_type == "code"]
    checked = [c for c in nb.cells if tn.CHECKED in c.source]
    assert checked and all(
        c.outputs == next(e.outputs for e in executed.cells if e.source == c.source)
        for c in checked
    )
    changed = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(f"# {tn.CHECKED}\nprint(2)")]
    )
    with pytest.raises(SystemExit, match="re-run it"):
        tn.with_checked_outputs(changed, executed, tmp_path / "copy.ipynb")


@pytest.mark.parametrize(
    "book, name, constant",
    [
        ("04_zero_shot_progressive_inversion", "max_zero_shot_gap", "ZERO_SHOT_GAP_DB"),
        ("07_inversion_benchmark", "min_block1_matching_db", "RECOVERED_DB"),
    ],
)
def test_a_gate_parameter_defaults_to_its_threshold(book: str, name: str, constant: str) -> None:
    """A parameter that moves a gate starts at the threshold that the claims and README use
    (thresholds.py)."""
    import ast

    import papermill as pm

    from reversenet_utils import thresholds

    declared = pm.inspect_notebook(str(REPO / "notebooks" / f"{book}.ipynb"))
    assert ast.literal_eval(declared[name]["default"]) == getattr(thresholds, constant), (
        book,
        name,
    )


def test_anchors_name_their_source_and_are_found_by_key() -> None:
    from reversenet_utils.anchors import (
        HE_2019_SPLIT_PSNR,
        HE_2019_SPLIT_SSIM,
        LOGIT_RECLASS,
        TARGET_ACCURACY,
        Anchor,
        anchor_value,
    )

    assert anchor_value(TARGET_ACCURACY, "mnist", "mlp_sigmoid") == 0.9521
    assert anchor_value(TARGET_ACCURACY, "fashion_mnist", "mlp_sigmoid") is None  # none published
    assert anchor_value(LOGIT_RECLASS, "no_such_dataset", "cnn_pool") is None
    assert anchor_value(HE_2019_SPLIT_PSNR, ("inverse net, N(0, 1) noise", 1)) == 14.76
    assert anchor_value(HE_2019_SPLIT_SSIM, ("query-free", 2)) == 0.498
    for table in (
        TARGET_ACCURACY["mnist"],
        TARGET_ACCURACY["fashion_mnist"],
        LOGIT_RECLASS["mnist"],
        HE_2019_SPLIT_PSNR,
        HE_2019_SPLIT_SSIM,
    ):
        assert all(a.citation for a in table.values())
    with pytest.raises(TypeError, match="give every key"):
        anchor_value(TARGET_ACCURACY, "mnist")
    with pytest.raises(ValueError, match="not one of"):
        Anchor(1.0, "x", "nowhere")


def test_readme_errors_name_the_results_file_and_the_key(tmp_path: Path) -> None:
    import json
    import shutil

    readme = _load("readme_results")
    shutil.copytree(REPO / "results", tmp_path, dirs_exist_ok=True)
    text = (REPO / "README.md").read_text()
    for stem, drop in (
        ("07_inversion_benchmark", "rows"),
        ("09_split_computing_privacy", "settings"),
    ):
        path = tmp_path / f"{stem}.json"
        kept = path.read_text()
        data = json.loads(kept)
        del data["metrics"][drop]
        path.write_text(json.dumps(data))
        with pytest.raises(
            readme.ResultsError, match=rf"{stem}\.json.*lacks what README reads.*{drop}"
        ):
            readme.render(text, tmp_path)
        path.write_text(kept)
    (tmp_path / "07_inversion_benchmark.json").write_text("{truncated")
    with pytest.raises(readme.ResultsError, match=r"07_inversion_benchmark\.json: not valid JSON"):
        readme.render(text, tmp_path)


def test_the_runtime_table_names_the_machine_of_each_series(tmp_path: Path) -> None:
    readme = _load("readme_results")
    import json

    def write(folder: Path, notebook: str, seconds: float, machine: dict | None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        data = {"notebook": notebook, "runtime_s": seconds, "params": {}, "metrics": {}}
        (folder / f"{notebook}.json").write_text(
            json.dumps(data | ({"machine": machine} if machine else {}))
        )

    cpu = {"cpu": "AMD EPYC", "cores": 2, "threads": 2, "torch": "2.x", "accelerator": None}
    write(tmp_path, "01_train_targets", 60.0, cpu)
    # written before machines were recorded
    write(tmp_path, "04_zero_shot_progressive_inversion", 240.0, None)
    write(
        tmp_path / "fashion_mnist", "01_train_targets", 90.0, cpu | {"accelerator": "NVIDIA H100"}
    )
    rows = readme.runtime_table(tmp_path).splitlines()
    mnist, fashion = (
        next(r for r in rows if r.startswith(f"| {t}")) for t in ("MNIST", "Fashion-MNIST")
    )
    assert "| 2 | 5.0 min | 04 (240 s) | AMD EPYC, 2 cores; not recorded (1 file) |" in mnist
    assert "| 1 | 1.5 min | 01 (90 s) | AMD EPYC, 2 cores, NVIDIA H100 |" in fashion
