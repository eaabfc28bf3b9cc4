"""The MLflow implementation of :class:`minivess.training.tracker.Tracker`.

It writes to one existing run through ``MlflowClient`` (thread-safe, no reliance on mlflow's
global active run), so training can log from any thread or process that knows the run id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: MLflow's limit on a parameter value's length.
MAX_PARAM_CHARS = 6000


class MlflowTracker:
    """Log params, per-epoch metrics, artifacts and tags to an MLflow run.

    Args:
        run_id: the run to write to; default: mlflow's active run in this thread.
        tracking_uri: default: mlflow's current tracking URI.

    Raises:
        RuntimeError: when no ``run_id`` is given and no run is active.
    """

    def __init__(self, run_id: str | None = None, tracking_uri: str | None = None) -> None:
        import mlflow

        if run_id is None:
            active = mlflow.active_run()
            if active is None:
                raise RuntimeError("MlflowTracker needs a run_id or an active mlflow run.")
            run_id = active.info.run_id
        self.run_id = run_id
        self.client = mlflow.MlflowClient(tracking_uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log ``params``; lists/dicts become JSON, long values are truncated to MLflow's limit."""
        from mlflow.entities import Param

        items = [
            Param(str(k), _as_text(v)[:MAX_PARAM_CHARS]) for k, v in params.items() if v is not None
        ]
        if items:
            self.client.log_batch(self.run_id, params=items)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log finite metric values at ``step``."""
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(str(k), float(v), now, step or 0)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a local file (or directory) into the run."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags on the run."""
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        if items:
            self.client.log_batch(self.run_id, tags=items)


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)
