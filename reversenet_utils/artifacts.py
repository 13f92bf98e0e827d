"""How things are saved: checkpoints (fingerprinted), the one load-or-train, results JSON.

Layout (relative to the project root, see docs/design.md; where each folder is for a dataset is the
run's :class:`~reversenet_utils.context.Context`'s to say):

- ``data/``       MNIST and Fashion-MNIST in torchvision's raw layout (generated, git-ignored)
- ``artifacts/``  checkpoints of trained targets and inverses (generated, git-ignored)
- ``assets/``     figures written by the notebooks (committed)
- ``results/``    one JSON of measured metrics per notebook (committed)

Every function here that reads or writes a dataset's files takes the run's context.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import platform
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .context import DATASETS, Context, project_root
from .notebook import stage_seconds

__all__ = [
    "CheckpointMismatchError",
    "DATASETS",
    "fingerprint",
    "load_or_train",
    "inverse_checkpoint",
    "inverse_identity",
    "machine",
    "effective_recipe",
    "project_root",
    "data_dir",
    "read_peer",
    "checkpoint_path",
    "save_checkpoint",
    "load_checkpoint",
    "write_results",
    "read_results",
]


class CheckpointMismatchError(RuntimeError):
    """A checkpoint exists but does not fit what it is loaded for: another architecture, another
    target (or the same target since retrained), another dataset."""


def data_dir() -> Path:
    """``<root>/data``: both datasets, in torchvision's folders (git-ignored)."""
    path = project_root() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_path(ctx: Context, name: str, kind: str = "targets") -> Path:
    """Path of the checkpoint ``artifacts/<kind>/<name>.pt`` of the context's dataset."""
    folder = ctx.artifacts / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.pt"


