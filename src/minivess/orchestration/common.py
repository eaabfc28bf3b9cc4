"""Small pieces every flow shares: settings, the cross-flow pointer, Prefect artifacts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from minivess.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: Prefect Variable holding ``{"run_id", "dataset_hash"}`` of the latest data-profile run.
PROFILE_POINTER = "minivess_latest_data_profile"
#: Prefect Variable holding the DVC hash the polling flow saw last.
POLL_POINTER = "minivess_last_polled_data_hash"  # + "_" + a key of the dataset (see polling)


def persistent_prefect_api() -> str | None:
    """The Prefect server this process talks to (Prefect's own ``PREFECT_API_URL`` setting), or
    None when Prefect would start a temporary server that stops with the process."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def settings_for(workspace: str | Path | None) -> Settings:
    """Settings for a flow parameter (flows take plain strings so deployments can call them)."""
    return load_settings(Path(workspace) if workspace else None).ensure()


#: Prefect setting that makes the temporary server send usage telemetry (offline: an error line).
PREFECT_ANALYTICS_ENV = "PREFECT_SERVER_ANALYTICS_ENABLED"
#: Prefect setting for how long a flow waits for the temporary server to answer.
PREFECT_STARTUP_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
#: Seconds minivess lets the temporary server take to start. Prefect's own 20 s is too short for
#: a 2-core laptop that is also loading torch and MONAI (CI saw the main job fail on it).
TEMPORARY_SERVER_STARTUP_S = 180


def prefect_defaults() -> Any:
    """A context in which flows run with minivess's Prefect defaults, scoped to the block.

    The temporary local server gets analytics off (offline, its telemetry is an error line in
    every run) and :data:`TEMPORARY_SERVER_STARTUP_S` to start. A user's own
    ``PREFECT_SERVER_ANALYTICS_ENABLED`` or ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
    wins. Nothing is written to the process environment: Prefect passes its current settings to
    the server it starts.
    """
    from prefect.settings import (
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    from minivess.settings import process_environ

    env = process_environ()
    updates: dict[Any, Any] = {}
    if PREFECT_ANALYTICS_ENV not in env:
        updates[PREFECT_SERVER_ANALYTICS_ENABLED] = False
    if PREFECT_STARTUP_ENV not in env:
        current = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        updates[PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS] = max(
            current, TEMPORARY_SERVER_STARTUP_S
        )
    return temporary_settings(updates=updates)


def set_pointer(name: str, value: dict[str, Any]) -> None:
    """Store a small JSON pointer in a Prefect Variable (a convenience, never the contract)."""
    from prefect.variables import Variable

    Variable.set(name, value, overwrite=True)


def get_pointer(name: str) -> dict[str, Any] | None:
    """Read a pointer written by :func:`set_pointer`, or None."""
    from prefect.variables import Variable

    value = Variable.get(name, default=None)
    return value if isinstance(value, dict) else None


def table_artifact(key: str, rows: list[dict[str, Any]], description: str) -> None:
    """Publish rows as a Prefect table artifact (key: lowercase letters, digits, dashes)."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=rows, key=key, description=description)


def markdown_artifact(key: str, markdown: str, description: str) -> None:
    """Publish markdown as a Prefect artifact."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=key, description=description)


def write_json(path: Path, payload: Any) -> Path:
    """Write JSON (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
