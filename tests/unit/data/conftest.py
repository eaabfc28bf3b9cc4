"""Fixtures of the data area: small synthetic datasets and builders of bad volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.data.synth import synthesize


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default small synthetic dataset (6 volumes), written once per session. Read-only."""
    out = tmp_path_factory.mktemp("mv_small")
    synthesize(out, scale="small", seed=0, progress=False)
    return out


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A fresh 3-volume small dataset that a test may modify."""
    out = tmp_path / "data"
    synthesize(out, scale="small", n_volumes=3, seed=1, progress=False)
    return out
