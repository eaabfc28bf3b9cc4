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

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _existing_versions(client: Any, name: str) -> list[str]:
    versions = client.search_model_versions(f"name = '{name}'")
    return sorted((str(v.version) for v in versions), key=lambda v: int(v) if v.isdigit() else 0)


def _download_registered(uri: str, workdir: Path, workspace: Path | None = None) -> Path:
    from mlflow.exceptions import MlflowException

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
    client = connect(load_settings(workspace))
    if at:
        reg = aliased_version(client, name, alias)
    elif version == "latest":
        reg = latest_version(client, name)
    else:
        try:
            mv = client.get_model_version(name, version)
        except MlflowException:
            existing = _existing_versions(client, name)
            raise ConfigError(
                f"--model-uri {uri}: no version {version} of '{name}'; "
                + (
                    f"registered versions: {', '.join(existing)} (or use latest)."
                    if existing
                    else "nothing is registered under that name (train and register one first)."
                )
            ) from None
        reg = RegisteredVersion.of(mv)
    log.info("model %s is registered version %s of %s", uri, reg.version, name)
    return download_version(client, reg, workdir / "registry" / f"{name}-{reg.version}")


def _default_model_uri(workspace: Path | None) -> str:
    """``models:/<registered model>@champion`` when the workspace has a registry to ask.

    Raises:
        ConfigError: nothing says what to serve (no registry either), naming the three ways.
    """
    from minivess.serving.settings import ENV_PREFIX
    from minivess.settings import load_settings
    from minivess.tracking.contract import CHAMPION_ALIAS, REGISTERED_MODEL

    ws = load_settings(workspace)
    champion = f"{REGISTRY_PREFIX}{REGISTERED_MODEL}@{CHAMPION_ALIAS}"
    if ws.storage.mlflow.tracking_uri is None and not (ws.workspace / "mlflow.db").is_file():
        raise ConfigError(
            f"nothing to serve: no --model-uri, no {ENV_PREFIX}MODEL_PATH, and no MLflow "
            f"registry in the workspace {ws.workspace}. Fix: run `minivess experiment` (it "
            f"registers {champion}), pass --workspace, or --model-uri a bundle, checkpoint "
            "or models:/ URI."
        )
    log.info(
        "serve: model = %s (no --model-uri or %sMODEL_PATH: the registry's champion)",
        champion,
        ENV_PREFIX,
    )
    return champion


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


def bundle_for(model_uri: str, workdir: Path, workspace: Path | None = None) -> Path:
    """The serving bundle of ``model_uri``, exporting (with a parity check) when needed."""
    from minivess.serving.deploy import default_smoke_volume
    from minivess.serving.export import export_bundle
    from minivess.serving.nifti import load_volume
    from minivess.training.checkpoint import checkpoint_meta, load_model, target_spacing

    workdir = Path(workdir)
    if model_uri.startswith(REGISTRY_PREFIX):
        path = _download_registered(model_uri, workdir, workspace)
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


#: Seconds ``bentoml serve`` gets to shut down after SIGTERM/SIGINT before it is killed.
STOP_GRACE_SECONDS = 20.0


def run_forwarding_signals(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` in its own process group; SIGTERM/SIGINT to us go to the whole group.

    ``bentoml serve`` starts ``circusd`` and its workers; a signal only to this process would
    leave them serving the port. Here the group gets the signal, then SIGKILL after
    :data:`STOP_GRACE_SECONDS`, and we return once it is gone (128 + signal number, as a shell
    reports a signalled job).
    """
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = proc.wait(STOP_GRACE_SECONDS if received else None)
                break
            except subprocess.TimeoutExpired:
                log.warning(
                    "bentoml serve ignored the signal for %.0f s; killing it", STOP_GRACE_SECONDS
                )
                os.killpg(proc.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived circusd
    return 128 + received[0] if received else code


def serve_foreground(settings: ServeSettings, port: int, host: str = LOOPBACK) -> int:
    """Run ``bentoml serve`` in the foreground until Ctrl-C or SIGTERM; returns its exit code."""
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
    return run_forwarding_signals(cmd, env)


def serve_model(
    model_uri: str | None,
    settings: ServeSettings,
    workdir: Path,
    port: int,
    host: str,
    workspace: Path | None = None,
) -> int:
    """``minivess serve``: resolve ``model_uri`` (or ``settings.model_path``, else the
    workspace registry's ``@champion``) and serve it."""
    if not model_uri and settings.model_path is None:
        model_uri = _default_model_uri(workspace)
    if model_uri:
        bundle = bundle_for(model_uri, workdir, workspace)
        settings = settings.model_copy(update={"model_path": bundle})
    return serve_foreground(settings, port, host)
