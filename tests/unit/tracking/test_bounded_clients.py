"""A boto3 client a library builds itself (MLflow's S3 artifact store does) gets our bounds
inside :func:`bounded_default_clients`, keeps its own settings, and gets botocore's defaults
again outside. Clients are created, never called: no network."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from minivess.tracking.storage import bounded_config, bounded_default_clients


def _library_client() -> Any:
    """What mlflow.store.artifact.s3_artifact_repo does: its own config, addressing only."""
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    return boto3.client("s3", region_name="us-east-1", config=config)


def test_library_clients_get_the_bounds_only_inside_the_block() -> None:
    ours = bounded_config()
    before = _library_client().meta.config
    with bounded_default_clients():
        inside = _library_client().meta.config
    after = _library_client().meta.config
    assert inside.retries == ours.retries and inside.read_timeout == ours.read_timeout
    assert inside.connect_timeout == ours.connect_timeout
    assert inside.s3 == {"addressing_style": "path"}  # the library's own setting wins
    for outside in (before, after):
        assert outside.read_timeout != ours.read_timeout and outside.retries != ours.retries
