"""The rendered spot task, rehearsed as SkyPilot's node runs it, with injected preemptions.

Same harness as ``minivess launch --target spot --rehearse``: the YAML read back with
``sky.Task.from_yaml``, fresh HOMEs with ``~/sky_workdir``, ``SKYPILOT_*`` variables, a moto S3
bucket on 127.0.0.1, SIGTERM + grace + SIGKILL, recovery on a fresh node with the same task id.
The node venv is this checkout's (``reuse_venv``): a full node setup installs torch, minutes.
The grace window is generous because the trainer stops at its next step boundary (on a busy
2-core machine a step can take many seconds); the test asserts outcomes, never timings.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from minivess.launch.rehearse import RehearsalOptions, rehearse
from minivess.training.loop import PREEMPTED_EXIT_CODE

pytestmark = pytest.mark.slow

#: Seconds between SIGTERM and SIGKILL in these tests (the CLI default is 30).
GRACE_S = 240.0


def _options(tmp_path: Path, **changes: object) -> RehearsalOptions:
    system = shutil.which("python3.10")  # SkyPilot's default image Python, when installed
    fields: dict[str, object] = dict(
        target="spot",
        preempt=1,
        grace_s=GRACE_S,
        json_path=tmp_path / "r.json",
        reuse_venv=Path(sys.prefix),
        system_python=Path(system) if system else None,
        work_dir=tmp_path / "rehearsal",
        runtime_dir=tmp_path / "sky-runtime",
    )
    return RehearsalOptions(**(fields | changes))  # type: ignore[arg-type]


def _assert_recovered(report_path: Path, nodes: int) -> dict:
    report = json.loads(report_path.read_text())
    assert report["nodes"] == nodes
    assert report["preemptions"] == 1
    first, last = report["exit_codes"][0], report["exit_codes"][-1]
    assert first == [PREEMPTED_EXIT_CODE] * nodes, report["exit_codes"]
    assert last == [0] * nodes
    assert report["checkpoint_in_bucket_at_teardown"][0] is True
    assert report["recovered"] is True
    assert report["lost_steps"] == 0
    assert report["final_metrics"] and report["metrics_equal"] is True
    assert report["final_metrics"] == report["uninterrupted_metrics"]
    return report


def test_spot_rehearsal_recovers_a_preemption_with_identical_metrics(tmp_path: Path) -> None:
    report = rehearse(_options(tmp_path))
    assert report.passed
    _assert_recovered(tmp_path / "r.json", nodes=1)


def test_two_node_torchrun_rehearsal_maps_the_preemption_to_75(tmp_path: Path) -> None:
    """Two loopback nodes, gloo: torchrun exits 1 for a worker's 75; the script says 75."""
    report = rehearse(_options(tmp_path, nodes=2))
    assert report.passed
    _assert_recovered(tmp_path / "r.json", nodes=2)
