"""Deployments and work pools for a team Prefect server (``minivess flows deploy``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from minivess.config import config_dir, read_yaml
from minivess.errors import ConfigError, MinivessError

#: Work pool name -> (Prefect worker type, base job template in configs/prefect/).
WORK_POOLS: dict[str, tuple[str, str]] = {
    "minivess-process": ("process", "process.json"),
    "minivess-docker": ("docker", "docker.json"),
    "minivess-docker-gpu": ("docker", "docker-gpu.json"),
    "minivess-k8s-gpu": ("kubernetes", "kubernetes.json"),
}


def load_project(prefect_yaml: Path) -> dict[str, Any]:
    """Read ``prefect.yaml``, checking every deployment names a known work pool."""
    project = read_yaml(prefect_yaml)
    for dep in project.get("deployments") or []:
        pool = (dep.get("work_pool") or {}).get("name")
        if pool not in WORK_POOLS:
            raise ConfigError(
                f"{prefect_yaml}: deployment '{dep.get('name')}' uses unknown work pool "
                f"'{pool}'; known: {', '.join(WORK_POOLS)}."
            )
    return project


#: Variables prefect.yaml reads at deploy time -> (what it is for, how to set it).
DEPLOY_VARIABLES: dict[str, tuple[str, str]] = {
    "MINIVESS_IMAGE": (
        "the project image the docker / kubernetes pools run",
        "build and push it (docs/flows.md), then export MINIVESS_IMAGE=<registry>/minivess:<tag>",
    ),
    "MINIVESS_GIT_URL": (
        "the repository the process worker clones",
        "export MINIVESS_GIT_URL=$(git remote get-url origin)",
    ),
    "MINIVESS_DATA_DIR": (
        "the dataset the poll-data deployment watches",
        "export MINIVESS_DATA_DIR=/path/to/dataset (as the worker sees it)",
    ),
}
_ENV_REF = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


def _env_refs(node: Any) -> set[str]:
    if isinstance(node, str):
        return set(_ENV_REF.findall(node))
    if isinstance(node, dict):
        return {v for item in node.values() for v in _env_refs(item)}
    if isinstance(node, list):
        return {v for item in node for v in _env_refs(item)}
    return set()


def required_variables(project: dict[str, Any], name: str | None = None) -> dict[str, list[str]]:
    """``$VAR`` references of the deployments to register -> the deployments that need them.

    A deployment needs what its own fields (pool job variables, parameters) reference, plus its
    pull steps: its own ``pull``, else the project's.
    """
    needed: dict[str, list[str]] = {}
    for dep in project.get("deployments") or []:
        if name is not None and dep.get("name") != name:
            continue
        pull = dep["pull"] if "pull" in dep else project.get("pull")
        for var in sorted(
            _env_refs({k: v for k, v in dep.items() if k != "pull"}) | _env_refs(pull)
        ):
            needed.setdefault(var, []).append(str(dep.get("name")))
    return needed


def check_variables(
    project: dict[str, Any], environ: Mapping[str, str], name: str | None = None
) -> None:
    """Refuse to deploy when a variable the deployments need is unset, naming each fix.

    Raises:
        ConfigError: one line per missing variable: what needs it, what it is, how to set it.
    """
    if name is not None and name not in {d.get("name") for d in project.get("deployments") or []}:
        known = ", ".join(str(d.get("name")) for d in project.get("deployments") or [])
        raise ConfigError(f"no deployment named '{name}' in prefect.yaml; known: {known}.")
    missing = {
        v: deps for v, deps in required_variables(project, name).items() if not environ.get(v)
    }
    if not missing:
        return
    lines = []
    for var, deps in sorted(missing.items()):
        what, fix = DEPLOY_VARIABLES.get(var, ("read by prefect.yaml", f"export {var}=..."))
        lines.append(f"{var} is unset; needed by {', '.join(deps)} ({what}). Fix: {fix}")
    raise ConfigError("cannot deploy:\n" + "\n".join(lines))


def base_job_template(pool: str) -> dict[str, Any]:
    """The base job template of one of :data:`WORK_POOLS`."""
    return json.loads((config_dir() / "prefect" / WORK_POOLS[pool][1]).read_text())


def _prefect(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise MinivessError(f"`prefect {' '.join(args)}` failed: {' / '.join(tail)}")
    return proc.stdout


def create_work_pool(pool: str) -> None:
    """Create or update one of :data:`WORK_POOLS` with its shipped base job template, through
    Prefect's client in this process (``prefect work-pool create --overwrite`` in a subprocess
    cost a Python start and Prefect's import, ~6 CPU-s, per pool)."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import PrefectHTTPStatusError

    from minivess.orchestration.common import persistent_prefect_api

    kind, _ = WORK_POOLS[pool]
    spec = WorkPoolCreate(name=pool, type=kind, base_job_template=base_job_template(pool))
    try:
        with get_client(sync_client=True) as client:
            client.create_work_pool(spec, overwrite=True)
    except (httpx.HTTPError, PrefectHTTPStatusError) as err:
        server = persistent_prefect_api() or "a temporary Prefect server"
        raise MinivessError(
            f"creating work pool {pool} ({kind}) on {server} failed: {err}; is the server up?"
        ) from err


def deploy_all(
    prefect_yaml: Path, name: str | None = None, environ: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Create the work pools (idempotent) and register the deployments; yields progress lines.

    Args:
        environ: the environment ``prefect deploy`` will see (default: this process's); checked
            by :func:`check_variables` before anything is created.
    """
    from minivess.settings import process_environ

    project = load_project(prefect_yaml)
    check_variables(project, process_environ() if environ is None else environ, name)
    deps = [d for d in project.get("deployments") or [] if name is None or d.get("name") == name]
    used = {str((d.get("work_pool") or {}).get("name")) for d in deps}
    for pool in sorted(used):
        create_work_pool(pool)
        yield f"work pool {pool} ({WORK_POOLS[pool][0]}) ready"
    target = ["--name", name] if name else ["--all"]
    _prefect("--no-prompt", "deploy", *target, "--prefect-file", str(prefect_yaml))
    yield f"deployed {name or 'all deployments'} from {prefect_yaml}"
