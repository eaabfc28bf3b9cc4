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
    assert "nvidia" in str(base_job_template("minivess-docker-gpu")["variables"])
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


def _project() -> dict:
    return load_project(REPO / "prefect.yaml")


def test_deploy_refuses_each_unset_variable_with_its_fix() -> None:
    from minivess.orchestration.deployments import check_variables

    with pytest.raises(ConfigError) as err:
        check_variables(_project(), {})
    msg = str(err.value)
    assert "MINIVESS_IMAGE is unset; needed by train, train-docker-gpu, deploy" in msg
    assert "export MINIVESS_IMAGE=<registry>/minivess:<tag>" in msg
    assert "MINIVESS_DATA_DIR is unset; needed by poll-data" in msg
    assert "MINIVESS_GIT_URL is unset" in msg and "git remote get-url origin" in msg
    full = {"MINIVESS_IMAGE": "r/m:1", "MINIVESS_DATA_DIR": "/d", "MINIVESS_GIT_URL": "g"}
    check_variables(_project(), full)  # nothing missing: no error
    with pytest.raises(ConfigError, match="MINIVESS_DATA_DIR is unset; needed by poll-data"):
        check_variables(_project(), {**full, "MINIVESS_DATA_DIR": ""})


def test_one_deployment_needs_only_its_own_variables() -> None:
    from minivess.orchestration.deployments import check_variables, required_variables

    assert set(required_variables(_project(), "data")) == {"MINIVESS_GIT_URL"}
    assert set(required_variables(_project(), "deploy")) == {"MINIVESS_IMAGE"}
    check_variables(_project(), {"MINIVESS_IMAGE": "r/m:1"}, "deploy")
    with pytest.raises(ConfigError, match=r"no deployment named 'trian' in prefect\.yaml; known"):
        check_variables(_project(), {}, "trian")


def test_deployments_never_pull_from_the_deployers_path() -> None:
    project = _project()
    for dep in project["deployments"]:
        pull = dep.get("pull", project["pull"])
        (step,) = pull
        ((kind, args),) = step.items()
        if dep["work_pool"]["name"] == "minivess-process":
            assert kind == "prefect.deployments.steps.git_clone", dep["name"]
            assert args["repository"] == "{{ $MINIVESS_GIT_URL }}"
        else:  # image pools: the code baked into the image
            assert kind == "prefect.deployments.steps.set_working_directory", dep["name"]
            assert args["directory"] == "/opt/minivess"


def test_flows_deploy_cli_refuses_before_touching_prefect(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIVESS_")}
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # nothing listens: must not be reached
    proc = subprocess.run(
        [sys.executable, "-m", "minivess", "flows", "deploy", "--prefect-yaml",
         str(REPO / "prefect.yaml")],
        capture_output=True, text=True, env=env, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "MINIVESS_IMAGE is unset" in out and "Fix:" in out
    assert "work pool" not in out


def test_a_work_pool_on_an_unreachable_server_is_one_line_naming_it() -> None:
    """The pools go through Prefect's client in-process: a server that is down is a
    MinivessError naming the pool and the server, not an httpx traceback."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from minivess.errors import MinivessError
    from minivess.orchestration.deployments import create_work_pool
    from tests.fixtures.ports import closed_port

    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/api"
        with temporary_settings({PREFECT_API_URL: url}), pytest.raises(MinivessError) as err:
            create_work_pool("minivess-process")
    message = str(err.value)
    assert "minivess-process (process)" in message and url in message
    assert "\n" not in message
