"""SSH node pools: the ``~/.sky/ssh_node_pools.yaml`` entry and a preflight over real SSH.

:func:`write_pool_entry` merges one pool into a pools file and keeps every other pool as it
was. :func:`preflight` connects to each host with the OpenSSH client (so ``~/.ssh/config``
aliases, ProxyJump and agents work as they do for the researcher) and reports the user, the
GPUs (``nvidia-smi``) and the free disk.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minivess.errors import ConfigError
from minivess.launch.targets import HostEntry, PoolConfig

log = logging.getLogger(__name__)

#: Default location SkyPilot reads SSH node pools from.
DEFAULT_POOLS_FILE = Path("~/.sky/ssh_node_pools.yaml")
#: Remote probe: one ``key=value`` per line, parsed by :func:`parse_probe`. ``{path}`` is the
#: (quoted) folder the job writes to; the free disk is measured on its nearest existing parent.
PROBE_TEMPLATE = """\
echo "user=$(id -un)"
if command -v nvidia-smi >/dev/null 2>&1; then
  out=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>&1); rc=$?
  if [ "$rc" -ne 0 ]; then echo "gpu_error=nvidia-smi exit $rc: $(echo "$out" | head -n1)"
  else echo "$out" | sed 's/^/gpu=/'; fi
else echo gpu_tool=missing; fi
if command -v python3 >/dev/null 2>&1; then
  echo "python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>&1)"
