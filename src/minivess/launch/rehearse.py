"""``minivess launch --target T --rehearse``: run the rendered task the way SkyPilot's node does.

The rehearsal renders the target (a real launch's render: a bucket is required), reads the
written YAML back with ``sky.Task.from_yaml`` (in an isolated SkyPilot child), and then, per
attempt and per node:

1. a fresh ``HOME`` with a copy of the workdir as ``~/sky_workdir`` (the files SkyPilot's rsync
   sends: git's tracked and untracked-but-not-ignored files);
2. the task's ``envs`` plus ``SKYPILOT_TASK_ID`` (the same across recoveries),
   ``SKYPILOT_NODE_RANK``, ``SKYPILOT_NODE_IPS`` (loopback), ``SKYPILOT_NUM_NODES`` and
   ``SKYPILOT_NUM_GPUS_PER_NODE``; the task's secrets by name from the rehearsal's shell;
3. the checkpoint bucket on a moto S3 server on 127.0.0.1 (fake credentials): only the bucket
   survives an attempt;
4. ``setup`` then ``run`` with bash, each node in its own process group.

``--preempt N`` stops N attempts at different points (each after the run has written its split
to the bucket, later each time): SIGTERM to every node's process group, a grace window
(default 30 s, as GKE gives), then SIGKILL; the next attempt is a fresh node with the same task
id. An uninterrupted rehearsal runs first; the report compares the final metrics.

The node setup is the real one (a uv-made Python 3.11 venv filled by ``.ci/bootstrap.sh``),
which takes minutes per fresh node. ``reuse_venv`` (``--reuse-venv PATH``) links an already
built venv as the node's ``~/.minivess/venv`` so setup's install steps are no-ops (its
bootstrap stamp must match this checkout); the CLI default runs the full setup.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from minivess.errors import ConfigError, MinivessError
from minivess.launch.launcher import REPO_DIR, LaunchOptions, default_runtime_dir, prepare
from minivess.settings import process_environ

log = logging.getLogger(__name__)

#: Experiment rehearsed when no ``--config`` is given (small data, 2 epochs).
REHEARSAL_EXPERIMENT = "rehearsal"
#: Bucket the rehearsal creates on its moto server.
REHEARSAL_BUCKET = "minivess-rehearsal"
#: Grace window between SIGTERM and SIGKILL (GKE's default for spot/preemptible nodes).
DEFAULT_GRACE_S = 30.0
#: Exit code SkyPilot's ``recover_on_exit_codes`` must see for a preemption.
from minivess.training.loop import PREEMPTED_EXIT_CODE, TRAINING_STARTED  # noqa: E402

#: Environment passed from the rehearsal's shell to a node besides the task's envs and secrets
#: (the machine's own settings: locale, thread count, package index).
NODE_PASSTHROUGH = ("LANG", "LC_ALL", "OMP_NUM_THREADS", "TMPDIR", "USER", "LOGNAME")
#: The fake credentials the rehearsal's shell holds (moto accepts any).
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "rehearsal-key-id",
    "AWS_SECRET_ACCESS_KEY": "rehearsal-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class RehearsalError(MinivessError):
    """The rehearsal could not run (not: the rehearsed job failed, which the report says)."""


@dataclass(frozen=True)
class RehearsalOptions:
    """What ``minivess launch --rehearse`` was asked to do."""

    target: str
    config: str | None = None
    data: Path | None = None
    model: str | None = None
    nodes: int | None = None
    preempt: int = 0
    grace_s: float = DEFAULT_GRACE_S
    json_path: Path | None = None
    reuse_venv: Path | None = None
    system_python: Path | None = None
    work_dir: Path | None = None
    repo_dir: Path = REPO_DIR
    runtime_dir: Path = field(default_factory=default_runtime_dir)
    timeout_s: float = 1800.0


@dataclass
class Attempt:
    """One attempt (one set of fresh nodes)."""

    exit_codes: list[int]
    preempted: bool
    checkpoint_in_bucket_at_teardown: bool
    seconds: float
    preempted_at: list[str] = field(default_factory=list)
    starts: list[list[int]] = field(default_factory=list)
    stopped_at: list[int] | None = None


@dataclass
class RehearsalReport:
    """The ``--json`` report."""

    target: str
    nodes: int
    preemptions: int
    exit_codes: list[list[int]]
    recovered: bool
    final_metrics: dict[str, Any]
    uninterrupted_metrics: dict[str, Any]
    metrics_equal: bool
    lost_steps: int | None
    checkpoint_in_bucket_at_teardown: list[bool]
    preemption_exits_map_to_recovery: bool
    task_id: str
    yaml: str
    estimate: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    uninterrupted_seconds: float = 0.0
    passed: bool = False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workdir_files(workdir: Path) -> list[Path]:
    """What SkyPilot syncs from ``workdir``: git's tracked and untracked-not-ignored files."""
    proc = subprocess.run(
        ["git", "-C", str(workdir), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RehearsalError(f"{workdir}: not a git checkout (the rehearsal copies git's files)")
    names = [n for n in proc.stdout.decode().split("\0") if n]
    return [Path(n) for n in names if (workdir / n).is_file()]


def copy_workdir(workdir: Path, dest: Path) -> None:
    """Copy the synced files of ``workdir`` to ``dest`` (``~/sky_workdir``)."""
    for rel in workdir_files(workdir):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workdir / rel, target)


def _stamp_matches(venv: Path, workdir: Path) -> bool:
    """The bootstrap stamp in ``venv`` is the one this checkout's ``.ci/bootstrap.sh`` wants.

    The stamp's formula lives only in the script: it is asked with ``--print-stamp``.
    """
    stamp = venv / ".minivess-installed"
    if not stamp.is_file():
        return False
    want = subprocess.run(
        ["bash", str(workdir / ".ci" / "bootstrap.sh"), "--print-stamp"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    return stamp.read_text().strip() == want


class Bucket:
    """The rehearsal's checkpoint bucket on a loopback moto server."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.name = REHEARSAL_BUCKET
        self.client().create_bucket(Bucket=self.name)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def keys(self, contains: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name):
            out += [o["Key"] for o in page.get("Contents", []) if contains in o["Key"]]
        return out

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def stop(self) -> None:
        self._server.stop()


@dataclass
class _Node:
    rank: int
    home: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


class Rehearsal:
    """Runs attempts of one rendered task against one bucket (see the module doc)."""

    def __init__(
        self,
        opts: RehearsalOptions,
        task: dict[str, Any],
        shell: dict[str, str],
        bucket: Bucket,
        root: Path,
        task_id: str,
    ) -> None:
        self.opts = opts
        self.task = task
        self.shell = shell
        self.bucket = bucket
        self.root = root
        self.task_id = task_id
        self.nodes = int(task.get("num_nodes") or 1)
        self.workdir = Path(str(task["workdir"]))
        self._attempt = 0

    # -- one node ------------------------------------------------------------------------
    def _fresh_node(self, rank: int, label: str) -> _Node:
        home = self.root / label / f"node{rank}" / "home"
        home.mkdir(parents=True)
        copy_workdir(self.workdir, home / "sky_workdir")
        if self.opts.reuse_venv is not None:
            venv = Path(self.opts.reuse_venv).absolute()
            if not _stamp_matches(venv, home / "sky_workdir"):
                raise RehearsalError(
                    f"--reuse-venv {venv}: its bootstrap stamp is not for this checkout's "
                    "pyproject/.ci files; run `make setup` (or drop --reuse-venv)"
                )
            (home / ".minivess").mkdir()
            (home / ".minivess" / "venv").symlink_to(venv)
        return _Node(rank, home, home.parent / "node.log")

    def _env(self, node: _Node, port: int) -> dict[str, str]:
        bindir = node.home.parent / "bin"
        bindir.mkdir(exist_ok=True)
        if self.opts.system_python is not None:
            for name in ("python3", "python"):
                link = bindir / name
                if not link.exists():
                    link.symlink_to(Path(self.opts.system_python).absolute())
        env = {k: self.shell[k] for k in NODE_PASSTHROUGH if k in self.shell}
        env.update({k: v for k, v in self.shell.items() if k.startswith("PIP_")})
        env.update({k: str(v) for k, v in (self.task.get("envs") or {}).items()})
        for name in self.task.get("secrets") or []:
            if self.shell.get(name):
                env[name] = self.shell[name]
        env.update(
            HOME=str(node.home),
            PATH=f"{bindir}:{node.home}/.local/bin:/usr/local/bin:/usr/bin:/bin",
            SKYPILOT_TASK_ID=self.task_id,
            SKYPILOT_NODE_RANK=str(node.rank),
            SKYPILOT_NODE_IPS="\n".join(["127.0.0.1"] * self.nodes),
            SKYPILOT_NUM_NODES=str(self.nodes),
            SKYPILOT_NUM_GPUS_PER_NODE="1",
            MINIVESS_MASTER_PORT=str(port),
            AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
            AWS_RESPONSE_CHECKSUM_VALIDATION="when_required",
        )
        return env

    def _bash(self, node: _Node, script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = node.log.open("ab")
        return subprocess.Popen(
            ["bash", "-c", script],
            cwd=node.home / "sky_workdir",
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    # -- one attempt ---------------------------------------------------------------------
    def attempt(self, label: str, preempt_after_s: float | None) -> Attempt:
        """Fresh nodes: setup, then run; optionally preempt ``preempt_after_s`` after the run
        has started training (its split is in the bucket)."""
        t0 = time.monotonic()
        port = _free_port()
        nodes = [self._fresh_node(r, label) for r in range(self.nodes)]
        envs = [self._env(n, port) for n in nodes]
        if self.task.get("setup"):
            for n, env in zip(nodes, envs, strict=True):
                log.info("rehearsal %s node %d: setup (log %s)", label, n.rank, n.log)
                code = self._bash(n, self.task["setup"], env).wait()
                if code != 0:
                    tail = n.log.read_text(errors="replace")[-1500:]
                    raise RehearsalError(f"{label} node {n.rank}: setup exited {code}: {tail}")
        log.info("rehearsal %s: run on %d node(s)", label, len(nodes))
        for n, env in zip(nodes, envs, strict=True):
            n.proc = self._bash(n, self.task["run"], env)
        procs = [n.proc for n in nodes if n.proc is not None]
        try:
            return self._watch(label, nodes, procs, preempt_after_s, t0)
        finally:
            self._stop(procs, grace_s=0.0)  # nothing of a node outlives its attempt

    def _watch(
        self,
        label: str,
        nodes: list[_Node],
        procs: list[subprocess.Popen[bytes]],
        preempt_after_s: float | None,
        t0: float,
    ) -> Attempt:
        preempted = False
        deadline = time.monotonic() + self.opts.timeout_s
        started_at: float | None = None
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                self._stop(procs, grace_s=5.0)
                raise RehearsalError(f"{label}: run did not finish in {self.opts.timeout_s:g} s")
            if preempt_after_s is not None and not preempted:
                if started_at is None and self._training_started(nodes):
                    started_at = time.monotonic()
                if started_at is not None and time.monotonic() - started_at >= preempt_after_s:
                    log.info(
                        "rehearsal %s: PREEMPTION: SIGTERM, %g s grace, then SIGKILL",
                        label,
                        self.opts.grace_s,
                    )
                    self._stop(procs, grace_s=self.opts.grace_s)
                    preempted = True
            time.sleep(0.2)
        codes = [_exit_code(p.wait()) for p in procs]
        log.info("rehearsal %s: exit codes %s", label, codes)
        stops = _positions(nodes[0], STOP_RE)
        return Attempt(
            exit_codes=codes,
            preempted=preempted,
            checkpoint_in_bucket_at_teardown=bool(
                self.bucket.keys(f"{self.task_id}/") and self._last_keys()
            ),
            seconds=round(time.monotonic() - t0, 1),
            preempted_at=self._preempt_messages(nodes) if preempted else [],
            starts=_positions(nodes[0], START_RE),
            stopped_at=stops[-1] if stops else None,
        )

    def _last_keys(self) -> list[str]:
        return [k for k in self.bucket.keys(self.task_id) if k.endswith("/last.pt")]

    @staticmethod
    def _training_started(nodes: list[_Node]) -> bool:
        """The trainer logged that its SIGTERM handler is in place (on every node)."""
        return all(
            n.log.is_file() and TRAINING_STARTED in _flat(n.log.read_text(errors="replace"))
            for n in nodes
        )

    @staticmethod
    def _stop(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
        """SIGTERM every node's process group, wait ``grace_s``, then SIGKILL what is left."""
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        end = time.monotonic() + grace_s
        while time.monotonic() < end and any(p.poll() is None for p in procs):
            time.sleep(0.1)
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # the VM goes: nothing survives

    @staticmethod
    def _preempt_messages(nodes: list[_Node]) -> list[str]:
        out = []
        for n in nodes:
            text = _flat(n.log.read_text(errors="replace"))
            out += re.findall(r"preempted \(SIGTERM\) in epoch \d+ after step \d+", text)
        return out

    # -- results -------------------------------------------------------------------------
    def metrics(self) -> tuple[dict[str, Any], int]:
        """Per grid cell: the final history entry in the bucket's ``last.pt``; and the total
        optimizer steps the checkpoints record."""
        import io

        import torch

        out: dict[str, Any] = {}
        for key in sorted(self._last_keys()):
            state = torch.load(io.BytesIO(self.bucket.read(key)), weights_only=True)
            history = json.loads(state.get("history") or "[]")
            cell = key.rsplit("/", 2)[-2]
            out[cell] = history[-1] if history else {}
        return out, 0


#: (1-based epoch, steps done) where a run started / was stopped, from the trainer's log.
START_RE = re.compile(TRAINING_STARTED + r": from epoch (\d+) step (\d+)")
STOP_RE = re.compile(r"preempted \(SIGTERM\) in epoch (\d+) after step (\d+)")


def _positions(node: _Node, pattern: re.Pattern[str]) -> list[list[int]]:
    text = _flat(node.log.read_text(errors="replace")) if node.log.is_file() else ""
    return [[int(a), int(b)] for a, b in pattern.findall(text)]


def lost_steps(attempts: list[Attempt], steps_per_epoch: int | None) -> int | None:
    """Steps trained before a preemption that the next attempt had to redo.

    Each preempted attempt stopped at (epoch, step) (its log); the next attempt started that
    cell at (epoch', step') (its log). ``None`` when unknown (killed before it could say where).
    """
    total = 0
    for k, att in enumerate(attempts[:-1]):
        if not att.preempted:
            continue
        nxt = attempts[k + 1]
        cell = len(att.starts) - 1
        if att.stopped_at is None or cell < 0 or len(nxt.starts) <= cell:
            return None
        (e0, s0), (e1, s1) = att.stopped_at, nxt.starts[cell]
        if e0 == e1:
            total += max(0, s0 - s1)
        elif steps_per_epoch is not None:
            total += max(0, (e0 - e1) * steps_per_epoch + s0 - s1)
        else:
            return None
    return total


def _flat(text: str) -> str:
    """Log text with rich's line wrapping undone (whitespace runs become one space)."""
    return " ".join(text.split())


def _exit_code(code: int) -> int:
    """A signal death as the shell reports it (128 + signal)."""
    return 128 - code if code < 0 else code


def _shell_env(bucket: Bucket) -> dict[str, str]:
    """The rehearsal's stand-in for the user's shell: no real cloud credentials, ever."""
    env = {
        k: v
        for k, v in process_environ().items()
        if not k.startswith(("AWS_", "SKYPILOT_", "MLFLOW_", "MINIVESS_S3_"))
    }
    env.update(FAKE_CREDENTIALS)
    env.update(MINIVESS_S3_BUCKET=bucket.name, MINIVESS_S3_ENDPOINT_URL=bucket.endpoint)
    return env


def _steps_in(messages: list[str]) -> list[tuple[int, int]]:
    return [
        (int(m.group(1)), int(m.group(2)))
        for text in messages
        if (m := re.search(r"epoch (\d+) after step (\d+)", text))
    ]


def rehearse(opts: RehearsalOptions) -> RehearsalReport:
    """Render the target, then rehearse it uninterrupted and with ``opts.preempt`` preemptions.

    Raises:
        RehearsalError / ConfigError: the rehearsal could not run.
    """
    from minivess.launch.skycheck import read_task

    if opts.preempt < 0:
        raise ConfigError("--preempt must be >= 0")
    root = Path(opts.work_dir or tempfile.mkdtemp(prefix="minivess-rehearsal-")).absolute()
    root.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    bucket = Bucket()
    try:
        shell = _shell_env(bucket)
        prepared = prepare(
            LaunchOptions(
                target=opts.target,
                data=opts.data,
                model=opts.model,
                config=opts.config or REHEARSAL_EXPERIMENT,
                dry_run=False,
                out_dir=root / "rendered",
                runtime_dir=opts.runtime_dir,
                pools_file=root / "rendered" / "ssh_node_pools.yaml",
                repo_dir=opts.repo_dir,
                workspace=root / "launch-workspace",
                num_nodes=opts.nodes,
            ),
            environ=shell,
        )
        task = read_task(prepared.yaml_path, Path(opts.runtime_dir))
        mounts: dict[str, Any] = task["mounts"]  # type: ignore[assignment]  # JSON from the child
        unsupported = {d: m for d, m in mounts.items() if m["mode"] != "COPY"}
        if unsupported:
            raise RehearsalError(
                f"{prepared.yaml_path}: bucket mounts {sorted(unsupported)} are not rehearsed; "
                "use checkpoints.direct: true (the trainer writes the bucket itself)"
            )
        base = f"sky-rehearsal-{uuid.uuid4().hex[:8]}_{prepared.target.name}"
        # Uninterrupted baseline: its own task id (its own checkpoint folder).
        ref = Rehearsal(opts, task, shell, bucket, root, f"{base}_ref-0")
        ref_attempt = ref.attempt("uninterrupted", None)
        ref_metrics, _ = ref.metrics()
        run = Rehearsal(opts, task, shell, bucket, root, f"{base}_1-0")
        attempts: list[Attempt] = []
        for k in range(opts.preempt + 1):
            delay = 0.5 + 1.5 * k if k < opts.preempt else None
            att = run.attempt(f"attempt{k}", delay)
            attempts.append(att)
            if not att.preempted and any(att.exit_codes):
                break  # failed (or stopped by itself): no further recovery to rehearse
        final, _ = run.metrics()
    finally:
        bucket.stop()
    preempted = [a for a in attempts if a.preempted]
    maps = all(set(a.exit_codes) == {PREEMPTED_EXIT_CODE} for a in preempted)
    last_ok = bool(attempts) and attempts[-1].exit_codes and not any(attempts[-1].exit_codes)
    lost = lost_steps(attempts, None)
    equal = bool(final) and final == ref_metrics
    report = RehearsalReport(
        target=opts.target,
        nodes=run.nodes,
        preemptions=len(preempted),
        exit_codes=[a.exit_codes for a in attempts],
        recovered=bool(last_ok) and len(preempted) == opts.preempt,
        final_metrics=final,
        uninterrupted_metrics=ref_metrics,
        metrics_equal=equal,
        lost_steps=lost,
        checkpoint_in_bucket_at_teardown=[a.checkpoint_in_bucket_at_teardown for a in attempts],
        preemption_exits_map_to_recovery=maps,
        task_id=run.task_id,
        yaml=str(prepared.yaml_path),
        attempts=[asdict(a) for a in attempts],
        uninterrupted_seconds=ref_attempt.seconds,
    )
    report.passed = bool(
        report.recovered
        and report.metrics_equal
        and maps
        and lost == 0
        and not any(ref_attempt.exit_codes)
    )
    if opts.json_path is not None:
        Path(opts.json_path).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def print_report(report: RehearsalReport) -> None:
    """A short summary of the rehearsal (the JSON report has everything)."""
    from rich.console import Console

    c = Console()
    c.print(
        f"rehearsal of {report.target} ({report.nodes} node(s), task {report.task_id}): "
        f"{'[green]PASSED[/]' if report.passed else '[red]FAILED[/]'}"
    )
    for i, (codes, ck) in enumerate(
        zip(report.exit_codes, report.checkpoint_in_bucket_at_teardown, strict=True)
    ):
        c.print(f"  attempt {i}: exit codes {codes}, checkpoint in bucket at teardown: {ck}")
    c.print(
        f"  preemptions {report.preemptions} (exits map to {PREEMPTED_EXIT_CODE}: "
        f"{report.preemption_exits_map_to_recovery}), recovered: {report.recovered}, "
        f"lost steps: {report.lost_steps}"
    )
    c.print(f"  metrics equal to the uninterrupted rehearsal: {report.metrics_equal}")
    for cell, m in report.final_metrics.items():
        c.print(f"  {cell}: {m}")
