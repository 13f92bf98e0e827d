"""Target architectures by name, and the VAE.

Every target is a flat ``nn.Sequential`` that maps an MNIST batch ``(N, 1, 28, 28)`` in [0, 1]
to 10 logits, so later notebooks can walk its layers one by one (analytic inverses) or cut it
into blocks (progressive inverses). Each entry of :data:`TARGETS` also carries the default
training recipe that ``train.load_target`` uses when a checkpoint is missing.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

__all__ = [
    "TargetSpec",
    "TARGETS",
    "ACCURACY_FLOORS",
    "LEAKY_SLOPE",
    "get_spec",
    "build_target",
    "target_names",
    "register_target",
    "VAE",
]

#: Negative slope of every leaky ReLU here. Larger than PyTorch's 0.01 so that the inverse
#: (a division by the slope) amplifies float error by 10x, not 100x.
LEAKY_SLOPE = 0.1


def _mlp(
    widths: list[int], act: Callable[[], nn.Module], orthogonal: bool = False
) -> nn.Sequential:
    """``Flatten`` then ``Linear``/activation pairs through ``widths``; no activation after the
    last.

    ``orthogonal=True`` starts every weight as a (semi-)orthogonal matrix with zero bias. PyTorch's
    default uniform init makes a square 784x784 weight's condition number ~10^4, and training keeps
    most of it; an orthogonal start keeps it ~10^1, so the analytic inverse stays accurate in
    float32.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.Linear(n_in, n_out)
        if orthogonal:
            nn.init.orthogonal_(linear.weight)
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _leaky() -> nn.Module:
    return nn.LeakyReLU(LEAKY_SLOPE)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (the same module, state and repr) whose 2x2, stride-2 case runs as two
    elementwise maxima of strided views when no gradient is recorded: the target's features in every
    training step of an inverse, and inference. The same values as ``F.max_pool2d``, 7x faster on
    this CPU for a (64, 16, 28, 28) batch (2.1 to 0.3 ms), whose NCHW kernel does not vectorise.
    With gradients (training, the cycle pass, Jacobians) it is ``nn.MaxPool2d`` itself: its backward
    routes each window's gradient to the first maximum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            not torch.is_grad_enabled()
            and x.dim() == 4
            and x.is_contiguous()
            and not self.return_indices
            and self.kernel_size in (2, (2, 2))
            and self.stride in (2, (2, 2))
            and self.padding in (0, (0, 0))
            and self.dilation in (1, (1, 1))
            and x.shape[-2] % 2 == 0
            and x.shape[-1] % 2 == 0
        ):
            rows = torch.maximum(x[..., 0::2], x[..., 1::2])
            return torch.maximum(rows[..., 0::2, :], rows[..., 1::2, :])
        return super().forward(x)


def _cnn_pool() -> nn.Sequential:
    """Two 5x5 convolutions, each followed by ReLU and 2x2 max-pooling, then two dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), MaxPool2d(2),   # 16 x 14 x 14
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), MaxPool2d(2),  # 32 x 7 x 7
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def _judge_cnn() -> nn.Sequential:
    """Three 3x3 convolution stages (16-32-32 channels, ReLU, max-pooling twice) and one dense
    layer.

    A different architecture, width and seed from every target: it is never inverted, it only
    judges reconstructions (notebook 07), so that re-classification is not scored by the very
    network whose features were inverted (and whose cycle loss some inverses were trained on).
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), MaxPool2d(2),   # 16 x 14 x 14
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), MaxPool2d(2),  # 32 x 7 x 7
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip


def _cnn_nopool() -> nn.Sequential:
    """Two stride-2 4x4 convolutions (downsampling without pooling), then two dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), _leaky(),   # 16 x 14 x 14
        nn.Conv2d(16, 32, 4, stride=2, padding=1), _leaky(),  # 32 x 7 x 7
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), _leaky(), nn.Linear(128, 10),
    )  # fmt: skip


def _lenet_he() -> nn.Sequential:
    """He, Zhang and Lee's MNIST LeNet (ACSAC 2019), the split-computing attacks' reference network:
    two unpadded 5x5 convolutions (8 and 16 channels) with ReLU and max-pooling, then 256-120-84-10.
    Its blocks end at their split points: after conv1 (the raw convolution, 8 x 24 x 24) and after
    ReLU2 (conv1 -> ReLU -> pool -> conv2 -> ReLU, 16 x 8 x 8)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 5),                                   # conv1: 8 x 24 x 24
        nn.ReLU(), MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU(),  # ReLU2: 16 x 8 x 8
        MaxPool2d(2), nn.Flatten(),                           # 16 x 4 x 4 = 256
        nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


