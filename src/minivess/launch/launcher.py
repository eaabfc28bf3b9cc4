"""``minivess launch``: plan → render → validate (SkyPilot's own code) → write → print/launch.

:func:`prepare` does everything up to the printed command and never starts anything;
:func:`execute` then runs the local command or calls SkyPilot's SDK (``sky.launch``,
``sky.jobs.launch``, ``sky.serve.up``), which starts SkyPilot's local API server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minivess.config import config_dir, read_yaml
from minivess.data.schema import Shape3
from minivess.errors import ConfigError
from minivess.launch import secrets as secret_guard
from minivess.launch.render import RenderContext, Rendered, SynthSpec, dump_task, render_task
from minivess.launch.skycheck import (
    CheckItem,
    SkyValidator,
    default_runtime_dir,
    raise_for,
    skypilot_version,
)
from minivess.launch.ssh import DEFAULT_POOLS_FILE, write_pool_entry
from minivess.launch.targets import Job, Kind, TargetConfig, load_target, target_path
from minivess.planning.estimate import Estimate, JobSteps, estimate, job_steps, step_time
from minivess.planning.plan import Decision, TrainingPlan
from minivess.resources import project_root, sky_template
from minivess.settings import process_environ

log = logging.getLogger(__name__)

#: The project root (see :mod:`minivess.resources`): synced to nodes as ``workdir``.
REPO_DIR = project_root()
#: Default folder for rendered tasks (git-ignored).
DEFAULT_OUT = REPO_DIR / "sky" / "rendered"


@dataclass(frozen=True)
class LaunchOptions:
    """What ``minivess launch`` was asked to do (built at the CLI boundary)."""

    target: str
    data: Path | None = None
    model: str | None = None
    config: str | None = None
    dry_run: bool = True
    out_dir: Path = DEFAULT_OUT
    runtime_dir: Path = field(default_factory=default_runtime_dir)
    pools_file: Path = DEFAULT_POOLS_FILE
    repo_dir: Path = REPO_DIR
    workspace: Path | None = None
    num_nodes: int | None = None


@dataclass
class Prepared:
    """A validated, written task and the command that launches it."""

    target: TargetConfig
    yaml_path: Path
    plan_path: Path
    config: dict[str, Any]
    command: str
    decisions: list[Decision]
    pool_file: Path | None = None
    missing_secrets: list[str] = field(default_factory=list)
    accelerators: list[str] = field(default_factory=list)
    estimates: list[Estimate] = field(default_factory=list)
    job: JobSteps | None = None
    #: The same job planned for and run on this machine (what a rehearsal measures), or why
    #: there is no estimate of it.
    here: list[Estimate] = field(default_factory=list)
    here_why: str = ""


def sky_command(target: TargetConfig, yaml_path: Path, pool_file: Path | None) -> str:
    """The exact ``sky`` command for this target (secrets by name: ``--secret NAME``)."""
    secrets = "".join(f" --secret {name}" for name in target.secrets)
    path = shlex.quote(str(yaml_path))
    if target.kind is Kind.SPOT:
        return f"sky jobs launch -n {target.name} {path}{secrets}"
    if target.kind is Kind.SERVE:
        return f"sky serve up -n {target.name} {path}{secrets}"
    down = f" && sky down -y {target.name}" if target.teardown else ""
    if target.kind is Kind.SSH:
        assert target.pool is not None
        # Not `sky ssh up -f FILE`: that mode refuses ~/.ssh/config aliases (SkyPilot 0.14.1
        # ssh_node_pools.utils.prepare_hosts_info); the pool is merged into ~/.sky instead.
        up = f"sky ssh up --infra {target.pool.name}"
        return f"{up} && sky launch -c {target.name} {path}{secrets}{down}"
    return f"sky launch -c {target.name} {path}{secrets}{down}"


def local_gpu_names(known: list[str]) -> list[str]:
    """This machine's GPUs as SkyPilot accelerator strings (``"A100:2"``), known names only."""
    from minivess.planning.hardware import detect_hardware
    from minivess.planning.node import accelerator_matches

    hw = detect_hardware()
    if not hw.gpu_count or not hw.gpu_name:
        return []
    for candidate in sorted(known, key=len, reverse=True):  # A100-80GB before A100
        if accelerator_matches(candidate, hw.gpu_name):
            return [f"{candidate}:{hw.gpu_count}"]
    log.info(
        "launch: local GPU %r is not in configs/gpus.yaml; rendered without accelerators",
        hw.gpu_name,
    )
    return []


def _known_gpus() -> list[str]:
    path = config_dir() / "gpus.yaml"
    raw = read_yaml(path) if path.is_file() else {}
    return list((raw.get("gpus") or {}).keys()) if isinstance(raw, dict) else []


