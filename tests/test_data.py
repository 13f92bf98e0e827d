"""MNIST: IDX writing, restricted unpickling, MD5 verification, corrupted-file errors."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from reversenet_utils.data import (
    MNIST_FILES,
    MNISTIntegrityError,
    load_mnist,
    mnist_raw_dir,
    prepare_mnist,
    restricted_loads,
    verify_mnist,
    write_idx,
)


def test_write_idx_is_read_back_by_torchvision(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", labels)
    assert torch.equal(read_image_file(str(tmp_path / "images")), torch.from_numpy(images))
    assert torch.equal(read_label_file(str(tmp_path / "labels")), torch.from_numpy(labels).long())


def test_restricted_unpickler_rebuilds_numpy_arrays() -> None:
    arrays = ((np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3), np.arange(2)),)
    ((x, y),) = restricted_loads(pickle.dumps(arrays, protocol=2))
    np.testing.assert_array_equal(x, arrays[0][0])
    np.testing.assert_array_equal(y, arrays[0][1])


def test_restricted_unpickler_refuses_anything_else() -> None:
    with pytest.raises(pickle.UnpicklingError, match="system"):
        restricted_loads(pickle.dumps(os.system, protocol=2))


def _fake_raw(root: Path) -> Path:
    raw = mnist_raw_dir(root)
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).write_bytes(b"\x00" * 64)
    return raw


def test_verify_names_the_altered_file_and_the_fix(tmp_path: Path) -> None:
    _fake_raw(tmp_path)
    with pytest.raises(MNISTIntegrityError, match=r"train-images-idx3-ubyte.*make data"):
        verify_mnist(tmp_path)


def test_verify_lists_missing_files(tmp_path: Path) -> None:
    assert sorted(verify_mnist(tmp_path)) == sorted(MNIST_FILES)


def test_load_refuses_a_corrupted_dataset(tmp_path: Path) -> None:
    _fake_raw(tmp_path)
    with pytest.raises(MNISTIntegrityError, match="make data"):
        load_mnist("test", root=tmp_path)


def test_load_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid", root=tmp_path)


def test_real_mnist_is_complete_and_verified(real_raw: Path) -> None:
    root = real_raw.parents[1]
    assert verify_mnist(root) == []
    train, test = load_mnist("train", root=root), load_mnist("test", root=root)
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.images.min() == 0 and train.images.max() == 1
    assert torch.bincount(test.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_truncated_real_file_is_caught_and_repaired(real_raw: Path, tmp_path: Path) -> None:
    raw = mnist_raw_dir(tmp_path)
    shutil.copytree(real_raw, raw)
    victim = raw / "t10k-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:-100])  # truncated
    with pytest.raises(MNISTIntegrityError, match="t10k-labels-idx1-ubyte"):
        load_mnist("test", root=tmp_path)
    prepare_mnist(tmp_path, source="registry", verbose=False)  # what `make data` does
    assert verify_mnist(tmp_path) == []
