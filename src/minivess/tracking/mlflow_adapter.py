"""The MLflow side of the contract: open tagged runs, find upstream runs, register models.

Consumers find their upstream with :func:`find_upstream` (``MlflowClient.search_runs`` by tag) and
fail loudly with :class:`~minivess.errors.ContractError` when it is missing; nothing here walks
folders. This module and :mod:`minivess.tracking.mlflow_tracker` are the only importers of mlflow.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minivess.errors import ContractError, MinivessError
from minivess.settings import Settings, scoped_environ
from minivess.tracking.contract import CHAMPION_ALIAS, EXPERIMENTS, REGISTERED_MODEL, Flow, Tag
from minivess.tracking.storage import (
    artifact_upload_errors,
    bounded_default_clients,
    check_bucket,
    mlflow_s3_env,
)

log = logging.getLogger(__name__)

#: Attempts when probing a tracking server at start-up.
SERVER_PROBE_ATTEMPTS = 3
#: Value of :attr:`Tag.STATUS` on a registered version whose artifacts were verified.
STATUS_COMPLETE = "complete"
#: Value of :attr:`Tag.STATUS` once the deploy flow served the version.
STATUS_DEPLOYED = "deployed"


class TrackingUnavailableError(MinivessError):
    """The MLflow tracking server does not answer."""


def check_tracking_server(uri: str, attempts: int = SERVER_PROBE_ATTEMPTS) -> None:
    """Probe an ``http(s)://`` tracking server's ``/health``; local URIs need no probe.

    Raises:
        TrackingUnavailableError: naming the URI, after ``attempts`` tries.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    last = ""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as err:
            last = str(getattr(err, "reason", err))
        if attempt + 1 < attempts:
            time.sleep(0.5 * 2**attempt)
    raise TrackingUnavailableError(
        f"MLflow tracking server {uri} is not answering ({last}); start it with "
        f"`minivess stack up` or fix MLFLOW_TRACKING_URI / mlflow.tracking_uri in storage.yaml."
    )


#: Attribute of a client from :func:`connect` holding the environment MLflow's S3 store needs.
_S3_ENV_ATTR = "_minivess_s3_env"
#: Attribute of a client from :func:`connect`: True when artifacts may go to S3.
_S3_USED_ATTR = "_minivess_s3_used"


def connect(settings: Settings) -> Any:
    """A client for the settings' tracking URI, after checking the stores.

    Nothing global changes: neither mlflow's tracking URI nor the environment. Code that uses
    mlflow's fluent API (runs, ``log_*``) does so inside :func:`session` / :func:`flow_run`.

    Raises:
        TrackingUnavailableError / StorageUnavailableError: before any work starts.
    """
    import mlflow

    from minivess.tracking.faults import replay_pending

    check_tracking_server(settings.tracking_uri)
    check_bucket(settings.storage.s3)
    client = mlflow.MlflowClient(settings.tracking_uri)
    setattr(client, _S3_ENV_ATTR, mlflow_s3_env(settings.storage.s3))
    setattr(client, _S3_USED_ATTR, settings.storage.s3.enabled)
    replay_pending(settings.workspace, settings.tracking_uri, client)
    return client


@contextlib.contextmanager
def session(client: Any) -> Iterator[None]:
    """mlflow's fluent API pointed at ``client``'s server and S3 endpoint, for the block only.

    ``mlflow.set_tracking_uri`` exports ``MLFLOW_TRACKING_URI`` and MLflow's S3 store reads
    ``MLFLOW_S3_ENDPOINT_URL`` from the environment; both are scoped here and the previous
    tracking URI and environment come back on exit, so a long-lived worker never inherits them.
    With S3 configured, MLflow's own S3 client gets the same bounded retries and timeouts as
    ours (:func:`~minivess.tracking.storage.bounded_default_clients`).
    """
    from mlflow.tracking._tracking_service import utils

    s3 = (
        bounded_default_clients()
        if getattr(client, _S3_USED_ATTR, False)
        else contextlib.nullcontext()
    )
    with (
        scoped_environ(getattr(client, _S3_ENV_ATTR, {})),
        utils._use_tracking_uri(client.tracking_uri),
        s3,
    ):
        yield


def experiment_id(client: Any, flow: Flow, settings: Settings) -> str:
    """Id of the flow's experiment, created (with the settings' artifact root) if missing."""
    name = EXPERIMENTS[flow]
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=settings.artifact_location)


