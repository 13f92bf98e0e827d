"""The activations objectives read: forward hooks that clone the named modules' outputs (a conv
followed by an in-place ``ReLU`` still yields its pre-ReLU values)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .objectives import OUTPUT

# --- hooks ---------------------------------------------------------------------------------------


class _Recorder:
    """Forward hooks that keep a *clone* of named modules' outputs (before any in-place op changes
    them)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.activations: dict[str, torch.Tensor] = {}
        self.handles = []
        modules = {}
        for name in names:  # resolve every name first: a bad one leaves no hook behind
            if name == OUTPUT:
                continue
            try:
                modules[name] = model.get_submodule(name)
            except AttributeError:
                examples = [n for n, m in model.named_modules() if n and not list(m.children())][:6]
                raise ValueError(
                    f"The model has no module {name!r}; module paths look like {examples}"
                ) from None
        for name, module in modules.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.activations[name] = output.clone()  # in-place ReLUs downstream would overwrite it

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def activations(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named modules (and :data:`OUTPUT`) for input ``x``, pre-in-place-op values."""
    recorder = _Recorder(model, names)
    try:
        out = model(x)
    finally:
        recorder.close()
    return {**recorder.activations, OUTPUT: out}
