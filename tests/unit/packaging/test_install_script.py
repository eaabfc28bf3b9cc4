"""The one install script's argument checks run before any work (no venv, no download)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

INSTALL = Path(__file__).resolve().parents[3] / ".ci" / "install.sh"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("INSTALLER", "conda", "INSTALLER=conda; use auto, uv or pip"),
        ("TORCH_VARIANT", "rocm", "TORCH_VARIANT=rocm; use auto, cpu or cuda"),
        ("BYTECODE", "no", "BYTECODE=no; use 1 or 0"),
    ],
)
def test_an_unknown_choice_is_refused_by_name(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, "VENV": str(venv), variable: value}
    proc = subprocess.run(
        ["bash", str(INSTALL)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert not venv.exists()  # refused before step (1)
