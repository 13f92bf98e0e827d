"""Checks of what a public entry point is given, with errors that name the argument, what it got
and what it needs.

One home for the checks many modules share (an image batch, a batch of feature vectors, a whole
number), so that a wrong shape, type, size or a NaN stops at the door with a
``TypeError``/``ValueError`` rather than deep inside torch as an ``IndexError``, a ``KeyError`` or a
``ZeroDivisionError``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["image_batch", "vector_batch", "whole_number"]


def _describe(value: Any) -> str:
    return (
        f"a tensor of shape {tuple(value.shape)}"
        if isinstance(value, torch.Tensor)
        else f"a {type(value).__name__}"
    )


def image_batch(x: Any, name: str = "x", channels: int | None = None) -> torch.Tensor:
    """``x`` if it is a non-empty batch of finite images ``(N, C, H, W)`` (``channels``: C, where
    it is fixed).

    Raises:
        TypeError: ``x`` is not a floating-point tensor. ValueError: it is not 4-D (one image
            without its batch dimension: ``x[None]`` or ``x.unsqueeze(0)``), holds no image, has the
            wrong number of channels, or holds NaN/inf.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point image batch (N, C, H, W), got {_describe(x)}"
            + (f" of {x.dtype}" if isinstance(x, torch.Tensor) else "")
        )
    if x.dim() != 4:
        hint = f": one image is {name}[None] (a batch of one)" if x.dim() == 3 else ""
        raise ValueError(
            f"{name} must be an image batch (N, C, H, W), got shape {tuple(x.shape)}{hint}"
        )
    if len(x) == 0:
        raise ValueError(f"{name} holds no image (shape {tuple(x.shape)}): pass at least one")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} has {x.shape[1]} channels, but {channels} are expected (shape "
            f"{tuple(x.shape)})"
        )
    if not torch.isfinite(x).all():
        raise ValueError(
            f"{name} holds NaN or inf: images must be finite (check what produced them)"
        )
    return x


def vector_batch(f: Any, name: str, width: int, what: str) -> torch.Tensor:
    """``f`` if it is a non-empty batch ``(N, width)`` of finite values: ``what`` says which vectors
    (e.g. "the last hidden layer, after its sigmoid").

    Raises:
        TypeError / ValueError: naming ``name``, the shape given and ``(N, width)``.
    """
    if not isinstance(f, torch.Tensor) or not f.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (N, {width}) of {what}, got {_describe(f)}"
        )
    if f.dim() != 2 or f.shape[1] != width or len(f) == 0:
        raise ValueError(
            f"{name} must be {what}, shape (N, {width}) with N >= 1, got shape {tuple(f.shape)}"
        )
    if not torch.isfinite(f).all():
        raise ValueError(f"{name} holds NaN or inf: {what} must be finite")
    return f


def whole_number(value: Any, name: str, low: int = 1) -> int:
    """``value`` if it is an int (not a bool) of at least ``low``; else a ``ValueError`` naming
    ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value
