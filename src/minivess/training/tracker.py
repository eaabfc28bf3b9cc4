"""The small tracking interface training logs through; MLflow implements it in tracking/."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Tracker(Protocol):
    """What training needs from an experiment tracker."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record run parameters (flat mapping, values stringified by the backend)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record metric values at ``step`` (the epoch number in training)."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a local file under ``artifact_path`` inside the run."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set run tags (names from :mod:`minivess.tracking.contract`)."""


class NullTracker:
    """A tracker that records nothing (no tracking URI, or a non-zero DDP rank)."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Ignore ``params``."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Ignore ``metrics``."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Ignore ``path``."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Ignore ``tags``."""
