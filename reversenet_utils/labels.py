"""The names of methods, chains and threats, with their display order: their one home.

Tables, results rows, checkpoint files, figures, the explorer and README use these strings; a
notebook or script imports them rather than typing them, so that a renamed method cannot leave a
stale copy behind.
"""

from __future__ import annotations

__all__ = [
    "REGIMES",
    "SCHEDULES",
    "chain_label",
    "PINV",
    "PINV_INDICES",
    "PRIOR",
    "INVERSE_WEIGHTS",
    "OPTIMISATION",
    "MATCHING",
    "REGULARISED",
    "HYBRID",
    "CHAIN_REAL",
    "CHAIN_NOISE",
    "METHOD_ORDER",
    "THREATS",
    "GAUSSIAN_NOISE",
    "RMLE",
    "QUERY_FREE",
    "HE_ATTACKERS",
]

#: the training inputs of an inverse chain: the dataset's images, structured noise, inputs
#: synthesized from the target
REGIMES = ("real", "noise", "synthesized")
#: N(0, 1) pixels: the training inputs of He et al.'s noise-trained inverse network (notebook 09's
#: anchor table); a baseline of ``progressive.regime_sampler``, not one of notebook 04's regimes
GAUSSIAN_NOISE = "gaussian"
#: how a chain's budget is spent: depth by depth, or all blocks from the first step
SCHEDULES = ("progressive", "joint")


def chain_label(regime: str, schedule: str = "progressive", unpool: bool = False) -> str:
    """The one name of a chain, used in tables, results rows and checkpoint files: ``"progressive,
    real"``, ``"joint, real"``, ``"progressive, noise"``, ``"progressive, real, unpool"``."""
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be 'progressive' or 'joint', got {schedule!r}")
    return f"{schedule}, {regime}" + (", unpool" if unpool else "")


PINV = "pinv"  #: Moore-Penrose pseudo-inverse, layer by layer (notebook 02)
PINV_INDICES = (
    "pinv, pooling indices"  #: the same behind max-pooling, given the pooling indices (privileged)
)
#: the pre-image closest to the training images' mean under their covariance (ridge)
PRIOR = "prior pre-image"
INVERSE_WEIGHTS = "inverse weights"  #: learned inverse matrices of the sigmoid MLP (notebook 03)
CHAIN_REAL = chain_label("real")  #: progressive inverse chain trained on real images (notebook 04)
CHAIN_NOISE = chain_label("noise")  #: the zero-shot chain: trained on structured noise only
OPTIMISATION = "optimisation"  #: Adam on the input with a TV prior (rMLE)
MATCHING = "feature matching (L-BFGS)"  #: L-BFGS on the input, no prior, from grey
REGULARISED = "feature matching + prior (L-BFGS)"  #: the same with a TV and norm prior
HYBRID = "hybrid (learned + L-BFGS)"  #: the real-image chain's output, then a few L-BFGS iterations

#: every inversion method, in the order of notebook 07's and README's tables
METHOD_ORDER = (
    PINV,
    PINV_INDICES,
    PRIOR,
    INVERSE_WEIGHTS,
    CHAIN_REAL,
    CHAIN_NOISE,
    OPTIMISATION,
    MATCHING,
    REGULARISED,
    HYBRID,
)

#: the threats of notebook 09, in the order of its tables (the shifted device's threat is these on
#: other inputs)
THREATS = (
    "optimisation",
    "inverse net, same data",
    "inverse net, other data",
    "inverse net, data-free",
    "analytic",
)

RMLE = "rMLE"  #: He et al.'s white-box attack: feature matching plus total variation, from grey
QUERY_FREE = "query-free"  #: He et al.'s attacker without the device: optimisation through a shadow
#: the attackers of He et al.'s table on their LeNet (notebook 09), in its order; the last is this
#: study's data-free chain (structured noise), which their table has no row for
HE_ATTACKERS = (
    RMLE,
    "inverse net, same data",
    "inverse net, other data",
    "inverse net, N(0, 1) noise",
    QUERY_FREE,
    "inverse net, data-free",
)
