"""``minivess evaluate`` on real tiny checkpoints: tables, CIs, ensembles, soup, figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def members(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory, plan_factory) -> list[str]:
    """Two real members trained for one epoch each: (dicece, fold 0) and (cldice, fold 1)."""
    from minivess.training import TrainConfig, train

    root = tmp_path_factory.mktemp("members")
    out = []
    for loss, fold in (("dicece", 0), ("cldice", 1)):
        cfg = TrainConfig(loss=loss, fold=fold, epochs=1, checkpoint_dir=str(root / loss))
        out.append(train(tiny_data, plan_factory(), cfg, progress=False).checkpoint_dir)
    return out


def test_cli_evaluate_writes_tables_ensembles_and_figures(
    tiny_data: Path, members: list[str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from minivess.cli import app
    from minivess.training.checkpoint import load_model

    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(tiny_data), "--out", str(out)]
    for m in members:
        args += ["--checkpoints", m]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "champion:" in result.output

    report = json.loads((out / "report.json").read_text())
    names = {row["name"] for row in report["table"]}
    assert names == {
        "dynunet-dicece-fold0", "dynunet-cldice-fold1", "soup", "mean_probability",
        "majority_vote",
    }  # fmt: skip
    with (out / "per_volume.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 * 6  # five models × six volumes
    for row in report["table"]:
        assert row["dice_lo"] <= row["dice_mean"] <= row["dice_hi"]
        assert 0.0 <= row["ece"] <= 1.0
    kinds = {e["kind"] for e in report["ensembles"]}
    assert kinds == {"soup", "mean_probability", "majority_vote"}
    for e in report["ensembles"]:
        assert e["difference"]["lo"] <= e["difference"]["mean"] <= e["difference"]["hi"]
    md = (out / "comparison.md").read_text()
    assert "## Loss × fold (Dice)" in md and "| cldice |" in md and "fold 1" in md
    for png in report["figures"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    champion = report["champion"]
    assert champion["name"] in names
    _model, plan = load_model(report["soup_checkpoint"])  # the soup is a usable checkpoint
    assert plan.model == "dynunet"


def test_ensemble_of_a_member_with_itself_equals_the_member(
    tiny_data: Path, members: list[str], tmp_path: Path
) -> None:
    from minivess.evaluation import evaluate

    report = evaluate(tiny_data, [members[0], members[0]], tmp_path / "same")
    member = report.summary["dynunet-dicece-fold0"]["dice"].mean
    assert report.summary["mean_probability"]["dice"].mean == pytest.approx(member, abs=1e-9)
    assert report.summary["soup"]["dice"].mean == pytest.approx(member, abs=1e-6)
    for e in report.ensembles:
        assert e.difference.mean == pytest.approx(0.0, abs=1e-6)


def test_baseline_row_and_verdict(tiny_data: Path, members: list[str], tmp_path: Path) -> None:
    """With the training data the table carries the learned-threshold row, never the champion;
    every mean shows its n, and ECE is per volume."""
    from minivess.evaluation import Kind, evaluate
    from minivess.evaluation.baseline import BASELINE_NAME

    report = evaluate(tiny_data, members, tmp_path / "base", train_data_dir=tiny_data)
    assert report.baseline is not None
    assert set(report.baseline.train_volumes) <= {p.name.split(".")[0] for p in tiny_data.glob(
        "raw/*")} | set(report.volumes)  # fmt: skip
    row = next(r for r in report.table if r["name"] == BASELINE_NAME)
    assert row["kind"] == Kind.BASELINE.value
    assert row["dice_n"] == len(report.volumes) == 6
    assert report.champion.name != BASELINE_NAME
    assert report.champion.baseline_dice == pytest.approx(row["dice_mean"])
    assert report.champion.beats_baseline == (report.champion.dice > row["dice_mean"])
    md = report.table_markdown
    assert BASELINE_NAME in md and "threshold baseline" in md and "n=6" in md
    assert all(r["ece_n"] <= 6 for r in report.table)