def fingerprint(model: nn.Module) -> str:
    """A short SHA-256 of ``model``'s weights (names, shapes, dtypes and values, in a fixed order).

    Saved inverses record their target's fingerprint, so that an inverse is never loaded for another
    target with the same shapes, or for the same target after it was retrained.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        # 0-dim buffers too (e.g. BatchNorm counters)
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def effective_recipe(fn: Callable[..., Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword defaults of ``fn`` (its recipe: the one source of those values) updated with
    ``overrides``.

    Only parameters with a default count; an override that ``fn`` does not take is an error naming
    the known ones.
    """
    defaults = {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise TypeError(f"{fn.__name__} has no setting {unknown}; its recipe is {sorted(defaults)}")
    return {**defaults, **overrides}


def inverse_checkpoint(ctx: Context, target: str, label: str) -> Path:
    """``artifacts/inverses/<target>__<label>.pt``: where a learned inverse of ``target`` is saved,
    so that later notebooks reuse it (label e.g. ``"progressive, real"`` for a chain, ``"inverse
    weights"``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    if not slug:
        raise ValueError(f"an inverse needs a label with letters or digits, got {label!r}")
    return checkpoint_path(ctx, f"{target}__{slug}", kind="inverses")


def inverse_identity(ctx: Context, target: str, net: nn.Module, label: str) -> dict[str, Any]:
    """What a saved inverse inverts: its label, the target's name and weights' :func:`fingerprint`,
    the context's dataset. Saved with the inverse and checked when it is loaded
    (``load_or_train``)."""
    return {
        "label": label,
        "target": target,
        "target_fingerprint": fingerprint(net),
        "dataset": ctx.dataset,
    }


def _plain_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """``meta`` as plain JSON-able values (what a checkpoint stores); a value that is not plain
    data is refused."""
    plain = {}
    for key, value in dict(meta or {}).items():
        try:
            plain[str(key)] = _jsonable(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"checkpoint meta[{key!r}] cannot be saved: {exc}") from None
    return plain


def save_checkpoint(model: nn.Module, path: Path, meta: Mapping[str, Any] | None = None) -> Path:
    """Save ``model``'s weights and a small JSON-able ``meta`` dict to ``path``.

    The file holds only tensors and plain Python values, so it loads with
    ``torch.load(weights_only=True)`` (no arbitrary code runs on load). ``meta`` is converted to
    plain values first (numpy scalars, paths, tensors) and anything else is refused *here*, with the
    key named, rather than saved into a file that cannot be loaded; the written file is read back
    before it replaces an existing one.

    Raises:
        TypeError / ValueError: ``meta`` holds a value that is not plain data (names the key).
    """
    path = Path(path)
    plain = _plain_meta(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"state_dict": state, "meta": plain}, tmp)
    try:
        torch.load(tmp, map_location="cpu", weights_only=True)  # what load_checkpoint will do
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise TypeError(
            f"the checkpoint for {path} would not load with weights_only=True ({exc})"
        ) from exc
    tmp.replace(path)  # never leave a half-written checkpoint behind
    return path


def load_checkpoint(
    model: nn.Module,
    path: Path,
    expect: Mapping[str, Any] | None = None,
    fix: str = "re-run the notebook that trains it",
) -> dict[str, Any]:
    """Load weights saved by :func:`save_checkpoint` into ``model``; return its ``meta``.

    ``expect`` names what the checkpoint must have been saved for (e.g. ``{"target": "cnn_pool",
    "target_fingerprint": ..., "dataset": "mnist"}``): every key must be in its meta with that
    value.

    Raises:
        FileNotFoundError: no file at ``path``. CheckpointMismatchError: the file is not a
            checkpoint of this project, was saved for something else than ``expect`` says, or its
            tensors do not fit ``model`` (other architecture or shapes). The message names the file,
            what differs, and ``fix``. The model is left untouched.
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
    meta, state = payload.get("meta", {}), payload["state_dict"]
    damaged = (
        ("its 'meta' is a " + type(meta).__name__ + ", not a mapping")
        if not isinstance(meta, Mapping)
        else ("its 'state_dict' is a " + type(state).__name__ + ", not a mapping")
        if not isinstance(state, Mapping)
        else ""
    )
    if not damaged:
        not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
        non_finite = sorted(
            str(k)
            for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
        )
        damaged = (
            f"entries {not_tensors} are not tensors"
            if not_tensors
            else f"weights {non_finite} hold NaN or inf"
            if non_finite
            else ""
        )
    if damaged:
        raise CheckpointMismatchError(
            f"{path} is damaged: {damaged}. Loading it would give a broken network or a silently "
            f"wrong one. Fix: delete {path} and {fix}."
        )
    differs = [
        f"{k}: saved for {meta.get(k, '(not recorded)')!r}, needed {v!r}"
        for k, v in dict(expect or {}).items()
        if meta.get(k) != v
    ]
    if differs:
        raise CheckpointMismatchError(
            f"{path} was not saved for what it is loaded for ({'; '.join(differs)}). Using it "
            f"would report numbers "
            f"for a mismatched pair. Fix: {fix}, or delete {path} so that it is trained again."
        )
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
            f"since the checkpoint was saved. Fix: {fix}, or delete {path} so that it is trained "
            f"again."
        )
    model.load_state_dict(state)
    return dict(meta)


def load_or_train(
    build: Callable[[], nn.Module],
    path: Path,
    train: Callable[[nn.Module], Mapping[str, Any]],
    identity: Mapping[str, Any],
    train_if_missing: bool = True,
    fix: str = "re-run the notebook that trains it",
    retrain: bool = False,
    budget: Mapping[str, float] | None = None,
) -> nn.Module:
    """The project's one load-or-train: targets, the VAE, inverse weights and inverse chains use it.

    ``build()`` makes the untrained module. If ``path`` exists, its weights are loaded, after
    checking that the checkpoint was saved for ``identity`` (what it is: target name, the
    fingerprint of the target it inverts, dataset, ...). Otherwise ``train(model)`` trains the
    module in place and returns its metadata, and the module is saved with ``{**identity,
    **metadata}``, so every notebook also runs standalone. A checkpoint saved for something else is
    never overwritten: that is an error that says how to fix it. ``retrain=True`` always trains (the
    notebook that owns the checkpoint) and replaces the file only once training succeeded.
    ``budget`` names the training budget the caller asks for (``{"steps": 1200}``): a checkpoint of
    the right identity trained with less (a smoke run's, say) is trained again when
    ``train_if_missing`` (the reason printed), never used silently. The metadata is attached as
    ``model.meta``; the module is returned in eval mode.

    Raises:
        CheckpointMismatchError: the file was saved for another identity or architecture, or with a
            smaller budget while ``train_if_missing=False``. FileNotFoundError: no checkpoint and
            ``train_if_missing=False``.
    """
    model = build()
    path = Path(path)
    meta = None
    if path.is_file() and not retrain:
        meta = load_checkpoint(model, path, expect=identity, fix=fix)
        short = [
            f"{k} {meta.get(k, '(not recorded)')} < {v}"
            for k, v in dict(budget or {}).items()
            if not isinstance(meta.get(k), (int, float)) or meta[k] < v
        ]
        if short and not train_if_missing:
            raise CheckpointMismatchError(
                f"{path} was trained with a smaller budget than asked for ({'; '.join(short)}). "
                f"Fix: {fix}, or delete {path} so that it is trained again."
            )
        if short:
            print(
                f"{path.name} was trained with a smaller budget than asked for "
                f"({'; '.join(short)}): training it again."
            )
            model, meta = build(), None
    if meta is None:
        if not (train_if_missing or retrain):
            raise FileNotFoundError(f"No checkpoint at {path}: {fix}.")
        meta = _plain_meta({**identity, **dict(train(model))})  # as a later load will see it
        save_checkpoint(model, path, meta)
    model.meta = meta
    return model.eval()


