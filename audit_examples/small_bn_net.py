"""An example network to audit (README, "Audit your own model"): not one of the study's targets.

A small CNN with what the study's own targets lack: batch normalisation, average pooling (plain
and adaptive), an ELU, and sizes that do not halve (28 -> 25 -> 12 -> 5 -> 3). Audit it with

    make audit MODEL=audit_examples/small_bn_net.py:build SPLIT=8

(8 layers on the device: two blocks of convolution, batch norm, activation and average pooling).
"""

from torch import nn


def build() -> nn.Sequential:
    """The network, freshly initialised: (N, 1, 28, 28) images to 10 logits."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 4),  # 28 -> 25
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AvgPool2d(2),  # 25 -> 12
        nn.Conv2d(6, 12, 3, stride=2),  # 12 -> 5
        nn.BatchNorm2d(12),
        nn.ELU(),
        nn.AdaptiveAvgPool2d(3),  # 5 -> 3
        nn.Flatten(),
        nn.Linear(108, 48),
        nn.ReLU(),
        nn.Linear(48, 10),
    )
