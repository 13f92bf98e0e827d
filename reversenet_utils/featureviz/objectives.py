"""Feature visualisation's objectives: what to excite (a channel, a neuron, a layer, a class
logit), as :class:`Objective`s that add and scale; each returns one value per image."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


OUTPUT = "output"  # the name under which objectives see the model's own output (the logits)

# --- objectives ----------------------------------------------------------------------------------


class Objective:
    """A score to maximise: ``objective(activations) -> (B,)``, one value per image.

    ``activations`` maps layer names (module paths, or :data:`OUTPUT`) to tensors; ``layers`` lists
    the names this objective reads, so :func:`render` hooks only those. Objectives compose:
    ``a + b``, ``a - b``, ``2.0 * a``, ``-a``.
    """

    def __init__(
        self,
        fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        layers: Sequence[str],
        name: str,
    ) -> None:
        self.fn, self.layers, self.name = fn, tuple(dict.fromkeys(layers)), name

    def __call__(self, activations: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(activations)

    def __add__(self, other: Objective) -> Objective:
        return Objective(
            lambda a: self(a) + other(a), self.layers + other.layers, f"{self.name} + {other.name}"
        )

    def __mul__(self, weight: float) -> Objective:
        return Objective(lambda a: weight * self(a), self.layers, f"{weight:g} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other: Objective) -> Objective:
        return self + (-other)

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _units(unit: int | Sequence[int], batch: int, device: torch.device) -> torch.Tensor:
    """Unit index per image: one int for the whole batch, or one per image."""
    units = torch.as_tensor(unit, device=device).reshape(-1)
    if len(units) not in (1, batch):
        raise ValueError(
            f"{len(units)} units for a batch of {batch} images: give one unit, or one per image"
        )
    return units.expand(batch)


def _pick(act: torch.Tensor, unit: int | Sequence[int], name: str) -> torch.Tensor:
    """``act[i, unit[i]]`` for every image ``i`` (channels of (B, C, H, W), features of (B, F))."""
    units = _units(unit, len(act), act.device)
    if int(units.max()) >= act.shape[1] or int(units.min()) < 0:
        raise ValueError(
            f"{name} has {act.shape[1]} channels/units; asked for {units.unique().tolist()}"
        )
    return act[torch.arange(len(act), device=act.device), units]


def channel(layer_name: str, unit: int | Sequence[int]) -> Objective:
    """Mean activation of channel ``unit`` of ``layer_name`` over all positions (one unit, or one
    per image)."""
    return Objective(
        lambda a: _pick(a[layer_name], unit, layer_name).flatten(1).mean(1),
        [layer_name],
        f"channel {layer_name}:{unit}",
    )


def neuron(
    layer_name: str, unit: int | Sequence[int], y: int | None = None, x: int | None = None
) -> Objective:
    """Activation of channel ``unit`` of ``layer_name`` at one position (the centre by default)."""

    def fn(a: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = _pick(a[layer_name], unit, layer_name)  # (B, H, W)
        if maps.dim() != 3:
            raise ValueError(
                f"neuron() needs a spatial layer; {layer_name} gives shape "
                f"{tuple(a[layer_name].shape)}"
            )
        h, w = maps.shape[1:]
        row, col = h // 2 if y is None else y, w // 2 if x is None else x
        # a negative index would silently pick the last row or column
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(
                f"neuron position (y={row}, x={col}) is outside {layer_name}'s {h}x{w} map: use 0 "
                f"<= y < {h}, 0 <= x < {w}"
            )
        return maps[:, row, col]

    return Objective(fn, [layer_name], f"neuron {layer_name}:{unit}")


def layer(layer_name: str) -> Objective:
    """DeepDream: the mean square of all activations of ``layer_name``."""
    return Objective(
        lambda a: a[layer_name].pow(2).flatten(1).mean(1), [layer_name], f"layer {layer_name}"
    )


def class_logit(unit: int | Sequence[int], layer_name: str = OUTPUT) -> Objective:
    """The logit of class ``unit`` (one class, or one per image); the model's output by default."""
    return Objective(
        lambda a: _pick(a[layer_name], unit, layer_name), [layer_name], f"class {unit}"
    )
