"""Split-computing defences (notebook 09): what a device can do to the features it sends so that a
server cannot run them backwards, and what each costs in accuracy.

Two kinds:

- applied to the transmitted features at inference, on a trained network (:func:`make_defence`):
  Gaussian and Laplace noise (standard deviation ``strength`` times the features' own standard
  deviation), dropout on the split layer (rate ``strength``; kept active at inference, rescaled by
  ``1 / (1 - p)``), quantisation to ``strength`` bits over the features' range;
- applied while training (:func:`train_defended`): NoPeek's distance-correlation penalty between the
  input and the transmitted features (Vepakomma et al., 2020; weight ``strength``),
  differentially private SGD of the device's layers (opacus; ``strength`` is the noise multiplier,
  the privacy budget epsilon is reported), and adversarial representation learning, the one made
  for this threat: the device trained against a reconstruction adversary (min-max, the task loss
  kept; weight ``strength``). No training-time adversary counts as the attack: notebook 09 attacks
  every defended device with an attacker trained afterwards, from scratch.

Each feature defence is an ``nn.Module`` applied after the device's last block, in training and
evaluation alike (a deployed defence runs on every query), so an attacker can train on defended
features.
"""

from __future__ import annotations

import math
import time
import warnings
import zlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .context import Context
from .data import MNISTSplit
from .models import get_spec
from .progress import progress_bar
from .train import GLOBAL_RNG, build_seeded, evaluate, fit, seed_everything, train_loop

__all__ = [
    "FEATURE_DEFENCES",
    "TRAINING_DEFENCES",
    "FeatureDefence",
    "GaussianNoise",
    "LaplaceNoise",
    "SplitDropout",
    "Quantise",
    "make_defence",
    "distance_correlation",
    "train_defended",
]


def _finite(
    name: str, value: Any, low: float, high: float = math.inf, closed_high: bool = True
) -> float:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= low
    )
    ok = ok and (value <= high if closed_high else value < high)
    if not ok:
        bound = f"<= {high}" if closed_high else f"< {high}"
        raise ValueError(
            f"{name} must be a finite number >= "
            f"{low}{'' if high == math.inf else ' and ' + bound}, got {value!r}"
        )
    return float(value)


