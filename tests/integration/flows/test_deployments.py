"""`minivess flows deploy` against a real Prefect server: pools, deployments, schedule, trigger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[3]


def test_deploy_creates_pools_deployments_schedule_and_event_trigger(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from minivess.orchestration.deployments import WORK_POOLS, base_job_template, deploy_all

    # `prefect deploy` runs as a subprocess: point it at the harness's server.
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    monkeypatch.setenv("MINIVESS_GIT_URL", "https://git.lab.example/minivess.git")
    monkeypatch.setenv("MINIVESS_IMAGE", "registry.example/minivess:test")
    monkeypatch.setenv("MINIVESS_DATA_DIR", "/lab/data/minivess")
    monkeypatch.chdir(REPO)
    lines = list(deploy_all(REPO / "prefect.yaml"))
    assert lines[-1].startswith("deployed all")

    async def read():
        async with get_client() as client:
            return (
                await client.read_work_pools(),
                await client.read_deployments(),
                await client.read_automations(),
            )

    pools, deployments, automations = asyncio.run(read())
    assert {(p.name, p.type) for p in pools} >= {(n, k) for n, (k, _) in WORK_POOLS.items()}
    for p in pools:  # each with its shipped base job template (configs/prefect/*.json)
        assert p.base_job_template == base_job_template(p.name), p.name
    by_name = {d.name: d for d in deployments}
    assert {"data", "train", "analysis", "deploy", "experiment", "poll-data"} <= set(by_name)
    assert by_name["train"].work_pool_name == "minivess-k8s-gpu"
    assert len(by_name["poll-data"].schedules) == 1
    assert any("minivess.data.changed" in str(a.trigger) for a in automations)
