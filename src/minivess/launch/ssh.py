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
#: Remote probe: one ``key=value`` per line, parsed by :func:`parse_probe`.
PROBE_SCRIPT = (
    'echo "user=$(id -un)"; '
    "if command -v nvidia-smi >/dev/null 2>&1; then "
    "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits "
    "| sed 's/^/gpu=/'; else echo 'gpu_tool=missing'; fi; "
    'echo "disk_kb=$(df -Pk "$HOME" | awk \'NR==2 {print $4}\')"'
)


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
    """What the preflight found on one host. ``disk_free_gb`` is for the remote ``$HOME``."""

    host: str
    ok: bool
    user: str = ""
    gpus: list[tuple[str, int]] = field(default_factory=list)  # (name, MiB)
    gpu_tool: bool = True
    disk_free_gb: float = 0.0
    problems: list[str] = field(default_factory=list)


def parse_probe(host: str, text: str, min_free_disk_gb: float) -> HostReport:
    """Turn :data:`PROBE_SCRIPT` output into a :class:`HostReport`."""
    report = HostReport(host=host, ok=True)
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "user":
            report.user = value.strip()
        elif key == "gpu":
            name, _, mem = value.rpartition(",")
            try:
                report.gpus.append((name.strip(), int(float(mem.strip()))))
            except ValueError:
                report.problems.append(f"unparsed nvidia-smi line: {value.strip()}")
        elif key == "gpu_tool":
            report.gpu_tool = False
        elif key == "disk_kb" and value.strip().isdigit():
            report.disk_free_gb = int(value.strip()) / 1024**2
    if not report.user:
        report.ok = False
        report.problems.append("probe printed no user")
    if not report.gpu_tool:
        report.problems.append("nvidia-smi not found: no NVIDIA GPU usable for training")
    if report.disk_free_gb < min_free_disk_gb:
        report.ok = False
        report.problems.append(
            f"only {report.disk_free_gb:.1f} GB free in $HOME (< {min_free_disk_gb:g} GB)"
        )
    return report


def ssh_command(pool: PoolConfig, host: str | HostEntry, timeout_s: int) -> list[str]:
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
    return [*cmd, entry.ip, PROBE_SCRIPT]


def preflight(pool: PoolConfig, timeout_s: int = 10) -> list[HostReport]:
    """Connect to every host of ``pool`` and report user, GPUs and free disk."""
    reports = []
    for host in pool.hosts:
        name = host if isinstance(host, str) else host.ip
        try:
            proc = subprocess.run(
                ssh_command(pool, host, timeout_s),
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
        reports.append(parse_probe(name, proc.stdout, pool.min_free_disk_gb))
    return reports


def print_reports(reports: list[HostReport]) -> None:
    """A rich table: host, ok, user, GPUs, free disk, problems."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="SSH node pool preflight")
    for col in ("host", "ok", "user", "GPUs", "free disk (GB)", "problems"):
        table.add_column(col)
    for r in reports:
        gpus = ", ".join(f"{n} ({m} MiB)" for n, m in r.gpus) or "-"
        table.add_row(
            r.host,
            "yes" if r.ok else "NO",
            r.user or "-",
            gpus,
            f"{r.disk_free_gb:.1f}",
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
    reports = preflight(target.pool)
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
