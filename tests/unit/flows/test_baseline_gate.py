"""A model that does not beat the threshold baseline is registered with a warning tag, and the
deploy flow refuses it unless the experiment forces it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from minivess.errors import DeployRefused
from minivess.orchestration.analysis_flow import baseline_verdict, below_baseline
from minivess.orchestration.deploy_flow import check_deployable
from minivess.tracking.contract import Tag
from minivess.tracking.mlflow_adapter import RegisteredVersion


def _report(baseline_dice: float | None) -> SimpleNamespace:
    return SimpleNamespace(champion=SimpleNamespace(baseline_dice=baseline_dice))


def test_below_baseline_warning_only_when_it_does_not_beat_it() -> None:
    assert below_baseline(_report(0.80), {"dice": 0.88}) is None
    warning = below_baseline(_report(0.80), {"dice": 0.27})
    assert warning is not None and "0.2700" in warning and "0.8000" in warning
    assert below_baseline(_report(0.80), {"dice": 0.80}) is not None  # a tie does not beat it
    assert below_baseline(_report(None), {"dice": 0.1}) is None  # no baseline row
    assert "beats" in baseline_verdict("m", _report(0.5), {"dice": 0.9})
    assert baseline_verdict("m", _report(0.9), {"dice": 0.5}).startswith("WARNING")


def _version(**tags: str) -> RegisteredVersion:
    return RegisteredVersion(name="minivess", version="3", source="runs:/x/champion",
                             run_id="x", tags=tags)  # fmt: skip


def test_deploy_refuses_a_below_baseline_version_unless_forced() -> None:
    check_deployable(_version(), force=False)  # no warning: deploys
    bad = _version(**{Tag.BELOW_BASELINE.value: "held-out Dice 0.27 does not beat 0.80"})
    with pytest.raises(DeployRefused, match=r"models:/minivess/3: .*deploy\.force: true"):
        check_deployable(bad, force=False)
    check_deployable(bad, force=True)  # forced: goes through
