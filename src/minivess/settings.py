"""Runtime settings: the workspace layout and where tracking/storage live.

Built once at the CLI boundary (:func:`load_settings`) and passed down; no module reads the
environment deep inside. Constructors do no I/O: directories are created by :meth:`Settings.ensure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from minivess.config import StrictModel, config_dir, deep_merge, parse_model, read_yaml
from minivess.environ import environ_or, process_environ
from minivess.environ import scoped_environ as scoped_environ  # re-exported
from minivess.tracking.contract import SKYPILOT_TASK_ID_ENV

#: Environment variables read by :func:`load_settings` (the only place that reads them).
ENV_S3_ENDPOINT = "MINIVESS_S3_ENDPOINT_URL"
ENV_S3_BUCKET = "MINIVESS_S3_BUCKET"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_WORKSPACE = "MINIVESS_WORKSPACE"
ENV_CACHE_DIR = "MINIVESS_CACHE_DIR"
#: SkyPilot's task id: stable across the recoveries of one managed job (named in the contract).
ENV_TASK_ID = SKYPILOT_TASK_ID_ENV
#: torchrun's variables (absent: one process).
ENV_RANK, ENV_WORLD_SIZE, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"
ENV_MLFLOW_RETRY_BUDGET = "MINIVESS_MLFLOW_RETRY_BUDGET_S"
#: File ``minivess train`` creates when it exits 75 (preempted); set by the rendered task so
#: the node script can map torchrun's exit 1 back to 75.
ENV_PREEMPTED_MARKER = "MINIVESS_PREEMPTED_MARKER"
#: Default workspace directory name, relative to the current directory.
DEFAULT_WORKSPACE = "workspace"


def normalize_bucket(value: str | None) -> str | None:
    """A bucket *name* from what users write: ``s3://x``, ``x/`` and ``x`` all give ``x``.

    Raises:
        ValueError: the value has a key prefix (``s3://x/some/prefix``) or another scheme.
    """
    if value is None:
        return None
    text = value.strip()
    if text.lower().startswith("s3://"):
        text = text[len("s3://") :]
    text = text.strip("/")
    if "://" in text:
        raise ValueError(
            f"bucket {value!r}: only an S3 bucket name (or s3://name) is accepted here"
        )
    if "/" in text:
        raise ValueError(
            f"bucket {value!r} has a key prefix: set only the bucket name (e.g. "
            f"{text.split('/', 1)[0]!r}); prefixes are s3.checkpoint_prefix / mlflow_prefix / "
            "dvc_prefix in configs/storage.yaml"
        )
    return text or None


class S3Settings(StrictModel):
    """An S3 or S3-compatible store (AWS, MinIO, Ceph, moto...)."""

    endpoint_url: str | None = None
    bucket: str | None = None
    mlflow_prefix: str = "mlflow"
    dvc_prefix: str = "dvc"
    checkpoint_prefix: str = "checkpoints"

    @field_validator("bucket")
    @classmethod
    def _bare_bucket(cls, value: str | None) -> str | None:
        """``s3://name`` and ``name/`` mean the bucket ``name`` (the one place this is done)."""
        return normalize_bucket(value)

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
    retry_budget_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="seconds one MLflow request may spend retrying a dead or stalled server "
        "before the run ends FAILED with one line (MLflow's own default is ~10 min)",
    )


