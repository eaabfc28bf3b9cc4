"""One Prefect test harness for the whole session (its temporary server takes ~15 s to start),
on one xdist worker (the group is set in tests/integration/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from minivess.config import config_dir


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's own test harness, with persisted results kept in a temp dir."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with (
        prefect_test_harness(server_startup_timeout=180),
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}),
    ):
        yield


@pytest.fixture
def tiny_experiment(tmp_path: Path) -> Path:
    """The default experiment, cut to one epoch: what the flows tests run."""
    raw = yaml.safe_load((config_dir() / "experiments" / "default.yaml").read_text())
    raw["name"] = "tiny"
    raw["training"]["epochs"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
