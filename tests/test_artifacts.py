"""Checkpoints (weights-only round trip, clear mismatch errors) and results JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from reversenet_utils.artifacts import (
    CheckpointMismatchError,
    checkpoint_path,
    load_checkpoint,
    machine,
    project_root,
    read_peer,
    read_results,
    save_checkpoint,
    write_results,
)
from reversenet_utils.context import Context
from reversenet_utils.models import build_target


def test_checkpoint_round_trip(tmp_root: Path, ctx) -> None:
    model = build_target("mlp_leaky")
    path = save_checkpoint(
        model, checkpoint_path(ctx, "mlp_leaky"), {"test_accuracy": 0.5, "history": [{"loss": 1.0}]}
    )
    assert path.parent == tmp_root / "artifacts" / "targets"
    fresh = build_target("mlp_leaky")
    meta = load_checkpoint(fresh, path)
    assert meta == {"test_accuracy": 0.5, "history": [{"loss": 1.0}]}
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_root: Path) -> None:
    path = save_checkpoint(build_target("mlp_leaky"), tmp_root / "x.pt")
    with pytest.raises(
        CheckpointMismatchError, match=r"x\.pt does not fit.*shape mismatch.*delete"
    ):
        load_checkpoint(build_target("mlp_relu"), path)
    with pytest.raises(CheckpointMismatchError, match="missing"):
        load_checkpoint(build_target("mlp_sigmoid").append(torch.nn.Linear(10, 10)), path)


def test_a_non_checkpoint_file_is_a_clear_error(tmp_root: Path) -> None:
    garbage = tmp_root / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="garbage.pt"):
        load_checkpoint(build_target("mlp_leaky"), garbage)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(build_target("mlp_leaky"), tmp_root / "missing.pt")


def test_results_json_schema(tmp_root: Path, ctx) -> None:
    path = write_results(ctx, {"epochs": 2}, {"acc": torch.tensor(0.25), "curve": [1, 2]}, 1.234)
    assert path == tmp_root / "results" / "99_demo.json"
    data = json.loads(path.read_text())
    assert data == {
        "notebook": "99_demo",
        "runtime_s": 1.23,
        "machine": machine(),
        "stage_seconds": [],
        "params": {"epochs": 2},
        "metrics": {"acc": 0.25, "curve": [1, 2]},
    }  # no IPython kernel: no cells timed
    # what ran it, named
    assert data["machine"]["cores"] == os.cpu_count() and data["machine"]["cpu"]
    assert read_results(ctx, "99_demo") == data
    with pytest.raises(ValueError, match="non-finite"):
        write_results(ctx, {}, {"psnr": math.nan}, 1.0)
    with pytest.raises(ValueError, match="needs the notebook's name"):
        write_results(Context("mnist", "cpu", tmp_root), {}, {}, 1.0)
    assert write_results(ctx, {}, {}) and read_results(ctx, "99_demo")["runtime_s"] >= 0  # clock
    path.write_text(path.read_text()[:20])  # truncated
    with pytest.raises(
        ValueError, match=r"99_demo.json is not valid JSON .*re-run notebooks/99_demo.ipynb"
    ):
        read_results(ctx, "99_demo")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="99_demo.json is not a results file"):
        read_results(ctx, "99_demo")


def test_project_root_finds_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REVERSENET_ROOT", raising=False)
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo / "notebooks")
    assert project_root() == repo


def test_row_panels_line_up_and_mark_missing_rows() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from reversenet_utils.plotting import show_row_panels

    x = torch.rand(4, 1, 28, 28)
    fig = show_row_panels(
        {"a": {"original": x, "method": x}, "b": {"original": x, "method": None}}, title="t"
    )
    assert len(fig.axes) == 4 and any(t.get_text() == "n/a" for ax in fig.axes for t in ax.texts)
    with pytest.raises(ValueError, match="same rows"):
        show_row_panels({"a": {"original": x}, "b": {"method": x}})


def test_stage_seconds_times_every_cell_after_parameters() -> None:
    """Under IPython, every cell after ``parameters(globals())`` is timed and named (its first
    comment, else its first line of code): what ``write_results`` records as ``stage_seconds``."""
    from IPython.testing.globalipapp import start_ipython

    from reversenet_utils import notebook

    shell = start_ipython()
    shell.run_cell("epochs: int = 2")
    shell.run_cell(
        "from reversenet_utils.notebook import parameters\nparams = parameters(globals())"
    )
    shell.run_cell("# train the targets\nimport time\ntime.sleep(0.05)")
    shell.run_cell("# NBVAL_CHECK_OUTPUT\nx = 1 + 1")
    rows = notebook.stage_seconds()
    assert [r["stage"] for r in rows] == ["train the targets", "x = 1 + 1"] and [
        r["cell"] for r in rows
    ] == [1, 2]
    assert rows[0]["seconds"] >= 0.05 and all(r["seconds"] >= 0 for r in rows)
    shell.run_cell("params = parameters(globals())")  # calling it again starts no second clock
    assert len(notebook.stage_seconds()) == 3
    # leave the test session's shell as it was
    shell.events.unregister("pre_run_cell", notebook._CLOCK._pre)
    shell.events.unregister("post_run_cell", notebook._CLOCK._post)


def test_read_peer_reads_a_comparison_or_nothing_and_names_a_broken_file(tmp_root: Path) -> None:
    assert read_peer("lucent") == {}  # not run in this root
    folder = tmp_root / "results" / "peer"
    folder.mkdir(parents=True)
    (folder / "lucent.json").write_text('{"lucent_ratio": 1.8}')
    assert read_peer("lucent") == {"lucent_ratio": 1.8}
    (folder / "lucent.json").write_text('{"lucent_ratio": ')
    with pytest.raises(ValueError, match=r"lucent\.json is not valid JSON.*make compare-lucent"):
        read_peer("lucent")
    with pytest.raises(ValueError, match="peer's name"):
        read_peer("../lucent")