class FeatureDefence(nn.Module):
    """A defence on the transmitted features: ``kind`` and ``strength`` name it in tables and
    results.

    A random defence draws from its own generator, derived from ``seed`` and its kind (one per
    device the features live on), never from torch's global one, nor the stream of another generator
    seeded ``seed``: the same defence gives the same features on every run, also while attackers
    train side by side (``train.run_side_by_side``)."""

    kind = ""

    def __init__(self, strength: float, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be a whole number, got {seed!r}")
        self.strength, self.seed = float(strength), seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        # a stream of its own: not the one another generator seeded `seed` draws
        if device not in self._generators:
            state = np.random.SeedSequence(
                [self.seed, zlib.crc32(self.kind.encode())]
            ).generate_state(1)[0]
            self._generators[device] = torch.Generator(device=device).manual_seed(int(state))
        return self._generators[device]

    def uniform(self, f: torch.Tensor) -> torch.Tensor:
        """Uniform draws in [0, 1), shaped and placed like ``f``, from this defence's generator."""
        return torch.rand(
            f.shape, generator=self._generator(f.device), device=f.device, dtype=f.dtype
        )

    def normal(self, f: torch.Tensor) -> torch.Tensor:
        """Standard normal draws shaped and placed like ``f``, from this defence's generator."""
        return torch.randn(
            f.shape, generator=self._generator(f.device), device=f.device, dtype=f.dtype
        )


class GaussianNoise(FeatureDefence):
    """``f + N(0, (strength * scale)^2)``: ``scale`` is the standard deviation of the undefended
    features."""

    kind = "gaussian"

    def __init__(self, strength: float, scale: float, seed: int = 0) -> None:
        super().__init__(_finite("noise strength", strength, 0.0), seed)
        self.sigma = _finite("scale", scale, 0.0) * self.strength

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.sigma * self.normal(f)


class LaplaceNoise(FeatureDefence):
    """``f + Laplace(0, b)`` with ``b = strength * scale / sqrt(2)``: the same standard deviation as
    :class:`GaussianNoise` of equal strength, with heavier tails."""

    kind = "laplace"

    def __init__(self, strength: float, scale: float, seed: int = 0) -> None:
        super().__init__(_finite("noise strength", strength, 0.0), seed)
        self.b = _finite("scale", scale, 0.0) * self.strength / math.sqrt(2.0)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.b == 0:
            return f
        u = self.uniform(f).clamp(1e-7, 1 - 1e-7) - 0.5  # inverse CDF of the Laplace distribution
        return f - self.b * u.sign() * torch.log1p(-2 * u.abs())


class SplitDropout(FeatureDefence):
    """Dropout of the transmitted features at rate ``strength``, active at inference too (rescaled
    by 1/(1-p))."""

    kind = "dropout"

    def __init__(self, strength: float, seed: int = 0) -> None:
        super().__init__(_finite("dropout rate", strength, 0.0, 1.0, closed_high=False), seed)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.strength == 0:
            return f
        return f * (self.uniform(f) >= self.strength) / (1 - self.strength)


class Quantise(FeatureDefence):
    """Uniform quantisation of the features to ``strength`` bits over ``[low, high]`` (values
    outside are clipped)."""

    kind = "quantise"

    def __init__(self, strength: float, low: float, high: float) -> None:
        if not (
            isinstance(strength, (int, float))
            and float(strength).is_integer()
            and 1 <= strength <= 16
        ):
            raise ValueError(f"quantisation bits must be a whole number in 1..16, got {strength!r}")
        super().__init__(strength)
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ValueError(f"the quantisation range needs finite low < high, got [{low}, {high}]")
        self.low, self.high, self.levels = float(low), float(high), 2 ** int(strength) - 1

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        step = (self.high - self.low) / self.levels
        return torch.round((f.clamp(self.low, self.high) - self.low) / step) * step + self.low


#: The defences applied to the features of a trained network, by name.
FEATURE_DEFENCES = ("gaussian", "laplace", "dropout", "quantise")
#: The defences applied while training the network, by name.
TRAINING_DEFENCES = ("nopeek", "dp", "adversarial")


def make_defence(
    kind: str, strength: float, features: torch.Tensor, seed: int = 0
) -> FeatureDefence:
    """The feature defence ``kind`` at ``strength``, calibrated on undefended ``features`` of the
    device owner's data (the noise's scale: their standard deviation; the quantiser's range: their
    minimum and maximum); a random one draws from its own generator, seeded ``seed``."""
    if kind not in FEATURE_DEFENCES:
        raise ValueError(
            f"unknown feature defence {kind!r}; known: {', '.join(FEATURE_DEFENCES)} "
            f"(training-time defences {', '.join(TRAINING_DEFENCES)}: train_defended)"
        )
    if (
        not isinstance(features, torch.Tensor)
        or features.numel() < 2
        or not torch.isfinite(features).all()
    ):
        raise ValueError(
            "calibrating a defence needs a tensor of at least two finite feature values"
        )
    if kind in ("gaussian", "laplace", "quantise") and features.max() == features.min():
        raise ValueError(
            f"calibrating the {kind} defence: the features are constant "
            f"({features.min().item():g}), so its scale would be 0 and it would do nothing; "
            f"calibrate on the device's features of real inputs (several images)"
        )
    if kind == "gaussian":
        return GaussianNoise(strength, features.std().item(), seed)
    if kind == "laplace":
        return LaplaceNoise(strength, features.std().item(), seed)
    if kind == "dropout":
        return SplitDropout(strength, seed)
    return Quantise(strength, features.min().item(), features.max().item())


def _centred_distances(x: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def distance_correlation(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Sample distance correlation (Szekely et al., 2007) between the rows of ``x`` and of ``z``
    (any shapes with the same batch size; each row flattened): 0 for independent samples, 1 for a
    similarity transform.
    Differentiable: NoPeek's penalty. Needs at least two rows."""
    if len(x) != len(z) or len(x) < 2:
        raise ValueError(
            f"distance correlation needs two batches of the same size >= 2, got {len(x)} and "
            f"{len(z)}"
        )
    a, b = _centred_distances(x.flatten(1).float()), _centred_distances(z.flatten(1).float())
    dcov_xy, dcov_xx, dcov_yy = (a * b).mean(), (a * a).mean(), (b * b).mean()
    return (dcov_xy.clamp_min(0) / (dcov_xx * dcov_yy).sqrt().clamp_min(1e-12)).sqrt()


def train_defended(
    ctx: Context,
    name: str,
    train: MNISTSplit,
    test: MNISTSplit,
    epochs: int,
    defence: str | None = None,
    strength: float = 0.0,
    split_end: int | None = None,
    seed: int = 0,
    max_grad_norm: float = 1.0,
    delta: float = 1e-5,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train target ``name`` (its architecture, and its learning rate and batch size on the
    context's dataset) on ``train`` for ``epochs``, on the context's device, with a training-time
    defence of the features after layer ``split_end``, or none (``defence=None`` or strength 0: the
    plain recipe, the baseline).

    - ``"nopeek"``: cross-entropy plus ``strength * distance_correlation(x, features)`` per batch;
    - ``"dp"``: DP-SGD with opacus on the device's layers ``net[:split_end]`` (Poisson sampling,
      per-sample clipping to ``max_grad_norm``, Gaussian noise of ``strength * max_grad_norm``), the
      server's layers trained with plain Adam on the same batches; the device weights' epsilon at
      ``delta`` reported;
    - ``"adversarial"``: adversarial representation learning (:func:`_train_adversarial`): the
      device and the server trained on cross-entropy minus ``strength`` times the squared error of
      a reconstruction adversary that trains alongside on the device's features; its last epoch's
      mean squared error reported (``adversary_mse``).

    Returns the frozen network in eval mode and ``{"accuracy", "epsilon" (dp only),
    "adversary_mse" (adversarial only), "train_s"}``.
    """
    if defence is None:
        defence, strength, split_end = "nopeek", 0.0, split_end or 1
    if defence not in TRAINING_DEFENCES:
        raise ValueError(
            f"unknown training-time defence {defence!r}; known: {', '.join(TRAINING_DEFENCES)}"
        )
    _finite(f"{defence} strength", strength, 0.0)
    if defence == "dp" and not (isinstance(delta, float) and 0 < delta < 1):
        raise ValueError(
            f"delta must be a probability in (0, 1) (DP's failure probability; typically below "
            f"1 / training images, e.g. 1e-5), got {delta!r}"
        )
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}")
    spec = get_spec(name).on(ctx.dataset)  # its recipe on the dataset of this run
    device = ctx.device
    # seeded and built under train.GLOBAL_RNG, once: several may train side by side
    net = build_seeded(name, seed, device)
    if not isinstance(split_end, int) or not 1 <= split_end < len(net):
        raise ValueError(
            f"split_end must be a layer index inside {name!r} (1..{len(net) - 1}), "
            f"got {split_end!r}"
        )
    start = time.perf_counter()
    meta: dict[str, Any] = {}
    if defence == "dp" and strength > 0:
        meta["epsilon"] = _train_dp(
            net,
            split_end,
            train,
            epochs,
            spec.lr,
            spec.batch_size,
            strength,
            max_grad_norm,
            delta,
            seed,
            name,
        )
    elif defence == "nopeek" and strength > 0:

        def loss_fn(idx: torch.Tensor) -> torch.Tensor:
            x, y = train.images[idx].to(device), train.labels[idx].to(device)
            features = net[:split_end](x)
            return F.cross_entropy(net[split_end:](features), y) + strength * distance_correlation(
                x, features
            )

        net.train()
        train_loop(
            net.parameters(),
            loss_fn,
            len(train),
            epochs,
            spec.batch_size,
            spec.lr,
            seed=seed + spec.seed,
            desc=f"{name}: nopeek {strength:g}",
        )
    elif defence == "adversarial" and strength > 0:
        meta["adversary_mse"] = _train_adversarial(
            net, split_end, train, epochs, spec.lr, spec.batch_size, strength, seed + spec.seed,
            name,
        )  # fmt: skip
    else:  # the plain recipe
        fit(
            net,
            train,
            None,
            epochs,
            spec.lr,
            spec.batch_size,
            seed=seed + spec.seed,
            desc=f"{name}: no defence",
            channels_last=spec.channels_last,
        )
    net.eval().requires_grad_(False)
    meta.update({"accuracy": evaluate(net, test), "train_s": time.perf_counter() - start})
    return net, meta


class _Adversary(nn.Module):
    """Adversarial representation learning's training-time adversary: the transmitted features,
    flattened, to an image through 128 ReLU units and a sigmoid (pixels in [0, 1], so its squared
    error is at most 1 and the device's side of the min-max stays bounded). Any feature shape.
    Small on purpose: it is the device's opponent while training, never the attack (measured on
    MNIST, one epoch: with 512 units `cnn_nopool`'s training took 11 s, with 128 5 s, the plain
    recipe 2.6 s)."""

    def __init__(self, features: int, image_shape: tuple[int, ...], hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, math.prod(image_shape)),
            nn.Sigmoid(),
            nn.Unflatten(1, image_shape),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def _train_adversarial(
    net: nn.Sequential,
    split_end: int,
    train: MNISTSplit,
    epochs: int,
    lr: float,
    batch_size: int,
    weight: float,
    seed: int,
    name: str,
) -> float:
    """Adversarial representation learning of ``net``, in place. Per batch, the adversary
    (:class:`_Adversary`, seeded ``seed``) first takes one Adam step towards reconstructing the
    batch from the device's features ``net[:split_end](x)`` (detached); then the device and the
    server take one step of the recipe's loop on cross-entropy minus ``weight`` times the
    adversary's squared error on the same features: the device learns features the adversary cannot
    run backwards while the server still classifies them. Returns the adversary's mean squared
    error over the last epoch."""
    device = next(net.parameters()).device
    images = train.images[:2].to(device)
    with torch.no_grad():
        shape = net[:split_end](images).shape
    with GLOBAL_RNG, torch.random.fork_rng(devices=[]):  # several may train side by side
        torch.manual_seed(seed)
        adversary = _Adversary(math.prod(shape[1:]), tuple(images.shape[1:])).to(device)
    adversary_opt = torch.optim.Adam(adversary.parameters(), lr=lr)
    errors: list[torch.Tensor] = []

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        x, y = train.images[idx].to(device), train.labels[idx].to(device)
        h = net[:split_end](x)
        adversary_opt.zero_grad(set_to_none=True)
        F.mse_loss(adversary(h.detach()), x).backward()
        adversary_opt.step()
        error = F.mse_loss(adversary(h), x)  # the device's step below leaves the adversary as is
        errors.append(error.detach())
        return F.cross_entropy(net[split_end:](h), y) - weight * error

    net.train()
    train_loop(net.parameters(), loss_fn, len(train), epochs, batch_size, lr, seed=seed,
               desc=f"{name}: adversarial {weight:g}")  # fmt: skip
    last_epoch = -(-len(train) // batch_size)
    return torch.stack(errors[-last_epoch:]).mean().item()


class _UpstreamLoss(nn.Module):
    """Per-sample surrogate loss ``<h_i, g_i>`` of the device's features ``h`` and the server's
    gradient ``g`` of each sample's loss with respect to them (a constant): its gradient in the
    device's weights is that sample's gradient. opacus' ghost clipping differentiates it twice
    (per-sample norms, then the clipped sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"  # opacus sets "none" to get the per-sample values

    def forward(self, h: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
        per_sample = (h * upstream).flatten(1).sum(1)
        return per_sample if self.reduction == "none" else getattr(per_sample, self.reduction)()


def _train_dp(
    net: nn.Sequential,
    split_end: int,
    train: MNISTSplit,
    epochs: int,
    lr: float,
    batch_size: int,
    noise: float,
    max_grad_norm: float,
    delta: float,
    seed: int,
    name: str,
) -> float:
    """DP-SGD (opacus) on the device's layers ``net[:split_end]``, in place, the server's layers
    trained alongside with plain Adam on the same batches; returns the device weights' epsilon at
    ``delta``.

    Per-sample gradients the cheap way: opacus' ghost clipping gets each sample's gradient norm
    without forming the gradient (for ``Linear(784, 500)`` a per-sample gradient is 392 000 numbers:
    one DP epoch of ``mlp_relu`` on 30 000 images took 47 s with per-sample hooks and 1.6 s with
    ghost clipping, on a 2-core CPU; the steps agree to 1e-5, tests/test_defences.py). The server's
    step takes the plain gradient: its input is the device's output detached, and the server's
    gradient with respect to that input is what the device's per-sample losses are built from
    (:class:`_UpstreamLoss`)."""
    from opacus import PrivacyEngine  # imported here: only this defence needs it

    _finite("max_grad_norm", max_grad_norm, 1e-12)
    generator = seed_everything(seed)
    data = torch.utils.data.TensorDataset(train.images, train.labels)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, generator=generator)
    device_part, server_part = net[:split_end], net[split_end:]
    optimizer = torch.optim.Adam(device_part.parameters(), lr=lr)
    server_optimizer = torch.optim.Adam(server_part.parameters(), lr=lr)
    device = next(net.parameters()).device
    # "secure RNG turned off": a study, not a deployment (seeded, reproducible noise)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp")
        private, optimizer, criterion, loader = engine.make_private(
            module=device_part,
            optimizer=optimizer,
            data_loader=loader,
            criterion=_UpstreamLoss(),
            noise_multiplier=noise,
            max_grad_norm=max_grad_norm,
            grad_sample_mode="ghost",
            noise_generator=torch.Generator(device=device).manual_seed(seed),
        )
    net.train()
    with (
        progress_bar(
            total=epochs * len(loader), desc=f"{name}: dp {noise:g}", unit="step", mininterval=1.0
        ) as bar,
        warnings.catch_warnings(),
    ):  # opacus' hooks on the first layer, whose input needs no gradient: expected
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(epochs):
            for x, y in loader:
                if len(x) == 0:  # Poisson sampling can draw an empty batch
                    continue
                h = private(x.to(device))
                h_server = h.detach().requires_grad_()
                server_optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(
                    server_part(h_server), y.to(device)
                ).backward()  # the batch mean, as before
                optimizer.zero_grad(set_to_none=True)
                criterion(
                    h, h_server.grad * len(x)
                ).backward()  # each sample's own loss gradient, clipped
                optimizer.step()
                server_optimizer.step()
                bar.update()
    # the trained weights are the device's own; no per-sample hooks left on them
    private.remove_hooks()
    return float(engine.get_epsilon(delta))
