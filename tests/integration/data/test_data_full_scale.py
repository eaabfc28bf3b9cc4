"""The issue's acceptance, exactly as a user types it: full-scale synth, then profile + report.

`minivess data synth /tmp/mv --scale full --seed 0 && minivess data profile /tmp/mv --json
/tmp/p.json --report /tmp/p.html` must report 70 volumes, min z 5, max z 110, the spacing
outlier named in `warnings`, and a thumbnail for every volume in the HTML. About 40 s on 2
idle cores (ISA-L writes and reads the 700 MB of .nii.gz).
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
def test_full_scale_acceptance(tmp_path: Path) -> None:
    data = tmp_path / "mv"
    result = runner.invoke(app, ["data", "synth", str(data), "--scale", "full", "--seed", "0"])
    assert result.exit_code == 0, result.output

    out_json, out_html = tmp_path / "p.json", tmp_path / "p.html"
    result = runner.invoke(
        app, ["data", "profile", str(data), "--json", str(out_json), "--report", str(out_html)]
    )
    assert result.exit_code == 0, result.output
    profile = json.loads(out_json.read_text())
    assert profile["n_volumes"] == 70 and profile["rejected"] == []
    assert profile["min_shape"] == [512, 512, 5]
    assert profile["max_shape"] == [512, 512, 110]
    assert 18 <= profile["median_shape"][2] <= 26
    outliers = [w for w in profile["warnings"] if "spacing outlier" in w]
    assert len(outliers) == 1 and outliers[0].startswith("mv02:")
    ratios = [v["foreground_ratio"] for v in profile["volumes"]]
    assert min(ratios) > 0.005 and max(ratios) < 0.10  # a few % foreground everywhere

    page = out_html.read_text()
    thumbs = re.findall(r"alt='thumbnail (mv\d\d)'", page)
    assert thumbs == [f"mv{i:02d}" for i in range(1, 71)]
    assert len(list((tmp_path / "p_figures" / "thumbnails").glob("mv*.png"))) == 70

    # re-profiling the unchanged dataset reads no voxel
    result = runner.invoke(app, ["data", "profile", str(data)])
    assert result.exit_code == 0 and "0 / 70" in result.output
