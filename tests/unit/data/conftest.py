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


@pytest.fixture(autouse=True)
def _profile_cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own profiler cache (never the user's ~/.cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MINIVESS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def bad_dataset(tmp_path: Path) -> Path:
    """Two good small volumes, a squeezable 4D volume, and every broken case of BAD_CASES."""
    from data_badfiles import BAD_CASES, singleton_4d

    root = tmp_path / "bad"
    synthesize(root, scale="small", n_volumes=2, seed=2, progress=False)
    for name, (build, _) in BAD_CASES.items():
        build(root, name)
    singleton_4d(root, "ok4d")
    (root / "raw" / "readme.txt").write_text("not a volume")
    return root