@contextlib.contextmanager
def flow_run(
    client: Any,
    settings: Settings,
    flow: Flow,
    *,
    tags: Mapping[Tag, Any] | Mapping[str, Any] | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> Iterator[Any]:
    """Start (or resume, with ``run_id``) a run in the flow's experiment, tagged per contract.

    ``params`` and ``metrics`` are logged as soon as the run starts (inside its guard).

    The run ends FAILED if the body raises (KILLED when the error says so, e.g. a preempted
    training), so a half-done run is never mistaken for a result. Every MLflow request in the
    block retries a dead or stalled server for at most ``mlflow.retry_budget_s`` seconds; then
    the block raises :class:`TrackingUnavailableError` (one line naming the URI and the fix),
    and the run's end is journaled and recorded on the next connection.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from minivess.tracking import faults

    budget = settings.storage.mlflow.retry_budget_s
    all_tags = {Tag.FLOW.value: flow.value, **{str(k): str(v) for k, v in (tags or {}).items()}}
    with faults.http_limits(budget), session(client):
        exp = experiment_id(client, flow, settings)
        run = mlflow.start_run(
            run_id=run_id, experiment_id=None if run_id else exp, run_name=run_name, tags=all_tags
        )
        if run_id:
            mlflow.set_tags(all_tags)
        run_id = run.info.run_id
        try:
            if params:
                mlflow.log_params(dict(params))
            if metrics:
                mlflow.log_metrics(dict(metrics))
            yield run
        except BaseException as err:
            status = getattr(err, "mlflow_status", "FAILED")
            if isinstance(err, KeyboardInterrupt):
                status = "KILLED"
            down = isinstance(err, MlflowException) and not _answers(settings.tracking_uri)
            if not down and _end_run(status):
                raise
            faults.record_pending(settings.workspace, settings.tracking_uri, run_id, status)
            # one quick try, so mlflow's own state is cleared; the journal does the rest
            with contextlib.suppress(Exception), faults.http_limits(1, 0, override=True):
                mlflow.end_run(status)
            if down or isinstance(err, MlflowException):
                raise TrackingUnavailableError(
                    faults.unreachable_message(
                        settings.tracking_uri, budget, run_id, _first_line(err)
                    )
                ) from None
            raise
        if not _end_run("FINISHED"):
            faults.record_pending(settings.workspace, settings.tracking_uri, run_id, "FAILED")
            raise TrackingUnavailableError(
                faults.unreachable_message(
                    settings.tracking_uri, budget, run_id, "ending the run failed"
                )
            )


def _answers(uri: str) -> bool:
    """True when the tracking server answers ``/health`` now (one try; local stores: True)."""
    try:
        check_tracking_server(uri, attempts=1)
    except TrackingUnavailableError:
        return False
    return True


def _end_run(status: str) -> bool:
    """End mlflow's active run with ``status``; False when the server did not take it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.end_run(status)
    except MlflowException as err:
        log.warning("could not record the run's end (%s): %s", status, _first_line(err))
        return False
    return True


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_text(client: Any, run_id: str, path: str) -> str:
    """The text of artifact ``path`` of run ``run_id``."""
    import mlflow

    with session(client):
        return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")


def download_run_artifacts(client: Any, run_id: str, path: str, dst: Path) -> Path:
    """Download artifact folder ``path`` of run ``run_id`` into ``dst``; returns the local path."""
    import mlflow

    dst.mkdir(parents=True, exist_ok=True)
    with session(client):
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=client.tracking_uri
        )
    return Path(local)


# The active run's side of the contract: the flows log through these, inside flow_run().


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_params(params)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics(metrics, step=step)


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags(tags)


def log_text(text: str, path: str) -> None:
    import mlflow

    with artifact_upload_errors():
        mlflow.log_text(text, path)


def log_dict(obj: Any, path: str) -> None:
    import mlflow

    with artifact_upload_errors():
        mlflow.log_dict(obj, path)


def log_file(path: str | Path, folder: str | None = None) -> None:
    """Copy a local file into the active run, under ``folder``."""
    import mlflow

    with artifact_upload_errors():
        mlflow.log_artifact(str(path), folder)


def log_dir(path: str | Path, folder: str | None = None) -> None:
    """Copy a local directory's files into the active run, under ``folder``."""
    import mlflow

    with artifact_upload_errors():
        mlflow.log_artifacts(str(path), folder)


