"""Figures: image grids, original-vs-reconstruction rows, training curves; saved to ``assets/``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from .context import Context

__all__ = [
    "image_grid",
    "show_images",
    "show_framed_pair",
    "show_rows",
    "show_row_panels",
    "plot_curves",
    "training_curves",
    "save_figure",
    "markdown_table",
]


def image_grid(images: torch.Tensor, nrow: int = 10, padding: int = 2) -> np.ndarray:
    """Tile a batch (N, C, H, W) in [0, 1] into one (H', W') or (H', W', 3) array for ``imshow``."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) == 0:
        raise ValueError(
            f"Expected a non-empty batch (N, C, H, W), got "
            f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
        )
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"Expected grey (C = 1) or colour (C = 3) images, got {images.shape[1]} channels"
        )
    gray = images.shape[1] == 1
    # gaps: light grey on the inverted grayscale colour map used for digits, white for colour images
    pad_value = 0.15 if gray else 1.0
    grid = make_grid(
        images.detach().cpu().float().clamp(0, 1), nrow=nrow, padding=padding, pad_value=pad_value
    )
    return (
        grid[0] if gray else grid.permute(1, 2, 0)
    ).numpy()  # numpy: what imshow expects, no copy warning


def show_images(
    images: torch.Tensor, nrow: int = 10, title: str | None = None, ax: plt.Axes | None = None
) -> Figure:
    """One grid of images on ``ax`` (a new figure if none); grayscale shown black on white."""
    if ax is None:
        rows = -(-len(images) // nrow)
        _, ax = plt.subplots(figsize=(nrow * 0.8, rows * 0.8 + (0.4 if title else 0)))
    ax.imshow(image_grid(images, nrow), cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def show_framed_pair(
    left: torch.Tensor,
    right: torch.Tensor,
    framed: torch.Tensor,
    nrow: int = 6,
    titles: tuple[str, str] = ("", ""),
    suptitle: str | None = None,
) -> Figure:
    """Two grids of images side by side (e.g. originals and their reconstructions), the images where
    the boolean mask ``framed`` is set framed in red on both."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    show_images(left, nrow=nrow, title=titles[0], ax=axes[0])
    show_images(right, nrow=nrow, title=titles[1], ax=axes[1])
    cell = left.shape[-1] + 2  # image_grid's padding
    for i in torch.nonzero(framed)[:, 0].tolist():
        r, c = divmod(i, nrow)
        for ax in axes:
            frame = plt.Rectangle(
                (c * cell + 1, r * cell + 1), cell - 1, cell - 1, fill=False, edgecolor="red", lw=2
            )
            ax.add_patch(frame)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _draw_rows(axes: Sequence[plt.Axes], rows: Mapping[str, torch.Tensor | None], n: int) -> None:
    """One labelled row of ``n`` images per axis; a ``None`` row is left blank and marked n/a."""
    for ax, (label, images) in zip(axes, rows.items()):
        if images is None:
            ax.text(0.5, 0.5, "n/a", ha="center", va="center", color="0.5", transform=ax.transAxes)
        else:
            ax.imshow(image_grid(images, nrow=n), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")


def show_rows(rows: Mapping[str, torch.Tensor], title: str | None = None) -> Figure:
    """Stack labelled rows of images (e.g. ``{"original": x, "reconstruction": x_hat}``)."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), 1, figsize=(n * 0.8, len(rows) * 1.0 + 0.3), squeeze=False)
    _draw_rows(axes[:, 0], rows, n)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_row_panels(
    panels: Mapping[str, Mapping[str, torch.Tensor | None]],
    title: str | None = None,
    panel_width: float = 6.5,
) -> Figure:
    """Side-by-side panels of labelled rows, e.g. one panel per target with one row per method.

    Every panel must name the same rows in the same order; a row that does not apply to a panel is
    ``None`` and drawn blank ("n/a"), so the rows line up across panels.
    """
    labels = [list(rows) for rows in panels.values()]
    if any(row_labels != labels[0] for row_labels in labels):
        raise ValueError(f"every panel needs the same rows in the same order, got {labels}")
    n = max(len(v) for rows in panels.values() for v in rows.values() if v is not None)
    n_rows = len(labels[0])
    fig, axes = plt.subplots(
        n_rows, len(panels), figsize=(panel_width * len(panels), 0.75 * n_rows + 0.6), squeeze=False
    )
    for col, (panel, rows) in enumerate(panels.items()):
        _draw_rows(axes[:, col], rows, n)
        axes[0, col].set_title(panel)
        if col:
            for ax in axes[:, col]:
                ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    xlabel: str = "epoch",
    ylabel: str = "",
    ax: plt.Axes | None = None,
) -> Figure:
    """Line plot of named curves sharing an x axis starting at 1."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax.figure


def training_curves(runs: Mapping[str, dict], low: float) -> Figure:
    """Each run's training loss (log scale) and test accuracy per epoch, side by side; ``runs``
    hold a ``history`` of ``{loss, test_accuracy}`` per epoch; the accuracy axis starts at
    ``low``."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.6))
    losses = {n: [r["loss"] for r in m["history"]] for n, m in runs.items()}
    accuracies = {n: [r["test_accuracy"] for r in m["history"]] for n, m in runs.items()}
    plot_curves(losses, ylabel="training loss", ax=ax_loss)
    plot_curves(accuracies, ylabel="test accuracy", ax=ax_acc)
    ax_loss.set_yscale("log")
    ax_acc.set_ylim(low, 1.0)
    fig.suptitle("Training curves of the targets (test accuracy after each epoch)")
    fig.tight_layout()
    return fig


def save_figure(ctx: Context, fig: Figure, name: str, dpi: int = 110) -> Path:
    """Save ``fig`` as ``assets/<name>`` of the context's dataset (PNG unless the name says
    otherwise) and return the path."""
    path = ctx.assets / (name if Path(name).suffix else f"{name}.png")
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A markdown table: ``header`` names the columns, each row is a sequence of cells (already
    formatted).

    ``align`` has one letter per column, ``l`` or ``r`` (default: the first column left, the others
    right).
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one of 'l'/'r' per column ({len(header)}), got {align!r}")
    bad = [r for r in rows if len(r) != len(header)]
    if bad:
        raise ValueError(f"every row needs {len(header)} cells, got {bad[0]!r}")
    lines = [
        "| " + " | ".join(map(str, header)) + " |",
        "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)
