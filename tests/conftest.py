"""Shared fixtures: every test writes into its own temporary project root."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``project_root()`` (artifacts/, results/, assets/, data/) at a fresh temporary
    folder."""
    monkeypatch.setenv("REVERSENET_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture
def real_raw() -> Path:
    """The repository's verified MNIST raw folder (`make data`); skip if it was not fetched."""
    raw = REPO / "data" / "MNIST" / "raw"
    if not (raw / "t10k-labels-idx1-ubyte").is_file():
        pytest.skip("MNIST not fetched: run `make data`")
    return raw


@pytest.fixture
def ctx(tmp_root: Path):
    """An MNIST context on the CPU in the temporary root, as a notebook named ``99_demo`` makes
    it."""
    from reversenet_utils.context import Context

    return Context("mnist", "cpu", tmp_root, "99_demo")