@dataclass(frozen=True)
class TargetSpec:
    """A named target: how to build it and its default training recipe."""

    build: Callable[[], nn.Sequential]
    description: str
    epochs: int
    lr: float = 1e-3
    batch_size: int = 128
    #: where the shallow blocks of the progressive inversion end (exclusive layer indices; the
    #: last is the number of layers, i.e. the logits); empty if the target is not split
    block_ends: tuple[int, ...] = ()
    #: seed of the initialisation and batch order when trained by ``train.load_target``
    seed: int = 0
    #: training batches of each progressive inverse chain of this target (notebooks 04 and 07); 0
    #: if not split
    chain_steps: int = 0
    #: train in the channels-last memory layout (``train.fit``): faster for wide convolutions on a
    #: CPU, and part of the recipe because the layout changes the float rounding, hence the trained
    #: weights
    channels_last: bool = False
    #: the recipe on a dataset other than MNIST where the default is not enough: per dataset, the
    #: fields it changes among :data:`RECIPE_FIELDS` (``{"fashion_mnist": {"epochs": 12}}``)
    dataset_recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        recipes = {
            "the default recipe": {f: getattr(self, f) for f in RECIPE_FIELDS},
            **{
                f"the recipe on {dataset!r}": changes
                for dataset, changes in self.dataset_recipes.items()
            },
        }
        for where, changes in recipes.items():
            unknown = set(changes) - set(RECIPE_FIELDS)
            if unknown:
                raise ValueError(
                    f"{self.description}: {where} may change {', '.join(RECIPE_FIELDS)}, "
                    f"not {', '.join(sorted(unknown))}"
                )
            for name, value in changes.items():
                valid, rule = RECIPE_RULES[name]
                if not valid(value):
                    raise ValueError(
                        f"{self.description}: {where} sets {name}={value!r}; {name} must be {rule}"
                    )
        object.__setattr__(
            self,
            "dataset_recipes",
            MappingProxyType(
                {d: MappingProxyType(dict(c)) for d, c in self.dataset_recipes.items()}
            ),
        )

    def on(self, dataset: str) -> TargetSpec:
        """This target with its recipe (epochs, learning rate, batch size, memory layout) on
        ``dataset``."""
        return replace(self, **self.dataset_recipes.get(dataset, {}), dataset_recipes={})


#: what a target's recipe on another dataset may change (:attr:`TargetSpec.dataset_recipes`)
RECIPE_FIELDS = ("epochs", "lr", "batch_size", "channels_last")


def _whole_positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


#: what each recipe field must be: a test and the rule it checks
RECIPE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (_whole_positive, "a whole number >= 1"),
    "batch_size": (_whole_positive, "a whole number >= 1"),
    "lr": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf,
        "a finite number > 0",
    ),
    "channels_last": (lambda v: isinstance(v, bool), "True or False"),
}


TARGETS: dict[str, TargetSpec] = {
    "mlp_leaky": TargetSpec(
        lambda: _mlp([784, 64, 64, 10], _leaky, orthogonal=True),
        "leaky-ReLU MLP 784-64-64-10",
        epochs=8,
        lr=3e-3,
        block_ends=(3, 5, 6),
        chain_steps=1200,
    ),
    "mlp_leaky_square": TargetSpec(
        lambda: _mlp([784, 784, 784, 10], _leaky, orthogonal=True),
        "leaky-ReLU MLP 784-784-784-10 (square hidden weights: invertible up to the last hidden "
        "layer)",
        epochs=3,
    ),
    "mlp_sigmoid": TargetSpec(
        lambda: _mlp([784, 100, 100, 10], nn.Sigmoid),
        "sigmoid MLP 784-100-100-10",
        epochs=8,
        lr=5e-3,
        block_ends=(3, 5, 6),
        chain_steps=1200,
    ),
    "mlp_relu": TargetSpec(
        lambda: _mlp([784, 500, 10], nn.ReLU),
        "ReLU MLP 784-500-10",
        epochs=5,
        lr=2e-3,
        block_ends=(3, 4),
        chain_steps=1200,
    ),
    "cnn_pool": TargetSpec(
        _cnn_pool,
        "CNN: 2x(conv5-ReLU-maxpool) + 2 dense",
        epochs=3,
        lr=2e-3,
        block_ends=(3, 6, 9, 10),
        chain_steps=600,
        # channels-last: an epoch 1.39 times faster on this 2-core CPU (0.79 against 1.10 s on
        # 8 000 images, the fastest of 4 interleaved runs each; the judge gains nothing: 2.80
        # against 2.70 s)
        channels_last=True,
        # 3 epochs: 89.3 % on Fashion-MNIST, 10: 91.9 %
        dataset_recipes={"fashion_mnist": {"epochs": 10}},
    ),
    "cnn_nopool": TargetSpec(
        _cnn_nopool,
        "CNN: 2x(stride-2 conv4-leakyReLU) + 2 dense, no pooling",
        epochs=4,
        lr=2e-3,
        block_ends=(2, 4, 7, 8),
        chain_steps=600,
        dataset_recipes={"fashion_mnist": {"epochs": 15}},  # 4: 89.3 %, 15: 91.2 %
    ),
    "lenet_he": TargetSpec(
        _lenet_he,
        "He et al.'s LeNet: conv5(8)-ReLU-pool-conv5(16)-ReLU-pool + 256-120-84-10, unpadded",
        epochs=3,
        lr=2e-3,
        block_ends=(1, 5, 12),
        chain_steps=600,
        dataset_recipes={"fashion_mnist": {"epochs": 10}},
    ),
    "judge_cnn": TargetSpec(
        _judge_cnn,
        "independent judge (never inverted): CNN 3x(conv3-ReLU), 2 max-pools, 1 dense",
        epochs=3,
        lr=2e-3,
        seed=1,
        # 16-32-32 channels, not 32-64-64: a quarter of the multiply-adds; on one thread of this
        # 2-core CPU, beside another training, MNIST 3 epochs 36 against 81 s (98.97 against
        # 99.16 %), Fashion-MNIST 8 epochs 70 s, 91.89 %, against 6 epochs of the wider one 134 s,
        # 92.27 % (docs/design.md, "Time budgets"). Fashion-MNIST in batches of 64, channels-last.
        dataset_recipes={"fashion_mnist": {"epochs": 8, "batch_size": 64, "channels_last": True}},
    ),
}


