"""Every target's rendered YAML passes SkyPilot's own parser and offline validation, and bad
ones fail with SkyPilot's message verbatim plus our hint.

All cases are validated in ONE isolated SkyPilot child process (``validate_many``), so the suite
pays for ``import sky`` once. The child writes its own offline catalog under ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.config import read_yaml
from minivess.launch.launcher import REPO_DIR
from minivess.launch.render import RenderContext, dump_task, render_task
from minivess.launch.skycheck import (
    CheckItem,
    CheckResult,
    SkyValidationError,
    hint_for,
    raise_for,
    validate_many,
)
from minivess.launch.targets import Kind, TargetConfig
from tests.fixtures.plans import gpu_plan


def _item(path: Path, target: TargetConfig, accelerators: list[str]) -> CheckItem:
    return CheckItem(
        str(path),
        target.kind is Kind.SERVE,
        tuple(accelerators),
        tuple(target.infra),
        target.pool.name if target.kind is Kind.SSH and target.pool else None,
    )


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CheckResult]:
    """Render each case to a file and validate them all with SkyPilot in one child."""
    from minivess.launch.targets import load_target

    base = tmp_path_factory.mktemp("launch")
    (base / "data").mkdir()
    plan = gpu_plan()
    ctx = RenderContext(
        model="dynunet",
        workdir=base,
        data_dir=base / "data",
        epochs=1,
        checkpoint_uri="s3://lab-bucket/checkpoints",
        local_checkpoint_dir=base / "ckpt",
    )
    targets = {n: load_target(n) for n in ("local", "ssh", "spot", "serve")}
    items: dict[str, CheckItem] = {}

    def add(name: str, target: TargetConfig, template: dict | None = None) -> None:
        rendered = render_task(plan, target, ctx, template)
        path = base / f"{name}.yaml"
        path.write_text(dump_task(rendered.config))
        items[name] = _item(path, target, rendered.accelerators)

    for name, target in targets.items():
        add(name, target, read_yaml(REPO_DIR / "sky" / target.template))
    # The templates themselves are usable directly with `sky launch` / `sky serve up`.
    for name in ("train", "serve"):
        items[f"template_{name}"] = CheckItem(
            str(REPO_DIR / "sky" / f"{name}.yaml"),
            name == "serve",
            ("T4:1", "L4:1", "A10G:1"),
            ("aws",),
        )
    add("typo", targets["spot"], {"resources": {"acelerators": "L4:1"}})
    serve_jr = TargetConfig.model_validate(
        {**targets["serve"].model_dump(), "job_recovery": {"strategy": "FAILOVER"}}
    )
    add("serve_job_recovery", serve_jr)
    multinode = TargetConfig.model_validate({**targets["spot"].model_dump(), "num_nodes": 2})
    add("spot_multinode", multinode)
    experiment = TargetConfig.model_validate({**targets["spot"].model_dump(), "job": "experiment"})
    add("spot_experiment", experiment)
    fallback = TargetConfig.model_validate(
        {**targets["spot"].model_dump(), "spot_fallback": True, "max_hourly_cost": 1.5}
    )
    add("spot_fallback", fallback)
    results = validate_many(list(items.values()), base / "sky-runtime")
    return dict(zip(items, results, strict=True))


@pytest.mark.parametrize(
    "case",
    ["local", "ssh", "spot", "serve", "spot_multinode", "spot_experiment", "spot_fallback"],
)
def test_each_target_passes_skypilot(checked: dict[str, CheckResult], case: str) -> None:
    assert checked[case].ok, f"{case}: {checked[case].stage}: {checked[case].error}"


@pytest.mark.parametrize("case", ["template_train", "template_serve"])
def test_templates_pass_skypilot_as_is(checked: dict[str, CheckResult], case: str) -> None:
    assert checked[case].ok, f"{case}: {checked[case].stage}: {checked[case].error}"


def test_typo_gets_skypilots_did_you_mean_and_our_hint(checked: dict[str, CheckResult]) -> None:
    result = checked["typo"]
    assert not result.ok and result.stage == "parse"
    assert "Instead of 'acelerators', did you mean 'accelerators'?" in result.error
    assert "fix the key's spelling" in hint_for(result.error, "sky/train.yaml")
    with pytest.raises(SkyValidationError) as err:
        raise_for(result, Path("sky/rendered/spot.yaml"), "sky/train.yaml")
    assert str(err.value).startswith("sky/rendered/spot.yaml: SkyPilot rejected the task (parse)")
    assert result.error.strip() in str(err.value) and "Hint: fix the key's spelling" in str(
        err.value
    )


def test_serve_with_job_recovery_is_rejected_by_skyserve(checked: dict[str, CheckResult]) -> None:
    result = checked["serve_job_recovery"]
    assert not result.ok and result.stage == "service"
    assert "job_recovery is disabled for SkyServe" in result.error
    assert "remove job_recovery from the serve target" in hint_for(result.error, "")


def test_spot_fallback_lists_on_demand_after_spot(tmp_path: Path) -> None:
    from minivess.launch.targets import load_target

    spot = TargetConfig.model_validate(
        {**load_target("spot").model_dump(), "spot_fallback": True, "infra": ["aws"]}
    )
    ctx = RenderContext(model="dynunet", workdir=tmp_path, checkpoint_uri="s3://b/c")
    res = render_task(gpu_plan(["T4:1", "L4:1"]), spot, ctx).config["resources"]
    assert "use_spot" not in res
    assert [(i["accelerators"], i["use_spot"]) for i in res["ordered"]] == [
        ("T4:1", True),
        ("L4:1", True),
        ("T4:1", False),
        ("L4:1", False),
    ]
