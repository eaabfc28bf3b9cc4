"""Full-resolution (512×512×Z) synth → profile → QC report through the CLI.

The complete 70-volume dataset takes minutes on 2 shared cores, more than the slow tier's
budget, so this test writes the first four full-scale volumes, which carry every role the
acceptance checks (mv02 spacing outlier, mv03 Z=5, mv04 Z=110). The 70-volume statistics are
checked on `volume_specs` in the fast tier, and `benchmarks/profile.py` runs the whole thing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minivess.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_full_scale_synth_profile_report(tmp_path: Path) -> None:
    data = tmp_path / "mv"
    result = runner.invoke(
        app, ["data", "synth", str(data), "--scale", "full", "--n-volumes", "4", "--seed", "0"]
    )
    assert result.exit_code == 0, result.output

    out_json, out_html = tmp_path / "p.json", tmp_path / "p.html"
    result = runner.invoke(
        app, ["data", "profile", str(data), "--json", str(out_json), "--report", str(out_html)]
    )
    assert result.exit_code == 0, result.output
    profile = json.loads(out_json.read_text())
    assert profile["n_volumes"] == 4 and profile["rejected"] == []
    assert profile["min_shape"] == [512, 512, 5]
    assert profile["max_shape"] == [512, 512, 110]
    assert any(w.startswith("mv02: spacing outlier") for w in profile["warnings"])
    assert min(v["foreground_ratio"] for v in profile["volumes"]) > 0.005
    assert max(v["foreground_ratio"] for v in profile["volumes"]) < 0.10

    page = out_html.read_text()
    assert re.findall(r"alt='thumbnail (mv\d\d)'", page) == ["mv01", "mv02", "mv03", "mv04"]

    # re-profiling the unchanged dataset reads no voxel
    result = runner.invoke(app, ["data", "profile", str(data)])
    assert result.exit_code == 0 and "0 / 4" in result.output
