"""The compute budget of a machine: detected (psutil + NVML) or read from a YAML file.

Detection is one of the two places in the planner that touch the machine (the other is the
dataset scan). ``load_hardware(path)`` replaces detection, so researchers and tests can plan
for a machine they don't have.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from minivess.config import StrictModel, load_yaml_model
from minivess.keys import Environment
from minivess.settings import process_environ

log = logging.getLogger(__name__)

_GIB = 1024**3


class GpuInfo(StrictModel):
    """One GPU as NVML reports it."""

    index: int
    name: str
    vram_mb: int = Field(ge=0, description="total memory, MiB")


class HardwareBudget(StrictModel):
    """What a machine offers for training (field names of the seed, §2 Phase A).

    ``gpu_vram_mb`` is per card (MiB); with several GPUs it is the smallest card, which is what
    a data-parallel run can use on each. ``gpus`` lists every GPU detected (empty from YAML).
    """

    cpu_cores: int = Field(ge=1)
    ram_total_gb: float = Field(ge=0)
    ram_available_gb: float = Field(ge=0)
    swap_total_gb: float = Field(default=0.0, ge=0)
    swap_used_gb: float = Field(default=0.0, ge=0)
    gpu_name: str | None = None
    gpu_vram_mb: int = Field(default=0, ge=0)
    gpu_count: int = Field(default=0, ge=0)
    disk_free_gb: float = Field(default=0.0, ge=0)
    environment: Environment = Environment.LOCAL
    gpus: list[GpuInfo] = Field(default_factory=list)

    @property
    def has_gpu(self) -> bool:
        """True when at least one GPU with memory is present."""
        return self.gpu_count > 0 and self.gpu_vram_mb > 0

    @property
    def device_key(self) -> str:
        """Stable name of the training device, used to key calibration files.

        Examples:
            ``"cpu"``, ``"cuda-nvidia-h100-80gb-hbm3"``.
        """
        if not self.has_gpu:
            return "cpu"
        slug = "".join(c if c.isalnum() else "-" for c in (self.gpu_name or "gpu").lower())
        return "cuda-" + "-".join(p for p in slug.split("-") if p)


def load_hardware(path: Path) -> HardwareBudget:
    """Read a hardware YAML (the :class:`HardwareBudget` keys); unknown keys are an error."""
    return load_yaml_model(HardwareBudget, Path(path))


def detect_environment(env: dict[str, str] | None = None, root: Path = Path("/")) -> Environment:
    """Where this process runs: ci > cloud > docker > local.

    Args:
        env: environment variables (defaults to ``os.environ``).
        root: filesystem root to probe (tests pass a temp dir).
    """
    env = process_environ() if env is None else env
    if env.get("CI", "").lower() in {"1", "true", "yes"} or "GITHUB_ACTIONS" in env:
        return Environment.CI
    if any(k.startswith("SKYPILOT_") for k in env):
        return Environment.CLOUD
    product = root / "sys/class/dmi/id/product_name"
    try:
        text = product.read_text().lower() if product.is_file() else ""
    except OSError:
        text = ""
    if any(v in text for v in ("google compute", "amazon ec2", "virtual machine", "openstack")):
        return Environment.CLOUD
    if (root / ".dockerenv").exists() or (root / "run/.containerenv").exists():
        return Environment.DOCKER
    cgroup = root / "proc/1/cgroup"
    try:
        if cgroup.is_file() and any(
            k in cgroup.read_text() for k in ("docker", "kubepods", "containerd")
        ):
            return Environment.DOCKER
    except OSError:
        pass
    return Environment.LOCAL


def _read_int(path: Path) -> int | None:
    """An integer from a cgroup file; None when missing, ``max`` or unreadable."""
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def cgroup_limits(root: Path = Path("/")) -> tuple[float | None, float | None, float | None]:
    """Container limits: (memory limit GB, memory in use GB, CPU quota in cores), None = none.

    Reads cgroup v2 (``memory.max``, ``memory.current``, ``cpu.max``) or v1
    (``memory.limit_in_bytes``, ``memory.usage_in_bytes``, ``cpu.cfs_quota_us``). Inside Docker
    psutil reports the host's RAM; these are what the process may really use.
    """
    cg = root / "sys/fs/cgroup"
    limit = usage = cores = None
    if (cg / "memory.max").is_file():  # cgroup v2
        limit, usage = _read_int(cg / "memory.max"), _read_int(cg / "memory.current")
        parts = (cg / "cpu.max").read_text().split() if (cg / "cpu.max").is_file() else []
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            cores = int(parts[0]) / int(parts[1])
    else:  # cgroup v1
        limit = _read_int(cg / "memory/memory.limit_in_bytes")
        usage = _read_int(cg / "memory/memory.usage_in_bytes")
        quota = _read_int(cg / "cpu/cpu.cfs_quota_us")
        period = _read_int(cg / "cpu/cpu.cfs_period_us")
        if quota and quota > 0 and period:
            cores = quota / period
    if limit is None or limit >= 2**60:  # "max" or the kernel's page-rounded LONG_MAX
        return None, None, cores
    return limit / _GIB, (usage or 0) / _GIB, cores


def detect_gpus(nvml: Any | None = None) -> list[GpuInfo]:
    """Every GPU NVML sees; an empty list when NVML (or its driver) is missing.

    Args:
        nvml: the ``pynvml`` module (tests may pass a stand-in); imported when None.
    """
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            log.debug("NVML (nvidia-ml-py) not installed: no GPU detected")
            return []
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as err:  # pynvml raises NVMLError subclasses for a missing driver
        log.debug("NVML unavailable (%s): no GPU detected", err)
        return []
    gpus = []
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            gpus.append(GpuInfo(index=i, name=name, vram_mb=total // 2**20))
    except Exception as err:
        log.warning("NVML query failed after %d GPU(s) (%s); using what was read", len(gpus), err)
    finally:
        with contextlib.suppress(Exception):  # shutting down a half-initialised NVML
            nvml.nvmlShutdown()
    return gpus


def detect_hardware(
    disk_path: Path | None = None, nvml: Any | None = None, root: Path = Path("/")
) -> HardwareBudget:
    """Measure this machine: CPU cores, RAM, swap, every GPU (NVML), free disk, environment.

    Container limits (cgroups) win over the host's figures.

    Args:
        disk_path: where free disk is measured (default: the current directory).
        nvml: optional ``pynvml`` stand-in (tests).
        root: filesystem root for cgroup and environment probes (tests pass a temp dir).
    """
    import psutil

    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    gpus = detect_gpus(nvml)
    for gpu in gpus:
        log.info("GPU %d: %s, %d MiB", gpu.index, gpu.name, gpu.vram_mb)
    names = sorted({g.name for g in gpus})
    disk = shutil.disk_usage(disk_path or Path.cwd())
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    total, available = vm.total / _GIB, vm.available / _GIB
    limit_gb, used_gb, quota = cgroup_limits(root)
    if limit_gb is not None and limit_gb < total:
        log.info("container memory limit %.1f GB (host has %.1f GB)", limit_gb, total)
        total = limit_gb
        available = max(0.0, min(available, limit_gb - (used_gb or 0.0)))
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return HardwareBudget(
        cpu_cores=max(1, cores),
        ram_total_gb=round(total, 2),
        ram_available_gb=round(available, 2),
        swap_total_gb=round(sw.total / _GIB, 2),
        swap_used_gb=round(sw.used / _GIB, 2),
        gpu_name=" + ".join(names) if names else None,
        gpu_vram_mb=min((g.vram_mb for g in gpus), default=0),
        gpu_count=len(gpus),
        disk_free_gb=round(disk.free / _GIB, 2),
        environment=detect_environment(root=root),
        gpus=gpus,
    )
