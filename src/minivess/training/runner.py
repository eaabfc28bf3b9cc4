"""What ``minivess train`` does around :func:`minivess.training.train`: plan, track, exit code.

Kept out of the CLI module so the command body stays one call, and so flows and tests can use
the same path.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

from minivess.config import parse_model, parse_set_overrides
from minivess.planning.plan import TrainingPlan
from minivess.planning.profiles import ModelProfile
from minivess.settings import Settings, load_settings
from minivess.training.config import TrainConfig
from minivess.training.loop import TrainingPreempted, TrainSummary, sigterm_flag, train

log = logging.getLogger(__name__)


def resolve_plan(
    data: Path,
    model: str | ModelProfile,
    plan_path: Path | None,
    overrides: list[str] | None,
    hardware: Any | None = None,
    target_spacing: tuple[float, float, float] | None = None,
) -> TrainingPlan:
    """The plan to train with: ``plan_path`` if given, else planned for this machine (on the
    resampled shapes when ``target_spacing`` is set: resampling is enabled).

    A given plan (e.g. the one ``minivess launch`` shipped to a cloud node) is checked against
    this machine's GPU (:func:`minivess.planning.node.plan_fits`): kept when it fits, otherwise
    re-planned for this machine with the same overrides. Either way the verdict is logged and
    recorded as the ``node.plan`` decision of the plan that trains.
    """
    from minivess.planning import make_plan

    if plan_path is None:
        return make_plan(
            data,
            model,
            overrides=parse_set_overrides(overrides) or None,
            target_spacing=target_spacing,
        )
    if overrides:
        log.warning("--set is ignored with --plan %s (edit the plan file instead)", plan_path)
    from minivess.planning.hardware import detect_hardware
    from minivess.planning.node import node_decision, plan_fits, replan_overrides

    travelled = TrainingPlan.load(plan_path)
    hw = hardware if hardware is not None else detect_hardware()
    fits, reason = plan_fits(travelled, hw)
    decision = node_decision(fits, reason)
    log.info("decision %s = %s (%s)", decision.name, decision.value, reason)
    if fits:
        plan = travelled
    else:
        log.warning("plan %s does not fit this node: %s; re-planning", plan_path, reason)
        plan = make_plan(
            data,
            travelled.model,
            hardware=hw,
            overrides=replan_overrides(travelled) or None,
            target_spacing=target_spacing,
        )
    return plan.model_copy(update={"decisions": [*plan.decisions, decision]})


def custom_profile(model: str) -> ModelProfile | None:
    """The profile of ``--model path/to.yaml`` (a profile outside configs/), else None."""
    if not model.endswith((".yaml", ".yml")) and not Path(model).is_file():
        return None
    from minivess.planning.profiles import load_model_profile

    return load_model_profile(model)


def _tracking_run(cfg: TrainConfig, plan: TrainingPlan, settings: Settings) -> Any:
    """An MLflow run (rank 0, tracking configured) or a null context."""
    if settings.rank != 0 or settings.storage.mlflow.tracking_uri is None:
        return nullcontext(None)
    from minivess.tracking.contract import Flow
    from minivess.tracking.mlflow_adapter import connect, flow_run

    client = connect(settings)
    return flow_run(
        client, settings, Flow.TRAIN, run_name=f"{plan.model}-{cfg.loss}-fold{cfg.fold}"
    )


def run_train(
    data: Path,
    model: str,
    cfg_fields: dict[str, Any],
    plan_path: Path | None = None,
    overrides: list[str] | None = None,
    summary_json: Path | None = None,
    progress: bool = True,
    settings: Settings | None = None,
    preempted_marker: Path | None = None,
) -> int:
    """Plan (or load the plan), train with an MLflow run when tracking is configured.

    Returns:
        0 on success, :data:`~minivess.training.loop.PREEMPTED_EXIT_CODE` when SIGTERM stopped
        the run after saving its checkpoint (rerun to resume). Then ``preempted_marker``
        (when given) is created, so a wrapper whose own exit code hides ours (``torchrun``
        exits 1 when a worker exits 75) can still report the preemption.

    ``settings`` (default: :func:`~minivess.settings.load_settings`) give the tracking server,
    the S3 endpoint of an ``s3://`` checkpoint dir, and the rank.
    """
    settings = settings or load_settings()
    cfg = parse_model(TrainConfig, cfg_fields, "minivess train options")
    profile = custom_profile(model)
    spacing = cfg.resampling.target_spacing if cfg.resampling.enabled else None
    try:
        # SIGTERM while planning (the data gate) or connecting stops at once: nothing to save
        with sigterm_flag(cfg.checkpoint_dir) as stop, ExitStack() as stack:
            with stop.setup("planning (data gate) and connecting to MLflow"):
                plan = resolve_plan(
                    Path(data), profile or model, plan_path, overrides, target_spacing=spacing
                )
                run = stack.enter_context(_tracking_run(cfg, plan, settings))
            tracker = None
            if run is not None:
                from minivess.tracking.mlflow_tracker import MlflowTracker

                tracker = MlflowTracker(run.info.run_id)
            summary = train(
                Path(data), plan, cfg, tracker=tracker, progress=progress,
                endpoint_url=settings.storage.s3.endpoint_url, profile=profile,
            )  # fmt: skip
    except TrainingPreempted as err:
        log.warning("%s", err)
        preempted_marker = preempted_marker or settings.preempted_marker
        if preempted_marker is not None:
            Path(preempted_marker).parent.mkdir(parents=True, exist_ok=True)
            Path(preempted_marker).write_text(f"{err.exit_code}\n")
        return err.exit_code
    write_summary(summary, summary_json, settings.rank)
    return 0


def write_summary(summary: TrainSummary, path: Path | None, rank: int = 0) -> None:
    """Write the summary JSON (rank 0 only; other ranks hold the same numbers)."""
    if path is None or rank != 0:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(summary.model_dump_json(indent=2))
    log.info("summary written to %s", path)
