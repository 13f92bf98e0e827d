"""A run's context: the dataset, the device, the project root and, in a notebook, its name and
clock, in one object handed to whatever loads or saves.

Nothing in the package reads a dataset chosen elsewhere: every function that loads a dataset's
images, or reads or writes its checkpoints, figures or results, takes a :class:`Context`. MNIST
keeps the top-level folders (``artifacts/``, ``assets/``, ``results/``); another dataset gets its
own sub-folder of each (``results/fashion_mnist/``), so one never loads or overwrites the other's.

The project root is ``$REVERSENET_ROOT`` when set, else the nearest folder at or above the working
directory that holds both ``reversenet_utils/`` and ``notebooks/`` (a clone of the repository),
else the working directory itself (Colab, or the package installed from git). A context fixes it
when it is made.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # data imports this module
    from .data import DatasetSpec, MNISTSplit

__all__ = [
    "DATASETS",
    "PER_DATASET",
    "Context",
    "fast_layout",
    "in_fast_layout",
    "get_device",
    "project_root",
]

#: The datasets this project runs on (``data.SPECS`` says what each is). MNIST is the default.
DATASETS = ("mnist", "fashion_mnist")
#: the folders with one sub-folder per dataset other than MNIST (``data/`` holds both, in
#: torchvision's folders)
PER_DATASET = ("artifacts", "assets", "results")


def project_root() -> Path:
    """The folder that ``data/``, ``artifacts/``, ``assets/`` and ``results/`` live in."""
    env = os.environ.get("REVERSENET_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "reversenet_utils").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return here


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA when present, else CPU (``prefer`` forces one, e.g. ``"cpu"``, ``"cuda:1"``).

    Raises:
        ValueError: ``prefer`` is not a device name, or names a CUDA device this machine does not
        have.
    """
    if prefer:
        try:
            device = torch.device(prefer)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"device {prefer!r} is not a device name ({exc}); use 'cpu', 'cuda' or 'cuda:N'"
            ) from None
        if device.type == "cuda" and (
            not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
        ):
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise ValueError(
                f"device {prefer!r} asked for, but this machine has {have} CUDA device(s): "
                f"use 'cpu' (or leave device empty to pick CUDA when present)"
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fast_layout(*modules: torch.nn.Module) -> torch.memory_format:
    """The memory layout that runs ``modules`` fastest here: channels-last where they hold 2-D
    convolutions (transposed ones included) and run on a CPU in single precision; else the standard
    layout.

    Measured on this 2-core CPU, inverse chains trained two side by side as the notebooks train
    them: ``cnn_pool``'s 1.35x faster, ``lenet_he``'s 1.47x, ``cnn_nopool``'s 1.07x (1.07x alone
    too; ``cnn_pool``'s unpooling chain alone 1.29x); feature matching of ``cnn_pool``'s logits
    (L-BFGS) 1.37x, its Adam inversion 1.12x; inference 1.4-1.9x (``train.predict``). Training a
    classifier is another matter (the judge's recipe on MNIST is 1.45x slower so):
    ``TargetSpec.channels_last`` decides there. In float64 nothing was gained (feature matching of
    the CNNs' first blocks 0.83-1.2x across runs), so float64 work, such as notebook 02's
    injectivity map, keeps the standard layout and its numbers. The layout changes only the float
    rounding."""
    convolutions = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    convolves = any(isinstance(m, convolutions) for module in modules for m in module.modules())
    params = [p for module in modules for p in module.parameters()]
    fast = all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
    return torch.channels_last if convolves and fast else torch.contiguous_format


def in_fast_layout(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` to run (not train) in its fastest layout (:func:`fast_layout`): a channels-last
    copy, or the module itself where the standard layout is fastest; the caller's module is
    untouched. Inverse chains invert 1.1-2.8x faster so
    (``progressive.invert_from_every_depth``)."""
    layout = fast_layout(module)
    return (
        module
        if layout == torch.contiguous_format
        else copy.deepcopy(module).to(memory_format=layout)
    )


@dataclass(frozen=True)
class Context:
    """Where a run reads and writes, and on what.

    - ``dataset``: one of :data:`DATASETS` (a clear error names them);
    - ``device``: a device name or ``torch.device``; ``None``: CUDA when present, else CPU
      (:func:`get_device`);
    - ``root``: the project root; ``None``: :func:`project_root` at the time the context is made;
    - ``notebook``: the notebook's name (its results file), ``""`` outside one;
    - ``started``: the clock's start (``time.perf_counter``), read by :meth:`elapsed`.
    """

    dataset: str = DATASETS[0]
    device: Any = None
    root: Any = None
    notebook: str = ""
    started: float = field(default_factory=time.perf_counter, compare=False)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}: choose one of {', '.join(map(repr, DATASETS))}"
            )
        device = self.device if isinstance(self.device, torch.device) else None
        if device is None:
            device = get_device(None if self.device is None else str(self.device))
        root = project_root() if self.root is None else Path(self.root).expanduser().resolve()
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "root", root)

    @classmethod
    def for_notebook(cls, notebook: str, params: Mapping[str, Any]) -> Context:
        """The context of a notebook run from its checked parameters (``notebook.parameters``):
        their ``dataset`` and, where the notebook has one, ``device``; the clock starts now."""
        return cls(params.get("dataset", DATASETS[0]), params.get("device") or None, None, notebook)

    def on(self, device: Any) -> Context:
        """The same context on another device (its clock kept): a notebook whose float64 work
        belongs on the CPU, say."""
        return replace(self, device=torch.device(device))

    def folder(self, kind: str, create: bool = True) -> Path:
        """``<root>/<kind>``, and its sub-folder for this dataset where ``kind`` is one of
        :data:`PER_DATASET` and the dataset is not MNIST; created unless ``create=False``."""
        path = self.root / kind
        if kind in PER_DATASET and self.dataset != DATASETS[0]:
            path = path / self.dataset
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def artifacts(self) -> Path:
        """``artifacts/``: checkpoints (git-ignored)."""
        return self.folder("artifacts")

    @property
    def assets(self) -> Path:
        """``assets/``: figures and GIFs shown in the README (committed)."""
        return self.folder("assets")

    @property
    def results(self) -> Path:
        """``results/``: one metrics JSON per notebook (committed)."""
        return self.folder("results")

    @property
    def data_root(self) -> Path:
        """``data/``: both datasets in torchvision's raw layout (git-ignored)."""
        return self.folder("data")

    @property
    def spec(self) -> DatasetSpec:
        """What the dataset is: its title, classes, files (``data.SPECS``)."""
        from .data import spec

        return spec(self.dataset)

    @property
    def title(self) -> str:
        """The dataset's title for figures and text: ``"MNIST"``, ``"Fashion-MNIST"``."""
        return self.spec.title

    def load(self, split: str) -> MNISTSplit:
        """The whole ``split`` (``"train"`` or ``"test"``) of the dataset, verified, on the
        device."""
        from .data import load_dataset

        return load_dataset(split, self.dataset, self.data_root, self.device)

    def elapsed(self) -> float:
        """Seconds since the context was made."""
        return time.perf_counter() - self.started
