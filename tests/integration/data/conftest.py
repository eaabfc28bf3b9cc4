"""Fixtures of the data integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _profile_cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The profiler cache of each test lives in its tmp_path, never in ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MINIVESS_CACHE_DIR", str(cache))
    return cache
