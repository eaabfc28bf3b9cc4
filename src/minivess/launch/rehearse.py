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
import shlex
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
from minivess.launch.launcher import REPO_DIR, LaunchOptions, prepare
from minivess.launch.skycheck import default_runtime_dir
from minivess.planning.estimate import Estimate
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
#: (the machine's own settings: locale, thread count, CA bundle), plus every ``PIP_*`` and
#: ``UV_*`` variable (package index, certificates: behind a TLS-intercepting proxy, export
#: ``SSL_CERT_FILE`` or ``UV_NATIVE_TLS=1`` so the node's ``uv`` trusts it as pip does).
NODE_PASSTHROUGH = (
    "LANG",
    "LC_ALL",
    "OMP_NUM_THREADS",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
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
    return stamp.is_file() and stamp.read_text().strip() == _wanted_stamp(workdir)


def _wanted_stamp(workdir: Path) -> str:
    return subprocess.run(
        ["bash", str(workdir / ".ci" / "bootstrap.sh"), "--print-stamp"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


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

    def object_keys(self, contains: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name):
            out += [o["Key"] for o in page.get("Contents", []) if contains in o["Key"]]
        return out

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def clear(self) -> None:
        """Delete every object (a new job starts from an empty bucket)."""
        client = self.client()
        for key in self.object_keys():
            client.delete_object(Bucket=self.name, Key=key)

    def stop(self) -> None:
        self._server.stop()


class LocalHost:
    """A node on this machine: its own process group, signalled with ``killpg``."""

    name = "localhost"

    def ip(self) -> str:
        return "127.0.0.1"

    def make_home(self, home: str, workdir: Path, venv: Path | None, python: Path | None) -> None:
        """``home`` with ``sky_workdir``, the reused venv link and the image-python shims."""
        h = Path(home)
        h.mkdir(parents=True)
        copy_workdir(workdir, h / "sky_workdir")
        if venv is not None:
            if not _stamp_matches(venv, h / "sky_workdir"):
                raise RehearsalError(_STAMP_HELP.format(venv=venv))
            (h / ".minivess").mkdir()
            (h / ".minivess" / "venv").symlink_to(venv)
        bindir = h.parent / "bin"
        bindir.mkdir(exist_ok=True)
        if python is not None:
            for name in ("python3", "python"):
                (bindir / name).symlink_to(python)

    def start(
        self, home: str, script: str, env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as out:
            return subprocess.Popen(
                ["bash", "-c", script],
                cwd=Path(home) / "sky_workdir",
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, home: str, proc: subprocess.Popen[bytes], sig: int) -> None:
        """Every process of the node once, as a VM's shutdown reaches them: whatever runs with
        its HOME (torchrun starts each worker in a session of its own, so a process group
        misses them; a second SIGTERM to torchrun would abort its wait for the workers)."""
        import psutil

        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.pid != os.getpid() and p.environ().get("HOME") == home:
                    p.send_signal(sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)

    def cleanup(self, root: str) -> None:
        """Local node folders stay under the rehearsal's work dir (their logs are there)."""


class SshHost:
    """A node reached with the OpenSSH client (an SSH node pool's host), as SkyPilot reaches it.

    The node's HOME is a fresh folder under ``remote_root`` on the host; the workdir travels
    as a tar stream over ``ssh``; setup and run are a wrapper script on the host that gives the
    node its environment; a preemption signals the node's processes (by HOME) over a second
    connection, so the node keeps its stdout while it saves its checkpoint. A host that is not
    loopback reaches the rehearsal's bucket through a reverse tunnel (``ssh -R``) to its port.
    """

    def __init__(self, pool: Any, entry: Any, bucket_port: int) -> None:
        from minivess.launch.ssh import ssh_command

        self._cmd = lambda remote: ssh_command(pool, entry, 10, remote)
        self.name = entry if isinstance(entry, str) else entry.ip
        self._ip = self._resolve()
        if self._ip not in LOOPBACK:
            self._forward = ["-o", "ExitOnForwardFailure=yes"]
            self._forward += ["-R", f"{bucket_port}:127.0.0.1:{bucket_port}"]
        else:
            self._forward = []

    def _resolve(self) -> str:
        """The address ``ssh -G`` resolves the host (or ``~/.ssh/config`` alias) to."""
        argv = [*self._cmd("")[:-2], "-G", self._cmd("")[-2]]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        for line in out.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == "hostname" and value:
                return "127.0.0.1" if value == "localhost" else value
        raise RehearsalError(f"ssh host {self.name}: `ssh -G` resolved no hostname")

    def ip(self) -> str:
        return self._ip

    def _run(self, remote: str, data: bytes | None = None) -> str:
        argv = self._cmd(remote)
        proc = subprocess.run(argv, input=data, capture_output=True, timeout=300, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise RehearsalError(
                f"ssh host {self.name}: exit {proc.returncode}: {err[-1] if err else ''}"
            )
        return proc.stdout.decode(errors="replace")

    def make_home(self, home: str, workdir: Path, venv: Path | None, python: Path | None) -> None:
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for rel in workdir_files(workdir):
                tar.add(workdir / rel, arcname=str(rel))
        q = shlex.quote
        wd, bindir = f"{home}/sky_workdir", f"{home.rsplit('/', 1)[0]}/bin"
        self._run(f"mkdir -p {q(wd)} {q(bindir)} && tar -C {q(wd)} -xf -", buf.getvalue())
        if venv is not None:
            stamp = self._run(f"cat {q(str(venv))}/.minivess-installed 2>/dev/null || true")
            if stamp.strip() != _wanted_stamp(workdir):
                raise RehearsalError(_STAMP_HELP.format(venv=f"{self.name}:{venv}"))
            self._run(
                f"mkdir -p {q(home)}/.minivess && ln -s {q(str(venv))} {q(home)}/.minivess/venv"
            )
        if python is not None:
            links = " && ".join(
                f"ln -sf {q(str(python))} {q(bindir)}/{n}" for n in ("python3", "python")
            )
            self._run(links)

    def start(
        self, home: str, script: str, env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        q = shlex.quote
        wrapper = (
            f"cd {q(home)}/sky_workdir\n"
            "exec env -i "
            + " ".join(q(f"{k}={v}") for k, v in env.items())
            + f" bash -c {q(script)}\n"
        )
        path = f"{home}/../phase.sh"
        self._run(f"cat > {q(path)}", wrapper.encode())
        argv = self._cmd(f"bash {q(path)}")
        argv = argv[:-2] + self._forward + argv[-2:]
        with log_path.open("ab") as out:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, home: str, proc: subprocess.Popen[bytes], sig: int) -> None:
        """The node's process group on the host, and every process there with its HOME."""
        with contextlib.suppress(RehearsalError, subprocess.TimeoutExpired):
            self._run(NODE_KILL.format(sig=int(sig), home=shlex.quote(home)))
        if sig == signal.SIGKILL:  # the VM is gone: so is the connection
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)

    def cleanup(self, root: str) -> None:
        with contextlib.suppress(RehearsalError, subprocess.TimeoutExpired):
            self._run(f"rm -rf {shlex.quote(root)}")


#: Signal a node on an SSH host: each process whose environment has the node's HOME, once
#: (``/proc``: Linux hosts, as SkyPilot's SSH pools are).
NODE_KILL = """\
home={home}
for d in /proc/[0-9]*; do
  [ "${{d#/proc/}}" = "$$" ] && continue
  if tr '\\0' '\\n' < "$d/environ" 2>/dev/null | grep -qxF "HOME=$home"; then
    kill -{sig} "${{d#/proc/}}" 2>/dev/null
  fi
done
true"""
#: Addresses that are this machine (no reverse tunnel needed to reach the bucket).
LOOPBACK = ("127.0.0.1", "::1")
_STAMP_HELP = (
    "--reuse-venv {venv}: its bootstrap stamp is not for this checkout's pyproject/.ci files; "
    "run `make setup` (or drop --reuse-venv)"
)


@dataclass
class _Node:
    rank: int
    host: LocalHost | SshHost
    home: str
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
        hosts: list[LocalHost | SshHost] | None = None,
        remote_root: str = "",
    ) -> None:
        self.opts = opts
        self.hosts = hosts or [LocalHost()]
        self.remote_root = remote_root
        self.task = task
        self.shell = shell
        self.bucket = bucket
        self.root = root
        self.task_id = task_id
        self.nodes = int(task.get("num_nodes") or 1)
        self.workdir = Path(str(task["workdir"]))

    # -- one node ------------------------------------------------------------------------
    def _host(self, rank: int) -> LocalHost | SshHost:
        return self.hosts[rank % len(self.hosts)]

    def _fresh_node(self, rank: int, label: str) -> _Node:
        host = self._host(rank)
        base = self.remote_root if isinstance(host, SshHost) else str(self.root)
        home = f"{base}/{label}/node{rank}/home"
        venv = Path(self.opts.reuse_venv).absolute() if self.opts.reuse_venv else None
        python = Path(self.opts.system_python).absolute() if self.opts.system_python else None
        host.make_home(home, self.workdir, venv, python)
        log_path = self.root / label / f"node{rank}" / "node.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return _Node(rank, host, home, log_path)

    def _env(self, node: _Node, port: int) -> dict[str, str]:
        bindir = node.home.rsplit("/", 1)[0] + "/bin"
        env = {k: self.shell[k] for k in NODE_PASSTHROUGH if k in self.shell}
        env.update({k: v for k, v in self.shell.items() if k.startswith(("PIP_", "UV_"))})
        env.update({k: str(v) for k, v in (self.task.get("envs") or {}).items()})
        for name in self.task.get("secrets") or []:
            if self.shell.get(name):
                env[name] = self.shell[name]
        env.update(
            HOME=node.home,
            PATH=f"{bindir}:{node.home}/.local/bin:/usr/local/bin:/usr/bin:/bin",
            SKYPILOT_TASK_ID=self.task_id,
            SKYPILOT_NODE_RANK=str(node.rank),
            SKYPILOT_NODE_IPS="\n".join(self._host(r).ip() for r in range(self.nodes)),
            SKYPILOT_NUM_NODES=str(self.nodes),
            SKYPILOT_NUM_GPUS_PER_NODE="1",
            MINIVESS_MASTER_PORT=str(port),
            AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
            AWS_RESPONSE_CHECKSUM_VALIDATION="when_required",
        )
        return env

    def _bash(self, node: _Node, script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return node.host.start(node.home, script, env, node.log)

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
            self._stop(nodes, grace_s=0.0)  # nothing of a node outlives its attempt

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
                self._stop(nodes, grace_s=5.0)
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
                    self._stop(nodes, grace_s=self.opts.grace_s)
                    preempted = True
            time.sleep(0.2)
        codes = [_exit_code(p.wait()) for p in procs]
        log.info("rehearsal %s: exit codes %s", label, codes)
        return Attempt(
            exit_codes=codes,
            preempted=preempted,
            checkpoint_in_bucket_at_teardown=bool(self._last_keys()),
            seconds=round(time.monotonic() - t0, 1),
            preempted_at=self._preempt_messages(nodes) if preempted else [],
            starts=_positions(nodes[0], START_RE),
            stopped_at=_stop_position(nodes[0]),
        )

    def _last_keys(self) -> list[str]:
        """The cells' last checkpoints: the bucket holds one run's at a time (see rehearse)."""
        return [k for k in self.bucket.object_keys() if k.endswith("/last.pt")]

    @staticmethod
    def _training_started(nodes: list[_Node]) -> bool:
        """The trainer logged that its SIGTERM handler is in place (on every node)."""
        return all(
            n.log.is_file() and TRAINING_STARTED in _flat(n.log.read_text(errors="replace"))
            for n in nodes
        )

    @staticmethod
    def _stop(nodes: list[_Node], grace_s: float) -> None:
        """SIGTERM every node's process group, wait ``grace_s``, then SIGKILL what is left."""
        running = [(n, n.proc) for n in nodes if n.proc is not None]
        for n, p in running:
            if p.poll() is None:
                n.host.signal(n.home, p, signal.SIGTERM)
        end = time.monotonic() + grace_s
        while time.monotonic() < end and any(p.poll() is None for _, p in running):
            time.sleep(0.1)
        for n, p in running:
            n.host.signal(n.home, p, signal.SIGKILL)  # the VM goes: nothing survives
            p.wait()

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


#: The trainer's summary line of a finished epoch ("epoch 2/2: train_loss ...").
EPOCH_DONE_RE = re.compile(r"epoch (\d+)/\d+: ")


def _stop_position(node: _Node) -> list[int] | None:
    """(1-based epoch, steps done) where the node's last cell stopped: its preemption message,
    else just after its last finished epoch (a SIGTERM during the final step lets the training
    finish, with no preemption message); ``None`` when it said neither."""
    text = _flat(node.log.read_text(errors="replace")) if node.log.is_file() else ""
    starts = list(START_RE.finditer(text))
    tail = text[starts[-1].end() :] if starts else text
    stops = STOP_RE.findall(tail)
    if stops:
        return [int(stops[-1][0]), int(stops[-1][1])]
    done = EPOCH_DONE_RE.findall(tail)
    return [int(done[-1]) + 1, 0] if done else None


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


def _hosts(target: Any, bucket: Bucket, rid: str) -> tuple[list[LocalHost | SshHost], str]:
    """Where the nodes run: the ssh target's pool hosts over SSH, else this machine; and the
    folder on the hosts that holds the nodes' HOMEs."""
    from minivess.launch.targets import Kind

    if target.kind is not Kind.SSH or target.pool is None:
        return [LocalHost()], ""
    port = int(bucket.endpoint.rsplit(":", 1)[1])
    hosts: list[LocalHost | SshHost] = [SshHost(target.pool, h, port) for h in target.pool.hosts]
    log.info("rehearsal: nodes run over ssh on %s", ", ".join(h.name for h in hosts))
    return hosts, f"/tmp/minivess-rehearsal-{rid}"


def launch_options(opts: RehearsalOptions, root: Path, **extra: Any) -> LaunchOptions:
    """What the launcher renders for a rehearsal of ``opts`` under ``root`` (a real render, not
    a dry run: the rehearsal runs it)."""
    return LaunchOptions(
        target=opts.target,
        data=opts.data,
        model=opts.model,
        config=opts.config or REHEARSAL_EXPERIMENT,
        dry_run=False,
        out_dir=root / "rendered",
        runtime_dir=opts.runtime_dir,
        repo_dir=opts.repo_dir,
        workspace=root / "launch-workspace",
        **extra,
    )


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
            launch_options(
                opts,
                root,
                pools_file=root / "rendered" / "ssh_node_pools.yaml",
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
        rid = uuid.uuid4().hex[:8]
        base = f"sky-rehearsal-{rid}_{prepared.target.name}"
        hosts, remote_root = _hosts(prepared.target, bucket, rid)
        try:
            # Uninterrupted baseline: its own task id (its own checkpoint folder).
            ref = Rehearsal(opts, task, shell, bucket, root, f"{base}_ref-0", hosts, remote_root)
            ref_attempt = ref.attempt("uninterrupted", None)
            ref_metrics, _ = ref.metrics()
            if opts.preempt == 0:  # nothing to recover: the uninterrupted run is the run
                run, attempts, final = ref, [ref_attempt], ref_metrics
            else:
                bucket.clear()  # off-spot targets key checkpoints by plan hash, not task id
                run = Rehearsal(opts, task, shell, bucket, root, f"{base}_1-0", hosts, remote_root)
                attempts = []
                for k in range(opts.preempt + 1):
                    delay = 0.5 + 1.5 * k if k < opts.preempt else None
                    att = run.attempt(f"attempt{k}", delay)
                    attempts.append(att)
                    if not att.preempted and any(att.exit_codes):
                        break  # failed (or stopped by itself): no further recovery
                final, _ = run.metrics()
        finally:
            for host in {id(h): h for h in hosts}.values():
                host.cleanup(remote_root)
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
        estimate=estimate_against(prepared.here, prepared.here_why, ref_attempt.seconds),
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


def estimate_against(here: list[Estimate], why: str, measured_s: float) -> dict[str, Any]:
    """The launcher's estimate for this machine against the uninterrupted rehearsal's wall
    time (which also holds the node's setup, imports, data caching and checkpoint writes);
    ``why`` there is none, when there is none."""
    if not here:
        return {"estimated_s": None, "measured_s": round(measured_s, 1), "why": why}
    est = here[0]
    return {
        "device": est.accelerator,
        "estimated_s": round(est.seconds, 1),
        "measured_s": round(measured_s, 1),
        "measured_over_estimated": round(measured_s / est.seconds, 2) if est.seconds else None,
        "steps": est.steps.describe(),
        "source": est.source,
    }


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
    est = report.estimate
    if est.get("estimated_s") is not None:
        c.print(
            f"  estimate for this machine ({est['device']}): {est['estimated_s']} s of steps "
            f"against {est['measured_s']} s measured uninterrupted "
            f"(x{est['measured_over_estimated']}; the measured run also sets up, imports, "
            "caches and checkpoints)"
        )
    elif est:
        c.print(f"  estimate for this machine: none ({est['why']})")
    for cell, m in report.final_metrics.items():
        c.print(f"  {cell}: {m}")
