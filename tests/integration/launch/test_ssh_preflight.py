"""``minivess launch --target ssh --check`` against a real sshd on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minivess.launch.ssh import preflight
from minivess.launch.targets import load_target

pytestmark = pytest.mark.slow


def _target(tmp_path: Path, sshd, hosts: list[str], min_free_gb: float = 0.001) -> Path:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host labnode\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {sshd.known_hosts}\n  StrictHostKeyChecking yes\n"
        f"Host deadnode\n  HostName 127.0.0.1\n  Port 1\n"
    )
    path = tmp_path / "lab.yaml"
    hosts_yaml = "".join(f"    - {h}\n" for h in hosts)
    path.write_text(
        f"kind: ssh\nname: lab-job\npool:\n  name: lab\n  hosts:\n{hosts_yaml}"
        f"  ssh_config: {cfg}\n  min_free_disk_gb: {min_free_gb}\n"
    )
    return path


def test_preflight_reports_user_gpus_and_disk(tmp_path: Path, sshd) -> None:
    shim = sshd.fake_bin / "nvidia-smi"
    shim.write_text(
        '#!/bin/sh\necho "NVIDIA A100-SXM4-80GB, 81920"\necho "NVIDIA A100-SXM4-80GB, 81920"\n'
    )
    shim.chmod(0o755)
    target = load_target(_target(tmp_path, sshd, ["labnode"]))
    [report] = preflight(target.pool)
    assert report.ok, report.problems
    assert report.user == sshd.user
    assert report.gpus == [("NVIDIA A100-SXM4-80GB", 81920)] * 2
    free_gb = shutil.disk_usage(Path.home()).free / 1024**3
    assert report.disk_free_gb == pytest.approx(free_gb, rel=0.05)


def test_cli_check_exit_codes_and_table(tmp_path: Path, sshd) -> None:
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "minivess",
            "launch",
            "--target",
            str(_target(tmp_path, sshd, ["labnode"])),
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "labnode" in ok.stdout and sshd.user in ok.stdout
    assert "nvidia-smi not found" in ok.stdout  # no shim this time: reported, not fatal

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "minivess",
            "launch",
            "--target",
            str(_target(tmp_path, sshd, ["labnode", "deadnode"], min_free_gb=0.001)),
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1
    assert "deadnode" in bad.stdout and "ssh failed" in bad.stdout


def test_too_little_disk_fails_the_host(tmp_path: Path, sshd) -> None:
    target = load_target(_target(tmp_path, sshd, ["labnode"], min_free_gb=10**9))
    [report] = preflight(target.pool)
    assert not report.ok and any("GB free" in p for p in report.problems)
