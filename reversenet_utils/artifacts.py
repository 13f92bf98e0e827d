"""Where things live, and how they are saved: paths, checkpoints and results JSON.

Layout (relative to the project root, see DESIGN §1):

- ``data/``       MNIST in torchvision's raw layout (generated, git-ignored)
- ``artifacts/``  checkpoints of trained targets and inverses (generated, git-ignored)
- ``assets/``     figures written by the notebooks (committed)
- ``results/``    one JSON of measured metrics per notebook (committed)

The project root is ``$REVERSENET_ROOT`` when set, else the nearest folder at or above the
working directory that holds both ``reversenet_utils/`` and ``notebooks/`` (a clone of the
repository), else the working directory itself (Colab, or the package installed from git).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "CheckpointMismatchError",
    "project_root",
    "data_dir",
    "artifacts_dir",
    "assets_dir",
    "results_dir",
    "checkpoint_path",
    "save_checkpoint",
    "load_checkpoint",
    "write_results",
    "read_results",
]


class CheckpointMismatchError(RuntimeError):
    """A checkpoint exists but does not fit the architecture it is loaded into."""


def project_root() -> Path:
    """Return the folder that ``data/``, ``artifacts/``, ``assets/`` and ``results/`` live in."""
    env = os.environ.get("REVERSENET_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "reversenet_utils").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return here


def _subdir(name: str, create: bool = True) -> Path:
    path = project_root() / name
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """``<root>/data``: downloaded datasets (git-ignored)."""
    return _subdir("data")


def artifacts_dir() -> Path:
    """``<root>/artifacts``: checkpoints (git-ignored)."""
    return _subdir("artifacts")


def assets_dir() -> Path:
    """``<root>/assets``: figures and GIFs shown in the README."""
    return _subdir("assets")


def results_dir() -> Path:
    """``<root>/results``: one metrics JSON per notebook."""
    return _subdir("results")


def checkpoint_path(name: str, kind: str = "targets") -> Path:
    """Path of the checkpoint ``artifacts/<kind>/<name>.pt``."""
    folder = artifacts_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.pt"


def save_checkpoint(model: nn.Module, path: Path, meta: Mapping[str, Any] | None = None) -> Path:
    """Save ``model``'s weights and a small JSON-able ``meta`` dict to ``path``.

    The file holds only tensors and plain Python values, so it loads with
    ``torch.load(weights_only=True)`` (no arbitrary code runs on load).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "meta": dict(meta or {})}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind
    return path


def load_checkpoint(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load weights saved by :func:`save_checkpoint` into ``model``; return its ``meta``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointMismatchError: the file is not a checkpoint of this project, or its
            tensors do not fit ``model`` (other architecture or shapes). The message names
            the file, what differs, and how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or file damaged
        raise CheckpointMismatchError(
            f"{path} could not be read as a weights-only checkpoint ({exc}). "
            f"Delete it and re-create it (re-run the notebook that trains it)."
        ) from exc
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointMismatchError(
            f"{path} is not a reversenet checkpoint (no 'state_dict' entry). "
            f"Delete it and re-run the notebook that trains it."
        )
    state = payload["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {unexpected}" if unexpected else "",
                f"shape mismatch {wrong_shape}" if wrong_shape else "",
            )
            if part
        )
        raise CheckpointMismatchError(
            f"{path} does not fit {type(model).__name__}: {details}. The architecture changed "
            f"since the checkpoint was saved: delete {path} and re-train it "
            f"(e.g. re-run notebooks/01_train_targets.ipynb, or `load_target(name)` retrains)."
        )
    model.load_state_dict(state)
    return dict(payload.get("meta", {}))


def _jsonable(value: Any) -> Any:
    """Convert tensors / numpy scalars / paths to plain JSON values; reject NaN and inf."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Refusing to write a non-finite number ({value}) to a results file.")
        return value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to a results JSON: {value!r}")


def write_results(
    notebook: str, params: Mapping[str, Any], metrics: Mapping[str, Any], runtime_s: float
) -> Path:
    """Write ``results/<notebook>.json`` in the schema of DESIGN §5 and return its path."""
    payload = {
        "notebook": notebook,
        "runtime_s": round(float(runtime_s), 2),
        "params": _jsonable(params),
        "metrics": _jsonable(metrics),
    }
    path = results_dir() / f"{notebook}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def read_results(notebook: str) -> dict[str, Any]:
    """Read ``results/<notebook>.json`` written by :func:`write_results`."""
    path = results_dir() / f"{notebook}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run notebooks/{notebook}.ipynb first.")
    return json.loads(path.read_text())
