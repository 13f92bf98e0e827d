"""Fashion-MNIST beside MNIST: verified data, each run's dataset in its context, folders and
checkpoints kept apart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from reversenet_utils import artifacts
from reversenet_utils import data as data_mod
from reversenet_utils.context import Context

REPO = Path(__file__).resolve().parents[1]


def test_the_datasets_are_named_alike_everywhere() -> None:
    assert tuple(data_mod.SPECS) == artifacts.DATASETS
    for spec in data_mod.SPECS.values():
        assert sorted(spec.checksums()) == sorted(data_mod.MNIST_FILES) and len(spec.classes) == 10


def test_an_unknown_dataset_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'mnist', 'fashion_mnist'"):
        Context("cifar10")
    with pytest.raises(ValueError, match="unknown dataset 'FashionMNIST'"):
        data_mod.load_dataset("test", dataset="FashionMNIST")
    with pytest.raises(ValueError, match="'debian', 'torchvision'"):
        data_mod.prepare_dataset("fashion_mnist", source="registry")


def test_each_dataset_has_its_own_folders(tmp_root: Path) -> None:
    mnist, fashion = Context("mnist", "cpu"), Context("fashion_mnist", "cpu")
    assert mnist.results == tmp_root / "results" and mnist.root == fashion.root == tmp_root
    for folder in (fashion.results, fashion.assets, fashion.artifacts):
        assert folder.parent.parent == tmp_root and folder.name == "fashion_mnist"
    assert (
        artifacts.checkpoint_path(fashion, "cnn_pool")
        == tmp_root / "artifacts" / "fashion_mnist" / "targets" / "cnn_pool.pt"
    )
    assert fashion.data_root == mnist.data_root == tmp_root / "data"
    assert fashion.title == "Fashion-MNIST" and mnist.spec.title == "MNIST"
    assert artifacts.data_dir() == tmp_root / "data"  # data/ holds both, in torchvision's folders
    assert data_mod.raw_dir("fashion_mnist", tmp_root) == tmp_root / "FashionMNIST" / "raw"


def test_a_checkpoint_never_loads_for_the_other_dataset(tmp_root: Path) -> None:
    path = tmp_root / "net.pt"
    net = nn.Linear(3, 2)
    artifacts.save_checkpoint(net, path, {"name": "net", "dataset": "mnist"})
    fashion = Context("fashion_mnist", "cpu")
    with pytest.raises(
        artifacts.CheckpointMismatchError,
        match="dataset: saved for 'mnist', needed 'fashion_mnist'",
    ):
        artifacts.load_or_train(
            lambda: nn.Linear(3, 2),
            path,
            lambda m: {},
            {"name": "net", "dataset": fashion.dataset},
        )


def test_a_damaged_fashion_file_is_named_with_the_fix(tmp_path: Path) -> None:
    raw = data_mod.raw_dir("fashion_mnist", tmp_path)
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00" * 64)
    with pytest.raises(
        data_mod.DatasetIntegrityError,
        match=r"t10k-labels-idx1-ubyte is not the official Fashion-MNIST.*make data",
    ):
        data_mod.load_dataset("test", dataset="fashion_mnist", root=tmp_path)


def test_an_offline_fashion_repair_keeps_what_is_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = data_mod.raw_dir("fashion_mnist", tmp_path)
    raw.mkdir(parents=True)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"stale")

    def offline(staged: Path) -> None:
        raise OSError("no network")

    monkeypatch.setattr(data_mod, "_fetch_fashion_from_debian", offline)
    monkeypatch.setattr(data_mod, "_fetch_with_torchvision", offline)
    with pytest.raises(
        data_mod.DatasetIntegrityError,
        match=r"Fashion-MNIST.*debian: OSError: no network.*torchvision.*make data",
    ):
        data_mod.prepare_dataset("fashion_mnist", tmp_path, verbose=False)
    assert (raw / "train-labels-idx1-ubyte").read_bytes() == b"stale"  # nothing deleted


def test_a_debian_package_with_another_checksum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = subprocess.run

    def fake_apt(cmd, **kwargs):
        if cmd[:2] == ["apt-get", "download"]:
            (Path(kwargs["cwd"]) / "dataset-fashion-mnist_all.deb").write_bytes(b"not the package")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(data_mod.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(data_mod.subprocess, "run", fake_apt)
    with pytest.raises(
        data_mod.DatasetIntegrityError, match=f"expected {data_mod.FASHION_MNIST_DEB_SHA256}"
    ):
        data_mod._fetch_fashion_from_debian(tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_real_fashion_mnist_is_complete_and_verified() -> None:
    root = REPO / "data"
    if data_mod.dataset_status("fashion_mnist", root) != {
        n: "ok" for n in data_mod.FASHION_MNIST_FILES
    }:
        pytest.skip("Fashion-MNIST not fetched: run `make data`")
    train = data_mod.load_dataset("train", dataset="fashion_mnist", root=root)
    test = data_mod.load_dataset("test", dataset="fashion_mnist", root=root)
    assert train.images.shape == (60_000, 1, 28, 28) and len(test) == 10_000
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    mnist = data_mod.load_mnist("test", root=root)
    # the other dataset, not MNIST under a new name
    assert not torch.equal(mnist.images[:10], test.images[:10])
    # filled shapes: far more ink per image than digits
    assert test.images.mean() > 2 * mnist.images.mean()


def test_loads_follow_the_contexts_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = []
    monkeypatch.setattr(
        data_mod, "verify_dataset", lambda name, root: seen.append(name) or ["missing"]
    )
    monkeypatch.setattr(
        data_mod,
        "prepare_dataset",
        lambda name, root: (_ for _ in ()).throw(OSError(f"fetch {name}")),
    )
    with pytest.raises(OSError, match="fetch fashion_mnist"):
        Context("fashion_mnist", "cpu", tmp_path).load("test")
    with pytest.raises(OSError, match="fetch mnist"):
        data_mod.load_mnist("test", root=tmp_path)  # MNIST by name
    assert seen == ["fashion_mnist", "mnist"]
    with pytest.raises(ValueError, match="unknown dataset None"):
        data_mod.spec(None)  # no dataset chosen elsewhere to fall back on
