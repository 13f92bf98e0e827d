"""Claims: what each notebook concludes, derived from its results metrics (and parameters) alone.

One module per notebook whose conclusions are generated here: its findings, its conclusion, README's
headline and its quality gates are functions of the results file, so the notebook, its gates and
README cannot disagree. Each claim is a :class:`Claim`: the sentence it makes, whether it holds, and
the numbers it rests on.

- :mod:`reversenet_utils.claims.zero_shot`: notebook 04, zero-shot progressive inversion.
- :mod:`reversenet_utils.claims.explore`: notebook 08, the explorer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Claim", "GateFailure", "check_gates"]


@dataclass(frozen=True)
class Claim:
    """A claim: ``text`` (the sentence with its numbers), ``holds`` (whether the numbers support
    it)."""

    text: str
    holds: bool


class GateFailure(AssertionError):
    """One or more quality gates failed; the message lists each with the numbers it rests on."""


def check_gates(gates: Iterable[Claim]) -> list[Claim]:
    """Every gate, checked: the list if all hold, else :class:`GateFailure` naming each that does
    not."""
    gates = list(gates)
    failed = [g.text for g in gates if not g.holds]
    if failed:
        raise GateFailure(
            f"{len(failed)} of {len(gates)} quality gates failed:\n- " + "\n- ".join(failed)
        )
    return gates
