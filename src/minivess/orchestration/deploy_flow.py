"""Flow 4, the platform engineer: registry -> export, parity -> bento -> smoke test -> SkyServe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, task

from minivess.experiment import load_experiment
from minivess.orchestration import common
from minivess.serving.capacity import CAPACITY_ROUNDS
from minivess.settings import Settings
from minivess.tracking.contract import Flow, Tag

if TYPE_CHECKING:
    from minivess.serving.deploy import DeployResult


@dataclass(frozen=True)
class DeployFlowResult:
    """Inputs came from the registry; these are the outputs."""

    run_id: str
    model_uri: str
    endpoint: str  # where the smoke test ran; that server is stopped once it passed
    parity_dice: float
    parity_max_abs_diff: float
    serve_yaml: str


@task
def fetch_champion(settings: Settings) -> tuple[Any, Path]:
    """The ``@champion`` version and its files, downloaded into the workspace."""
    from minivess.tracking import mlflow_adapter as mfa

    client = mfa.connect(settings)
    version = mfa.aliased_version(client)
    local = mfa.download_version(client, version, settings.deploy_dir / f"v{version.version}")
    return version, next(local.rglob("*.pt"))


def check_deployable(version: Any, force: bool) -> None:
    """Refuse a version registered below the threshold baseline, unless ``force``.

    Raises:
        DeployRefused: the version carries :attr:`Tag.BELOW_BASELINE` and ``force`` is false.
    """
    from minivess.errors import DeployRefused

    warning = version.tags.get(Tag.BELOW_BASELINE.value)
    if not warning:
        return
    if force:
        print(f"deploying {version.uri} although {warning} (deploy.force: true)")
        return
    raise DeployRefused(
        f"{version.uri}: {warning}; not deploying it. Train longer (training.epochs), or set "
        f"deploy.force: true in the experiment YAML to deploy it anyway."
    )


@task
def smoke_volume(settings: Settings) -> Path | None:
    """A real volume for the parity check and the HTTP smoke test (first image of the data)."""
    images = sorted(settings.data_dir.glob("raw/*.nii*"))
    return images[0] if images else None


def store_labels(version: Any) -> dict[str, str]:
    """Labels of the model in BentoML's store: where it came from in the MLflow registry."""
    return {
        "mlflow_model": version.name,
        "mlflow_version": str(version.version),
        "mlflow_run_id": version.run_id,
    }


@task
def export_and_smoke_test(
    checkpoint: Path,
    workdir: Path,
    backend: str,
    volume: Path | None,
    labels: dict[str, str] | None = None,
    capacity_rounds: int = CAPACITY_ROUNDS,
) -> DeployResult:
    """Export, parity-check, store the model and build the bento, serve it locally and
    smoke-test it over HTTP."""
    from minivess.serving.deploy import deploy_model
    from minivess.serving.settings import Backend, ServeSettings

    # "auto": no backend set, so the capacity plan's measured pick is served.
    settings = ServeSettings() if backend == "auto" else ServeSettings(backend=Backend(backend))
    return deploy_model(
        str(checkpoint), workdir, settings=settings, smoke_volume=volume, labels=labels,
        capacity_rounds=capacity_rounds,
    )  # fmt: skip


@task
def render_serve_yaml(
    bundle: Path, model_uri: str, settings: Settings, capacity: dict[str, Any] | None = None
) -> str:
    """The SkyServe task YAML serving ``model_uri``, sized by the measured capacity plan."""
    from minivess.launch.launcher import render_for_plan
    from minivess.planning.plan import TrainingPlan

    plan = TrainingPlan.load(bundle / "plan.json")
    prepared = render_for_plan(
        plan, "serve", out_dir=settings.workspace / "sky", model_uri=model_uri, capacity=capacity
    )
    print(f"public serving: {prepared.command}")
    return str(prepared.yaml_path)


def capacity_tags(cap: Any) -> dict[str, str]:
    """The capacity plan as model-version tags: the pick, each backend's figure, the policy."""
    import json

    tags = {
        "serve_backend": cap.picked,
        "serve_backend_reason": cap.reason[:4000],
        "serve_target_qps_per_replica": str(cap.target_qps_per_replica),
        "serve_scale_delays_s": (
            f"up {cap.upscale_delay_seconds}, down {cap.downscale_delay_seconds}"
        ),
        "serve_resources": json.dumps(cap.resources),
    }
    for f in cap.figures:
        tags[f"serve_seconds_{f.name}"] = f"best {f.best_s:.4f}, median {f.median_s:.4f}"
    return tags


@task
def record_deployment(version: Any, result: Any, serve_yaml: str, settings: Settings) -> str:
    """Mark the version deployed and log the deploy run."""
    from minivess.tracking import mlflow_adapter as mfa

    client = mfa.connect(settings)
    with mfa.flow_run(
        client, settings, Flow.DEPLOY, run_name="deploy",
        tags={Tag.UPSTREAM_RUN_ID: version.selected_by, Tag.TARGET: "serve"},
        params={"model_uri": version.uri, "smoke_test_endpoint": result.endpoint},
        metrics={"parity_dice": result.parity.dice,
                 "parity_max_abs_diff": result.parity.max_abs_diff},
    ) as run:  # fmt: skip
        mfa.log_file(serve_yaml, "sky")
        extra = {
            "serve_yaml": serve_yaml,
            "bento": result.bento_tag,
            "bentoml_model": result.model_tag,
        }
        if result.capacity is not None:
            cap = result.capacity
            mfa.log_dict(cap.as_dict(), "serve/capacity.json")
            mfa.log_params({"serve_backend": cap.picked, "serve_resources": cap.resources})
            mfa.log_metrics(
                {f"serve_{f.name.replace('-', '_')}_best_s": f.best_s for f in cap.figures}
            )
            extra.update(capacity_tags(cap))
    mfa.mark_deployed(client, version, extra)
    return run.info.run_id


@flow(name="minivess-deploy", log_prints=True)
def deploy_flow(workspace: str | None = None, experiment: str | None = None) -> DeployFlowResult:
    """Serve the registered champion: export, check parity, build, smoke-test, render SkyServe."""
    settings = common.settings_for(workspace)
    exp = load_experiment(experiment)
    version, checkpoint = fetch_champion(settings)
    check_deployable(version, exp.deploy.force)
    result = export_and_smoke_test(
        checkpoint,
        settings.deploy_dir / "build",
        exp.deploy.backend,
        smoke_volume(settings),
        store_labels(version),
        exp.deploy.capacity_rounds,
    )
    capacity = result.capacity.as_dict() if result.capacity else None
    serve_yaml = render_serve_yaml(result.bundle, version.uri, settings, capacity)
    run_id = record_deployment(version, result, serve_yaml, settings)
    return DeployFlowResult(
        run_id=run_id, model_uri=version.uri, endpoint=result.endpoint,
        parity_dice=result.parity.dice, parity_max_abs_diff=result.parity.max_abs_diff,
        serve_yaml=serve_yaml,
    )  # fmt: skip