def _load_template(target: TargetConfig, repo_dir: Path) -> tuple[dict[str, Any], str]:
    path = Path(target.template)
    if not path.is_absolute():
        path = sky_template(str(path), repo_dir)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a SkyPilot task template must be a mapping.")
    return raw, str(path)


def job_of(
    plan: TrainingPlan, ctx: RenderContext, volumes: dict[str, Shape3], nodes: int
) -> JobSteps:
    """What the rendered job computes: its grid cells on these volumes."""
    from minivess.launch.render import grid_cells

    return job_steps(plan, volumes, grid_cells(ctx), world_size=plan.devices * nodes)


def estimates_for(
    plan: TrainingPlan, job: JobSteps, accelerators: list[str], spot: list[bool], nodes: int = 1
) -> tuple[list[Estimate], str]:
    """Time and cost per candidate and spot mode (:mod:`minivess.planning.estimate`), or no
    estimates and why."""
    from minivess.planning.calibration import calibrations_of
    from minivess.planning.profiles import load_model_profile
    from minivess.planning.settings import load_gpu_table
    from minivess.planning.topology import network_shape

    shape = network_shape(plan.patch_size, load_model_profile(plan.model).topology)
    voxels = shape[0] * shape[1] * shape[2]
    table, cals = load_gpu_table(), calibrations_of(plan.model)
    out: list[Estimate] = []
    missing: list[str] = []
    for acc in accelerators:
        step = step_time(plan, voxels, acc, cals, table)
        if step is None:
            missing.append(acc)
            continue
        out.extend(estimate(job, step, acc, s, table, nodes) for s in spot)
    if not cals or not any(c.step_base_s is not None for c in cals):
        why = (
            f"no step time is calibrated for '{plan.model}': `minivess calibrate --model "
            f"{plan.model}` measures one on this machine (a minute or two), then every dry run "
            "prints time and cost per candidate"
        )
    elif missing:
        why = f"no throughput figure in configs/gpus.yaml for {', '.join(missing)}"
    else:
        why = ""
    return out, why


def _log_estimates(prepared: Prepared, why: str) -> None:
    if why:
        log.info("launch: estimate = none (%s)", why)
    if not prepared.estimates:
        return
    log.info(
        "launch: estimate basis = %s (node setup, data upload and provisioning not included)",
        prepared.estimates[0].steps.describe(),
    )
    for est in prepared.estimates:
        log.info("launch: estimate %s (%s)", est.describe(), est.source)


def _make_plan(
    data_dir: Path, model: str, exp: Any, target: TargetConfig
) -> tuple[TrainingPlan, TrainingPlan, dict[str, Shape3]]:
    """The plan the node will run, the plan for this machine, and the shapes of the volumes
    they were planned on.

    Local target (or an experiment naming its hardware): planned for that machine. Cloud and
    pool targets: planned on this machine first, for the GPU candidates, then re-planned for
    the first allowed candidate GPU, which is what the node checks the plan against.
    """
    from minivess.data.profiler import profile_dataset
    from minivess.launch.render import select_candidates
    from minivess.planning import make_plan

    profile = profile_dataset(data_dir)
    overrides = exp.plan.model_dump(exclude_unset=True) or None
    plan = make_plan(profile, model, hardware=exp.hardware, overrides=overrides)
    volumes = {v.name: v.shape for v in profile.volumes}
    if target.kind is Kind.LOCAL or exp.hardware is not None or not plan.accelerators:
        return plan, plan, volumes
    first = select_candidates(plan, target, f"target {target.name}")[0]
    gpu_plan = make_plan(profile, model, hardware=f"gpu:{first}", overrides=overrides)
    log.info("launch: planned for %s, the first candidate GPU the node may get", first)
    return (gpu_plan if gpu_plan.accelerators else plan), plan, volumes


def _ensure_local_data(exp: Any, settings: Any) -> Path:
    """The embedded default when the experiment has no data dir: synthesise it once."""
    data_dir = settings.data_dir
    if not (data_dir / "raw").is_dir():
        from minivess.data.synth import synthesize

        log.info(
            "launch: no data dir configured: synthesising MiniVess-like data into %s "
            "(as `minivess experiment` does)",
            data_dir,
        )
        synthesize(
            data_dir,
            scale=exp.data.synth_scale,
            n_volumes=exp.data.synth_volumes,
            seed=exp.data.seed,
        )
    return data_dir


