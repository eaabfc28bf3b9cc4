"""prefect.yaml: every deployment loads a real flow, names a known pool, and pools are usable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.orchestration.deployments import WORK_POOLS, base_job_template, load_project

REPO = Path(__file__).parents[3]


def test_every_deployment_entrypoint_is_a_prefect_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.flows import Flow, load_flow_from_entrypoint

    monkeypatch.chdir(REPO)
    project = load_project(REPO / "prefect.yaml")
    names = {d["name"] for d in project["deployments"]}
    assert {"data", "train", "analysis", "deploy", "experiment", "poll-data"} <= names
    for dep in project["deployments"]:
        assert isinstance(load_flow_from_entrypoint(dep["entrypoint"]), Flow), dep["name"]


def test_pools_cover_process_docker_and_a_gpu_kubernetes_job() -> None:
    assert {kind for kind, _ in WORK_POOLS.values()} == {"process", "docker", "kubernetes"}
    k8s = base_job_template("minivess-k8s-gpu")
    [container] = k8s["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" in container["resources"]["limits"]
    for pool in WORK_POOLS:
        template = base_job_template(pool)
        assert set(template) == {"job_configuration", "variables"}
        placeholders = {
            name
            for text in _strings(template["job_configuration"])
            for name in re.findall(r"\{\{\s*(\w+)\s*\}\}", text)
        }
        assert placeholders <= set(template["variables"]["properties"]), pool


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def test_unknown_work_pool_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    bad = tmp_path / "prefect.yaml"
    bad.write_text("deployments:\n  - name: x\n    work_pool: {name: gpu-pool}\n")
    with pytest.raises(ConfigError, match="unknown work pool 'gpu-pool'; known: minivess-process"):
        load_project(bad)
