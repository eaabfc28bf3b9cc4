"""Hardware budget: YAML replaces detection; detection never crashes and sees every GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.config import config_dir
from minivess.errors import ConfigError
from minivess.keys import Environment
from minivess.planning.hardware import (
    HardwareBudget,
    cgroup_limits,
    detect_environment,
    detect_gpus,
    detect_hardware,
    load_hardware,
)

SEED_FIELDS = {
    "cpu_cores",
    "ram_total_gb",
    "ram_available_gb",
    "swap_total_gb",
    "swap_used_gb",
    "gpu_name",
    "gpu_vram_mb",
    "gpu_count",
    "disk_free_gb",
    "environment",
}


class FakeNvml:
    """Stand-in for ``pynvml``: this machine has no NVIDIA driver, so the multi-GPU path can
    only be exercised with an in-process double of the NVML calls it makes."""

    class NVMLError(Exception):
        pass

    def __init__(self, cards: list[tuple[str, int]] | None, fail_init: bool = False) -> None:
        self.cards = cards or []
        self.fail_init = fail_init
        self.shutdown = False

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self):
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.cards[h][0].encode()

    def nvmlDeviceGetMemoryInfo(self, h):
        return type("Mem", (), {"total": self.cards[h][1] * 2**20})()

    def nvmlShutdown(self):
        self.shutdown = True


def test_shipped_hardware_yamls_load_with_seed_fields():
    names = sorted(p.stem for p in (config_dir() / "hardware").glob("*.yaml"))
    assert {"cpu_16gb", "gpu_8gb", "gpu_24gb", "gpu_80gb", "gpu_4x80gb"} <= set(names)
    for name in names:
        hw = load_hardware(config_dir() / "hardware" / f"{name}.yaml")
        assert set(HardwareBudget.model_fields) >= SEED_FIELDS
        assert hw.has_gpu == name.startswith("gpu")
    assert load_hardware(config_dir() / "hardware" / "gpu_4x80gb.yaml").gpu_count == 4


def test_hardware_yaml_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "box.yaml"
    bad.write_text("cpu_cores: 0\nram_total_gb: 8\nram_available_gb: 4\n")
    with pytest.raises(ConfigError, match=r"box.yaml: field 'cpu_cores'"):
        load_hardware(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_hardware(tmp_path / "missing.yaml")


def test_detection_on_this_machine_never_crashes():
    hw = detect_hardware()
    assert hw.cpu_cores >= 1 and hw.ram_total_gb > 0
    assert 0 < hw.ram_available_gb <= hw.ram_total_gb
    assert hw.gpu_count == len(hw.gpus)
    assert hw.environment in set(Environment)


def test_every_gpu_is_detected_and_budget_uses_the_smallest():
    nvml = FakeNvml([("NVIDIA A100-SXM4-80GB", 81920), ("NVIDIA A100-SXM4-40GB", 40960)])
    hw = detect_hardware(nvml=nvml)
    assert [g.name for g in hw.gpus] == ["NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB"]
    assert hw.gpu_count == 2 and hw.gpu_vram_mb == 40960
    assert nvml.shutdown
    assert hw.device_key.startswith("cuda-nvidia-a100")


def test_missing_driver_means_no_gpu():
    assert detect_gpus(FakeNvml(None, fail_init=True)) == []
    hw = detect_hardware(nvml=FakeNvml(None, fail_init=True))
    assert hw.gpu_count == 0 and hw.gpu_vram_mb == 0 and hw.device_key == "cpu"


def test_environment_detection(tmp_path: Path):
    assert detect_environment({"CI": "true"}, tmp_path) is Environment.CI
    assert detect_environment({"SKYPILOT_TASK_ID": "x"}, tmp_path) is Environment.CLOUD
    assert detect_environment({}, tmp_path) is Environment.LOCAL
    (tmp_path / ".dockerenv").write_text("")
    assert detect_environment({}, tmp_path) is Environment.DOCKER
    dmi = tmp_path / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "product_name").write_text("Google Compute Engine\n")
    assert detect_environment({}, tmp_path) is Environment.CLOUD


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_container_limits_win_over_host_figures(tmp_path: Path):
    """A container limited to 1 GB and 1.5 CPUs plans with that, not with the host's RAM."""
    cg = tmp_path / "sys/fs/cgroup"
    _write(cg / "memory.max", f"{2**30}\n")
    _write(cg / "memory.current", f"{2**28}\n")
    _write(cg / "cpu.max", "150000 100000\n")
    assert cgroup_limits(tmp_path) == (1.0, 0.25, 1.5)
    hw = detect_hardware(nvml=FakeNvml(None, fail_init=True), root=tmp_path)
    assert hw.ram_total_gb == 1.0 and hw.ram_available_gb <= 0.75
    assert hw.cpu_cores <= 2


def test_cgroup_v1_and_unlimited(tmp_path: Path):
    v1 = tmp_path / "v1/sys/fs/cgroup"
    _write(v1 / "memory/memory.limit_in_bytes", f"{4 * 2**30}\n")
    _write(v1 / "memory/memory.usage_in_bytes", f"{2**30}\n")
    _write(v1 / "cpu/cpu.cfs_quota_us", "-1\n")
    _write(v1 / "cpu/cpu.cfs_period_us", "100000\n")
    assert cgroup_limits(tmp_path / "v1") == (4.0, 1.0, None)
    v2 = tmp_path / "v2/sys/fs/cgroup"
    _write(v2 / "memory.max", "max\n")
    _write(v2 / "cpu.max", "max 100000\n")
    assert cgroup_limits(tmp_path / "v2") == (None, None, None)
    assert cgroup_limits(tmp_path / "nothing") == (None, None, None)