class StorageSettings(StrictModel):
    """The schema of ``configs/storage.yaml``."""

    s3: S3Settings = Field(default_factory=S3Settings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a torchrun job (``rank`` of ``world_size``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """The one cache-root rule: ``$MINIVESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/minivess``,
    else ``~/.cache/minivess``. Profile, calibration and SkyPilot-offline caches live below."""
    env = environ_or(environ)
    if env.get(ENV_CACHE_DIR):
        return Path(env[ENV_CACHE_DIR]).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "minivess"


def dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """torchrun's rank, world size and local rank (defaults: a single process)."""
    env = environ_or(environ)
    return DistEnv(
        rank=int(env.get(ENV_RANK, "0")),
        world_size=int(env.get(ENV_WORLD_SIZE, "1")),
        local_rank=int(env.get(ENV_LOCAL_RANK, "0")),
    )


def task_id(environ: Mapping[str, str] | None = None) -> str | None:
    """SkyPilot's task id on a managed job, else None."""
    return environ_or(environ).get(ENV_TASK_ID) or None


def torch_threads(environ: Mapping[str, str] | None = None, default: int = 2) -> int:
    """``$OMP_NUM_THREADS`` (intra-op threads for measurements), else ``default``."""
    return int(environ_or(environ).get("OMP_NUM_THREADS", str(default)))


def checkpoint_key(plan_hash: str, task: str | None) -> str:
    """The folder that keys a run's checkpoints: the task id on a managed job, else the plan.

    A recovered spot job keeps its SkyPilot task id, so it finds its checkpoints again; anywhere
    else, rerunning an unchanged plan resumes instead of retraining. The train flow and the
    rendered SkyPilot task (which passes the literal ``${SKYPILOT_TASK_ID}``) both use this.
    """
    return task or plan_hash


def checkpoint_dir(root: str, experiment: str, key: str) -> str:
    """``<root>/<experiment>/<key>``: the checkpoint folder of one experiment's grid."""
    return f"{str(root).rstrip('/')}/{experiment}/{key}"


class Settings(StrictModel):
    """Where one minivess workspace keeps its files and which stores it talks to.

    Also the process facts read once at the boundary: the cache root, the SkyPilot task id and
    the torchrun rank.
    """

    workspace: Path
    storage: StorageSettings = Field(default_factory=StorageSettings)
    cache_dir: Path | None = None
    task_id: str | None = None
    rank: int = 0

    @property
    def cache_root(self) -> Path:
        """The cache root (see :func:`cache_root`)."""
        return self.cache_dir if self.cache_dir is not None else cache_root()

    def checkpoint_key(self, plan_hash: str) -> str:
        """See :func:`checkpoint_key`."""
        return checkpoint_key(plan_hash, self.task_id)

    preempted_marker: Path | None = Field(
        default=None, description=f"${ENV_PREEMPTED_MARKER}: file created on a preemption exit"
    )

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
    def workspace_store_path(self) -> Path:
        """The workspace's own MLflow database file."""
        return (self.workspace / "mlflow.db").resolve()

    @property
    def workspace_store_uri(self) -> str:
        """The workspace's own MLflow store (SQLite), used when no server is configured."""
        return f"sqlite:///{self.workspace_store_path}"

    @property
    def workspace_artifact_uri(self) -> str:
        """The workspace's own MLflow artifact root."""
        return (self.workspace / "mlartifacts").resolve().as_uri()

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI; SQLite in the workspace by default."""
        if self.storage.mlflow.tracking_uri:
            return self.storage.mlflow.tracking_uri
        return self.workspace_store_uri

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for new experiments: S3 when configured, else the workspace."""
        if self.storage.s3.enabled:
            return self.storage.s3.uri(self.storage.s3.mlflow_prefix)
        uri = self.storage.mlflow.tracking_uri
        if uri and uri.startswith(("http://", "https://", "databricks")):
            return None  # the server decides (proxied or its own --default-artifact-root)
        if uri and uri.startswith("sqlite:///"):
            # As ``mlflow server --backend-store-uri sqlite:///x.db`` would, but next to the
            # database instead of ``<cwd>/mlruns``: artifacts never land in the current folder.
            db = Path(uri[len("sqlite:///") :])
            return (db.parent / "mlartifacts").resolve().as_uri()
        if uri:
            return None  # a file store keeps artifacts in its own folder
        return self.workspace_artifact_uri

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
    env = process_environ() if environ is None else dict(environ)
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
    if env.get(ENV_MLFLOW_RETRY_BUDGET):
        from_env["mlflow"]["retry_budget_s"] = env[ENV_MLFLOW_RETRY_BUDGET]
    parse_model(StorageSettings, raw, str(path))  # the file alone, errors name it
    storage = parse_model(StorageSettings, deep_merge(raw, from_env), f"{path} + environment")
    ws = workspace or Path(env.get(ENV_WORKSPACE, DEFAULT_WORKSPACE))
    marker = env.get(ENV_PREEMPTED_MARKER)
    return Settings(
        workspace=Path(ws).absolute(),
        storage=storage,
        cache_dir=cache_root(env),
        task_id=task_id(env),
        rank=dist_env(env).rank,
        preempted_marker=Path(marker) if marker else None,
    )
