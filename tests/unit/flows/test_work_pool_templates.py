"""Each work-pool base job template renders, through its own worker package, into a job that runs
Prefect's flow-run command in the project image -- offline, with the workers' real code.

- process: prefect's ProcessWorkerJobConfiguration;
- docker / docker-gpu: prefect-docker's DockerWorkerJobConfiguration and the worker's
  ``_build_container_settings``, then docker-py's own ``_create_container_args`` / ``HostConfig``
  (the request body the engine would get; no engine is needed to build it);
- kubernetes-gpu: prefect-kubernetes' KubernetesWorkerJobConfiguration, and the manifest
  deserialised into the kubernetes client's ``V1Job`` model.
"""

from __future__ import annotations

import asyncio
import shlex
from typing import Any
from uuid import uuid4

import pytest

from minivess.orchestration.deployments import WORK_POOLS, base_job_template

pytest.importorskip("prefect_docker")
pytest.importorskip("prefect_kubernetes")

IMAGE = "registry.lab/minivess:cuda-1"
#: A non-local API URL: the docker worker then adds no host-gateway mapping (which would ask a
#: running engine for its version).
ENV = {"PREFECT_API_URL": "http://prefect.lab:4200/api", "MINIVESS_DATA_DIR": "/data"}
PREFECT_COMMAND = ["prefect", "flow-run", "execute"]


def _pool(kind: str) -> str:
    (name,) = [n for n, (k, t) in WORK_POOLS.items() if t == f"{kind}.json"]
    return name


class _NoApi:
    """Stands in for the Prefect client: the templates reference no block or variable, so
    rendering must never call the API (any call fails the test)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"rendering the template called the Prefect API ({name})")


def _render(config_cls: Any, kind: str, values: dict[str, Any]) -> Any:
    from prefect.client.schemas.objects import FlowRun

    template = base_job_template(_pool(kind))
    config = asyncio.run(
        config_cls.from_template_and_values(template, {"env": ENV, **values}, client=_NoApi())
    )
    flow_run = FlowRun(id=uuid4(), flow_id=uuid4(), name="brave-otter")
    config.prepare_for_flow_run(flow_run)
    return config


def test_every_pool_has_a_template_of_its_worker_type() -> None:
    kinds = {name: kind for name, (kind, _) in WORK_POOLS.items()}
    assert sorted(kinds.values()) == ["docker", "docker", "kubernetes", "process"]
    for name in WORK_POOLS:
        assert "job_configuration" in base_job_template(name)


def test_process_pool_runs_the_flow_run_command() -> None:
    from prefect.workers.process import ProcessJobConfiguration

    config = _render(ProcessJobConfiguration, "process", {})
    assert shlex.split(config.command)[-2:] == ["-m", "prefect.engine"]  # the process worker's
    assert config.env["PREFECT__FLOW_RUN_ID"]


def _docker_create_args(kind: str) -> tuple[Any, dict[str, Any]]:
    from docker.models.containers import _create_container_args
    from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

    config = _render(DockerWorkerJobConfiguration, kind, {"image": IMAGE})
    worker = DockerWorker.__new__(DockerWorker)  # only the settings builder, no API client
    settings = worker._build_container_settings(None, config)
    args = _create_container_args({**settings, "version": "1.45"})
    return config, args


def test_docker_pool_runs_the_flow_run_command_in_the_image() -> None:
    _config, args = _docker_create_args("docker")
    assert args["image"] == IMAGE
    assert shlex.split(args["command"]) == PREFECT_COMMAND
    assert args["environment"]["MINIVESS_DATA_DIR"] == "/data"
    assert not args["host_config"].get("DeviceRequests")


def test_docker_gpu_pool_requests_every_gpu() -> None:
    _config, args = _docker_create_args("docker-gpu")
    assert shlex.split(args["command"]) == PREFECT_COMMAND
    (request,) = args["host_config"]["DeviceRequests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert request["Driver"] == "nvidia"
    assert args["host_config"]["ShmSize"] == 16 * 2**30


def test_kubernetes_gpu_pool_renders_a_valid_job_requesting_gpus() -> None:
    from kubernetes.client import ApiClient
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    config = _render(KubernetesWorkerJobConfiguration, "kubernetes", {"image": IMAGE,
                                                                     "gpu_count": 2})  # fmt: skip
    manifest = config.job_manifest
    job = ApiClient()._ApiClient__deserialize(manifest, "V1Job")  # the client's own model
    (container,) = job.spec.template.spec.containers
    assert container.image == IMAGE
    assert container.args == PREFECT_COMMAND  # args keep the image's entrypoint script
    assert container.resources.limits["nvidia.com/gpu"] == "2"
    assert container.resources.requests["nvidia.com/gpu"] == "2"
    env = {e.name: e.value for e in container.env}
    assert env["MINIVESS_DATA_DIR"] == "/data" and env["PREFECT__FLOW_RUN_ID"]
