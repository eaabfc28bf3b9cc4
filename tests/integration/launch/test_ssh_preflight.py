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
    # No nvidia-smi on this host: a training pool without a GPU fails the preflight.
    assert ok.returncode == 1, ok.stdout + ok.stderr
    assert "labnode" in ok.stdout and sshd.user in ok.stdout
    assert "nvidia-smi not found" in " ".join(ok.stdout.split())

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


def _nvidia_smi(sshd, body: str) -> None:
    shim = sshd.fake_bin / "nvidia-smi"
    shim.write_text("#!/bin/sh\n" + body)
    shim.chmod(0o755)


@pytest.mark.parametrize(
    ("body", "ok", "problem"),
    [
        ('echo "NVIDIA L40S, 46068"\n', True, None),
        ("", False, "lists no GPU"),
        ('echo "No devices were found"\n', False, "No devices were found"),
        (
            "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
            'driver."\nexit 9\n',
            False,
            "nvidia-smi exit 9",
        ),
        ('echo "NVIDIA GeForce GTX 1080, 8192"\n', False, "none of the candidates"),
    ],
    ids=["candidate-gpu", "no-gpu", "no-devices", "broken-driver", "non-candidate"],
)
def test_preflight_checks_the_gpu_against_the_candidates(
    tmp_path: Path, sshd, body: str, ok: bool, problem: str | None
) -> None:
    _nvidia_smi(sshd, body)
    target = load_target(_target(tmp_path, sshd, ["labnode"]))
    [report] = preflight(target.pool, candidates=["L40S", "A100-80GB"], write_path="~")
    assert report.ok is ok, report.problems
    assert report.python  # python3 on the host, version reported
    assert report.sudo in ("root", "yes")
    if problem:
        assert any(problem in p for p in report.problems), report.problems


def test_free_disk_is_measured_where_the_job_writes(tmp_path: Path, sshd) -> None:
    """A path that does not exist yet is measured on its nearest existing parent."""
    _nvidia_smi(sshd, 'echo "NVIDIA L40S, 46068"\n')
    target = load_target(_target(tmp_path, sshd, ["labnode"]))
    where = tmp_path / "lab store" / "not yet" / "ckpt"
    [report] = preflight(target.pool, write_path=str(where), need_gb=0.001)
    assert report.ok, report.problems
    assert report.disk_path == str(tmp_path)
    [big] = preflight(target.pool, write_path=str(where), need_gb=10**9)
    assert not big.ok and any("GB the job asks" in p for p in big.problems)