def build_context(
    target: TargetConfig, opts: LaunchOptions, exp: Any, settings: Any, data_dir: Path | None
) -> RenderContext:
    """Gather the render context from the experiment config and storage settings."""
    s3 = settings.storage.s3
    s3_envs = {}
    if s3.bucket:
        s3_envs["MINIVESS_S3_BUCKET"] = s3.bucket
    if s3.endpoint_url:
        s3_envs["MINIVESS_S3_ENDPOINT_URL"] = s3.endpoint_url
    exp_cfg = None
    if target.job is Job.EXPERIMENT:
        from minivess.experiment import experiment_path

        path = experiment_path(opts.config).absolute()
        try:
            exp_cfg = str(path.relative_to(opts.repo_dir))
        except ValueError:
            raise ConfigError(
                f"{path}: job experiment needs the experiment YAML inside the project "
                f"({opts.repo_dir}), which is what is synced to the node."
            ) from None
    return RenderContext(
        model=opts.model or exp.model,
        workdir=opts.repo_dir,
        experiment=exp.name,
        data_dir=data_dir,
        synth=SynthSpec(exp.data.synth_scale, exp.data.seed, exp.data.synth_volumes),
        training=exp.training.model_dump(mode="json", exclude_unset=True),
        dry_run=opts.dry_run,
        experiment_config=exp_cfg,
        checkpoint_uri=s3.uri(s3.checkpoint_prefix) if s3.enabled else None,
        local_checkpoint_dir=settings.checkpoints_dir,
        local_workspace=settings.workspace,
        s3_envs=s3_envs,
        local_accelerators=tuple(local_gpu_names(_known_gpus()))
        if target.kind is Kind.LOCAL
        else (),
    )


def render_and_write(
    plan: TrainingPlan,
    target: TargetConfig,
    ctx: RenderContext,
    opts: LaunchOptions,
    origin: str,
    environ: Mapping[str, str],
    validator: SkyValidator | None = None,
) -> Prepared:
    """Render, guard secrets, validate with SkyPilot, then write (a failed render writes
    nothing and leaves earlier files intact)."""
    template, template_path = _load_template(target, opts.repo_dir)
    rendered: Rendered = render_task(plan, target, ctx, template, origin=origin)
    for d in rendered.decisions:
        loud = d.reason.startswith(("WARNING", "DRY RUN")) or "WARNING:" in d.reason
        (log.warning if loud else log.info)("launch: %s = %s (%s)", d.name, d.value, d.reason)
    text = dump_task(rendered.config)
    secret_guard.assert_clean(text, environ, target.secrets, where=f"rendered {target.kind}")
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = target_path(opts.target).stem
    yaml_path = out / f"{stem}.yaml"
    tmp = out / f".{stem}.yaml.tmp"
    tmp.write_text(
        f"# Rendered by `minivess launch --target {opts.target}`; edit "
        f"{origin} or {template_path} instead.\n{text}"
    )
    item = CheckItem(
        str(tmp),
        target.kind is Kind.SERVE,
        tuple(rendered.accelerators),
        tuple(target.infra),
        target.pool.name if target.kind is Kind.SSH and target.pool else None,
    )
    own = validator is None
    validator = validator or SkyValidator(Path(opts.runtime_dir))
    try:
        [result] = validator.validate([item])
        raise_for(result, yaml_path, template_path)
        if result.cached:
            log.info(
                "launch: validation = cached (SkyPilot %s accepted these exact task bytes "
                "before; delete %s to revalidate)",
                skypilot_version(),
                validator.cache.root,
            )
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if own:
            validator.close()
    os.replace(tmp, yaml_path)
    plan_path = plan.save(out / f"{stem}.plan.json")
    pool_file = None
    if target.kind is Kind.SSH and target.pool is not None:
        pool_file = write_pool_entry(target.pool, out / "ssh_node_pools.yaml")
        if not opts.dry_run:
            pool_file = write_pool_entry(target.pool, Path(opts.pools_file).expanduser())
    if target.kind is Kind.LOCAL:
        run = shlex.quote(rendered.config["run"])
        command = f"cd {shlex.quote(str(ctx.workdir))} && bash -c {run}"
    else:
        command = sky_command(target, yaml_path, pool_file)
    secret_guard.assert_clean(command, environ, target.secrets, where="printed command")
    missing = [n for n in target.secrets if not environ.get(n)]
    return Prepared(
        target,
        yaml_path,
        plan_path,
        rendered.config,
        command,
        rendered.decisions,
        pool_file,
        missing,
        list(rendered.accelerators),
    )


