"""Feature visualisation's parameterisations of the image: free pixels through a sigmoid, or a
1/f-scaled spectrum with decorrelated colour (Lucid's colour correlation)."""

from __future__ import annotations


import torch
from torch import nn


# Square root of the ImageNet RGB colour correlation matrix, as published with Lucid (Olah et al.):
# the FFT parameterisation optimises decorrelated colour channels and mixes them with this matrix.
_COLOR_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
)
_COLOR_MIX = _COLOR_CORRELATION_SQRT / _COLOR_CORRELATION_SQRT.norm(dim=0).max()

# --- parameterisations ---------------------------------------------------------------------------


class ImageParam(nn.Module):
    """A batch of images in [0, 1], ``(batch, channels, size, size)``, as free parameters.

    ``"pixel"``: ``sigmoid(p)``. ``"fft"``: ``p`` is a Fourier spectrum, scaled by 1/frequency (so
    every frequency learns at a similar rate and the image starts smooth), inverse-transformed, and
    for RGB mixed from decorrelated channels with ImageNet's colour correlation; then a sigmoid.
    """

    def __init__(
        self,
        batch: int,
        size: int,
        channels: int = 3,
        kind: str = "fft",
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
        decay: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in ("pixel", "fft"):
            raise ValueError(f"kind must be 'pixel' or 'fft', got {kind!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        self.kind, self.size, self.channels = kind, size, channels
        if kind == "pixel":
            self.param = nn.Parameter(
                torch.randn(batch, channels, size, size, generator=generator) * init_std
            )
        else:
            fy = torch.fft.fftfreq(size)[:, None]
            fx = torch.fft.rfftfreq(size)[None, :]
            freq = (fx**2 + fy**2).sqrt().clamp_min(1.0 / size)
            scale = 1.0 / freq**decay
            # normalised so that a unit-variance spectrum gives pixels of about unit variance, at
            # any size
            self.register_buffer("scale", scale / scale.pow(2).mean().sqrt())
            shape = (batch, channels, size, size // 2 + 1, 2)
            self.param = nn.Parameter(torch.randn(shape, generator=generator) * init_std)

    def forward(self) -> torch.Tensor:
        if self.kind == "pixel":
            return torch.sigmoid(self.param)
        spectrum = torch.view_as_complex(self.param) * self.scale
        x = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        if self.channels == 3:
            x = torch.einsum("ij,bjhw->bihw", _COLOR_MIX.to(x), x)
        return torch.sigmoid(x)
