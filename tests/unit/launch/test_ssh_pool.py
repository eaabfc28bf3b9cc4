"""The SSH pool entry merges into ssh_node_pools.yaml without clobbering other pools."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from minivess.errors import ConfigError
from minivess.launch.ssh import parse_probe, ssh_command, write_pool_entry
from minivess.launch.targets import PoolConfig


@pytest.fixture
def pool() -> PoolConfig:
    return PoolConfig(
        name="lab",
        hosts=["10.1.2.3", {"ip": "node2", "user": "alt"}],
        user="me",
        identity_file="~/.ssh/id_ed25519",
    )


def test_other_pools_survive_and_ours_is_updated(tmp_path: Path, pool: PoolConfig) -> None:
    path = tmp_path / "ssh_node_pools.yaml"
    other = {"hosts": ["192.0.2.1"], "user": "x", "password": "kept-as-is"}
    path.write_text(yaml.safe_dump({"physics": other, "lab": {"hosts": ["old"]}}))
    write_pool_entry(pool, path)
    data = yaml.safe_load(path.read_text())
    assert data["physics"] == other
    assert data["lab"] == {
        "hosts": ["10.1.2.3", {"ip": "node2", "user": "alt"}],
        "user": "me",
        "identity_file": "~/.ssh/id_ed25519",
    }


def test_new_file_and_idempotent(tmp_path: Path, pool: PoolConfig) -> None:
    path = tmp_path / "sub" / "pools.yaml"
    write_pool_entry(pool, path)
    first = path.read_text()
    write_pool_entry(pool, path)
    assert path.read_text() == first and list(yaml.safe_load(first)) == ["lab"]


def test_broken_existing_file_is_left_untouched(tmp_path: Path, pool: PoolConfig) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping of pool names"):
        write_pool_entry(pool, path)
    assert path.read_text() == "- just\n- a list\n"


def test_probe_parsing_reports_gpus_disk_and_problems() -> None:
    text = (
        "user=me\ngpu=NVIDIA A100-SXM4-80GB, 81920\ngpu=NVIDIA A100-SXM4-80GB, 81920\n"
        "python=3.10\nsudo=yes\ndisk_kb=104857600\n"
    )
    report = parse_probe("h", text, min_free_disk_gb=20)
    assert report.ok and report.user == "me" and report.disk_free_gb == pytest.approx(100)
    assert report.gpus == [("NVIDIA A100-SXM4-80GB", 81920)] * 2
    low = parse_probe("h", "user=me\ngpu_tool=missing\ndisk_kb=1048576\n", min_free_disk_gb=20)
    assert not low.ok
    assert any("nvidia-smi not found" in p for p in low.problems)
    assert any("only 1.0 GB free" in p for p in low.problems)
    assert any("python3 not found" in p for p in low.problems)
    nosudo = parse_probe("h", text.replace("sudo=yes", "sudo=no"), min_free_disk_gb=20)
    assert not nosudo.ok and any("passwordless sudo" in p for p in nosudo.problems)
    other = parse_probe("h", text, min_free_disk_gb=20, candidates=["L4", "A100-40GB"])
    assert not other.ok and any("none of the candidates" in p for p in other.problems)
    assert parse_probe("h", text, min_free_disk_gb=20, candidates=["A100-80GB"]).ok


def test_ssh_command_never_prompts(pool: PoolConfig) -> None:
    cmd = ssh_command(pool, pool.hosts[1], timeout_s=5)
    assert "BatchMode=yes" in cmd and cmd[cmd.index("-l") + 1] == "alt"
    assert cmd[-2] == "node2"


@pytest.mark.parametrize(
    ("nvml", "ok"),
    [
        ("NVIDIA GeForce RTX 4090", True),
        ("NVIDIA RTX A6000", True),
        ("NVIDIA GeForce GTX 1080 Ti", False),  # not in configs/gpus.yaml: no candidate
    ],
)
def test_a_lab_workstation_gpu_is_a_candidate_when_the_table_has_it(nvml: str, ok: bool) -> None:
    """The ssh target's default candidates are every GPU of configs/gpus.yaml (as check_target
    passes them); the consumer and workstation cards labs own must match their NVML names."""
    from minivess.planning.settings import load_gpu_table

    text = f"user=me\ngpu={nvml}, 24564\npython=3.10.13\nsudo=yes\ndisk_kb=104857600\n"
    report = parse_probe("h", text, min_free_disk_gb=20, candidates=sorted(load_gpu_table().gpus))
    assert report.ok is ok, report.problems
