"""``minivess serve``: turn a model URI into a serving bundle and run the service in the foreground.

Accepted model URIs:
    * a serving bundle directory (``plan.json`` + ``model.onnx`` + ``model.ts``): served as is;
    * a checkpoint file or run directory (``best.pt``): exported to a bundle first, with the
      ONNX parity check on a synthetic volume;
    * ``models:/<name>/<version>``, ``models:/<name>/latest`` or ``models:/<name>@champion``
      (the alias the analysis flow sets): downloaded from the MLflow
      registry (through :mod:`minivess.tracking.mlflow_adapter`), then treated as above.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

from minivess.errors import ConfigError
from minivess.serving.inference import ONNX_FILE, PLAN_FILE, TORCHSCRIPT_FILE
from minivess.serving.server import LOOPBACK, SERVICE_TARGET
from minivess.serving.settings import ServeSettings
from minivess.settings import process_environ

log = logging.getLogger(__name__)

REGISTRY_PREFIX = "models:/"


def is_bundle(path: Path) -> bool:
    """True when ``path`` is a serving bundle directory."""
    return all((Path(path) / f).is_file() for f in (PLAN_FILE, ONNX_FILE, TORCHSCRIPT_FILE))


def _download_registered(uri: str, workdir: Path) -> Path:
    from minivess.settings import load_settings
    from minivess.tracking.mlflow_adapter import (
        RegisteredVersion,
        aliased_version,
        connect,
        download_version,
        latest_version,
    )

    rest = uri[len(REGISTRY_PREFIX) :]
    name, at, alias = rest.partition("@")
    if not at:
        name, _, version = rest.partition("/")
    if not name or not (alias if at else version):
        raise ConfigError(
            f"--model-uri {uri}: expected models:/<name>/<version|latest> "
            "or models:/<name>@<alias>."
        )
    client = connect(load_settings())
    if at:
        reg = aliased_version(client, name, alias)
    elif version == "latest":
        reg = latest_version(client, name)
    else:
        reg = RegisteredVersion.of(client.get_model_version(name, version))
    log.info("model %s is registered version %s of %s", uri, reg.version, name)
    return download_version(client, reg, workdir / "registry" / f"{name}-{reg.version}")


def _find_checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    best = path / "best.pt"
    if best.is_file():
        return best
    found = sorted(path.rglob("*.pt"))
    if not found:
        raise ConfigError(f"--model-uri {path}: no checkpoint (*.pt) and not a serving bundle.")
    return found[0]


def bundle_for(model_uri: str, workdir: Path) -> Path:
    """The serving bundle of ``model_uri``, exporting (with a parity check) when needed."""
    from minivess.serving.deploy import default_smoke_volume
    from minivess.serving.export import export_bundle
    from minivess.serving.nifti import load_volume
    from minivess.training.checkpoint import checkpoint_meta, load_model, target_spacing

    workdir = Path(workdir)
    if model_uri.startswith(REGISTRY_PREFIX):
        path = _download_registered(model_uri, workdir)
    else:
        path = Path(model_uri)
        if not path.exists():
            raise ConfigError(f"--model-uri {model_uri}: no such file or directory.")
    if is_bundle(path):
        log.info("serving bundle %s as is", path)
        return path
    checkpoint = _find_checkpoint(path)
    key = hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:10]
    model, plan = load_model(str(checkpoint))
    volume = load_volume(default_smoke_volume(plan, workdir / "smoke"), max_voxels=2**40)
    out = workdir / f"bundle-{key}"
    log.info("exporting %s to %s (parity check on a synthetic volume)", checkpoint, out)
    spacing = target_spacing(checkpoint_meta(checkpoint))
    return export_bundle(
        model, plan, out, parity_volume=volume.array, target_spacing=spacing
    ).bundle


def serve_foreground(settings: ServeSettings, port: int, host: str = LOOPBACK) -> int:
    """Run ``bentoml serve`` in the foreground until Ctrl-C; returns its exit code."""
    settings.require_model_path()
    settings.auth_token()  # fail now, not in the worker, when the token variable is unset
    env = {**process_environ(), **settings.to_env()}
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE_TARGET]
    cmd += ["--host", host, "--port", str(port)]
    if host not in (LOOPBACK, "localhost", "::1"):
        log.warning("binding %s: the service is reachable from other machines", host)
    log.info(
        "serving %s (%s) on http://%s:%d; Ctrl-C stops it",
        settings.model_path,
        settings.backend.value,
        host,
        port,
    )
    try:
        return subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:
        return 0


def serve_model(
    model_uri: str | None, settings: ServeSettings, workdir: Path, port: int, host: str
) -> int:
    """``minivess serve``: resolve ``model_uri`` (or ``settings.model_path``) and serve it."""
    if model_uri:
        settings = settings.model_copy(update={"model_path": bundle_for(model_uri, workdir)})
    return serve_foreground(settings, port, host)
