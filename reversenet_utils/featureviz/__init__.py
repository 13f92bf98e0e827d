"""Feature visualisation: optimise the *input* of a frozen network to excite a unit, a layer or a
class.

After Olah, Mordvintsev & Schubert, "Feature Visualization" (Distill, 2017). Split as lucent splits
its ``optvis``, a module per piece:

- :mod:`~reversenet_utils.featureviz.objectives` (:class:`Objective`): ``channel``, ``neuron``,
  ``layer`` (DeepDream's mean square) and ``class_logit``; they add and scale (``channel(
  "features.34", 5) - 0.5 * layer("features.10")``). Layers are named by module path
  (``features.34``). An objective returns one value per image, and its unit may differ per image:
  ``channel("features.34", [3, 7, 11])`` renders three channels in one batched optimisation;
- :mod:`~reversenet_utils.featureviz.hooks` (:func:`activations`): a hook *clones* the module's
  output, so a conv followed by torchvision's in-place ``ReLU`` still yields its pre-ReLU values;
- :mod:`~reversenet_utils.featureviz.param` (:class:`ImageParam`): ``"pixel"`` (a sigmoid of free
  pixels) or ``"fft"`` (a spectrum scaled by 1/f, plus decorrelated colour for RGB), grayscale when
  ``channels=1``;
- :mod:`~reversenet_utils.featureviz.transform` (:func:`robustness`): pad, jitter, random scale and
  rotation per image, and the blur penalty;
- :mod:`~reversenet_utils.featureviz.render` (:func:`render`): Adam on the parameterisation with a
  progress bar, BatchNorm folded into the convolutions for the run (:func:`folded_batchnorm`),
  intermediate frames (:func:`save_gif` writes them as an animation);
- :mod:`~reversenet_utils.featureviz.nets`: the ImageNet networks (:func:`load_imagenet_net`).

Everything public is importable from ``reversenet_utils.featureviz`` itself.
"""

from __future__ import annotations

from .hooks import activations
from .nets import ImageNetNet, load_efficientnet_lite0, load_imagenet_net
from .objectives import OUTPUT, Objective, channel, class_logit, layer, neuron
from .param import ImageParam
from .render import RenderResult, folded_batchnorm, render, save_gif
from .transform import blur_penalty, robustness

__all__ = [
    "Objective",
    "channel",
    "neuron",
    "layer",
    "class_logit",
    "ImageParam",
    "robustness",
    "RenderResult",
    "render",
    "folded_batchnorm",
    "save_gif",
    "blur_penalty",
    "OUTPUT",
    "activations",
    "ImageNetNet",
    "load_imagenet_net",
    "load_efficientnet_lite0",
]
