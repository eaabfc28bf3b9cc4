"""`minivess data changed` needs a persistent Prefect server: else it refuses and says the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_data_changed_without_a_prefect_server_refuses_with_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "lab-data"
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.run(
        [sys.executable, "-m", "minivess", "data", "changed", str(data)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    err = proc.stderr.replace("\n", " ")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "PREFECT_API_URL is not set" in err and "prefect server start" in err
    assert "minivess flows run poll" in err
    assert "emitted" not in proc.stdout
