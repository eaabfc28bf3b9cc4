"""Target settings: ``configs/targets/<name>.yaml`` becomes a typed :class:`TargetConfig`.

A target says *where* a job runs (this machine, the lab's SSH node pool, spot GPUs in any
cloud, a public SkyServe service) and with which policies (allowed clouds, bucket, recovery,
replicas). Nothing about a specific cloud, host or bucket lives in code: it is all here.

Secrets never live in these files. ``secrets:`` is a list of environment-variable *names*;
their values stay in the shell that runs ``sky`` and travel through SkyPilot's ``secrets:``
section (null values) and ``--secret NAME`` flags.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from minivess.config import StrictModel, config_dir, load_yaml_model
from minivess.errors import ConfigError

#: Names that look like credentials: such a variable belongs in ``secrets:``, never in ``envs:``.
SECRET_NAME_PATTERN = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|ACCESS_KEY|API_KEY|PRIVATE_KEY|CREDENTIAL|SESSION_KEY)",
    re.IGNORECASE,
)
#: ``scheme://user:password@host``: credentials embedded in a URL.
URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


class Kind(StrEnum):
    """The four rungs of the maturity ladder."""

    LOCAL = "local"  # this machine, no SkyPilot: `bash -c <run>` in the project
    SSH = "ssh"  # a lab's own servers as a SkyPilot SSH node pool (`sky ssh up`)
    SPOT = "spot"  # a managed spot job on any cloud (`sky jobs launch`), recovered on preemption
    SERVE = "serve"  # public inference as a SkyServe service (`sky serve up`)


class Job(StrEnum):
    """Which ``minivess`` command a training target runs (the same call a user types)."""

    TRAIN = "train"  # minivess train --data ... --checkpoint-dir <bucket mount>/<task id>
    EXPERIMENT = "experiment"  # minivess experiment --config ...: the whole main job


class JobRecoveryConfig(StrictModel):
    """SkyPilot ``resources.job_recovery`` for managed (spot) jobs.

    ``recover_on_exit_codes`` always holds :data:`minivess.training.loop.PREEMPTED_EXIT_CODE`
    (what ``minivess train`` exits with after SIGTERM flushed its checkpoint); list more here.
    """

    strategy: Literal["FAILOVER", "EAGER_NEXT_REGION"] = "EAGER_NEXT_REGION"
    max_restarts_on_errors: int = Field(default=3, ge=0)
    extra_exit_codes: list[int] = Field(default_factory=list)

    @field_validator("extra_exit_codes")
    @classmethod
    def _codes_in_range(cls, codes: list[int]) -> list[int]:
        bad = [c for c in codes if not 0 < c < 256]
        if bad:
            raise ValueError(f"exit codes must be 1..255, got {bad}")
        return codes


class CheckpointConfig(StrictModel):
    """Where checkpoints live on a cloud node: a bucket.

    ``direct: true`` (default): ``minivess train`` writes ``s3://...`` itself with its own S3
    client, synchronously, so the checkpoint saved at SIGTERM is in the bucket before the
    process exits 75. ``direct: false`` mounts the bucket at ``mount_path`` instead; use mode
    ``MOUNT`` then, since ``MOUNT_CACHED`` uploads asynchronously and can lose the last one.
    """

    uri: str | None = Field(
        default=None,
        description="bucket URI (s3://, gs://, r2://...); null = configs/storage.yaml's "
        "checkpoint location (s3.bucket / MINIVESS_S3_BUCKET)",
    )
    direct: bool = Field(
        default=True, description="the trainer writes s3:// itself (durable before it exits)"
    )
    mount_path: str = "/checkpoints"
    mode: Literal["MOUNT_CACHED", "MOUNT"] = "MOUNT"


class DataConfig(StrictModel):
    """How the dataset reaches the node."""

    source: str | None = Field(
        default=None,
        description="bucket URI or local dir to mount; null = the --data dir (uploaded), or "
        "synthesised on the node when the experiment has no data dir",
    )
    mount_path: str = "/data"
    dvc_pull: bool = Field(default=True, description="run `dvc pull` in setup (DVC repos only)")


class HostEntry(StrictModel):
    """One machine of an SSH node pool (SkyPilot's ``ssh_node_pools.yaml`` host form)."""

    ip: str = Field(description="IP or a Host alias from ~/.ssh/config")
    user: str | None = None
    identity_file: str | None = None


class PoolConfig(StrictModel):
    """An SSH node pool: the entry written to ``~/.sky/ssh_node_pools.yaml``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    hosts: list[str | HostEntry] = Field(min_length=1)
    user: str | None = None
    identity_file: str | None = None
    ssh_config: str | None = Field(
        default=None, description="ssh config file for `--check` only (default ~/.ssh/config)"
    )
    min_free_disk_gb: float | None = Field(
        default=None, ge=0, description="free disk the preflight asks; null = the disk_size"
    )

    def pool_entry(self) -> dict[str, Any]:
        """This pool in SkyPilot's ``ssh_node_pools.yaml`` format (no password, ever)."""
        entry: dict[str, Any] = {
            "hosts": [
                h if isinstance(h, str) else h.model_dump(exclude_none=True) for h in self.hosts
            ]
        }
        if self.user:
            entry["user"] = self.user
        if self.identity_file:
            entry["identity_file"] = self.identity_file
        return entry


class ReplicaPolicy(StrictModel):
    """SkyServe autoscaling (``service.replica_policy``)."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=3, ge=1)
    target_qps_per_replica: float = Field(default=2.0, gt=0)
    upscale_delay_seconds: int = Field(default=300, ge=0)
    downscale_delay_seconds: int = Field(default=1200, ge=0)
    base_ondemand_fallback_replicas: int | None = Field(default=None, ge=0)
    dynamic_ondemand_fallback: bool | None = None

    @model_validator(mode="after")
    def _sane(self) -> ReplicaPolicy:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})"
            )
        return self


class TlsConfig(StrictModel):
    """SkyServe ``service.tls``: PEM key and certificate, by path on the machine that runs
    ``sky serve up`` (SkyPilot 0.14.1's schema takes paths only; it uploads them to the
    controller, whose load balancer terminates HTTPS)."""

    keyfile: str
    certfile: str


class ServiceConfig(StrictModel):
    """The SkyServe ``service:`` section and what the replicas serve."""

    tls: TlsConfig | None = Field(
        default=None, description="HTTPS at SkyServe's load balancer; null = plain HTTP"
    )

    port: int = Field(default=3000, ge=1, le=65535)
    readiness_path: str = "/readyz"
    initial_delay_seconds: int = Field(default=300, ge=0)
    readiness_timeout_seconds: int = Field(default=15, ge=1)
    replica_policy: ReplicaPolicy = Field(default_factory=ReplicaPolicy)
    model_uri: str | None = Field(
        default=None,
        description="what `minivess serve --model-uri` loads; null = the "
        "registered champion models:/<REGISTERED_MODEL>/latest",
    )
    auth_token_env: str | None = Field(
        default=None,
        description="NAME of the secret holding the bearer token (`minivess serve "
        "--auth-token-env`); null = no auth",
    )


class TargetConfig(StrictModel):
    """One ``configs/targets/<name>.yaml``."""

    kind: Kind
    name: str = Field(default="minivess-train", pattern=r"^[a-zA-Z0-9]([-_.a-zA-Z0-9]*)$")
    template: str = Field(default="train.yaml", description="task template under sky/ (or a path)")
    job: Job = Job.TRAIN
    infra: list[str] = Field(
        default_factory=list,
        description="allowed clouds, SkyPilot infra strings (aws, gcp, aws/us-east-1); "
        "empty = any cloud enabled by `sky check`",
    )
    accelerators_allowed: list[str] = Field(
        default_factory=list, description="restrict the planner's candidates; empty = all"
    )
    candidates: Literal["ordered", "any_of"] = "ordered"
    max_candidates: int = Field(default=4, ge=1)
    use_spot: bool = False
    spot_fallback: bool = Field(
        default=False,
        description="with use_spot: also list every candidate on demand, after all the spot "
        "ones (resources.ordered), so the job runs when spot capacity is gone",
    )
    max_hourly_cost: float | None = Field(
        default=None,
        gt=0,
        description="SkyPilot resources.max_hourly_cost (USD/h): only instances at or below "
        "it (spot prices for spot, on-demand prices otherwise)",
    )
    teardown: bool = Field(
        default=True,
        description="cluster / SSH-pool launches: tear the cluster down after the job "
        "(`sky down`); managed spot jobs clean up themselves",
    )
    disk_size: int = Field(default=100, ge=10)
    image_id: str | None = Field(default=None, description="e.g. docker:ghcr.io/<you>/minivess")
    num_nodes: int = Field(default=1, ge=1)
    job_recovery: JobRecoveryConfig | None = None
    checkpoints: CheckpointConfig | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    install: str | None = Field(
        default=None,
        description="setup's install line; null = the project's node setup (a uv-made Python "
        "3.11 venv at ~/.minivess/venv filled by .ci/bootstrap.sh with .ci/constraints.txt)",
    )
    persistent_dir: str | None = Field(
        default=None,
        description="ssh pools without a bucket: a persistent path on the hosts for "
        "checkpoints (never the pod's temporary disk)",
    )
    workspace: str = Field(default="~/minivess-workspace", description="workspace on the node")
    envs: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    pool: PoolConfig | None = None
    service: ServiceConfig | None = None

    @field_validator("secrets", mode="before")
    @classmethod
    def _names_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            inline = sorted(k for k, v in value.items() if v not in (None, ""))
            if inline:
                raise ValueError(
                    f"secret value(s) written inline for {', '.join(inline)}: secrets travel by "
                    "name only. Write `secrets: [NAME, ...]` and export NAME in your shell"
                )
            return list(value)
        return value

    @field_validator("secrets")
    @classmethod
    def _valid_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
        if bad:
            raise ValueError(f"not environment-variable names: {bad}")
        return names

    @field_validator("envs")
    @classmethod
    def _no_secret_envs(cls, envs: dict[str, str]) -> dict[str, str]:
        for key, value in envs.items():
            if SECRET_NAME_PATTERN.search(key):
                raise ValueError(
                    f"envs.{key} looks like a credential: remove it from envs and list {key} "
                    "under secrets: (by name; its value stays in your shell)"
                )
            if URL_CREDENTIALS.search(str(value)):
                raise ValueError(
                    f"envs.{key} has credentials embedded in a URL: pass the variable by name "
                    "under secrets: instead"
                )
        return envs

    @model_validator(mode="after")
    def _kind_rules(self) -> TargetConfig:
        if self.kind is Kind.SSH and self.pool is None:
            raise ValueError("kind ssh needs a `pool:` section (name, hosts, user)")
        if self.kind is Kind.SERVE and self.service is None:
            raise ValueError("kind serve needs a `service:` section")
        if self.kind is Kind.SPOT and self.checkpoints is None:
            raise ValueError(
                "kind spot needs a `checkpoints:` section: a preempted job resumes from it"
            )
        return self


def target_path(name_or_path: str | Path) -> Path:
    """``--target``: a name under ``configs/targets/`` or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return config_dir() / "targets" / f"{name_or_path}.yaml"


def load_target(name_or_path: str | Path) -> TargetConfig:
    """Load and validate a target; unknown keys fail with a "did you mean" hint."""
    path = target_path(name_or_path)
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / "targets").glob("*.yaml"))
        raise ConfigError(
            f"{path}: no such target. Use one of {', '.join(known) or '(none)'} or a YAML path."
        )
    return load_yaml_model(TargetConfig, path)