def prepare(
    opts: LaunchOptions,
    environ: Mapping[str, str] | None = None,
    validator: SkyValidator | None = None,
) -> Prepared:
    """Plan, render, validate and write the task for ``opts.target``; start nothing.

    ``validator``: a :class:`SkyValidator` the caller started earlier (and closes), so that
    SkyPilot's import overlaps even more of this process's work; default: one started here.
    """
    from minivess.experiment import load_experiment
    from minivess.settings import load_settings

    env = process_environ() if environ is None else environ
    origin = str(target_path(opts.target))
    target = load_target(opts.target)
    if opts.num_nodes is not None:
        target = target.model_copy(update={"num_nodes": opts.num_nodes})
    exp = load_experiment(opts.config)
    settings = load_settings(workspace=opts.workspace, environ=dict(env))
    # SkyPilot's import runs in its own process while we plan and render.
    with (
        contextlib.nullcontext(validator)
        if validator
        else SkyValidator(Path(opts.runtime_dir)) as validator
    ):
        data_dir = opts.data or exp.data.dir
        plan_dir = data_dir if data_dir is not None else _ensure_local_data(exp, settings)
        if data_dir is None and target.kind is Kind.LOCAL:
            data_dir = plan_dir
        plan, here, volumes = _make_plan(Path(plan_dir), opts.model or exp.model, exp, target)
        ctx = build_context(target, opts, exp, settings, data_dir)
        prepared = render_and_write(plan, target, ctx, opts, origin, env, validator)
    if target.kind is not Kind.SERVE:
        prepared.job = job_of(plan, ctx, volumes, target.num_nodes)
        spot = [True, False] if target.use_spot and target.spot_fallback else [target.use_spot]
        prepared.estimates, why = estimates_for(
            plan, prepared.job, prepared.accelerators or ["cpu"], spot, target.num_nodes
        )
        _log_estimates(prepared, why)
        local = list(local_gpu_names(_known_gpus())) or ["cpu"]
        prepared.here, prepared.here_why = estimates_for(
            here, job_of(here, ctx, volumes, 1), local[:1], [False]
        )
    for name in prepared.missing_secrets:
        log.warning(
            "launch: secret %s is not set in this shell: `--secret %s` will fail; "
            "export it or remove it from %s",
            name,
            name,
            origin,
        )
    return prepared


def execute(prepared: Prepared, environ: Mapping[str, str] | None = None) -> int:
    """Run the prepared task: locally for ``local``, else through SkyPilot's SDK."""
    env = process_environ() if environ is None else dict(environ)
    cfg = prepared.config
    if prepared.target.kind is Kind.LOCAL:
        env.update({k: str(v) for k, v in (cfg.get("envs") or {}).items()})
        # The same install that runs this command provides `minivess` (venv not activated).
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            ["bash", "-c", cfg["run"]], cwd=cfg["workdir"], env=env, check=False
        ).returncode
    import sky

    secrets = [(n, env[n]) for n in prepared.target.secrets if env.get(n)]
    task = sky.Task.from_yaml_config(read_yaml(prepared.yaml_path), secrets_overrides=secrets)
    target = prepared.target
    request: Any  # each SDK call returns a differently typed request id
    if target.kind is Kind.SPOT:
        request = sky.jobs.launch(task, name=target.name)
    elif target.kind is Kind.SERVE:
        request = sky.serve.up(task, service_name=target.name)
    else:
        if target.kind is Kind.SSH and target.pool is not None:
            from sky.client import sdk

            # The pool entry was merged into ~/.sky/ssh_node_pools.yaml by prepare().
            sky.stream_and_get(sdk.ssh_up(infra=target.pool.name))
        request = sky.launch(task, cluster_name=target.name)
    sky.stream_and_get(request)
    return 0


def render_for_plan(
    plan: TrainingPlan,
    target: str = "serve",
    *,
    out_dir: Path = DEFAULT_OUT,
    model_uri: str | None = None,
    runtime_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    capacity: dict[str, Any] | None = None,
) -> Prepared:
    """Render, validate and write a target for an existing plan (no planning, no data).

    ``capacity`` (the deploy's measured serve capacity plan) sizes a serve target's replicas.

    For flows that already hold the plan, e.g. the deploy flow rendering the SkyServe task for
    the champion: ``render_for_plan(plan, "serve", model_uri="models:/minivess-segmenter/3")``.
    Starts nothing; ``Prepared.command`` is the ``sky serve up ...`` line to print.

    Raises:
        ConfigError / PlanError / SkyValidationError with a one-line reason.
    """
    env = process_environ() if environ is None else environ
    cfg = load_target(target)
    if model_uri is not None and cfg.service is not None:
        service = cfg.service.model_copy(update={"model_uri": model_uri})
        cfg = cfg.model_copy(update={"service": service})
    opts = LaunchOptions(
        target=target, out_dir=out_dir, runtime_dir=runtime_dir or default_runtime_dir()
    )
    ctx = RenderContext(model=plan.model, workdir=opts.repo_dir, capacity=capacity)
    return render_and_write(plan, cfg, ctx, opts, str(target_path(target)), env)
