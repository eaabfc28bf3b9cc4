"""A non-editable install works away from the checkout (what the image and a serving host get).

Builds the wheel, installs it with the constraints into a fresh venv outside the repository with
the one install script (.ci/install.sh, the script the Dockerfile runs), and, from an empty
directory, runs the main job on the small default and renders the serve target. The configs,
SkyPilot templates and bentofile.yaml must come from inside the installed package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} -> {proc.returncode}\n{out[-4000:]}"
    return out


def test_wheel_installs_and_runs_from_an_empty_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MINIVESS_"))}
    env.pop("VIRTUAL_ENV", None)
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")

    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(REPO)],
        cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("minivess-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "minivess/_data/configs/experiments/default.yaml",
        "minivess/_data/configs/prefect/docker-gpu.json",
        "minivess/_data/sky/serve.yaml",
        "minivess/_data/sky/train.yaml",
        "minivess/serving/bentofile.yaml",
    ):
        assert shipped in names, f"{shipped} missing from {wheel.name}"
    assert not any(n.startswith("minivess/_data/sky/rendered") for n in names)

    venv = tmp_path / "venv"
    # PIP_NO_COMPILE: no .pyc for ~300 packages (the slowest part of the install on 2 cores).
    install_env = {**env, "VENV": str(venv), "PACKAGE": str(wheel), "EXTRAS": "all",
                   "PIP_NO_COMPILE": "1"}  # fmt: skip
    out = _run(["bash", str(REPO / ".ci" / "install.sh")], tmp_path, install_env, timeout=2400)
    assert "torch 2." in out and f"{venv} ready" in out

    empty = tmp_path / "empty"
    empty.mkdir()
    py = str(venv / "bin" / "python")
    where = _run(
        [py, "-c", "from minivess import resources as r, config;"
         "print(config.config_dir()); print(r.sky_template('serve.yaml')); print(r.bentofile())"],
        cwd=empty, env=env, timeout=120,
    ).split()  # fmt: skip
    site = venv / "lib"
    for path in where:
        assert Path(path).exists() and Path(path).is_relative_to(site), where

    # The small default, one epoch, from a config outside the empty directory.
    raw = yaml.safe_load(Path(where[0], "experiments", "default.yaml").read_text())
    raw["training"]["epochs"] = 1
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(raw))
    minivess = str(venv / "bin" / "minivess")
    out = _run([minivess, "experiment", "--config", str(config)], empty, env, timeout=900)
    assert (empty / "workspace" / "profile" / "qc_report.html").is_file(), out[-2000:]
    assert "models:/minivess-segmenter/1" in out, out[-2000:]

    out = _run([minivess, "launch", "--target", "serve", "--dry-run"], empty, env, timeout=300)
    rendered = sorted((empty / "sky" / "rendered").glob("*.yaml"))
    assert rendered, out[-2000:]
    task = yaml.safe_load(rendered[-1].read_text())
    assert "service" in task and task["workdir"] == str(empty.resolve())
