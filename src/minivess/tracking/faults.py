"""Bounded, explained failure when the MLflow tracking server goes away mid-run.

* :func:`http_limits` bounds MLflow's own HTTP retries for the duration of a run, so a dead or
  stalled server costs at most ``retry_budget_s`` seconds (MLflow's defaults: 7 retries with
  backoff factor 2 and a 120 s timeout, about 10 minutes), then MLflow raises. A value the user
  exported (``MLFLOW_HTTP_REQUEST_*``) is never overridden.
* A run whose end could not be recorded (the server was down) is written to a small journal in
  the workspace; :func:`replay_pending` marks it FAILED/KILLED on the next connection, so no run
  stays RUNNING forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: MLflow's own retry settings (read by mlflow from the environment on every request).
ENV_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
ENV_BACKOFF_FACTOR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
ENV_BACKOFF_JITTER = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"
ENV_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
#: Retries within the budget; backoff 1, 2, 4 s between them.
BUDGET_RETRIES = 3
#: Journal of runs whose end could not be recorded, relative to the workspace.
PENDING_FILE = Path("tracking") / "pending-run-ends.json"


def retry_limits(budget_s: float, retries: int = BUDGET_RETRIES) -> dict[str, str]:
    """MLflow HTTP settings whose worst case (every attempt timing out) fits ``budget_s``.

    Worst case = (retries + 1) × timeout + backoff (1 + 2 + ... s) + jitter (≤ 1 s a retry).

    Example:
        >>> retry_limits(60)
        {'MLFLOW_HTTP_REQUEST_MAX_RETRIES': '3', 'MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR': '1', \
'MLFLOW_HTTP_REQUEST_BACKOFF_JITTER': '1.0', 'MLFLOW_HTTP_REQUEST_TIMEOUT': '12'}
    """
    backoff = sum(2**i for i in range(retries)) + retries  # factor 1, plus jitter
    timeout = max(1, int((budget_s - backoff) // (retries + 1)))
    return {
        ENV_MAX_RETRIES: str(retries),
        ENV_BACKOFF_FACTOR: "1",
        ENV_BACKOFF_JITTER: "1.0",
        ENV_TIMEOUT: str(timeout),
    }


@contextlib.contextmanager
def http_limits(
    budget_s: float, retries: int = BUDGET_RETRIES, *, override: bool = False
) -> Iterator[None]:
    """Scope :func:`retry_limits` over the block (MLflow reads them only from the environment).

    The variables are set only where the user has not set them (``override``: set them all,
    for a last quick call inside an outer scope), and restored on exit; this is the one place
    minivess touches the environment, and only for the block's duration.
    """
    from minivess.settings import process_environ, scoped_environ

    limits = retry_limits(budget_s, retries)
    user = process_environ()
    with scoped_environ({k: v for k, v in limits.items() if override or k not in user}):
        yield


def unreachable_message(uri: str, budget_s: float, run_id: str | None, detail: str) -> str:
    """The one line shown when the tracking server stopped answering."""
    run = f"; run {run_id} is marked ended on the next connection" if run_id else ""
    return (
        f"MLflow tracking server {uri} stopped answering (gave up after ~{budget_s:g} s: "
        f"{detail}){run}; restart it (`minivess stack up`) or fix MLFLOW_TRACKING_URI / "
        "mlflow.tracking_uri in storage.yaml, then rerun (training resumes from its checkpoint)"
    )


def record_pending(workspace: Path, uri: str, run_id: str, status: str) -> None:
    """Remember that ``run_id`` at ``uri`` must end with ``status`` (the server was down)."""
    path = Path(workspace) / PENDING_FILE
    entries = _read(path)
    entries.append({"tracking_uri": uri, "run_id": run_id, "status": status})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, path)


def replay_pending(workspace: Path, uri: str, client) -> list[str]:
    """End the journaled runs of ``uri`` that are still RUNNING; returns their ids."""
    from mlflow.exceptions import MlflowException

    path = Path(workspace) / PENDING_FILE
    entries = _read(path)
    if not entries:
        return []
    done, keep = [], []
    for entry in entries:
        if entry.get("tracking_uri") != uri:
            keep.append(entry)
            continue
        try:
            if client.get_run(entry["run_id"]).info.status == "RUNNING":
                client.set_terminated(entry["run_id"], status=entry["status"])
                log.warning(
                    "MLflow run %s (left RUNNING while %s was down) marked %s",
                    entry["run_id"],
                    uri,
                    entry["status"],
                )
            done.append(entry["run_id"])
        except MlflowException as err:
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(err, "error_code", "")):
                continue  # the run is gone: nothing to end
            keep.append(entry)
    if keep:
        path.write_text(json.dumps(keep, indent=1))
    else:
        path.unlink(missing_ok=True)
    return done


def _read(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []
