"""S3 (or S3-compatible) access for artifacts, checkpoints and the DVC remote.

One place builds boto3 clients so that every caller gets the same endpoint, checksum settings
(``when_required``, which S3-compatible stores need) and bounded retries.
"""

from __future__ import annotations

from typing import Any

from minivess.errors import MinivessError
from minivess.settings import S3Settings

#: Attempts (first try included) before an unreachable endpoint becomes an error.
S3_MAX_ATTEMPTS = 3
#: Seconds to wait for a TCP connection to the endpoint.
S3_CONNECT_TIMEOUT_S = 3
#: Seconds to wait for a read; a stalled endpoint then fails within about
#: S3_MAX_ATTEMPTS × (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S) plus backoff (under a minute).
S3_READ_TIMEOUT_S = 15


class StorageUnavailableError(MinivessError):
    """The configured S3 endpoint cannot be reached or the bucket is missing."""


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client with bounded retries and ``when_required`` checksums."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


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
