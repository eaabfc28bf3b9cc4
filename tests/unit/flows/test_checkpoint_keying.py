"""The train flow keys each cell's checkpoints by SkyPilot's task id on a managed job (a recovered
spot job finds them again), else by the plan hash (rerunning an unchanged plan resumes)."""

from __future__ import annotations

from pathlib import Path

from minivess.experiment import load_experiment
from minivess.orchestration.train_flow import grid
from minivess.settings import load_settings
from tests.fixtures.tiny import tiny_plan


def _dirs(tmp_path: Path, environ: dict[str, str]) -> list[str]:
    exp = load_experiment("default")
    cells = grid(exp, tiny_plan(), load_settings(tmp_path / "ws", environ=environ))
    return [c.checkpoint_dir for c in cells]


def test_a_managed_job_keys_checkpoints_by_its_task_id(tmp_path: Path) -> None:
    plan_hash = tiny_plan().plan_hash
    root = (tmp_path / "ws" / "checkpoints").resolve()
    on_job = _dirs(tmp_path, {"SKYPILOT_TASK_ID": "sky-managed-7"})
    local = _dirs(tmp_path, {})
    assert on_job and len(on_job) == len(local)
    assert all(d.startswith(f"{root}/default/sky-managed-7/") for d in on_job)
    assert all(d.startswith(f"{root}/default/{plan_hash}/") for d in local)
    assert len(set(on_job)) == len(on_job)  # one folder per (loss, fold) cell