def _jsonable(value: Any) -> Any:
    """Convert tensors / numpy scalars / paths to plain JSON values; reject NaN and inf."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    # tensors, numpy arrays and scalars
    if isinstance(value, torch.Tensor) or type(value).__module__ == "numpy":
        return _jsonable(value.tolist())
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
    ctx: Context,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    runtime_s: float | None = None,
) -> Path:
    """Write ``results/<notebook>.json`` of the context's notebook and dataset, in the schema of
    docs/design.md (results files), and return its path. ``runtime_s``: the notebook's seconds
    (default: the context's clock, :meth:`Context.elapsed`).

    ``stage_seconds`` records the seconds of each cell the notebook ran before this call
    (:func:`notebook.stage_seconds`): where its time went, measured in the run that computed its
    numbers. ``machine`` (:func:`machine`) says what ran it: times, and the last digits of trained
    numbers, depend on it."""
    if not ctx.notebook:
        raise ValueError(
            "write_results needs the notebook's name: make the context with "
            "Context.for_notebook(NOTEBOOK, params) or Context(..., notebook=NOTEBOOK)"
        )
    notebook = ctx.notebook
    runtime_s = ctx.elapsed() if runtime_s is None else runtime_s
    payload = {
        "notebook": notebook,
        "runtime_s": round(float(runtime_s), 2),
        "machine": machine(),
        "stage_seconds": stage_seconds(),
        "params": _jsonable(params),
        "metrics": _jsonable(metrics),
    }
    path = ctx.results / f"{notebook}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def machine() -> dict[str, Any]:
    """What a run ran on: ``{cpu, cores, threads, torch, accelerator}``. The same code took 1.4-1.5x
    longer on one host than on another of this project's 2-core machines, and trained to different
    last digits (docs/design.md, time budgets), so a results file's times and numbers are read with
    its machine."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    # Linux names the model here; platform.processor() gives only the architecture
    if cpuinfo.is_file():
        names = re.findall(
            r"^model name\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), flags=re.MULTILINE
        )
        cpu = names[0].strip() if names else cpu
    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "accelerator": accelerator,
    }


def read_results(ctx: Context, notebook: str, missing_ok: bool = False) -> dict[str, Any]:
    """Read ``results/<notebook>.json`` of the context's dataset, written by :func:`write_results`
    (``{}`` if it is missing and ``missing_ok``)."""
    path = ctx.folder("results", create=False) / f"{notebook}.json"
    if not path.is_file():
        if missing_ok:
            return {}
        raise FileNotFoundError(f"{path} does not exist: run notebooks/{notebook}.ipynb first.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}): re-run notebooks/{notebook}.ipynb to rewrite it, "
            f"or restore the committed file with `git checkout -- {path.name}` in its folder"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError(
            f"{path} is not a results file (no 'metrics' mapping): re-run "
            f"notebooks/{notebook}.ipynb"
        )
    return data


def read_peer(name: str) -> dict[str, Any]:
    """``results/peer/<name>.json``: a side-by-side run against another library (``make
    compare-lucent`` writes ``lucent``), or ``{}`` where it was not run in this root. A file that is
    not JSON is an error naming it."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a peer's name such as 'lucent', got {name!r}")
    path = project_root() / "results" / "peer" / f"{name}.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); run `make compare-{name}` again to rewrite it"
        ) from None
