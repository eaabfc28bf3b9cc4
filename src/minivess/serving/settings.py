"""Settings of the segmentation service, read at one boundary: arguments > env > YAML > defaults.

The service process only sees its environment (``bentoml serve`` starts it), so every field has
an environment variable ``MINIVESS_SERVE_<FIELD>``; a YAML file named by ``$MINIVESS_SERVE_CONFIG``
(or passed explicitly) holds the same fields. Secrets travel by name: ``auth_token_env`` is the
NAME of the variable that holds the bearer token, never the token itself.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from minivess.config import StrictModel, parse_model, read_yaml
from minivess.environ import environ_or
from minivess.errors import ConfigError

#: Prefix of the environment variables read by :func:`load_serve_settings`.
ENV_PREFIX = "MINIVESS_SERVE_"
#: Environment variable naming a YAML file with serve settings.
ENV_CONFIG = "MINIVESS_SERVE_CONFIG"
MIB = 1024 * 1024


class Backend(StrEnum):
    """Inference engine behind the service."""

    ONNX = "onnx"
    TORCH = "torch"  # the TorchScript module
    EAGER = "eager"  # the network rebuilt from the plan + state dict (plain PyTorch)


class Device(StrEnum):
    """Where the backend runs: ``cuda`` = ONNX Runtime's CUDA provider / torch on the GPU."""

    CPU = "cpu"
    CUDA = "cuda"


class ServeSettings(StrictModel):
    """How the service loads its model and which requests it accepts.

    Attributes:
        model_path: a serving bundle directory written by :func:`minivess.serving.export.
            export_bundle` (``plan.json``, ``model.onnx``, ``model.ts``).
        backend: ``onnx`` (ONNX Runtime), ``torch`` (the TorchScript module) or ``eager``
            (plain PyTorch); the deploy measures them and picks the fastest (docs/serving.md).
        device: ``cpu`` or ``cuda``.
        max_upload_bytes: largest accepted request body, in bytes (413 beyond).
        max_voxels: largest accepted volume, x*y*z voxels, checked from the NIfTI header before
            any array is allocated (decompression-bomb guard).
        auth_token_env: NAME of the environment variable holding the bearer token; ``None``
            disables auth. The variable must be set and non-empty when auth is enabled.
        sw_batch_size: windows per forward pass in sliding-window inference; ``None`` uses
            the plan's ``sw_batch_size``.
        sw_overlap: sliding-window overlap in [0, 1); ``None`` uses the plan's ``sw_overlap``.
        num_threads: intra-op threads of torch and ONNX Runtime; ``None`` keeps torch's
            (``OMP_NUM_THREADS``, else the physical cores), and ONNX Runtime takes the same.
        max_concurrency: inference requests in flight per replica; more get 503 + Retry-After.
        metrics_require_token: ``/metrics`` needs the bearer token too (when auth is on).
    """

    model_path: Path | None = None
    backend: Backend = Backend.ONNX
    device: Device = Device.CPU
    max_upload_bytes: int = Field(default=256 * MIB, gt=0)
    max_voxels: int = Field(default=512 * 512 * 160, gt=0)
    auth_token_env: str | None = None
    sw_batch_size: int | None = Field(default=None, gt=0)
    sw_overlap: float | None = Field(default=None, ge=0.0, lt=1.0)
    num_threads: int | None = Field(default=None, gt=0)
    max_concurrency: int = Field(default=8, gt=0)
    metrics_require_token: bool = False

    @field_validator("auth_token_env")
    @classmethod
    def _token_env_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or not value.replace("_", "").isalnum()):
            raise ValueError(
                f"{value!r} is not an environment variable name; give the NAME of the variable "
                "that holds the token (e.g. MINIVESS_SERVE_TOKEN), never the token itself"
            )
        return value or None

    def require_model_path(self) -> Path:
        """The bundle directory, or a :class:`ConfigError` saying how to set it."""
        if self.model_path is None:
            raise ConfigError(
                f"serve settings: 'model_path' is not set; set {ENV_PREFIX}MODEL_PATH to a "
                "bundle directory (minivess serve --model-uri exports one)."
            )
        return self.model_path

    def auth_token(self, environ: dict[str, str] | None = None) -> str | None:
        """The bearer token read from ``auth_token_env`` (``None`` when auth is off).

        Raises:
            ConfigError: auth is enabled but the named variable is unset or empty.
        """
        if self.auth_token_env is None:
            return None
        env = environ_or(environ)
        token = env.get(self.auth_token_env, "")
        if not token:
            raise ConfigError(
                f"serve settings: auth_token_env names {self.auth_token_env}, which is unset or "
                f"empty; export {self.auth_token_env}=<token> or unset auth_token_env."
            )
        return token

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a service process.

        Only fields that were set: a default stays a default there (the backend then comes
        from the bundle's capacity plan)."""
        out: dict[str, str] = {}
        for name, value in self.model_dump(mode="json", exclude_unset=True).items():
            if value is not None:
                out[ENV_PREFIX + name.upper()] = str(value)
        return out


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ServeSettings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env and env[key] != "":
            out[name] = env[key]
    return out


def load_serve_settings(
    path: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> ServeSettings:
    """Build :class:`ServeSettings`: ``overrides`` > ``MINIVESS_SERVE_*`` env > YAML > defaults.

    Args:
        path: YAML file with serve settings; default ``$MINIVESS_SERVE_CONFIG`` when set.
        environ: environment mapping (default ``os.environ``); tests pass their own.
        overrides: field values that win over everything (``None`` values are ignored).

    Raises:
        ConfigError: unknown or invalid field, naming the file or variable and the fix.
    """
    env = dict(environ_or(environ))
    yaml_path = path or (Path(env[ENV_CONFIG]) if env.get(ENV_CONFIG) else None)
    data: dict[str, Any] = {}
    if yaml_path is not None:
        raw = read_yaml(yaml_path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{yaml_path}: expected a mapping of serve settings.")
        parse_model(ServeSettings, raw, str(yaml_path))  # strict, file-named errors
        data.update(raw)
    from_env = _from_env(env)
    if from_env:
        parse_model(ServeSettings, from_env, f"environment ({ENV_PREFIX}*)")
    data.update(from_env)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_model(ServeSettings, data, "serve settings")