def log_bytes(data: bytes, name: str, folder: str) -> None:
    """Store ``data`` as ``folder/name`` in the active run (through a temp file)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        local.write_bytes(data)
        log_file(local, folder)


def log_segmenter_model(checkpoint: bytes) -> str:
    """Log checkpoint bytes as the active run's pyfunc segmenter model (see
    :mod:`minivess.tracking.pyfunc`) and tag the run with its URI; returns ``models:/<id>``."""
    import tempfile

    from minivess.tracking.pyfunc import log_segmenter

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "best.pt"
        local.write_bytes(checkpoint)
        with artifact_upload_errors():
            info = log_segmenter(local)
    set_tags({Tag.MODEL_URI.value: info.model_uri})
    return str(info.model_uri)


def download_model(client: Any, model_uri: str, dst: Path) -> Path:
    """Download a logged model (``models:/<id>``, ``runs:/...``) into ``dst``; returns it."""
    import mlflow

    dst.mkdir(parents=True, exist_ok=True)
    with session(client):
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(dst), tracking_uri=client.tracking_uri
        )
    return Path(local)


def _filter(flow: Flow, tags: dict[str, str] | None, finished_only: bool) -> str:
    clauses = [f"tags.`{Tag.FLOW.value}` = '{flow.value}'"]
    if finished_only:
        clauses.append("attributes.status = 'FINISHED'")
    clauses += [f"tags.`{key}` = '{value}'" for key, value in (tags or {}).items()]
    return " and ".join(clauses)


def find_runs(
    client: Any, flow: Flow, *, tags: dict[str, str] | None = None, finished_only: bool = True
) -> list[Any]:
    """All runs of ``flow`` matching ``tags``, newest first."""
    exp = client.get_experiment_by_name(EXPERIMENTS[flow])
    if exp is None:
        return []
    query = _filter(flow, tags, finished_only)
    return list(
        client.search_runs(
            [exp.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"]
        )
    )


def resumable_run(client: Any, task_id: str | None, loss: str, fold: int) -> str | None:
    """The train run of this SkyPilot task and (loss, fold) cell, so a recovered spot job
    continues it instead of opening a second run; None off a managed job or on its first try."""
    if not task_id:
        return None
    tags = {Tag.SKYPILOT_TASK_ID.value: task_id, Tag.LOSS.value: loss, Tag.FOLD.value: str(fold)}
    runs = find_runs(client, Flow.TRAIN, tags=tags, finished_only=False)
    return runs[0].info.run_id if runs else None


def find_upstream(client: Any, flow: Flow, *, tags: dict[str, str] | None = None) -> Any:
    """The newest finished run of ``flow`` matching ``tags``.

    Raises:
        ContractError: no such run; the message names the experiment, the filter and the fix.
    """
    runs = find_runs(client, flow, tags=tags)
    if not runs:
        raise ContractError(
            f"no finished '{flow.value}' run in MLflow experiment '{EXPERIMENTS[flow]}' "
            f"matching {tags or {}} at {client.tracking_uri}; run the {flow.value} flow first "
            f"(e.g. `minivess flows run {flow.value}`)."
        )
    return runs[0]


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version in the registry.

    ``run_id`` is the run that logged the model; ``selected_by`` the analysis run that chose it
    (its :attr:`Tag.UPSTREAM_RUN_ID` version tag), or ``run_id`` when no such tag is set.
    """

    name: str
    version: str
    source: str
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)
    selected_by: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @classmethod
    def of(cls, mv: Any) -> RegisteredVersion:
        """From an mlflow ``ModelVersion``."""
        upstream = (mv.tags or {}).get(Tag.UPSTREAM_RUN_ID.value) or mv.run_id
        return cls(name=mv.name, version=str(mv.version), source=mv.source, run_id=mv.run_id,
                   tags=dict(mv.tags or {}), selected_by=upstream)  # fmt: skip


def _stored(client: Any, source: str, files: list[str]) -> set[str]:
    """Which of ``files`` (paths relative to ``source``) are stored under ``source``.

    ``source`` is ``runs:/<run_id>/<path>`` or ``models:/<model_id>`` (a logged model).
    """
    import mlflow

    base = source
    if source.startswith("models:/m-"):
        base = client.get_logged_model(source[len("models:/") :]).artifact_location
    stored: set[str] = set()
    for folder in sorted({str(Path(f).parent) for f in files}):
        uri = base if folder == "." else f"{base.rstrip('/')}/{folder}"
        try:
            listed = mlflow.artifacts.list_artifacts(
                artifact_uri=uri, tracking_uri=client.tracking_uri
            )
        except OSError:  # a folder that was never written
            listed = []
        prefix = "" if folder == "." else f"{folder}/"
        stored |= {prefix + Path(f.path).name for f in listed}
    return stored


def version_description(
    member: str, metrics: dict[str, float], plan: dict[str, Any], evaluated_on: str
) -> str:
    """The registry description of a version: its scores, where they come from, and its plan."""
    scores = ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()))
    keys = ("model", "patch_size", "batch_size", "sw_roi", "amp", "device")
    shown = "; ".join(f"{k} {plan[k]}" for k in keys if k in plan)
    return (
        f"{member}: {scores} (mean over the volumes of {evaluated_on}). "
        f"Plan {plan.get('plan_hash', '')}: {shown}."
    )


