"""New data triggers retraining: a scheduled polling flow, and the event path.

Polling: the flow reads DVC's hash of the tracked data (the ``.dvc`` file, no data read) and, when
it differs from the last one seen, runs the data flow, then the training chain if the profile
changed. Event: ``minivess data changed`` emits ``minivess.data.changed``; the data-flow
deployment's trigger in ``prefect.yaml`` turns it into a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task

from minivess.orchestration import common

#: Name of the Prefect event emitted when a dataset changes.
DATA_CHANGED_EVENT = "minivess.data.changed"
#: Prefix of the event's resource id; the dataset directory name follows.
DATASET_RESOURCE_PREFIX = "minivess.dataset."


def dvc_file_for(data_dir: Path, project: Path | None = None) -> Path:
    """The ``.dvc`` file that tracks ``data_dir`` (``<project>/<relative path>.dvc``)."""
    data_dir = data_dir.resolve()
    project = (project or data_dir.parent).resolve()
    return project / f"{data_dir.relative_to(project)}.dvc"


def poll_key(data_dir: str | Path, project: str | Path | None = None) -> str:
    """Name of the Prefect Variable holding the last polled hash of this dataset: keyed by its
    ``.dvc`` file, so two polled datasets never retrigger each other."""
    import hashlib

    dvc = dvc_file_for(Path(data_dir), Path(project) if project else None)
    return f"{common.POLL_POINTER}_{hashlib.sha256(str(dvc).encode()).hexdigest()[:16]}"


def emit_data_changed(data_dir: Path, project: Path | None = None) -> Any:
    """Emit :data:`DATA_CHANGED_EVENT` for ``data_dir`` with its DVC hash (if tracked).

    Raises:
        ConfigError: no persistent Prefect server is configured: the event would go to a
            temporary server that stops with this command, and nothing would ever see it.
    """
    from prefect.events import emit_event

    from minivess.errors import ConfigError
    from minivess.versioning.dvc import data_hash

    if common.persistent_prefect_api() is None:
        raise ConfigError(
            "minivess data changed: PREFECT_API_URL is not set, so the event would go to a "
            "temporary Prefect server that stops with this command and no deployment would see "
            "it. Start a server (`prefect server start`), `export PREFECT_API_URL="
            "http://127.0.0.1:4200/api` and `minivess flows deploy`; or poll instead: "
            "`minivess flows run poll --data-dir DIR`."
        )

    dvc_file = dvc_file_for(data_dir, project)
    payload = {"data_hash": data_hash(dvc_file)} if dvc_file.is_file() else {}
    resource = {
        "prefect.resource.id": f"{DATASET_RESOURCE_PREFIX}{data_dir.resolve().name}",
        "minivess.data_dir": str(data_dir.resolve()),
    }
    event = emit_event(DATA_CHANGED_EVENT, resource=resource, payload=payload)
    if event is None:
        from minivess.errors import MinivessError

        raise MinivessError("Prefect did not emit the event; is PREFECT_API_URL reachable?")
    return event


@dataclass(frozen=True)
class PollResult:
    """What one poll saw and did."""

    data_hash: str
    changed: bool
    profile_changed: bool
    data_run_id: str | None = None
    chain: Any = None


@task
def tracked_hash(data_dir: str, project: str | None) -> str:
    """DVC's hash of the tracked dataset."""
    from minivess.versioning.dvc import data_hash

    return data_hash(dvc_file_for(Path(data_dir), Path(project) if project else None))


@task
def previous_profile_hash(workspace: str | None, data_dir: str) -> str | None:
    """Dataset hash of the newest data run of ``data_dir`` in MLflow, or None on its first poll
    (runs of other datasets in the same workspace do not count)."""
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking.contract import Flow, Tag

    client = mfa.connect(common.settings_for(workspace))
    mine = str(Path(data_dir).resolve())
    for run in mfa.find_runs(client, Flow.DATA):
        logged = run.data.params.get("data_dir")
        if logged and str(Path(logged).resolve()) == mine:
            return run.data.tags.get(Tag.DATASET_HASH.value)
    return None


@flow(name="minivess-poll-data", log_prints=True)
def poll_data_flow(
    data_dir: str,
    workspace: str | None = None,
    experiment: str | None = None,
    project: str | None = None,
    retrain: bool = True,
) -> PollResult:
    """Run the data flow when the DVC-tracked data changed, then retrain if the profile did."""
    from minivess.orchestration.chain import training_chain
    from minivess.orchestration.data_flow import data_flow

    current = tracked_hash(data_dir, project)
    key = poll_key(data_dir, project)
    last = common.get_pointer(key)
    if last and last.get("data_hash") == current:
        print(f"data unchanged ({current}); nothing to do")
        return PollResult(data_hash=current, changed=False, profile_changed=False)
    before = previous_profile_hash(workspace, data_dir)
    data = data_flow(data_dir=data_dir, workspace=workspace)
    common.set_pointer(key, {"data_hash": current, "data_dir": data_dir})
    profile_changed = data.dataset_hash != before
    chain = None
    if profile_changed and retrain:
        chain = training_chain(workspace, experiment, data.run_id)
    return PollResult(current, True, profile_changed, data.run_id, chain)
