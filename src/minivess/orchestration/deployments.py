"""Deployments and work pools for a team Prefect server (``minivess flows deploy``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
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


def deploy_all(prefect_yaml: Path, name: str | None = None) -> Iterator[str]:
    """Create the work pools (idempotent) and register the deployments; yields progress lines."""
    project = load_project(prefect_yaml)
    used = {str((d.get("work_pool") or {}).get("name")) for d in project.get("deployments") or []}
    for pool in sorted(used):
        kind, template = WORK_POOLS[pool]
        path = config_dir() / "prefect" / template
        _prefect("work-pool", "create", pool, "--type", kind, "--base-job-template", str(path),
                 "--overwrite")  # fmt: skip
        yield f"work pool {pool} ({kind}) ready"
    target = ["--name", name] if name else ["--all"]
    _prefect("--no-prompt", "deploy", *target, "--prefect-file", str(prefect_yaml))
    yield f"deployed {name or 'all deployments'} from {prefect_yaml}"
