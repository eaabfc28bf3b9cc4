"""``minivess launch --target serve --rehearse``: one SkyServe replica, run here as SkyPilot would.

The rehearsal renders the serve target (the same render as ``sky serve up``), reads the written
YAML back with SkyPilot's parser (in an isolated SkyPilot child, which also reports the service's
readiness probe as SkyServe parsed it), and then:

1. stands up what the replica's secrets point at: a real ``mlflow server`` on 127.0.0.1 (SQLite,
   artifacts proxied through the server, as ``minivess stack up --artifacts proxied``) with a
   model registered the way the analysis flow registers the champion (a pyfunc model version
   aliased ``@champion``; an untrained network built from the rendered plan: serving, not
   accuracy, is rehearsed), and a random bearer token under the target's ``auth_token_env``;
2. prepares a fresh replica node with the training rehearsal's machinery
   (:mod:`minivess.launch.rehearse`): fresh ``HOME``, ``~/sky_workdir`` with git's files, the
   task's envs, ``SKYPILOT_*`` variables and secrets by name, then runs ``setup`` and ``run``
   with bash in their own process group. The one change to ``run``: the replica binds
   127.0.0.1 on a free port instead of ``0.0.0.0:<port>`` (a shared machine);
3. probes readiness as SkyServe's controller does (``sky/serve/replica_managers.py``): a GET (a
   POST with ``post_data``) of the readiness path with the spec's headers and timeout, every probe
   interval; not ready for longer than ``initial_delay_seconds`` after the first failed probe
   means SkyServe tears the replica down, so the rehearsal fails;
4. sends an authenticated ``POST /summary`` and ``POST /segment`` of a synthetic volume, then the
   same without a token and with a wrong one, which must be refused (401);
5. stops the replica's process group (SIGTERM, grace, SIGKILL) and the tracking server.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shlex
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from minivess.errors import ConfigError
from minivess.launch.launcher import prepare
from minivess.launch.rehearse import (
    Bucket,
    Rehearsal,
    RehearsalError,
    RehearsalOptions,
    _free_port,
    launch_options,
)
from minivess.settings import process_environ

log = logging.getLogger(__name__)

#: Seconds the replica gets after SIGTERM before SIGKILL (its server stops in a few).
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class Probe:
    """One readiness probe: seconds since the run started, HTTP status (0: no answer)."""

    t_s: float
    status: int
    error: str = ""


@dataclass
class ServeRehearsalReport:
    """The ``--json`` report of a serve rehearsal."""

    target: str
    yaml: str
    readiness: dict[str, Any]
    setup_exit_code: int
    setup_seconds: float
    probes: list[Probe] = field(default_factory=list)
    ready_after_s: float | None = None
    within_initial_delay: bool = False
    authed: dict[str, Any] = field(default_factory=dict)
    unauthenticated_status: int = 0
    wrong_token_status: int = 0
    model_uri: str = ""
    replica_log: str = ""
    passed: bool = False


def is_serve_target(target: str) -> bool:
    """True when the target (name or YAML path) is a SkyServe service."""
    from minivess.launch.targets import Kind, load_target

    return load_target(target).kind is Kind.SERVE


def localize_run(run: str, port: int, local_port: int) -> str:
    """The replica's ``run`` with ``--host 0.0.0.0 --port <port>`` bound to loopback instead.

    Raises:
        RehearsalError: the run does not serve on ``0.0.0.0:<port>`` (nothing to rehearse).
    """
    out, n_host = re.subn(r"--host(=|\s+)0\.0\.0\.0\b", "--host 127.0.0.1", run)
    out, n_port = re.subn(rf"--port(=|\s+){port}\b", f"--port {local_port}", out)
    if n_host != 1 or n_port != 1:
        raise RehearsalError(
            f"the serve task's run does not bind --host 0.0.0.0 --port {port} once "
            f"(found {n_host} host and {n_port} port flags): {run!r}"
        )
    return out


def probe_once(url: str, spec: dict[str, Any]) -> tuple[int, str]:
    """One SkyServe readiness probe of ``url + readiness_path`` (status, error text)."""
    import httpx

    path = url + str(spec["readiness_path"])
    timeout = float(spec["readiness_timeout_seconds"])
    headers = spec.get("readiness_headers") or None
    try:
        if spec.get("post_data") is not None:
            resp = httpx.post(path, json=spec["post_data"], headers=headers, timeout=timeout)
        else:
            resp = httpx.get(path, headers=headers, timeout=timeout)
    except httpx.HTTPError as err:
        return 0, f"{type(err).__name__}: {err}"
    return resp.status_code, ""


def wait_ready_as_skyserve(
    url: str, spec: dict[str, Any], alive: Any, t0: float
) -> tuple[list[Probe], float | None]:
    """Probe every ``probe_interval_seconds`` until 200, as SkyServe's controller does.

    Not ready for more than ``initial_delay_seconds`` after the first failed probe (or the
    replica's process gone) ends it: SkyServe would tear the replica down. Returns the probes
    and the seconds from ``t0`` to the first 200 (``None``: never ready).
    """
    interval = float(spec["probe_interval_seconds"])
    delay = float(spec["initial_delay_seconds"])
    probes: list[Probe] = []
    first_fail: float | None = None
    while True:
        now = time.monotonic()
        status, error = probe_once(url, spec)
        probes.append(Probe(round(now - t0, 1), status, error[:200]))
        if status == 200:
            return probes, round(now - t0, 1)
        first_fail = now if first_fail is None else first_fail
        if now - first_fail > delay or not alive():
            return probes, None
        log.info(
            "replica not ready (%s) after %.0f s, within the initial delay of %.0f s",
            status or error[:80],
            now - t0,
            delay,
        )
        time.sleep(max(0.0, interval - (time.monotonic() - now)))


def _register_champion(settings: Any, plan_path: Path, work: Path) -> str:
    """A pyfunc model version of an untrained network from the plan, aliased ``@champion``."""
    from minivess.models import build_model
    from minivess.planning.plan import TrainingPlan
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking.contract import CHAMPION_ALIAS, Flow
    from minivess.training.checkpoint import BEST, save_state

    plan = TrainingPlan.load(plan_path)
    model = build_model(plan, in_channels=1, out_channels=2)
    ckpt = work / "champion" / BEST
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    save_state({"plan": plan.model_dump_json(), "model": model.state_dict(), "out_channels": 2},
               ckpt)  # fmt: skip
    client = mfa.connect(settings)
    with mfa.flow_run(client, settings, Flow.ANALYSIS, run_name="serve-rehearsal") as run:
        model_uri = mfa.log_segmenter_model(ckpt.read_bytes())
    version = mfa.register_model(
        client, model_uri, run_id=run.info.run_id,
        expected_files=[f"artifacts/{BEST}", "MLmodel"], alias=CHAMPION_ALIAS,
    )  # fmt: skip
    log.info("serve rehearsal: registered %s (untrained network of plan %s)", version.uri,
             plan.plan_hash)  # fmt: skip
    return version.uri


def _requests(url: str, volume: Path, token: str) -> tuple[dict[str, Any], int, int]:
    """(authed results, status without a token, status with a wrong token)."""
    import httpx

    from minivess.serving.client import segment_file, summarize_file

    t0 = time.perf_counter()
    summary = summarize_file(url, volume, token=token)
    mask = volume.parent / "rehearsal_mask.nii.gz"
    segment_file(url, volume, mask, token=token)
    authed = {
        "summary_shape": summary["shape"],
        "vessel_fraction": summary["vessel_fraction"],
        "backend": summary["backend"],
        "mask_bytes": mask.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 2),
    }

    def post(headers: dict[str, str]) -> int:
        files = {"volume": (volume.name, volume.read_bytes())}
        return httpx.post(f"{url}/summary", files=files, headers=headers, timeout=120).status_code

    return authed, post({}), post({"Authorization": f"Bearer wrong-{token}"})


def _volume(plan_path: Path, out: Path) -> Path:
    from minivess.planning.plan import TrainingPlan
    from minivess.serving.deploy import default_smoke_volume

    return default_smoke_volume(TrainingPlan.load(plan_path), out)


def rehearse_serve(opts: RehearsalOptions) -> ServeRehearsalReport:
    """Rehearse the serve target ``opts.target`` (see the module doc).

    Raises:
        RehearsalError / ConfigError: the rehearsal could not run (not: the replica failed,
            which the report says).
    """
    from minivess.launch.skycheck import read_task
    from minivess.launch.targets import load_target
    from minivess.settings import load_settings
    from minivess.tracking.stack import StackOptions, stack_down, stack_up

    if opts.preempt:
        raise ConfigError(
            "--preempt: a serve rehearsal runs one replica; SkyServe replaces a preempted "
            "replica itself (dynamic_ondemand_fallback), so there is no resume to rehearse."
        )
    root = Path(opts.work_dir or tempfile.mkdtemp(prefix="minivess-serve-rehearsal-")).absolute()
    root.mkdir(parents=True, exist_ok=True)
    shell = {
        k: v
        for k, v in process_environ().items()
        if not k.startswith(("AWS_", "SKYPILOT_", "MLFLOW_", "MINIVESS_S3_", "BENTOML_"))
    }
    workspace = root / "registry-workspace"
    stack_settings = load_settings(workspace=workspace, environ=shell)
    info = stack_up(StackOptions(artifacts="proxied"), stack_settings)
    try:
        target = load_target(opts.target)
        if target.service is None:
            raise RehearsalError(f"{opts.target}: not a serve target (no service section)")
        token = secrets.token_urlsafe(24)
        # The secrets the replica needs, in the rehearsal's shell (by name, as `--secret`).
        shell["MLFLOW_TRACKING_URI"] = info.url
        if target.service.auth_token_env:
            shell[target.service.auth_token_env] = token
        prepared = prepare(launch_options(opts, root), environ=shell)
        task = read_task(prepared.yaml_path, Path(opts.runtime_dir))
        spec = cast(dict[str, Any], task["service"])
        model_uri = _register_champion(
            load_settings(workspace=workspace, environ=shell), prepared.plan_path, root
        )
        return _run_replica(opts, prepared, task, spec, shell, root, token, model_uri)
    finally:
        stack_down(stack_settings)


def _run_replica(
    opts: RehearsalOptions,
    prepared: Any,
    task: dict[str, Any],
    spec: dict[str, Any],
    shell: dict[str, str],
    root: Path,
    token: str,
    model_uri: str,
) -> ServeRehearsalReport:
    """Setup, run, probe and query one replica node; always stops it."""
    port = int(prepared.target.service.port)
    local_port = _free_port()
    # A replica has no checkpoint bucket: only the node helpers of the training rehearsal run.
    node_runner = Rehearsal(opts, task, shell, cast(Bucket, None), root,
                            f"sky-serve-rehearsal-{uuid.uuid4().hex[:8]}")  # fmt: skip
    node = node_runner._fresh_node(0, "replica")
    env = node_runner._env(node, _free_port())
    report = ServeRehearsalReport(
        target=prepared.target.name,
        yaml=str(prepared.yaml_path),
        readiness=spec,
        setup_exit_code=0,
        setup_seconds=0.0,
        model_uri=model_uri,
        replica_log=str(node.log),
    )
    t0 = time.monotonic()
    if task.get("setup"):
        log.info("serve rehearsal: setup (log %s)", node.log)
        report.setup_exit_code = node_runner._bash(node, str(task["setup"]), env).wait()
        report.setup_seconds = round(time.monotonic() - t0, 1)
        if report.setup_exit_code != 0:
            return _finish(opts, report)
    run = localize_run(str(task["run"]), port, local_port)
    log.info("serve rehearsal: run on 127.0.0.1:%d: %s", local_port, shlex.join(run.split()[-6:]))
    proc = node.proc = node_runner._bash(node, run, env)
    url = f"http://127.0.0.1:{local_port}"
    t_run = time.monotonic()
    try:
        probes, ready = wait_ready_as_skyserve(url, spec, lambda: proc.poll() is None, t_run)
        report.probes, report.ready_after_s = probes, ready
        report.within_initial_delay = ready is not None
        if ready is not None:
            volume = _volume(prepared.plan_path, root / "requests")
            report.authed, report.unauthenticated_status, report.wrong_token_status = _requests(
                url, volume, token
            )
    finally:
        Rehearsal._stop([node], grace_s=STOP_GRACE_S)
    return _finish(opts, report)


def _finish(opts: RehearsalOptions, report: ServeRehearsalReport) -> ServeRehearsalReport:
    report.passed = bool(
        report.setup_exit_code == 0
        and report.within_initial_delay
        and report.authed
        and report.unauthenticated_status == 401
        and report.wrong_token_status == 401
    )
    if opts.json_path is not None:
        Path(opts.json_path).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def print_serve_report(report: ServeRehearsalReport) -> None:
    """A short summary of the serve rehearsal (the JSON report has everything)."""
    from rich.console import Console

    c = Console()
    verdict = "[green]PASSED[/]" if report.passed else "[red]FAILED[/]"
    c.print(f"rehearsal of {report.target} (one SkyServe replica): {verdict}")
    spec = report.readiness
    c.print(
        f"  setup: exit {report.setup_exit_code} in {report.setup_seconds:g} s; readiness "
        f"{spec.get('readiness_path')} every {spec.get('probe_interval_seconds')} s, timeout "
        f"{spec.get('readiness_timeout_seconds')} s, initial delay "
        f"{spec.get('initial_delay_seconds')} s"
    )
    fails = sum(1 for p in report.probes if p.status != 200)
    c.print(
        f"  ready after {report.ready_after_s} s of run ({fails} probe(s) not ready first); "
        f"within the initial delay: {report.within_initial_delay}"
    )
    c.print(f"  model {report.model_uri}; authenticated requests: {report.authed or 'none'}")
    c.print(
        f"  without a token: HTTP {report.unauthenticated_status}; wrong token: "
        f"HTTP {report.wrong_token_status} (401 expected)"
    )
    if not report.passed:
        c.print(f"  replica log: {report.replica_log}")