#: Least test accuracy of each target per dataset (notebook 01's gate; 07 holds the judge to it).
#: MNIST: what the recipes reach, with a margin. Fashion-MNIST: its README's benchmarks (an MLP
#: 256-128-100 reaches 88.3 %, two conv layers with pooling 91.6 %), a point below for the MLPs, and
#: 91 % for the CNNs and the judge.
ACCURACY_FLOORS: dict[str, dict[str, float]] = {
    "mnist": {
        "mlp_leaky": 0.97,
        "mlp_leaky_square": 0.97,
        "mlp_relu": 0.97,
        "mlp_sigmoid": 0.955,
        "cnn_pool": 0.985,
        "cnn_nopool": 0.985,
        "lenet_he": 0.98,
        "judge_cnn": 0.985,
    },
    "fashion_mnist": {
        "mlp_leaky": 0.87,
        "mlp_leaky_square": 0.87,
        "mlp_relu": 0.87,
        "mlp_sigmoid": 0.87,
        "cnn_pool": 0.91,
        "cnn_nopool": 0.91,
        "lenet_he": 0.88,
        "judge_cnn": 0.91,
    },
}


def target_names() -> list[str]:
    """Names of all registered targets, in registry order."""
    return list(TARGETS)


def get_spec(name: str) -> TargetSpec:
    """The :class:`TargetSpec` registered as ``name``; a clear error for an unknown name."""
    try:
        return TARGETS[name]
    except KeyError:
        raise KeyError(f"Unknown target {name!r}; known targets: {', '.join(TARGETS)}") from None


#: the registry's own targets: :func:`register_target` adds others beside them, never over them
BUILT_IN = frozenset(TARGETS)


def register_target(name: str, spec: TargetSpec) -> None:
    """Register ``spec`` as target ``name`` for this process (an audited network,
    :mod:`reversenet_utils.audit`): every function that takes a target by name takes it. A name
    registered before is replaced; a built-in target's is refused."""
    if not isinstance(name, str) or not name or name in BUILT_IN:
        raise ValueError(
            f"a registered target needs a name of its own, not {name!r} (the built-in targets: "
            f"{', '.join(sorted(BUILT_IN))})"
        )
    if not isinstance(spec, TargetSpec):
        raise TypeError(f"register_target needs a TargetSpec, got {type(spec).__name__}")
    TARGETS[name] = spec


def build_target(name: str) -> nn.Sequential:
    """A freshly initialised target by name (see :data:`TARGETS`)."""
    return get_spec(name).build()


class VAE(nn.Module):
    """The inversed-VAE experiment's VAE: bias-free ``Linear`` layers, ``Tanh``, ``Sigmoid`` output.

    Encoder 784-512-256 then two heads (mean and log-variance of a ``latent``-dimensional
    Gaussian); decoder ``latent``-256-512-784. Without biases and with invertible activations, the
    decoder is a chain that ``invert.invert`` can run backwards.
    """

    def __init__(self, latent: int = 16) -> None:
        super().__init__()
        if latent < 1:
            raise ValueError(f"latent size must be positive, got {latent}")
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 512, bias=False),
            nn.Tanh(),
            nn.Linear(512, 256, bias=False),
            nn.Tanh(),
        )
        self.mean = nn.Linear(256, latent, bias=False)
        self.log_var = nn.Linear(256, latent, bias=False)
        self.decoder = nn.Sequential(
            nn.Linear(latent, 256, bias=False), nn.Tanh(),
            nn.Linear(256, 512, bias=False), nn.Tanh(),
            nn.Linear(512, 784, bias=False), nn.Sigmoid(),
        )  # fmt: skip

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x)."""
        h = self.encoder(x)
        return self.mean(h), self.log_var(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (N, 1, 28, 28) in (0, 1) from latents (N, latent)."""
        return self.decoder(z).reshape(len(z), 1, 28, 28)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction from a reparameterised sample, with the mean and log-variance."""
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        return self.decode(z), mu, log_var
