"""DVC add/push/pull and the data hash, through the ``dvc`` CLI of this environment.

The DVC project is a directory that contains the data directory (the workspace by default). The
remote is a local directory (embedded default) or S3 / S3-compatible (``endpointurl``). This
module never alters data: it only versions and restores it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from minivess.errors import DataError, MinivessError
from minivess.settings import Settings
from minivess.tracking.storage import S3_CONNECT_TIMEOUT_S, S3_READ_TIMEOUT_S

log = logging.getLogger(__name__)

#: Name of the remote minivess configures in a DVC project.
REMOTE_NAME = "minivess"


class DvcError(MinivessError):
    """A dvc command failed; the message carries dvc's own error."""


@dataclass(frozen=True)
class DataVersion:
    """A versioned data directory: its ``.dvc`` file and DVC's content hash."""

    dvc_file: Path
    data_hash: str


#: Seconds a dvc command may run before it is stopped (a stalled remote must not hang us).
DVC_TIMEOUT_S = 600.0
#: DVC's support banner, printed after every error; never the reason.
_BANNER = ("Having any troubles?", "https://dvc.org/support", "https://discord.com/invite")


def _reason(output: str) -> str:
    """DVC's own error lines from its output (its ``ERROR:`` lines, without the banner)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not any(b in ln for b in _BANNER)]
    errors = [ln.removeprefix("ERROR:").strip() for ln in lines if ln.startswith("ERROR")]
    text = " / ".join(errors or lines[-3:]) or "no message"
    return text if len(text) <= 400 else text[:397] + "..."


def _dvc(project: Path, *args: str, timeout: float = DVC_TIMEOUT_S) -> str:
    cmd = [sys.executable, "-m", "dvc", *args]
    try:
        proc = subprocess.run(
            cmd, cwd=project, capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise DvcError(
            f"`dvc {' '.join(args)}` in {project} did not finish in {timeout:g} s (remote "
            "stalled or unreachable?); check the remote's endpoint and rerun"
        ) from None
    if proc.returncode != 0:
        raise DvcError(
            f"`dvc {' '.join(args)}` failed in {project}: {_reason(proc.stderr + proc.stdout)}"
        )
    return proc.stdout


def remote_url(settings: Settings) -> str:
    """The DVC remote URL for these settings: S3 when configured, else a local directory."""
    if settings.storage.s3.enabled:
        return settings.storage.s3.uri(settings.storage.s3.dvc_prefix)
    return str(settings.dvc_remote_dir.resolve())


def init_project(project: Path, settings: Settings) -> None:
    """Make ``project`` a DVC project (no git needed) with the minivess remote as default.

    Idempotent: re-running only refreshes the remote's URL and endpoint.
    """
    project.mkdir(parents=True, exist_ok=True)
    if not (project / ".dvc").is_dir():
        _dvc(project, "init", "--no-scm", "-q")
    url = remote_url(settings)
    if not url.startswith("s3://"):
        Path(url).mkdir(parents=True, exist_ok=True)
    _dvc(project, "remote", "add", "-f", "-d", REMOTE_NAME, url)
    endpoint = settings.storage.s3.endpoint_url
    if url.startswith("s3://") and endpoint:
        _dvc(project, "remote", "modify", REMOTE_NAME, "endpointurl", endpoint)
    if url.startswith("s3://"):  # the same bounds as every other S3 client here (dvc-s3 options)
        _dvc(project, "remote", "modify", REMOTE_NAME, "connect_timeout", str(S3_CONNECT_TIMEOUT_S))
        _dvc(project, "remote", "modify", REMOTE_NAME, "read_timeout", str(S3_READ_TIMEOUT_S))


def data_hash(dvc_file: Path) -> str:
    """DVC's content hash recorded in a ``.dvc`` file (no data is read).

    Raises:
        DataError: the file is missing or not a DVC file.
    """
    import yaml

    if not dvc_file.is_file():
        raise DataError(f"{dvc_file}: not found; version the data first (`minivess data version`).")
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
    if not outs or "md5" not in outs[0]:
        raise DataError(f"{dvc_file}: no 'outs[0].md5' entry; is this a DVC file?")
    return str(outs[0]["md5"])


def _project_of(data_dir: Path, project: Path | None) -> Path:
    project = (project or data_dir.parent).resolve()
    data_dir = data_dir.resolve()
    if project not in data_dir.parents:
        raise DataError(
            f"{data_dir} is not inside the DVC project {project}; pass --project with a parent "
            "directory of the data."
        )
    return project


def version_data(
    data_dir: Path, settings: Settings, project: Path | None = None, timeout: float = DVC_TIMEOUT_S
) -> DataVersion:
    """``dvc add`` the directory and ``dvc push`` it; the new ``.dvc`` file stays only if the
    push succeeded.

    Nothing is half-versioned: when the push fails or times out, ``<data>.dvc`` is restored to
    what it was before (or removed, if it did not exist), so a clone never sees a version
    whose data is not on the remote.

    Raises:
        DvcError: DVC's own error message (e.g. ``NoSuchBucket``), or the timeout.
    """
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory; pass the dataset directory to version.")
    project = _project_of(data_dir, project)
    init_project(project, settings)
    rel = data_dir.resolve().relative_to(project)
    dvc_file = project / f"{rel}.dvc"
    previous = dvc_file.read_bytes() if dvc_file.is_file() else None
    try:
        _dvc(project, "add", str(rel), timeout=timeout)
        _dvc(project, "push", "-r", REMOTE_NAME, str(dvc_file.name), timeout=timeout)
    except BaseException:
        if previous is None:
            dvc_file.unlink(missing_ok=True)
        else:
            dvc_file.write_bytes(previous)
        log.warning("data version rolled back: %s is as it was before", dvc_file)
        raise
    version = DataVersion(dvc_file=dvc_file, data_hash=data_hash(dvc_file))
    log.info("versioned %s as %s (remote %s)", data_dir, version.data_hash, remote_url(settings))
    return version


def pull_data(project: Path, settings: Settings | None = None) -> list[Path]:
    """``dvc pull`` every tracked output of ``project``; returns the restored paths."""
    if not (project / ".dvc").is_dir():
        raise DataError(f"{project}: not a DVC project (no .dvc/); clone one or run `dvc init`.")
    if settings is not None:
        init_project(project, settings)
    _dvc(project, "pull", "-r", REMOTE_NAME)
    return [project / f.stem for f in sorted(project.glob("*.dvc")) if f.is_file()]