def register_model(
    client: Any,
    source: str,
    *,
    run_id: str,
    expected_files: list[str],
    name: str = REGISTERED_MODEL,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
    alias: str | None = None,
) -> RegisteredVersion:
    """Register ``source`` once every expected file is stored; optionally point ``alias`` at it.

    ``source``: ``models:/<model_id>`` (a logged model, e.g. a member's pyfunc) or
    ``runs:/<run_id>/<path>``. Verifying first means nothing half-written is ever registered.

    Raises:
        ContractError: an expected artifact is missing.
    """
    from mlflow.exceptions import MlflowException

    with session(client):
        stored = _stored(client, source, expected_files)
    missing = [f for f in expected_files if f not in stored]
    if missing:
        raise ContractError(
            f"refusing to register {source} (run {run_id}): artifacts {missing} missing "
            f"(upload incomplete?)."
        )
    version_tags = {Tag.STATUS.value: STATUS_COMPLETE, **(tags or {})}
    for key, value in (metrics or {}).items():
        version_tags[f"metric.{key}"] = f"{value:.6g}"
    model_id = source[len("models:/") :] if source.startswith("models:/m-") else None
    # MLflow resolves a ``models:/`` source through the fluent tracking URI: scope it to the client.
    with session(client):
        with contextlib.suppress(MlflowException):
            client.create_registered_model(name)
        mv = client.create_model_version(
            name, source=source, run_id=run_id, tags=version_tags, description=description,
            model_id=model_id,
        )  # fmt: skip
        if alias:
            client.set_registered_model_alias(name, alias, mv.version)
        return RegisteredVersion.of(client.get_model_version(name, mv.version))


def latest_version(client: Any, name: str = REGISTERED_MODEL) -> RegisteredVersion:
    """The newest complete version of the registered model.

    Raises:
        ContractError: nothing registered yet.
    """
    versions = [
        v
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get(Tag.STATUS.value) in (STATUS_COMPLETE, STATUS_DEPLOYED)
    ]
    if not versions:
        raise ContractError(
            f"no complete version of registered model '{name}' at {client.tracking_uri}; "
            f"run the analysis flow first (`minivess flows run analysis`)."
        )
    return RegisteredVersion.of(max(versions, key=lambda mv: int(mv.version)))


def aliased_version(
    client: Any, name: str = REGISTERED_MODEL, alias: str = CHAMPION_ALIAS
) -> RegisteredVersion:
    """The version ``models:/<name>@<alias>`` points at (the analysis flow sets ``@champion``).

    Raises:
        ContractError: no such alias; the message names the model and the fix.
    """
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise ContractError(
            f"registered model '{name}' has no alias @{alias} at {client.tracking_uri}; run the "
            f"analysis flow first (`minivess flows run analysis`)."
        ) from None
    return RegisteredVersion.of(mv)


def version_artifacts_missing(version: RegisteredVersion, detail: str) -> ContractError:
    """The one-line refusal for a registered version whose stored files are gone."""
    return ContractError(
        f"registered model {version.name} version {version.version}: its artifacts at "
        f"{version.source} are missing or unreadable ({detail}); re-run the analysis flow "
        "to register a complete version (`minivess flows run analysis`), or choose another."
    )


def download_version(client: Any, version: RegisteredVersion, dst: Path) -> Path:
    """Download a version's files into ``dst`` and return that directory.

    Raises:
        ContractError: the version's artifacts are missing from the artifact store (one line,
            see :func:`version_artifacts_missing`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    dst.mkdir(parents=True, exist_ok=True)
    try:
        with session(client):
            path = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=version.source, dst_path=str(dst), tracking_uri=client.tracking_uri
                )
            )
    except (MlflowException, OSError) as err:
        raise version_artifacts_missing(version, _first_line(err)) from None
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        raise version_artifacts_missing(version, "nothing was downloaded")
    return path


def mark_deployed(
    client: Any, version: RegisteredVersion, extra: dict[str, str] | None = None
) -> None:
    """Tag a model version as deployed (its bento passed the smoke test), with ``extra`` tags
    (e.g. the SkyServe command for public serving).

    The smoke-test server is stopped once the test passed, so its address is not recorded here:
    the deploy run's params hold it, under the name of what it was.
    """
    tags = {Tag.STATUS.value: STATUS_DEPLOYED, **(extra or {})}
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, value)
