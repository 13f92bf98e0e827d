"""Audit your own split model: notebook 09's report (what leaks, which attacker wins, what stops
it) for a network this project did not design.

The user gives the network as

- ``path/to/file.py:function`` or ``package.module:function``: a function that builds it (an
  ``nn.Module``), with its trained weights as a state dict in ``weights`` (without them, notebook
  09 trains it on the device owner's half of the training images);
- ``model.pt``: a TorchScript file (``torch.jit.save``), weights included;

and a split: how many of its layers run on the device. The network must map the study's images
(``(N, 1, 28, 28)`` in [0, 1]) to 10 logits, as its layers in order (an ``nn.Sequential``, nested
ones flattened, or a module whose forward applies its children one after the other); a layer may
be any module, a residual block included, seen as a black box.

:func:`prepare` loads it, checks it before anything trains (:func:`check_network`: every failure
names the layer and the way forward), cuts the device into blocks (:func:`block_ends`: a block
starts at each layer with a weight matrix or kernel) and registers it as a target
(``models.register_target``), so notebook 09's stages take it by name. Defences that cannot run
on it are left out and said why (:func:`defences_left_out`).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .context import Context
from .data import MNISTSplit
from .defences import TRAINING_DEFENCES
from .layer_inverses import UnsupportedLayerError
from .models import TargetSpec, register_target
from .progressive import InverseChain
from .train import evaluate

__all__ = [
    "AuditError",
    "AuditedNetwork",
    "RECIPE",
    "results_name",
    "load_network",
    "as_layers",
    "describe_layers",
    "check_network",
    "load_checked",
    "block_ends",
    "defences_left_out",
    "prepare",
    "describe",
    "figure_name",
]

#: the recipe an audited network trains with when no weights are given (and the training-time
#: defences retrain it with): Adam, its learning rate, batch size and epochs
RECIPE = {"epochs": 3, "lr": 1e-3, "batch_size": 128}
#: a trained network's least accuracy on the audit's test images: twice chance. Below it the
#: weights were not trained on this dataset (or at this input scale), and an audit of them says
#: nothing about the network the user deploys
MIN_WEIGHTS_ACCURACY_OVER_CHANCE = 2.0
#: the study's classes and images (both datasets)
N_CLASSES, IMAGE_SHAPE = 10, (1, 28, 28)
#: layers that reshape without computing: they join the block of the layer after them
_RESHAPES = ("Flatten", "Unflatten")


class AuditError(ValueError):
    """A network, its weights or its split cannot be audited: the message says what and how to
    go on."""


@dataclass
class AuditedNetwork:
    """A user's network ready for notebook 09: its registry name, its layers (``net``: trained
    when weights were given, else ``None`` and notebook 09 trains it), the layers on the device
    (``split``), the defences left out and why, and what was checked."""

    name: str
    source: str
    layers: nn.Sequential
    split: int
    ends: tuple[int, ...]
    trained: bool
    left_out: dict[str, str] = field(default_factory=dict)
    analytic: str = ""
    accuracy: float | None = None

    @property
    def net(self) -> nn.Sequential | None:
        return self.layers if self.trained else None

    def summary(self) -> dict[str, Any]:
        """What the results record about the audit."""
        return {
            "model": self.source,
            "split_layers": self.split,
            "block_ends": list(self.ends),
            "weights": "given" if self.trained else "trained here on the owner's half",
            "layers": describe_layers(self.layers),
            "left_out": dict(self.left_out),
            "analytic": self.analytic,
        }


def _stem(model: str) -> str:
    """The audit's short name: the model's file or module, and its function unless that is
    ``build`` (``audit_examples/small_bn_net.py:build``: ``small_bn_net``; ``zoo.py:mlp``:
    ``zoo_mlp``)."""
    where, colon, function = model.rpartition(":")
    if not colon:  # a TorchScript file
        target = Path(model).stem
    else:
        target = Path(where).stem if where.endswith(".py") else where.split(".")[-1]
        target += f"_{function}" if function != "build" else ""
    return re.sub(r"[^A-Za-z0-9]+", "_", target).strip("_") or "model"


def _shown(model: str) -> str:
    """``model`` as the report shows it: a path inside this repository relative to it."""
    repo = Path(__file__).resolve().parents[1]
    path = Path(model.rpartition(":")[0] or model)
    if path.is_absolute() and path.is_relative_to(repo):
        return model.replace(str(repo) + "/", "", 1)
    return model


def results_name(notebook: str, model: str) -> str:
    """The name notebook 09's results and figures go by: its own, or for an audit
    ``09_audit_<model>`` (never the study's committed files)."""
    return f"{notebook[:2]}_audit_{_stem(model)}" if model else notebook


def _resolve(path: str, root: Path) -> Path:
    found = Path(path).expanduser()
    return found if found.is_absolute() else (root / found)


def _builder(model: str, root: Path) -> Callable[[], nn.Module]:
    where, _, function = model.rpartition(":")
    if not where or not function.isidentifier():
        raise AuditError(
            f"model {model!r}: give 'path/to/file.py:function' or 'package.module:function' (a "
            f"function that builds the network), or a TorchScript file"
        )
    if where.endswith(".py"):
        path = _resolve(where, root)
        if not path.is_file():
            raise AuditError(f"model {model!r}: no file {path}")
        spec = importlib.util.spec_from_file_location(f"_audited_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise AuditError(f"model {model!r}: importing {path} failed: {exc!r}") from exc
    else:
        sys.path.insert(0, str(root))
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise AuditError(f"model {model!r}: cannot import {where!r}: {exc}") from exc
        finally:
            sys.path.remove(str(root))
    build = getattr(module, function, None)
    if not callable(build):
        raise AuditError(f"model {model!r}: {where} has no function {function!r}")
    return build


def _built(build: Callable[[], nn.Module], model: str) -> nn.Module:
    try:
        net = build()
    except Exception as exc:
        raise AuditError(f"model {model!r}: building the network failed: {exc!r}") from exc
    if not isinstance(net, nn.Module):
        raise AuditError(f"model {model!r} built a {type(net).__name__}, not a torch nn.Module")
    return net


def load_network(
    model: str, weights: str = "", root: Path | str = "."
) -> tuple[nn.Module, Callable[[], nn.Module] | None]:
    """The user's network, in eval mode, and a function that builds it afresh (``None`` for a
    TorchScript file). ``model`` and ``weights`` are paths relative to ``root`` unless absolute.

    Raises:
        AuditError: the file or function is missing, the file is not TorchScript, or the weights
            do not fit the network (each mismatching name and shape).
    """
    if not isinstance(model, str) or not model.strip():
        raise AuditError("no model given: MODEL=path/to/file.py:function or MODEL=model.pt")
    root = Path(root)
    if ":" in model and not _resolve(model, root).is_file():
        build = _builder(model, root)
        net = _built(build, model)
    else:
        path, build = _resolve(model, root), None
        if not path.is_file():
            raise AuditError(f"model {model!r}: no file {path}")
        try:
            with (
                warnings.catch_warnings()
            ):  # TorchScript is deprecated (FutureWarning), still loads
                warnings.filterwarnings("ignore", category=FutureWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise AuditError(
                f"model {model!r} is not a TorchScript file (torch.jit.save(torch.jit.script(net), "
                f"path)); for a state dict give MODEL=file.py:function and WEIGHTS={model}"
            ) from exc
    if weights:
        _load_weights(net, weights, root)
    return net.float().eval(), build  # the study's images are float32


def _load_weights(net: nn.Module, weights: str, root: Path) -> None:
    path = _resolve(weights, root)
    if not path.is_file():
        raise AuditError(f"weights {weights!r}: no file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AuditError(
            f"weights {weights!r} are not a state dict saved with torch.save(net.state_dict(), "
            f"path): {exc}"
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint's layout
    if isinstance(state, Mapping) and state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}  # saved from DataParallel
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise AuditError(f"weights {weights!r} hold a {type(state).__name__}, not a state dict")
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [
        f"{k} is {tuple(state[k].shape)} where the model has {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{what}: {', '.join(found[:6])}{' ...' if len(found) > 6 else ''}"
            for what, found in (("missing", missing), ("unexpected", unexpected),
                                ("shape mismatch", shapes))
            if found
        ]  # fmt: skip
        raise AuditError(
            f"weights {weights!r} do not fit the model ({'; '.join(parts)}): give the state dict "
            f"of this very network"
        )
    net.load_state_dict(state)


def _kind(layer: nn.Module) -> str:
    """A layer's class name (a TorchScript layer's original one)."""
    return getattr(layer, "original_name", None) or type(layer).__name__


def as_layers(net: nn.Module, probe: torch.Tensor) -> tuple[nn.Sequential, list[str]]:
    """``net`` as its layers in order, nested ``Sequential`` containers flattened, with each
    layer's dotted name; checked to compute what ``net`` computes on ``probe``.

    Raises:
        AuditError: ``net`` fails on the probe, or its forward is not its layers in order.
    """
    layers, names = [], []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            dotted = f"{prefix}{name}"
            if _kind(child) == "Sequential":
                walk(child, dotted + ".")
            else:
                layers.append(child)
                names.append(dotted)

    walk(net, "")
    if not layers:
        raise AuditError(
            f"the model ({_kind(net)}) has no layers to split: give an nn.Sequential, or a "
            f"module whose forward applies its children in order"
        )
    seq = nn.Sequential(*layers).eval()
    with torch.no_grad():
        h = _forward_named(seq, names, probe)  # names a layer that fails
        try:
            whole = net(probe)
        except Exception as exc:
            raise AuditError(f"the model fails on a batch {tuple(probe.shape)}: {exc!r}") from exc
    if (
        not isinstance(whole, torch.Tensor)
        or whole.shape != h.shape
        or not torch.allclose(whole, h, rtol=1e-4, atol=1e-5)
    ):
        raise AuditError(
            f"the model's forward ({_kind(net)}) is not its layers applied in order ("
            f"{', '.join(names[:8])}{' ...' if len(names) > 8 else ''}): the split needs a chain "
            f"of layers. Give an nn.Sequential of them (a residual block may be one layer), or "
            f"a module whose forward applies its children one after the other"
        )
    return seq, names


def _label(names: Sequence[str], layers: nn.Sequential, i: int) -> str:
    return f"layer {i + 1} ({names[i]}: {_kind(layers[i])})"


def _forward_named(seq: nn.Sequential, names: Sequence[str], x: torch.Tensor) -> torch.Tensor:
    h = x
    for i, layer in enumerate(seq):
        shape = tuple(h.shape[1:])
        try:
            h = layer(h)
        except Exception as exc:
            hint = (
                " (a network that takes flat vectors starts with nn.Flatten())"
                if i == 0 and _kind(layer) == "Linear"
                else ""
            )
            raise AuditError(
                f"{_label(names, seq, i)} fails on its input of shape {shape}: {exc}. The audit's "
                f"images are {IMAGE_SHAPE} in [0, 1]: the network must take them{hint}"
            ) from exc
        if not isinstance(h, torch.Tensor):
            raise AuditError(
                f"{_label(names, seq, i)} returns a {type(h).__name__}, not a tensor: each layer "
                f"must return one tensor (wrap a layer that returns several, e.g. an LSTM, in a "
                f"module that keeps the one the next layer takes)"
            )
        if not torch.isfinite(h).all():
            raise AuditError(f"{_label(names, seq, i)} gives non-finite values on [0, 1] images")
    return h


def describe_layers(layers: nn.Sequential, in_shape: Sequence[int] = IMAGE_SHAPE) -> list[str]:
    """One line per layer: its number (what a split counts), its class and its output shape."""
    device = next((p.device for p in layers.parameters()), torch.device("cpu"))
    h, lines = torch.rand(2, *in_shape, device=device), []
    with torch.no_grad():
        for i, layer in enumerate(layers):
            h = layer(h)
            lines.append(f"{i + 1}: {_kind(layer)} -> {tuple(h.shape[1:])}")
    return lines


def block_ends(layers: nn.Sequential, split: int) -> tuple[int, ...]:
    """The block boundaries of the device ``layers[:split]`` (layer counts, the last ``split``),
    then the number of layers (the logits). A block starts at each layer with a weight matrix or
    kernel (a parameter of two dimensions or more: convolutions, dense layers; normalisation and
    activations join the block before them), a ``Flatten`` just before one joins it."""
    starts = []
    for i, layer in enumerate(layers):
        if any(p.dim() >= 2 for p in layer.parameters()):
            j = i
            while j > 0 and _kind(layers[j - 1]) in _RESHAPES:
                j -= 1
            if j:
                starts.append(j)
    inside = sorted({s for s in starts if s < split})
    return (*inside, split, len(layers))


def _gradient_stops(layers: nn.Sequential, names: Sequence[str], x: torch.Tensor) -> str | None:
    """The first device layer that passes no gradient to its input (or None)."""
    h = x
    for i, layer in enumerate(layers):
        h_in = h.detach().requires_grad_(True)
        with torch.enable_grad():
            out = layer(h_in.clone())  # a copy: an in-place layer may not write into a leaf
            if out.requires_grad:
                (grad,) = torch.autograd.grad(out.square().sum(), h_in, allow_unused=True)
            else:
                grad = None
        if grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
            return _label(names, layers, i)
        h = out.detach()
    return None


def check_network(
    layers: nn.Sequential,
    names: Sequence[str],
    split: Any,
    in_shape: tuple[int, ...] = IMAGE_SHAPE,
    seed: int = 0,
) -> tuple[int, ...]:
    """Everything notebook 09's attackers need from the network, before anything trains: the
    split a layer count inside it, every layer taking the previous one's output, 10 logits, a
    gradient through every device layer (the optimisation attacks and the inverse chains' cycle
    loss follow it), and an inverse module for every block. Returns the block ends
    (:func:`block_ends`).

    Raises:
        AuditError: naming the layer (or block) and the way forward.
    """
    if not isinstance(split, int) or isinstance(split, bool) or not 1 <= split < len(layers):
        raise AuditError(
            f"split must be a whole number in 1..{len(layers) - 1}: how many layers run on the "
            f"device, got {split!r}. The layers: {'; '.join(describe_layers(layers, in_shape))}"
        )
    probe = torch.rand(4, *in_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = _forward_named(layers, names, probe)
    if tuple(out.shape) != (len(probe), N_CLASSES):
        raise AuditError(
            f"the network's output has shape {tuple(out.shape[1:])}; the audit's datasets have "
            f"{N_CLASSES} classes, so its last {_label(names, layers, len(layers) - 1)} must give "
            f"{N_CLASSES} logits"
        )
    stops = _gradient_stops(layers[:split], names, probe)
    if stops:
        raise AuditError(
            f"{stops} passes no gradient to its input: the optimisation attacks and the inverse "
            f"chains follow gradients through the device. Make it differentiable (a "
            f"straight-through estimator), or split before it"
        )
    ends = block_ends(layers, split)
    blocks, start = [], 0
    for end in ends[:-1]:
        blocks.append(layers[start:end])
        start = end
    try:
        InverseChain(blocks, in_shape, exact=False)
    except ValueError as exc:
        raise AuditError(
            f"no inverse module for the device's blocks (ends {ends[:-1]}): {exc}"
        ) from exc
    return ends


def defences_left_out(
    layers: nn.Sequential, split: int, rebuildable: bool, dp_layers: Sequence[str] = ()
) -> dict[str, str]:
    """The defences notebook 09 cannot run on this network, and why: the training-time ones need
    a function that builds it afresh; DP-SGD needs device layers that opacus trains with
    per-sample gradients (no batch statistics)."""
    if not rebuildable:
        why = (
            "retrains the network from scratch and so needs a function that builds it: give "
            "MODEL=file.py:function (and WEIGHTS) instead of a TorchScript file"
        )
        return dict.fromkeys(TRAINING_DEFENCES, why)
    from opacus.validators import ModuleValidator  # imported here: only this check needs it

    # a copy that trains, as DP-SGD would: opacus checks trainable layers only
    errors = ModuleValidator.validate(
        copy.deepcopy(layers[:split]).requires_grad_(True), strict=False
    )
    if not errors:
        return {}
    first = str(errors[0]).split(". ")[0]  # opacus' reason, without its advice
    return {"dp": f"needs device layers that opacus trains privately ({first})"}


def _analytic_reason(layers: nn.Sequential, split: int) -> str:
    from .analytic import invert  # the analytic inverse: only asked whether it applies

    try:
        invert(layers[:split])
    except (UnsupportedLayerError, ValueError) as exc:
        return f"none: {str(exc).rstrip('.')}"
    return "applies (a pseudo-inverse where a layer is not injective)"


def load_checked(
    model: str,
    weights: str,
    split: Any,
    root: Path | str = ".",
    in_shape: tuple[int, ...] = IMAGE_SHAPE,
    seed: int = 0,
) -> tuple[nn.Sequential, tuple[int, ...], Callable[[], nn.Module] | None, torch.Tensor]:
    """The network loaded (:func:`load_network`), as its layers (:func:`as_layers`) and checked
    (:func:`check_network`), data-free: its layers, block ends, builder and the probe batch it was
    checked on (seeded ``seed``)."""
    net, build = load_network(model, weights, root)
    probe = torch.rand(4, *in_shape, generator=torch.Generator().manual_seed(seed))
    layers, names = as_layers(net, probe)
    return layers, check_network(layers, names, split, in_shape, seed), build, probe


def prepare(
    ctx: Context, params: Mapping[str, Any], test: MNISTSplit
) -> tuple[dict[str, Any], dict[str, AuditedNetwork]]:
    """Notebook 09's parameters for an audit of ``params["audit_model"]`` (with
    ``audit_weights``, split after ``audit_split`` layers), and the audited network by name; the
    parameters unchanged and no network when ``audit_model`` is empty.

    The network is loaded, checked (:func:`check_network`) and, with weights, scored on ``test``
    before anything trains; it is registered as target ``audit:<name>``; the audit's parameters
    make it the only target, with the defences at its split and He et al.'s table off.

    Raises:
        AuditError: what cannot be audited, and how to go on.
    """
    model, weights, split = params["audit_model"], params["audit_weights"], params["audit_split"]
    if not model:
        if weights or split:
            raise AuditError("audit_weights and audit_split need audit_model: the network to audit")
        return dict(params), {}
    layers, ends, build, probe = load_checked(
        model, weights, split, ctx.root, tuple(test.images.shape[1:]), params["seed"]
    )
    trained = bool(weights) or build is None  # a TorchScript file carries its weights
    left_out = defences_left_out(layers, split, build is not None)
    analytic = _analytic_reason(layers, split)  # both asked on the CPU, before the move
    audited = AuditedNetwork(
        name=f"audit:{_stem(model)}",
        source=_shown(model),
        layers=layers.to(ctx.device).requires_grad_(False),
        split=split,
        ends=ends,
        trained=trained,
        left_out=left_out,
        analytic=analytic,
    )
    if trained:
        audited.accuracy = evaluate(audited.layers, test)
        if audited.accuracy < MIN_WEIGHTS_ACCURACY_OVER_CHANCE / N_CLASSES:
            raise AuditError(
                f"the weights classify {audited.accuracy:.1%} of the {ctx.title} test images "
                f"(chance: {1 / N_CLASSES:.0%}): they were not trained on {ctx.title} images as "
                f"this study gives them ({IMAGE_SHAPE} in [0, 1], no normalisation). Audit on the "
                f"dataset they were trained on, or without weights to train the network here"
            )

    def rebuild() -> nn.Sequential:
        if build is None:
            raise AuditError(f"{model!r} is a TorchScript file: it cannot be built afresh")
        return as_layers(_built(build, model).eval(), probe)[0].train()

    register_target(
        audited.name,
        TargetSpec(rebuild, f"audited network {model}", block_ends=ends, **RECIPE),
    )
    audit = {"targets": [audited.name], "defence_split": len(ends) - 1, "anchor_table": False}
    return {**params, **audit}, {audited.name: audited}


def describe(audited: Mapping[str, AuditedNetwork]) -> str:
    """What an audit runs on (the layers, the device's blocks, what is left out), or that the run
    is the study's own."""
    if not audited:
        return "no audit_model: the study's targets"
    lines = []
    for a in audited.values():
        lines += [
            f"auditing {a.source} as {a.name!r} (weights {a.summary()['weights']})",
            *(f"  {line}" for line in describe_layers(a.layers)),
            f"  on the device: layers 1..{a.split}, in blocks ending after layers "
            f"{', '.join(map(str, a.ends[:-1]))} (the splits attacked)",
            *(f"  left out: {kind}, which {why}" for kind, why in a.left_out.items()),
        ]
    return "\n".join(lines)


def figure_name(ctx: Context, what: str, audited: Mapping[str, AuditedNetwork]) -> str:
    """The name of notebook 09's figure ``what``: ``09_<what>``, or under the audit's own name."""
    return f"{ctx.notebook}_{what}" if audited else f"{ctx.notebook[:2]}_{what}"
