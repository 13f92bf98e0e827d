"""The explorer's widgets (notebook 08 and ``make app``): draw, pick or upload a digit on the left,
every fast method's reconstruction from every block boundary on the right.

:class:`ExplorerApp` holds the widgets and their handlers; every update goes through
:meth:`reversenet_utils.explore.Explorer.run`, so the app adds no computation of its own. Without a
widget front end (papermill, nbval, CI) :func:`drive_headless` moves the same handlers as a mouse
would and checks that the grid followed. The browser tests find the widgets by their CSS classes
(``rn-canvas``, ``rn-status``, ``rn-recon``, ``rn-probs``, ``rn-error``).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch

from .data import MNISTSplit
from .explore import OPTIMISATION, Explorer, Sketch, mnist_like, png

__all__ = ["CANVAS_PIXELS", "ExplorerApp", "drive_headless", "probability_bars"]

#: canvas pixels: 10 per MNIST pixel
CANVAS_PIXELS = 280
#: pixels of one picture of the grid
CELL_PIXELS = 96


def probability_bars(p: torch.Tensor) -> str:
    """HTML bars of a class distribution (one row per class)."""
    return "".join(
        "<div style='display:flex;align-items:center;font-size:10px;line-height:11px'>"
        f"<span style='width:10px'>{d}</span>"
        f"<span style='background:#4c72b0;height:8px;width:{p[d] * 45:.0f}px'></span>"
        f"<span style='margin-left:3px'>{p[d]:.1%}</span></div>"
        for d in range(len(p))
    )


class ExplorerApp:
    """The widgets: input on the left, the grid on the right; every update goes through
    ``explorer.run``. ``test`` gives the digits to pick from; ``digit_index`` the first one shown;
    ``opt_steps`` the L-BFGS iterations of the feature-matching button."""

    def __init__(
        self,
        explorer: Explorer,
        test: MNISTSplit,
        digit_index: int = 0,
        opt_steps: int = 100,
        size: int = CANVAS_PIXELS,
    ) -> None:
        import ipywidgets as W
        from ipycanvas import Canvas

        if not 0 <= digit_index < len(test):
            raise ValueError(f"digit_index={digit_index}: a test image is 0..{len(test) - 1}")
        self.explorer, self.test, self.opt_steps, self.size = explorer, test, opt_steps, size
        self.names = list(explorer.blocks)
        depths = max((explorer.depths(n) for n in self.names), key=len)
        self.sketch, self.updates, self.drawing, self.last = Sketch(size, radius=11), 0, False, None
        self.canvas = Canvas(
            width=size, height=size, layout=W.Layout(width=f"{size}px", height=f"{size}px")
        )
        self.canvas.add_class("rn-canvas")
        self.canvas.on_mouse_down(self.down)
        self.canvas.on_mouse_move(self.move)
        self.canvas.on_mouse_up(self.up)
        self.canvas.on_mouse_out(self.up)
        self.canvas.on_client_ready(self.client_ready)
        clear = W.Button(description="clear", icon="eraser")
        clear.on_click(lambda _: self.show_digit(None))
        self.index = W.BoundedIntText(
            value=digit_index, min=0, max=len(test) - 1, description="test digit #",
            layout=W.Layout(width="200px"),
        )  # fmt: skip
        self.index.observe(lambda c: self.show_digit(test.images[c["new"]][0].cpu()), names="value")
        self.label = W.Dropdown(
            options=["-"] + [str(d) for d in range(10)], description="of class",
            layout=W.Layout(width="160px"),
        )  # fmt: skip
        self.label.observe(self.pick_class, names="value")
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload a picture")
        self.upload.observe(self.uploaded, names="value")
        self.depth = W.SelectionSlider(options=depths, value=depths[0], description="from")
        self.depth.observe(lambda _: self.redraw(), names="value")
        self.toggles = {
            m: W.ToggleButton(value=True, description=m, layout=W.Layout(width="auto"))
            for m in explorer.methods
        }
        for t in self.toggles.values():
            t.observe(lambda _: self.redraw(), names="value")
        self.opt_target = W.Dropdown(
            options=self.names, value=self.names[-1], description="target",
            layout=W.Layout(width="220px"),
        )  # fmt: skip
        self.opt_button = W.Button(
            description=OPTIMISATION, icon="play", layout=W.Layout(width="auto")
        )
        self.opt_button.on_click(self.optimise)
        self.opt_out = W.Output()
        self.status, self.error = W.HTML(), W.HTML()
        self.status.add_class("rn-status")
        self.error.add_class("rn-error")
        self._build_grid(W)
        controls = W.VBox([
            self.canvas, W.HBox([clear, self.upload]), W.HBox([self.index, self.label]), self.depth,
            W.HBox(list(self.toggles.values()),
                   layout=W.Layout(flex_flow="row wrap", width=f"{size + 120}px")),
            W.HBox([self.opt_target, self.opt_button]), self.opt_out, self.status, self.error,
        ])  # fmt: skip
        self.table = W.GridBox(layout=W.Layout(grid_gap="4px"))
        self.ui = W.HBox([controls, self.table])
        self.digit, self.grid, self.optimised = test.images[digit_index][0].cpu(), None, {}
        self.show_digit(self.digit)

    def _build_grid(self, W) -> None:
        """The grid's widgets: a column per target; rows: probabilities, features, one per
        method."""

        def cell() -> W.Image:
            return W.Image(
                format="png", layout=W.Layout(width=f"{CELL_PIXELS}px", height=f"{CELL_PIXELS}px")
            )

        methods = [*self.explorer.methods, OPTIMISATION]
        self.probs = {n: W.HTML() for n in self.names}
        for w in self.probs.values():
            w.add_class("rn-probs")
        self.feats = {n: cell() for n in self.names}
        self.recon = {(m, n): cell() for m in methods for n in self.names}
        for w in self.recon.values():
            w.add_class("rn-recon")
        self.input_image = cell()
        self.head = [W.HTML("<b>input</b>")] + [W.HTML(f"<b>{n}</b>") for n in self.names]
        self.feat_label = W.HTML()
        self.method_label = {m: W.HTML(m) for m in methods}

    # --- input
    def down(self, x: float, y: float) -> None:
        self.drawing, self.last = True, (x, y)
        self.move(x, y)

    def move(self, x: float, y: float) -> None:
        if not self.drawing:
            return
        (x0, y0), self.last = self.last, (x, y)
        self.sketch.line(x0, y0, x, y)
        self.canvas.stroke_style, self.canvas.line_width = "white", 2 * self.sketch.radius
        self.canvas.line_cap = "round"
        self.canvas.stroke_line(x0, y0, x, y)

    def up(self, x: float, y: float) -> None:
        if self.drawing:
            self.drawing = False
            self.guarded(lambda: self.update(self.sketch.digit()))

    def show_digit(self, digit: torch.Tensor | None) -> None:
        """Put a digit on the canvas (None clears it) and, if there is one, update the grid."""
        self.sketch.clear()
        if digit is not None:
            scale = np.ones((self.size // 28, self.size // 28), dtype=np.float32)
            self.sketch.pixels[:] = np.kron(digit.numpy(), scale)
        self.paint()
        if digit is not None:
            self.guarded(lambda: self.update(digit))

    def client_ready(self) -> None:
        """Voilà shows the page only after the notebook ran, and drawings sent before are lost,
        among them ipycanvas's "draw on this canvas" command, which it sends again only when the
        target canvas changes (ipycanvas's documented Voilà limitation): forget the target, so the
        next command names it, and paint."""
        self.canvas._canvas_manager._current_canvas = None
        self.paint()

    def paint(self) -> None:
        """Show the sketch's pixels on the canvas."""
        grey = (self.sketch.pixels * 255).astype(np.uint8)
        self.canvas.put_image_data(np.stack([grey] * 3, axis=-1), 0, 0)

    def pick_class(self, change: dict) -> None:
        if change["new"] != "-":
            index = int(torch.nonzero(self.test.labels.cpu() == int(change["new"]))[0])
            if self.index.value != index:
                self.index.value = index  # its observer shows the digit
            else:
                self.show_digit(self.test.images[index][0].cpu())

    def uploaded(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        from PIL import Image

        content, name = files[0]["content"], files[0]["name"]

        def show() -> None:
            # any mode (palette, grey, with transparency) as RGBA; mnist_like composites it over
            # white
            try:
                picture = np.asarray(Image.open(io.BytesIO(bytes(content))).convert("RGBA"))
            except OSError as exc:
                raise ValueError(f"{name} is not a picture PIL can read ({exc})") from None
            self.show_digit(mnist_like(picture))

        self.guarded(show)

    # --- output
    def guarded(self, action: Callable[[], None]) -> None:
        """Run an update; a bad input (an empty canvas, a picture without ink) is said, not
        raised."""
        try:
            action()
            self.error.value = ""
        except ValueError as exc:
            self.error.value = f"<span style='color:#b00'>{exc}</span>"

    def update(self, digit: torch.Tensor) -> None:
        self.digit, self.optimised = digit, {}
        self.grid = self.explorer.run(digit)
        self.redraw()
        self.updates += 1  # said last: once the status shows it, every picture has been sent
        self.status.value = (
            f"update {self.updates}: the whole grid in {self.grid.seconds * 1000:.0f} ms "
            f"({len(self.grid.reconstructions)} reconstructions)"
        )

    def redraw(self) -> None:
        grid, depth = self.grid, self.depth.value
        shown = [m for m in self.explorer.methods if self.toggles[m].value] + [OPTIMISATION]
        self.input_image.value = png(grid.image, CELL_PIXELS)
        self.feat_label.value = f"what {depth} keeps"
        rows = [
            self.head,
            [self.input_image] + [self.probs[n] for n in self.names],
            [self.feat_label] + [self.feats[n] for n in self.names],
        ]
        for n in self.names:
            self.probs[n].value = probability_bars(grid.probabilities[n])
            labels = self.explorer.depths(n)
            k = labels.index(depth) + 1 if depth in labels else None
            self._show(self.feats[n], grid.features[n, k] if k else None, cmap="RdBu_r")
            for m in shown:
                found = self.optimised if m == OPTIMISATION else grid.reconstructions
                self._show(self.recon[m, n], found.get((n, k) if m == OPTIMISATION else (m, n, k)))
        rows += [[self.method_label[m]] + [self.recon[m, n] for n in self.names] for m in shown]
        self.table.children = [w for row in rows for w in row]
        self.table.layout.grid_template_columns = f"150px repeat({len(self.names)}, 100px)"

    @staticmethod
    def _show(widget, image: torch.Tensor | None, cmap: str = "gray") -> None:
        widget.value = png(image, CELL_PIXELS, cmap=cmap) if image is not None else b""
        widget.layout.visibility = "visible" if image is not None else "hidden"

    def optimise(self, _=None) -> None:
        name = self.opt_target.value
        labels = self.explorer.depths(name)
        if self.depth.value not in labels:
            self.error.value = f"{name} has no {self.depth.value}"
            return
        k = labels.index(self.depth.value) + 1
        self.opt_out.clear_output()
        with self.opt_out:
            self.optimised[name, k] = self.explorer.optimise(
                self.digit, name, k, steps=self.opt_steps
            )
        self.redraw()


def drive_headless(app: ExplorerApp) -> str:
    """Where no front end renders widgets (papermill, nbval, CI): one stroke as the mouse would draw
    it, then the feature-matching button, through the same handlers; what happened, or a
    ``RuntimeError`` if the grid did not follow the stroke."""
    first = app.names[0]
    before, updates = app.grid.probabilities[first].clone(), app.updates
    app.down(60, 60)
    app.move(140, 220)
    app.up(140, 220)
    if app.updates != updates + 1 or torch.equal(app.grid.probabilities[first], before):
        raise RuntimeError(f"a stroke did not update the grid ({app.status.value or 'no status'})")
    app.optimise()
    return (
        f"no widget front end here: the explorer ran one stroke ({app.status.value}) and one "
        f"{OPTIMISATION} ({app.opt_target.value}, from {app.depth.value}) without displaying. Open "
        f"this notebook in JupyterLab (`make lab`) or Colab, or run `make app`, to draw."
    )
