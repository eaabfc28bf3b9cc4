"""`minivess data synth` and `minivess data profile`: exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from minivess.cli import app
from minivess.errors import DataError

runner = CliRunner()


def test_synth_then_profile_with_json_and_report(tmp_path: Path) -> None:
    data = tmp_path / "mv"
    result = runner.invoke(app, ["data", "synth", str(data), "--n-volumes", "3", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 volumes" in result.output
    assert len(list((data / "raw").glob("*.nii.gz"))) == 3

    out_json, out_html = tmp_path / "p.json", tmp_path / "p.html"
    args = ["data", "profile", str(data), "--json", str(out_json), "--report", str(out_html)]
    result = runner.invoke(app, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    profile = json.loads(out_json.read_text())
    assert profile["n_volumes"] == 3 and len(profile["volumes"]) == 3
    assert profile["min_shape"][2] == 5
    assert out_html.is_file() and "QC report" in result.output


def test_bad_scale_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", str(tmp_path), "--scale", "huge"])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError) and "--scale 'huge'" in str(result.exception)


def test_profile_exits_0_with_warnings_when_some_volumes_are_bad(bad_dataset: Path) -> None:
    result = runner.invoke(app, ["data", "profile", str(bad_dataset), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "rejected:" in result.output and "bad_nifti2.nii.gz" in result.output
    assert "warning:" in result.output


def test_profile_exits_2_with_a_clear_message_when_nothing_is_usable(tmp_path: Path) -> None:
    """Through the real console script, where `main()` turns the error into exit code 2."""
    from data_badfiles import truncated

    truncated(tmp_path, "mv01")
    env = {**os.environ, "MINIVESS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "minivess", "data", "profile", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "no usable volume" in proc.stderr
    assert "mv01.nii.gz: truncated" in proc.stderr
    assert "Traceback" not in proc.stderr
