"""S3 (or S3-compatible) access for artifacts, checkpoints and the DVC remote.

One place builds boto3 clients so that every caller gets the same endpoint, checksum settings
(``when_required``, which S3-compatible stores need) and bounded retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from minivess.errors import MinivessError
from minivess.settings import S3Settings

#: Attempts (first try included) before an unreachable endpoint becomes an error.
S3_MAX_ATTEMPTS = 3
#: Seconds to wait for a TCP connection to the endpoint.
S3_CONNECT_TIMEOUT_S = 3
#: Seconds to wait for a read; a stalled endpoint then fails within about
#: S3_MAX_ATTEMPTS × (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S) plus backoff (under a minute).
#: Both timeouts go to every S3 client here: boto3's, MLflow's, and DVC's remote (whose
#: retries are dvc-s3's own: S3_MAX_ATTEMPTS is not passed to it).
S3_READ_TIMEOUT_S = 15


class StorageUnavailableError(MinivessError):
    """The configured S3 endpoint cannot be reached or the bucket is missing."""


def bounded_config() -> Any:
    """botocore settings every S3 client here uses: bounded retries and timeouts, and
    ``when_required`` checksums (S3-compatible stores need them)."""
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client with bounded retries and ``when_required`` checksums."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url, config=bounded_config())


@contextlib.contextmanager
def bounded_default_clients() -> Iterator[None]:
    """For the block, boto3 clients that a library creates itself get :func:`bounded_config`.

    MLflow's S3 artifact repository builds its own client (``boto3.client("s3", config=...)``
    with only the signature and addressing set), so its retries and read timeout would be
    botocore's defaults: minutes on a stalled endpoint. A botocore session's default client
    config is merged under the library's own, so the bounds apply and the library's settings
    win where both set one. The previous default session comes back on exit.
    """
    import boto3
    import botocore.session

    previous = boto3.DEFAULT_SESSION
    core = botocore.session.get_session()
    core.set_default_client_config(bounded_config())
    boto3.DEFAULT_SESSION = boto3.Session(botocore_session=core)
    try:
        yield
    finally:
        boto3.DEFAULT_SESSION = previous


@contextlib.contextmanager
def artifact_upload_errors() -> Iterator[None]:
    """An S3 failure while MLflow stores an artifact becomes one line naming the fix."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, S3UploadFailedError) as err:
        reason = " ".join(str(err).split())[:200]
        raise StorageUnavailableError(
            f"MLflow could not store an artifact on S3 ({reason}); the endpoint is stalled or "
            f"unreachable: check it, or s3.endpoint_url in configs/storage.yaml / "
            f"MINIVESS_S3_ENDPOINT_URL, and rerun."
        ) from None


def check_bucket(s3: S3Settings) -> None:
    """Fail fast, naming the endpoint, when the bucket cannot be reached.

    Raises:
        StorageUnavailableError: after :data:`S3_MAX_ATTEMPTS` attempts.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if not s3.enabled:
        return
    where = s3.endpoint_url or "AWS S3"
    try:
        s3_client(s3.endpoint_url).head_bucket(Bucket=s3.bucket)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "?")
        raise StorageUnavailableError(
            f"S3 bucket '{s3.bucket}' at {where} is not usable ({code}); create it or fix "
            f"s3.bucket in configs/storage.yaml / MINIVESS_S3_BUCKET."
        ) from None
    except BotoCoreError as err:
        raise StorageUnavailableError(
            f"S3 endpoint {where} unreachable after {S3_MAX_ATTEMPTS} attempts ({err}); start "
            f"it or fix s3.endpoint_url in configs/storage.yaml / MINIVESS_S3_ENDPOINT_URL."
        ) from None


def mlflow_s3_env(s3: S3Settings) -> dict[str, str]:
    """Environment MLflow's S3 artifact repository needs for an S3-compatible endpoint.

    MLflow reads these only from the environment: :func:`minivess.tracking.mlflow_adapter.session`
    sets them for the duration of a run and restores the environment after.
    """
    env = {
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    if s3.endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = s3.endpoint_url
    return env
