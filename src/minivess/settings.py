"""Runtime settings: the workspace layout and where tracking/storage live.

Built once at the CLI boundary (:func:`load_settings`) and passed down; no module reads the
environment deep inside. Constructors do no I/O: directories are created by :meth:`Settings.ensure`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from minivess.config import StrictModel, config_dir, deep_merge, parse_model, read_yaml

#: Environment variables read by :func:`load_settings` (the only place that reads them).
ENV_S3_ENDPOINT = "MINIVESS_S3_ENDPOINT_URL"
ENV_S3_BUCKET = "MINIVESS_S3_BUCKET"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_WORKSPACE = "MINIVESS_WORKSPACE"
#: Default workspace directory name, relative to the current directory.
DEFAULT_WORKSPACE = "workspace"


class S3Settings(StrictModel):
    """An S3 or S3-compatible store (AWS, MinIO, Ceph, moto...)."""

    endpoint_url: str | None = None
    bucket: str | None = None
    mlflow_prefix: str = "mlflow"
    dvc_prefix: str = "dvc"
    checkpoint_prefix: str = "checkpoints"

    @property
    def enabled(self) -> bool:
        """True when a bucket is configured."""
        return bool(self.bucket)

    def uri(self, prefix: str) -> str:
        """``s3://<bucket>/<prefix>``."""
        if not self.bucket:
            raise ValueError("no S3 bucket configured (set s3.bucket or MINIVESS_S3_BUCKET)")
        return f"s3://{self.bucket}/{prefix.strip('/')}"


class MlflowSettings(StrictModel):
    """Tracking server location; None means SQLite inside the workspace."""

    tracking_uri: str | None = None


class StorageSettings(StrictModel):
    """The schema of ``configs/storage.yaml``."""

    s3: S3Settings = Field(default_factory=S3Settings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)


class Settings(StrictModel):
    """Where one minivess workspace keeps its files and which stores it talks to."""

    workspace: Path
    storage: StorageSettings = Field(default_factory=StorageSettings)

    @property
    def data_dir(self) -> Path:
        """Default dataset location (synthetic data when none is given)."""
        return self.workspace / "data"

    @property
    def profile_dir(self) -> Path:
        return self.workspace / "profile"

    @property
    def checkpoints_dir(self) -> Path:
        return self.workspace / "checkpoints"

    @property
    def analysis_dir(self) -> Path:
        return self.workspace / "analysis"

    @property
    def deploy_dir(self) -> Path:
        return self.workspace / "deploy"

    @property
    def dvc_remote_dir(self) -> Path:
        """The embedded default DVC remote (a local directory)."""
        return self.workspace / "dvc-remote"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI; SQLite in the workspace by default."""
        if self.storage.mlflow.tracking_uri:
            return self.storage.mlflow.tracking_uri
        return f"sqlite:///{(self.workspace / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for new experiments: S3 when configured, else the workspace."""
        if self.storage.s3.enabled:
            return self.storage.s3.uri(self.storage.s3.mlflow_prefix)
        if self.storage.mlflow.tracking_uri:
            return None  # the server decides (proxied or its own default root)
        return (self.workspace / "mlartifacts").resolve().as_uri()

    @property
    def checkpoint_root(self) -> str:
        """Where training checkpoints go: S3 when configured, else the workspace."""
        if self.storage.s3.enabled:
            return self.storage.s3.uri(self.storage.s3.checkpoint_prefix)
        return str(self.checkpoints_dir.resolve())

    def ensure(self) -> Settings:
        """Create the workspace directories; returns self."""
        for d in (self.workspace, self.profile_dir, self.checkpoints_dir, self.analysis_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self


def load_settings(
    workspace: Path | None = None,
    storage_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from ``configs/storage.yaml`` (or ``storage_file``) and the env.

    Args:
        workspace: workspace directory; default ``$MINIVESS_WORKSPACE`` or ``./workspace``.
        storage_file: alternative storage YAML.
        environ: environment mapping (default ``os.environ``); tests pass their own.
    """
    env = dict(os.environ if environ is None else environ)
    path = storage_file or config_dir() / "storage.yaml"
    raw = read_yaml(path) if path.is_file() else {}
    from_env: dict = {"s3": {}, "mlflow": {}}
    endpoint = env.get(ENV_S3_ENDPOINT) or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        from_env["s3"]["endpoint_url"] = endpoint
    if env.get(ENV_S3_BUCKET):
        from_env["s3"]["bucket"] = env[ENV_S3_BUCKET]
    if env.get(ENV_TRACKING_URI):
        from_env["mlflow"]["tracking_uri"] = env[ENV_TRACKING_URI]
    parse_model(StorageSettings, raw, str(path))  # the file alone, errors name it
    storage = parse_model(StorageSettings, deep_merge(raw, from_env), f"{path} + environment")
    ws = workspace or Path(env.get(ENV_WORKSPACE, DEFAULT_WORKSPACE))
    return Settings(workspace=Path(ws).absolute(), storage=storage)