else echo python=missing; fi
if [ "$(id -u)" = 0 ]; then echo sudo=root
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then echo sudo=yes
else echo sudo=no; fi
d={path}
case "$d" in "~"|"~/"*) d="$HOME${{d#"~"}}";; esac
while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
echo "disk_path=$d"
echo "disk_kb=$(df -Pk "$d" | awk 'NR==2 {{print $4}}')"
"""
#: Kept for callers that probe ``$HOME``.
PROBE_SCRIPT = PROBE_TEMPLATE.format(path='"$HOME"')


def write_pool_entry(pool: PoolConfig, path: Path) -> Path:
    """Add or update ``pool`` in the pools file at ``path``; other pools are kept untouched.

    Raises:
        ConfigError: the existing file is not a mapping of pools (it is left as it was).
    """
    import yaml

    path = Path(path).expanduser()
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err}); fix or move it first.") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of pool names; fix or move it first.")
        existing = loaded
    if pool.name in existing and existing[pool.name] != pool.pool_entry():
        log.info(
            "ssh pool '%s' in %s updated from configs/targets (other pools kept)", pool.name, path
        )
    existing[pool.name] = pool.pool_entry()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(existing, sort_keys=False))
    os.replace(tmp, path)
    return path


@dataclass
class HostReport:
    """What the preflight found on one host. ``disk_free_gb`` is where the job writes
    (``disk_path``, the nearest existing folder of it)."""

    host: str
    ok: bool
    user: str = ""
    gpus: list[tuple[str, int]] = field(default_factory=list)  # (name, MiB)
    gpu_tool: bool = True
    python: str = ""
    sudo: str = ""
    disk_path: str = ""
    disk_free_gb: float = 0.0
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def _parse_lines(report: HostReport, text: str) -> None:
    for line in text.splitlines():
        key, _, value = line.partition("=")
        value = value.strip()
        if key == "user":
            report.user = value
        elif key == "gpu" and value:
            name, _, mem = value.rpartition(",")
            try:
                report.gpus.append((name.strip(), int(float(mem.strip()))))
            except ValueError:  # "No devices were found" and other driver messages
                report.fail(f"nvidia-smi: {value} (driver not working)")
        elif key == "gpu_error":
            report.fail(f"{value} (driver not working)")
        elif key == "gpu_tool":
            report.gpu_tool = False
        elif key == "python":
            report.python = value
        elif key == "sudo":
            report.sudo = value
        elif key == "disk_path":
            report.disk_path = value
        elif key == "disk_kb" and value.isdigit():
            report.disk_free_gb = int(value) / 1024**2


def parse_probe(
    host: str,
    text: str,
    min_free_disk_gb: float,
    candidates: list[str] | None = None,
) -> HostReport:
    """Turn :data:`PROBE_TEMPLATE` output into a :class:`HostReport`.

    A host fails without a user, without a working NVIDIA GPU (no ``nvidia-smi``, a non-zero
    exit, "No devices were found"), with no GPU among ``candidates`` (accelerator names, e.g.
    ``["A100-80GB", "L40S"]``; ``None`` = any), without ``python3``, without root or
    passwordless sudo (``sky ssh up`` installs k3s), or with less free disk than asked.
    """
    from minivess.planning.node import accelerator_matches

    report = HostReport(host=host, ok=True)
    _parse_lines(report, text)
    if not report.user:
        report.fail("probe printed no user")
    if not report.gpu_tool:
        report.fail("nvidia-smi not found: no NVIDIA GPU usable for training")
    elif not report.gpus and report.ok:
        report.fail("nvidia-smi lists no GPU")
    if report.gpus and candidates:
        names = sorted({n for n, _ in report.gpus})
        if not any(accelerator_matches(c, n) for c in candidates for n in names):
            report.fail(
                f"GPU {', '.join(names)} is none of the candidates ({', '.join(candidates)}); "
                "fix accelerators_allowed in the ssh target or configs/gpus.yaml"
            )
    if not report.python or report.python == "missing":
        report.fail("python3 not found")
    if report.sudo == "no":
        report.fail("no passwordless sudo (sky ssh up installs k3s with sudo)")
    if report.disk_free_gb < min_free_disk_gb:
        report.fail(
            f"only {report.disk_free_gb:.1f} GB free in {report.disk_path or '$HOME'} "
            f"(< {min_free_disk_gb:g} GB the job asks)"
        )
    return report


def ssh_command(
    pool: PoolConfig, host: str | HostEntry, timeout_s: int, probe: str = PROBE_SCRIPT
) -> list[str]:
    """The ``ssh`` argv for one host (BatchMode: never prompts)."""
    entry = host if isinstance(host, HostEntry) else HostEntry(ip=host)
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout_s}"]
    if pool.ssh_config:
        cmd += ["-F", str(Path(pool.ssh_config).expanduser())]
    identity = entry.identity_file or pool.identity_file
    if identity:
        cmd += ["-i", str(Path(identity).expanduser())]
    user = entry.user or pool.user
    if user:
        cmd += ["-l", user]
    return [*cmd, entry.ip, probe]


def preflight(
    pool: PoolConfig,
    timeout_s: int = 10,
    *,
    candidates: list[str] | None = None,
    write_path: str = "~",
    need_gb: float | None = None,
) -> list[HostReport]:
    """Connect to every host of ``pool`` and check what the job needs (see :func:`parse_probe`).

    Args:
        candidates: GPU names the plan may use (``None``: any NVIDIA GPU).
        write_path: where the job writes (workspace / persistent_dir); ``~`` = remote home.
        need_gb: free disk asked there (default ``pool.min_free_disk_gb``).
    """
    import shlex

    probe = PROBE_TEMPLATE.format(path=shlex.quote(write_path))
    need = need_gb if need_gb is not None else (pool.min_free_disk_gb or 0.0)
    reports = []
    for host in pool.hosts:
        name = host if isinstance(host, str) else host.ip
        try:
            proc = subprocess.run(
                ssh_command(pool, host, timeout_s, probe),
                capture_output=True,
                text=True,
                timeout=timeout_s + 20,
                check=False,
            )
        except subprocess.TimeoutExpired:
            reports.append(HostReport(name, False, problems=[f"ssh timed out after {timeout_s}s"]))
            continue
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            reports.append(HostReport(name, False, problems=[f"ssh failed: {msg}"]))
            continue
        reports.append(parse_probe(name, proc.stdout, need, candidates))
    return reports


def print_reports(reports: list[HostReport]) -> None:
    """A rich table: host, ok, user, GPUs, free disk, problems."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="SSH node pool preflight")
    for col in ("host", "ok", "user", "GPUs", "python", "sudo", "free disk (GB)", "problems"):
        table.add_column(col)
    for r in reports:
        gpus = ", ".join(f"{n} ({m} MiB)" for n, m in r.gpus) or "-"
        table.add_row(
            r.host,
            "yes" if r.ok else "NO",
            r.user or "-",
            gpus,
            r.python or "-",
            r.sudo or "-",
            f"{r.disk_free_gb:.1f} ({r.disk_path or '-'})",
            "; ".join(r.problems) or "-",
        )
    Console().print(table)


def check_target(name_or_path: str) -> int:
    """``minivess launch --target ssh --check``: 0 when every host passed, else 1."""
    from minivess.launch.targets import Kind, load_target, target_path

    target = load_target(name_or_path)
    if target.kind is not Kind.SSH or target.pool is None:
        raise ConfigError(
            f"{target_path(name_or_path)}: --check needs an ssh target (kind: ssh with a pool)."
        )
    from minivess.planning.settings import load_gpu_table

    candidates = list(target.accelerators_allowed) or sorted(load_gpu_table().gpus)
    where = target.persistent_dir or target.workspace
    need = target.pool.min_free_disk_gb
    if need is None:
        need = float(target.disk_size)
    reports = preflight(target.pool, candidates=candidates, write_path=where, need_gb=need)
    print_reports(reports)
    for r in reports:
        log.info(
            "preflight %s: ok=%s user=%s gpus=%s free=%.1f GB %s",
            r.host,
            r.ok,
            r.user,
            r.gpus,
            r.disk_free_gb,
            "; ".join(r.problems),
        )
    return 0 if all(r.ok for r in reports) else 1
