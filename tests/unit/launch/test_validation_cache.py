"""A task SkyPilot accepted validates again without SkyPilot; anything its verdict depends on
sends it back to SkyPilot, and a rejection is never remembered.

Real SkyPilot children (two, one ``import sky`` each); the cache is the one under test.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from minivess.launch import skycheck
from minivess.launch.render import RenderContext, dump_task, render_task
from minivess.launch.skycheck import CheckItem, SkyValidator
from minivess.launch.targets import TargetConfig
from minivess.planning.plan import TrainingPlan


def _write(path: Path, plan: TrainingPlan, target: TargetConfig, ctx: RenderContext) -> CheckItem:
    rendered = render_task(plan, target, ctx)
    path.write_text(dump_task(rendered.config))
    return CheckItem(str(path), False, tuple(rendered.accelerators), tuple(target.infra))


def test_accepted_task_is_answered_from_the_cache_until_its_verdict_could_change(
    tmp_path: Path,
    plan: TrainingPlan,
    shipped: dict[str, TargetConfig],
    ctx: RenderContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = tmp_path / "sky-runtime"
    spot = _write(tmp_path / "spot.yaml", plan, shipped["spot"], ctx)
    with SkyValidator(runtime) as validator:
        [first] = validator.validate([spot])
    assert first.ok and not first.cached, first

    with SkyValidator(runtime) as validator:
        [again] = validator.validate([spot])
    assert again.ok and again.cached

    # One byte more (a comment), a workdir that is gone, a typo SkyPilot rejects: all new.
    edited = tmp_path / "edited.yaml"
    edited.write_text(Path(spot.path).read_text() + "# edited\n")
    gone = dataclasses.replace(ctx, workdir=tmp_path / "moved-away")
    gone.workdir.mkdir()
    no_workdir = _write(tmp_path / "no-workdir.yaml", plan, shipped["spot"], gone)
    cache = skycheck.ValidationCache(runtime / "validated")
    before = cache.key(no_workdir)
    shutil.rmtree(gone.workdir)
    assert cache.key(no_workdir) != before  # the workdir's existence is part of the key
    typo = tmp_path / "typo.yaml"
    typo.write_text(Path(spot.path).read_text().replace("resources:", "resorces:", 1))
    items = [CheckItem(str(edited), False, spot.accelerators, spot.clouds), no_workdir]
    items.append(CheckItem(str(typo), False, spot.accelerators, spot.clouds))
    with SkyValidator(runtime) as validator:
        results = validator.validate(items)
    assert [(r.ok, r.cached) for r in results] == [(True, False), (False, False), (False, False)]
    assert "Workdir" in results[1].error, results[1]
    assert "resorces" in results[2].error, results[2]
    # Rejections are SkyPilot's fresh message every time: never cached.
    assert cache.get(cache.key(items[1])) is None and cache.get(cache.key(items[2])) is None
    assert cache.get(cache.key(items[0])) is not None

    # Another SkyPilot version, or other offline state, is another key. (A second SkyPilot
    # cannot be installed here, so the version reader is replaced in-process.)
    other_clouds = CheckItem(spot.path, False, spot.accelerators, ("azure",))
    assert cache.get(cache.key(other_clouds)) is None
    monkeypatch.setattr(skycheck, "skypilot_version", lambda: "0.0.0")
    assert cache.get(cache.key(spot)) is None
