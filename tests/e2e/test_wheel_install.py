"""A non-editable install works away from the checkout (what the image and a serving host get).

The session's main job (:mod:`tests.fixtures.main_job`) builds the wheel, installs it with the
constraints into a fresh venv outside the repository with the one install script
(.ci/install.sh, the script the Dockerfile runs), and runs the main job on the small default
from an empty directory. This test checks what that left, then renders the serve target with
the installed venv from another empty directory. The configs, SkyPilot templates and
bentofile.yaml must come from inside the installed package.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from tests.fixtures.main_job import GROUP, MainJob, run_ok

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(GROUP)]


def test_wheel_installs_and_runs_from_an_empty_directory(tmp_path: Path, main_job: MainJob) -> None:
    wheel, venv, env = main_job.wheel, main_job.venv, main_job.env
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
    assert "torch 2." in main_job.install_output
    assert "with uv " in main_job.install_output  # step (3): auto picks uv (pip-installed, pinned)
    assert f"{venv} ready" in main_job.install_output

    empty = tmp_path / "empty"
    empty.mkdir()
    py = str(venv / "bin" / "python")
    where = run_ok(
        [py, "-c", "from minivess import resources as r, config;"
         "print(config.config_dir()); print(r.sky_template('serve.yaml')); print(r.bentofile())"],
        cwd=empty, env=env, timeout=120,
    ).split()  # fmt: skip
    site = venv / "lib"
    for path in where:
        assert Path(path).exists() and Path(path).is_relative_to(site), where

    # The main job ran with the installed `minivess` from an empty directory.
    out = main_job.output
    assert (main_job.workspace / "profile" / "qc_report.html").is_file(), out[-2000:]
    assert "models:/minivess-segmenter/1" in out, out[-2000:]

    minivess = str(venv / "bin" / "minivess")
    out = run_ok([minivess, "launch", "--target", "serve", "--dry-run"], empty, env, timeout=300)
    rendered = sorted((empty / "sky" / "rendered").glob("*.yaml"))
    assert rendered, out[-2000:]
    task = yaml.safe_load(rendered[-1].read_text())
    assert "service" in task and task["workdir"] == str(empty.resolve())
