"""Fixtures for the launcher's unit tests: hand-built plans, render contexts, shipped targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.config import config_dir
from minivess.launch.render import RenderContext
from minivess.launch.targets import TargetConfig, load_target
from minivess.planning.plan import TrainingPlan
from tests.fixtures.plans import gpu_plan

TARGETS = ("local", "ssh", "spot", "serve")


@pytest.fixture
def plan() -> TrainingPlan:
    return gpu_plan()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A stand-in project dir (the synced workdir) with a data folder."""
    (tmp_path / "project").mkdir()
    (tmp_path / "data" / "raw").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def ctx(project: Path) -> RenderContext:
    return RenderContext(
        model="dynunet",
        workdir=project / "project",
        data_dir=project / "data",
        epochs=1,
        checkpoint_uri="s3://lab-bucket/checkpoints",
        local_checkpoint_dir=project / "ckpt",
    )


@pytest.fixture
def shipped() -> dict[str, TargetConfig]:
    """The target configs shipped in configs/targets/."""
    assert (config_dir() / "targets").is_dir()
    return {name: load_target(name) for name in TARGETS}


def with_changes(target: TargetConfig, **changes: object) -> TargetConfig:
    """A copy of ``target`` re-validated with ``changes``."""
    return TargetConfig.model_validate({**target.model_dump(), **changes})


@pytest.fixture
def plan_with():
    """Factory: a plan with the given cloud candidates."""
    return gpu_plan


@pytest.fixture
def changed():
    """Factory: a target copy with changed fields."""
    return with_changes
