"""Published numbers this study compares itself with, each with where it was reported: their one
home.

Notebooks, their conclusions and README read the anchors here; none is typed anywhere else. An
anchor is compared on the same ground where one exists (the same architecture, split and data), and
the comparison says how close the ground is. Verdicts against an anchor come from
:func:`reversenet_utils.metrics.verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Anchor",
    "TARGET_ACCURACY",
    "LOGIT_RECLASS",
    "HE_2019_SPLIT_PSNR",
    "HE_2019_SPLIT_SSIM",
    "anchor_value",
    "SOURCES",
]

#: the works cited, by short key
SOURCES = {
    "seed_writeups": "the original write-ups this study reproduces (../shared/seeds/)",
    "zero_shot_reimpl": (
        "a public MNIST re-implementation of 'Deep Neural Networks are Surprisingly Reversible'"
    ),
    "fashion_readme": "Fashion-MNIST's README, benchmark list (Xiao, Rasul and Vollgraf, 2017)",
    "he_2019": (
        "He, Zhang and Lee, 'Model inversion attacks against collaborative inference', ACSAC 2019 "
        "(MNIST LeNet)"
    ),
}


@dataclass(frozen=True)
class Anchor:
    """One published number: its ``value``, the setting in a few words (``what``) and its ``source``
    (a key of :data:`SOURCES`)."""

    value: float
    what: str
    source: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"Anchor source {self.source!r} is not one of {sorted(SOURCES)}")

    @property
    def citation(self) -> str:
        return SOURCES[self.source]


#: test accuracy reported for a target's architecture, per dataset (notebooks 01 and 03)
TARGET_ACCURACY: dict[str, dict[str, Anchor]] = {
    "mnist": {
        "mlp_sigmoid": Anchor(0.9521, "same shape, SGD", "seed_writeups"),
        "cnn_pool": Anchor(0.9888, "same shape", "seed_writeups"),
    },
    "fashion_mnist": {
        "mlp_relu": Anchor(0.883, "MLP 256-128-100", "fashion_readme"),
        "cnn_pool": Anchor(0.916, "2 conv + pooling", "fashion_readme"),
    },
}

#: share of reconstructions from the logits that the target re-classifies as the original (notebook
#: 04): a learned inverse trained on real digits
LOGIT_RECLASS: dict[str, dict[str, Anchor]] = {
    "mnist": {
        "mlp_relu": Anchor(
            0.9769, "784-500-10, learned 10-500-784 inverse, real digits", "zero_shot_reimpl"
        ),
        "cnn_pool": Anchor(
            0.9856, "CNN with max-pooling, learned inverse, real digits", "zero_shot_reimpl"
        ),
    },
}

#: He et al.'s attacks on their own MNIST LeNet (``models.lenet_he``), as notebook 09 names them:
#: split 1 is the raw output of the first convolution, split 2 the second ReLU. Their attackers:
#: rMLE (feature loss plus total variation, from grey), inverse networks trained on the device's
#: training data, on other data of the same distribution and on N(0, 1) noise, and the query-free
#: attacker (optimisation through a shadow device). They scored one test image per class, PSNR at
#: peak 1 and SSIM with ``data_range`` the reconstruction's range (``metrics.
#: ssim_reconstruction_range``).
_HE_2019_ATTACKERS = {
    "rMLE": "rMLE (feature loss + TV) from grey",
    "inverse net, same data": "inverse net, same data",
    "inverse net, other data": "inverse net, same distribution",
    "inverse net, N(0, 1) noise": "inverse net trained on N(0, 1) noise",
    "query-free": "query-free (shadow device)",
}
_HE_2019_SPLITS = {1: "first conv", 2: "second ReLU"}
#: their table: (PSNR, SSIM) per (attacker, split)
_HE_2019_TABLE = {
    ("rMLE", 1): (39.69, 0.997),
    ("inverse net, same data", 1): (39.64, 0.989),
    ("inverse net, other data", 1): (40.72, 0.995),
    ("inverse net, N(0, 1) noise", 1): (14.76, 0.719),
    ("query-free", 1): (17.60, 0.742),
    ("rMLE", 2): (15.10, 0.600),
    ("inverse net, same data", 2): (20.35, 0.733),
    ("inverse net, other data", 2): (20.81, 0.805),
    ("inverse net, N(0, 1) noise", 2): (7.72, 0.431),
    ("query-free", 2): (9.61, 0.498),
}


def _he_2019(column: int) -> dict[tuple[str, int], Anchor]:
    return {
        (who, k): Anchor(row[column], f"{_HE_2019_ATTACKERS[who]}, {_HE_2019_SPLITS[k]}", "he_2019")
        for (who, k), row in _HE_2019_TABLE.items()
    }


HE_2019_SPLIT_PSNR = _he_2019(0)
#: the same attacks' SSIM (their convention: ``data_range`` the reconstruction's range)
HE_2019_SPLIT_SSIM = _he_2019(1)


def anchor_value(table: dict, *keys) -> float | None:
    """The value at ``table[key1][key2]...``, or None where no anchor was published (another
    dataset, target or split)."""
    found = table
    for key in keys:
        if not isinstance(found, dict) or key not in found:
            return None
        found = found[key]
    if not isinstance(found, Anchor):
        raise TypeError(
            f"anchor_value: keys {keys} lead to a {type(found).__name__}, not an Anchor: give "
            f"every key"
        )
    return found.value
