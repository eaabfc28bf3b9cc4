"""``TrainingPlan.load`` rejects unknown keys and plan schemas it does not read, naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.planning.plan import PLAN_SCHEMA_VERSION, TrainingPlan
from tests.fixtures.tiny import tiny_plan


def test_round_trip(tmp_path: Path) -> None:
    plan = tiny_plan()
    assert TrainingPlan.load(plan.save(tmp_path / "plan.json")) == plan


def test_an_unknown_key_is_an_error_with_a_hint(tmp_path: Path) -> None:
    path = tiny_plan().save(tmp_path / "plan.json")
    data = json.loads(path.read_text())
    data["batch_sise"] = data.pop("batch_size")
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"plan\.json: unknown field 'batch_sise'.*'batch_size'"):
        TrainingPlan.load(path)


@pytest.mark.parametrize("version", [PLAN_SCHEMA_VERSION + 1, 0, None])
def test_a_schema_version_it_does_not_read_is_refused(tmp_path: Path, version) -> None:
    path = tiny_plan().save(tmp_path / "plan.json")
    data = json.loads(path.read_text())
    data["schema_version"] = version
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"plan\.json: field 'schema_version'.*minivess plan"):
        TrainingPlan.load(path)
