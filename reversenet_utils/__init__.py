"""reversenet_utils: the thin helper package shared by the ReverseNet notebooks.

Modules, one concern each (DESIGN §1): ``data`` (verified offline MNIST), ``models``
(targets by name), ``train`` (the training loop, load-or-train), ``invert`` (analytic
inverses), ``learned`` (learned inverses), ``metrics`` (PSNR, SSIM,
re-classification), ``plotting`` (grids, curves), ``artifacts`` (paths, checkpoints, results).
Import the modules you need; importing the package itself loads nothing heavy.
"""

__version__ = "0.1.0"
