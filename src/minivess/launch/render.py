"""Plan + target settings + template → a SkyPilot task config (a plain dict, dumped as YAML).

Pure functions: no SkyPilot import, no I/O but the cached GPU table (``configs/gpus.yaml``,
:func:`minivess.planning.settings.load_gpu_table`). :func:`render_task` returns the task dict
and the decisions it took, each with its reason. The ``run:`` command is the same
``minivess`` call a user types locally; on more than one node it is wrapped in ``torchrun``
fed by SkyPilot's ``SKYPILOT_NODE_IPS`` / ``SKYPILOT_NODE_RANK`` / ``SKYPILOT_NUM_GPUS_PER_NODE``.

Quoting: every value that comes from a user (paths, names, bucket URIs, model names) is passed
through :func:`shlex.quote`, so nothing in it expands or executes on the node. Only fragments
the renderer writes itself (:class:`Sh`: ``"$HOME"``, ``"${SKYPILOT_TASK_ID}"``, the torchrun
variables) expand.

The plan travels inline: the run script writes the validated plan JSON with a quoted here-doc
(no expansion) and calls ``minivess train --plan <that file>`` once per cell of the
experiment's loss x fold grid, with the experiment's seed and epochs.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minivess.config import deep_merge
from minivess.errors import ConfigError, PlanError
from minivess.keys import Source
from minivess.launch.targets import Job, Kind, TargetConfig
from minivess.planning.plan import Decision, TrainingPlan
from minivess.planning.settings import GpuTable, load_gpu_table
from minivess.settings import checkpoint_dir, checkpoint_key
from minivess.tracking.contract import REGISTERED_MODEL, SKYPILOT_TASK_ID_ENV

if TYPE_CHECKING:
    from minivess.training.config import TrainConfig

#: SkyPilot sets this on managed jobs; it stays the same across spot recoveries.
TASK_ID_VAR = SKYPILOT_TASK_ID_ENV
#: Port torchrun's rendezvous uses on the head node.
MASTER_PORT = 29500
#: Bucket URI schemes SkyPilot can mount.
BUCKET_SCHEMES = ("s3://", "gs://", "r2://", "cos://", "oci://", "https://", "nebius://")
#: The node's minivess environment (created by the setup block; outside the synced workdir).
NODE_VENV = "$HOME/.minivess/venv"
#: Where the run script writes the travelled plan on the node.
NODE_PLAN_DIR = "$HOME/.minivess/launch"
#: Here-doc delimiter for the inline plan (a one-line JSON can never equal it).
PLAN_EOF = "MINIVESS_PLAN_EOF"
#: Python the node environment is built with (what .ci/constraints.txt is tested on).
NODE_PYTHON = "3.11"
#: Placeholder bucket of a dry run that has none configured (a real launch refuses it).
PLACEHOLDER_BUCKET = "set-MINIVESS_S3_BUCKET"


class Sh(str):
    """A shell fragment written by the renderer itself: emitted as is (may expand)."""


@dataclass(frozen=True)
class SynthSpec:
    """Synthesise the embedded MiniVess-like default on the node (no dataset configured)."""

    scale: str = "small"
    seed: int = 0
    n_volumes: int | None = None


@dataclass(frozen=True)
class RenderContext:
    """Everything besides the plan and the target that shapes the task.

    Args:
        model: model profile name (``configs/model_profiles/<model>.yaml``).
        workdir: project root synced to the node (absolute).
        experiment: experiment name (checkpoint sub-folder, as the train flow does).
        data_dir: local dataset dir; ``None`` means :attr:`synth` on the node.
        epochs: epochs for ``minivess train`` (``None`` = its default).
        experiment_config: experiment YAML, relative to ``workdir`` (``job: experiment``).
        checkpoint_uri: the storage settings' checkpoint root when it is a bucket URI.
        local_checkpoint_dir: checkpoint root for the local target.
        s3_envs: non-secret storage settings to forward (bucket name, endpoint URL).
        local_accelerators: SkyPilot names of this machine's GPUs (local target).
        local_workspace: the workspace of a local ``job: experiment`` run.
        training: the experiment's ``training:`` mapping (loss x fold grid, seed, epochs).
        dry_run: a dry run may render a placeholder bucket (with a warning); a launch may not.
        capacity: the serve capacity plan (:meth:`minivess.serving.capacity.CapacityPlan.
            as_dict`): replica resources, backend and autoscaling from measurement.
    """

    model: str
    workdir: Path
    experiment: str = "default"
    data_dir: Path | None = None
    synth: SynthSpec = field(default_factory=SynthSpec)
    epochs: int | None = None
    experiment_config: str | None = None
    checkpoint_uri: str | None = None
    local_checkpoint_dir: Path | None = None
    s3_envs: dict[str, str] = field(default_factory=dict)
    local_accelerators: tuple[str, ...] = ()
    local_workspace: Path | None = None
    training: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = True
    capacity: dict[str, Any] | None = None


@dataclass
class Rendered:
    """A rendered task and the decisions behind it."""

    config: dict[str, Any]
    decisions: list[Decision]
    accelerators: list[str]


def _decide(decisions: list[Decision], name: str, value: Any, reason: str) -> None:
    decisions.append(Decision(name=name, value=value, reason=reason, source=Source.AUTO))


def _gpu_name(accelerator: str) -> str:
    return accelerator.split(":", 1)[0]


def _gpu_count(accelerator: str) -> int:
    _, _, count = accelerator.partition(":")
    return int(count) if count.strip().isdigit() else 1


def select_candidates(
    plan: TrainingPlan, target: TargetConfig, origin: str, table: GpuTable | None = None
) -> list[str]:
    """The planner's cloud candidates (cheapest adequate first) that the target allows and
    that at least one of its clouds offers (``table``: default ``configs/gpus.yaml``).

    Raises:
        PlanError: no configured GPU fits the plan, or none that fits is allowed and offered.
        ConfigError: ``accelerators_allowed`` names a GPU that is not in the table.
    """
    if not plan.accelerators:
        raise PlanError(
            f"the plan for '{plan.model}' (patch {list(plan.patch_size)}, batch "
            f"{plan.batch_size}, ~{plan.vram_estimate_mb:.0f} MB VRAM) fits no GPU in "
            "configs/gpus.yaml. Fix: lower batch_size/patch_size with --set, or add a larger "
            "GPU to configs/gpus.yaml."
        )
    table = table or load_gpu_table()
    known = {n.upper(): n for n in table.gpus}
    for name in map(_gpu_name, target.accelerators_allowed):
        if name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), list(known), n=1)
            hint = f" Did you mean '{known[close[0]]}'?" if close else ""
            raise ConfigError(
                f"{origin}: accelerators_allowed names '{name}', which is not in "
                f"configs/gpus.yaml.{hint} Fix: add a row there (vram_gb, cost_class, clouds) "
                f"for a new GPU; known: {', '.join(table.gpus)}."
            )
    allowed = {_gpu_name(a).upper() for a in target.accelerators_allowed}
    picked = [a for a in plan.accelerators if not allowed or _gpu_name(a).upper() in allowed]
    if not picked:
        raise PlanError(
            f"{origin}: accelerators_allowed {target.accelerators_allowed} contains none of "
            f"the GPUs that fit the plan ({', '.join(plan.accelerators)}, "
            f"~{plan.vram_estimate_mb:.0f} MB VRAM). Fix: allow one of those, or shrink the "
            "plan with --set batch_size=... / patch_size=[...]."
        )
    infra = _cloud_infra(target)
    offered = [a for a in picked if not infra or any(table.offers(a, i) for i in infra)]
    if not offered:
        where = "; ".join(f"{_gpu_name(a)}: {_clouds_of(table, a)}" for a in picked)
        raise PlanError(
            f"{origin}: none of the GPUs that fit the plan is offered on infra {infra} "
            f"(configs/gpus.yaml: {where}). Fix: add one of those clouds to infra, or allow "
            "another GPU."
        )
    return offered[: target.max_candidates]


def _cloud_infra(target: TargetConfig) -> list[str]:
    """The target's infra strings that name clouds (an SSH pool is the lab's own hardware)."""
    return [] if target.kind in (Kind.SSH, Kind.LOCAL) else list(target.infra)


def _clouds_of(table: GpuTable, accelerator: str) -> str:
    spec = table.gpus.get(_gpu_name(accelerator))
    return ", ".join(spec.clouds) if spec and spec.clouds else "any cloud"


def resources_section(
    target: TargetConfig,
    accelerators: list[str],
    decisions: list[Decision],
    table: GpuTable | None = None,
) -> dict[str, Any]:
    """``resources:``: candidates (ordered / any_of) × allowed infra, spot, disk, image; a
    GPU × cloud pair that ``table`` (default ``configs/gpus.yaml``) says the cloud does not
    offer is left out, as a decision.

    Raises:
        PlanError: no candidate is offered on any allowed infra.
    """
    res: dict[str, Any] = {"disk_size": target.disk_size}
    infra = list(target.infra)
    if target.kind is Kind.SSH:
        assert target.pool is not None  # guaranteed by TargetConfig
        infra = [f"ssh/{target.pool.name}"]
    table = table or load_gpu_table()
    items: list[dict[str, Any]] = []
    skipped: list[str] = []
    for acc in accelerators:
        if not infra:
            items.append({"accelerators": acc})
        for i in infra:
            if table.offers(acc, i):
                items.append({"accelerators": acc, "infra": i})
            else:
                skipped.append(f"{acc} on {i} (offered on {_clouds_of(table, acc)})")
    if skipped:
        _decide(
            decisions,
            "resources.skipped",
            skipped,
            "GPU x cloud pairs the cloud does not offer, per configs/gpus.yaml `clouds`",
        )
        if not items:
            raise PlanError(
                f"target {target.name}: no candidate GPU is offered on infra {infra}: "
                f"{'; '.join(skipped)}. Fix: add one of those clouds to infra, or allow "
                "another GPU (configs/gpus.yaml lists which cloud offers which)."
            )
    mode = target.candidates
    if target.use_spot and target.spot_fallback and items:
        items = [{**i, "use_spot": True} for i in items] + [{**i, "use_spot": False} for i in items]
        mode = "ordered"
        _decide(
            decisions,
            "resources.spot_fallback",
            True,
            "every candidate on spot first, then the same on demand (resources.ordered)",
        )
    if len(items) == 1:
        res.update(items[0])
    elif items:
        res[mode] = items
    elif len(infra) == 1:
        res["infra"] = infra[0]
    elif infra:
        res["any_of"] = [{"infra": i} for i in infra]
    if items:
        _decide(
            decisions,
            "resources.accelerators",
            accelerators,
            f"{target.candidates} candidates"
            + (f" × infra {infra}" if infra else " on any enabled cloud")
            + (
                " from this machine's GPUs"
                if target.kind is Kind.LOCAL
                else " from the planner's cloud inversion (cheapest adequate first)"
            ),
        )
    if target.use_spot and not (target.spot_fallback and items):
        res["use_spot"] = True
    if target.max_hourly_cost is not None:
        res["max_hourly_cost"] = target.max_hourly_cost
        _decide(
            decisions,
            "resources.max_hourly_cost",
            target.max_hourly_cost,
            "cost cap from the target (SkyPilot skips pricier instances)",
        )
    if target.image_id:
        res["image_id"] = target.image_id
        _decide(decisions, "resources.image_id", target.image_id, "configured in the target")
    if target.kind is Kind.SERVE:
        assert target.service is not None
        res["ports"] = target.service.port
    if target.job_recovery is not None:
        res["job_recovery"] = recovery_section(target, decisions)
    return res


def recovery_section(target: TargetConfig, decisions: list[Decision]) -> dict[str, Any]:
    """``job_recovery``: strategy, restarts, and the trainer's retryable exit code."""
    from minivess.training.loop import PREEMPTED_EXIT_CODE

    assert target.job_recovery is not None
    codes = sorted({PREEMPTED_EXIT_CODE, *target.job_recovery.extra_exit_codes})
    _decide(
        decisions,
        "resources.job_recovery.recover_on_exit_codes",
        codes,
        f"{PREEMPTED_EXIT_CODE} = minivess.training PREEMPTED_EXIT_CODE (SIGTERM flushed a "
        "checkpoint; rerunning resumes it)",
    )
    return {
        "strategy": target.job_recovery.strategy,
        "max_restarts_on_errors": target.job_recovery.max_restarts_on_errors,
        "recover_on_exit_codes": codes,
    }


def _q(value: str | Path) -> str:
    """One shell word for ``value``: :class:`Sh` as is, anything else fully quoted.

    A leading ``~/`` (a node-home path from a target file) becomes ``"$HOME"/`` and the rest is
    quoted; nothing else in a user value can expand.
    """
    if isinstance(value, Sh):
        return str(value)
    text = str(value)
    if text == "~":
        return '"$HOME"'
    if text.startswith("~/"):
        return '"$HOME"/' + shlex.quote(text[2:])
    return shlex.quote(text)


def _join(*parts: str | Path) -> Sh:
    """Concatenate quoted user parts and renderer fragments into one shell word."""
    return Sh("".join(_q(p) for p in parts))


def checkpoint_bucket(target: TargetConfig, ctx: RenderContext) -> str | None:
    """The checkpoint bucket URI of a cloud/pool target (``None``: none configured)."""
    if target.checkpoints is not None and target.checkpoints.uri:
        return target.checkpoints.uri.rstrip("/")
    return ctx.checkpoint_uri.rstrip("/") if ctx.checkpoint_uri else None


def _checkpoint_root(
    target: TargetConfig, ctx: RenderContext, decisions: list[Decision]
) -> tuple[str, str]:
    """(root, where) of the checkpoints; see :func:`_checkpoint_dir`."""
    if target.kind is Kind.LOCAL:
        root = str(ctx.local_checkpoint_dir or (ctx.workdir / "workspace" / "checkpoints"))
        return root, "local run"
    uri = checkpoint_bucket(target, ctx)
    ck = target.checkpoints
    if ck is not None and (ck.direct or not uri):
        if not uri:
            if target.kind is Kind.SPOT and not ctx.dry_run:
                raise ConfigError(_no_bucket_message(target))
            uri = f"s3://{PLACEHOLDER_BUCKET}/checkpoints"
            _decide(
                decisions,
                "checkpoints.placeholder",
                uri,
                "DRY RUN ONLY: no checkpoint bucket configured. " + _no_bucket_message(target),
            )
        if not uri.startswith("s3://"):
            raise ConfigError(
                f"checkpoints.uri '{uri}': the trainer writes checkpoints itself only to s3:// "
                "(any S3-compatible store). Fix: use an s3:// bucket, or set checkpoints.direct: "
                "false (mount the bucket with mode MOUNT)."
            )
        return uri, (
            "the bucket, written synchronously by the trainer's own S3 client (a checkpoint "
            "saved at SIGTERM is in the bucket before the exit code)"
        )
    if ck is not None and uri:
        return ck.mount_path, f"bucket mounted {ck.mode} at {ck.mount_path}"
    if ctx.checkpoint_uri:
        return ctx.checkpoint_uri, "the storage settings' bucket, written directly by the trainer"
    if target.persistent_dir:
        return f"{target.persistent_dir.rstrip('/')}/checkpoints", (
            "the persistent path named in the target (persistent_dir)"
        )
    return f"{target.workspace}/checkpoints", (
        "WARNING: no bucket and no persistent_dir: checkpoints stay on the node's disk (lost "
        "with a pod or VM). Fix: export MINIVESS_S3_BUCKET (+ MINIVESS_S3_ENDPOINT_URL for a lab "
        f"store) or set persistent_dir in configs/targets/{target.kind.value}.yaml"
    )


def _no_bucket_message(target: TargetConfig) -> str:
    return (
        f"target '{target.name}' needs a checkpoint bucket, or a preempted job cannot resume. "
        "Fix: export MINIVESS_S3_BUCKET=<bucket> (or set s3.bucket in configs/storage.yaml, or "
        f"checkpoints.uri in configs/targets/{target.kind.value}.yaml)."
    )


def _checkpoint_dir(
    target: TargetConfig, ctx: RenderContext, plan: TrainingPlan, decisions: list[Decision]
) -> tuple[Sh, str]:
    """Checkpoint folder for ``minivess train`` (a shell word, and its readable form).

    A managed (spot) job keys it by ``$SKYPILOT_TASK_ID``, which SkyPilot keeps across
    recoveries, so a recovered job resumes and a new job starts fresh. Elsewhere (local, SSH
    pool) it is keyed by the plan hash, so rerunning the same plan resumes.
    """
    root, where = _checkpoint_root(target, ctx, decisions)
    if target.kind is Kind.SPOT:
        task = f"${{{TASK_ID_VAR}}}"
        why = f"${TASK_ID_VAR} is stable across recoveries, so a recovered job resumes"
    else:
        task = None
        why = "one folder per plan, so rerunning the same plan resumes"
    key = checkpoint_key(plan.plan_hash, task)
    readable = checkpoint_dir(root, ctx.experiment, key)
    # Quote the user's part; only the renderer's own ${SKYPILOT_TASK_ID} may expand.
    prefix = checkpoint_dir(root, ctx.experiment, "")
    word = _join(prefix, Sh(f'"{task}"')) if task else _join(readable)
    _decide(decisions, "checkpoint_dir", readable, f"{where}; {why}")
    return word, readable


def _data_arg(target: TargetConfig, ctx: RenderContext) -> tuple[str, list[str]]:
    """The ``--data`` value and any command that must run before (synthesis)."""
    if target.kind is Kind.LOCAL:
        if ctx.data_dir is None:
            raise ConfigError("local target: no data dir (pass --data or set data.dir).")
        return str(ctx.data_dir), []
    if target.data.source is not None or ctx.data_dir is not None:
        return target.data.mount_path, []
    data = f"{target.workspace}/data"
    synth = [
        "minivess",
        "data",
        "synth",
        data,
        "--scale",
        ctx.synth.scale,
        "--seed",
        str(ctx.synth.seed),
    ]
    if ctx.synth.n_volumes:
        synth += ["--n-volumes", str(ctx.synth.n_volumes)]
    return data, [" ".join(_q(p) for p in synth)]


def train_args(
    target: TargetConfig, ctx: RenderContext, plan: TrainingPlan, decisions: list[Decision]
) -> tuple[list[str], list[str]]:
    """(``minivess`` sub-command and arguments, commands to run before it)."""
    if target.job is Job.EXPERIMENT:
        cfg = ctx.experiment_config or "configs/experiments/default.yaml"
        workspace = target.workspace
        if target.kind is Kind.LOCAL and ctx.local_workspace is not None:
            workspace = str(ctx.local_workspace)
        return ["experiment", "--config", cfg, "--workspace", workspace], []
    raise AssertionError("job train renders through train_cells")


#: TrainConfig fields ``minivess train`` takes as flags (the rest need ``job: experiment``).
TRAIN_FLAGS = {"epochs": "--epochs", "n_folds": "--n-folds", "seed": "--seed"}


def train_cells(
    target: TargetConfig,
    ctx: RenderContext,
    plan: TrainingPlan,
    plan_file: Sh,
    decisions: list[Decision],
) -> tuple[list[list[str]], list[str]]:
    """One ``minivess train`` argv per (loss, fold) cell of the experiment, and the commands
    to run before them (synthesis).

    Raises:
        ConfigError: the experiment sets a training field ``minivess train`` has no flag for.
    """
    from minivess.training.config import TrainConfig, cell_name

    data, before = _data_arg(target, ctx)
    training = _training(ctx)
    cells = grid_cells(ctx)
    defaults = TrainConfig()
    flagless = sorted(
        k
        for k in training
        if k not in (*TRAIN_FLAGS, "losses", "folds", "loss", "fold", "checkpoint_dir")
        and training[k] != getattr(defaults, k, None)
    )
    if flagless:
        raise ConfigError(
            f"experiment '{ctx.experiment}': training.{flagless[0]} has no `minivess train` "
            "flag, so job: train cannot carry it to the node. Fix: set `job: experiment` in the "
            "target (runs `minivess experiment --config ...`), or drop the field."
        )
    ckpt, readable = _checkpoint_dir(target, ctx, plan, decisions)
    out = []
    for cell in cells:
        args: list[str] = ["train", "--plan", plan_file, "--data", data, "--model", ctx.model]
        args += ["--loss", cell.loss.value, "--fold", str(cell.fold)]
        for key, flag in TRAIN_FLAGS.items():
            args += [flag, str(getattr(cell, key))]
        args += ["--checkpoint-dir", Sh(f"{ckpt}/{_q(cell_name(cell.loss, cell.fold))}")]
        out.append(args)
    _decide(
        decisions,
        "run.grid",
        [cell_name(c.loss, c.fold) for c in cells],
        f"the experiment's losses x folds, one `minivess train` each, under {readable}/<cell>",
    )
    return out, before


#: Seconds torchrun waits, after a SIGTERM, for its workers to save their checkpoint before it
#: SIGKILLs them itself (``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``; torchrun's own default is 30 s).
#: Longer than any cloud's preemption grace (AWS 120 s, GCP/Azure 30 s): the VM going away is
#: the deadline, never torchrun.
TORCHRUN_SHUTDOWN_S = 600
#: Shell function that runs ``torchrun -m minivess ...`` and maps a preemption back to 75:
#: torchrun itself exits 1 both when a worker exits 75 (recorded in the marker file) and when
#: it was SIGTERMed while its workers finished their last step (the run script's trap).
TORCHRUN_FUNCTION = """\
MASTER_ADDR=$(echo "$SKYPILOT_NODE_IPS" | head -n1)
export MINIVESS_PREEMPTED_MARKER="{plan_dir}/preempted"
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${{TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-{shutdown_s}}}"
minivess_torchrun() {{
  rm -f "$MINIVESS_PREEMPTED_MARKER"
  rc=0
  torchrun --nnodes="$SKYPILOT_NUM_NODES" --nproc_per_node="${{SKYPILOT_NUM_GPUS_PER_NODE:-1}}" \\
    --node_rank="$SKYPILOT_NODE_RANK" --master_addr="$MASTER_ADDR" \\
    --master_port="${{MINIVESS_MASTER_PORT:-{port}}}" \\
    -m minivess "$@" || rc=$?
  [ -e "$MINIVESS_PREEMPTED_MARKER" ] && preempted=1
  if [ "$rc" -ne 0 ] && [ -n "${{preempted:-}}" ]; then
    echo "minivess: preempted (a worker exited {code}, or SIGTERM reached this node); torchrun \
exited $rc, exiting {code} so SkyPilot recovers the job" >&2
    return {code}
  fi
  return "$rc"
}}"""


def torchrun_command(args: list[str]) -> str:
    """Multi-node DDP: ``minivess_torchrun <args>`` (see :data:`TORCHRUN_FUNCTION`)."""
    return "minivess_torchrun " + " ".join(_q(a) for a in args)


def _training(ctx: RenderContext) -> dict[str, Any]:
    """The experiment's ``training:`` mapping, with ``--epochs`` when the experiment sets none."""
    training = dict(ctx.training)
    if ctx.epochs is not None and "epochs" not in training:
        training["epochs"] = ctx.epochs
    return training


def grid_cells(ctx: RenderContext) -> list[TrainConfig]:
    """The (loss, fold) cells the node trains, one ``minivess train`` each.

    Raises:
        ConfigError: a bad ``training:`` field (named, with a hint).
    """
    from minivess.training.config import expand_grid

    return expand_grid(_training(ctx), f"experiment '{ctx.experiment}' training")


def run_section(
    target: TargetConfig,
    ctx: RenderContext,
    plan: TrainingPlan,
    accelerators: list[str],
    decisions: list[Decision],
) -> str:
    """``run:``: the same ``minivess`` call a user types locally."""
    if target.kind is Kind.SERVE:
        assert target.service is not None
        uri = target.service.model_uri or f"models:/{REGISTERED_MODEL}/latest"
        _decide(decisions, "serve.model_uri", uri, "the registered champion unless configured")
        token = target.service.auth_token_env
        auth = ["--auth-token-env", token] if token else []
        _decide(
            decisions,
            "serve.auth",
            token or "off",
            "bearer token from that secret" if token else "no auth_token_env in the target",
        )
        path = f'export PATH="{NODE_VENV}/bin:$PATH"\n' if target.install is None else ""
        return (
            "set -e\n"
            + path
            + " ".join(
                _q(a)
                for a in [
                    "minivess",
                    "serve",
                    "--model-uri",
                    uri,
                    "--host",
                    "0.0.0.0",
                    "--port",
                    str(target.service.port),
                    *auth,
                ]
            )
            + "\n"
        )
    lines = ["set -e"]
    if target.kind is not Kind.LOCAL:
        lines.append(
            "trap 'preempted=1; echo \"minivess: SIGTERM (preemption notice): waiting for the "
            "trainer to save its checkpoint\" >&2' TERM"
        )
        if target.install is None:
            lines.append(f'export PATH="{NODE_VENV}/bin:$PATH"')
    multi_gpu = bool(accelerators) and min(_gpu_count(a) for a in accelerators) > 1
    torchrun = target.num_nodes > 1 or multi_gpu
    if target.job is Job.EXPERIMENT:
        if torchrun:
            raise ConfigError(
                "multi-node/multi-GPU runs wrap `minivess train` in torchrun: set `job: train`."
            )
        args, before = train_args(target, ctx, plan, decisions)
        lines += [*before, " ".join(_q(a) for a in ["minivess", *args])]
        return "\n".join(lines) + "\n"
    plan_file = Sh(f'"{NODE_PLAN_DIR}"/plan-{plan.plan_hash}.json')
    lines += [
        f'mkdir -p "{NODE_PLAN_DIR}"',
        f"cat > {plan_file} <<'{PLAN_EOF}'",
        plan.model_dump_json(),
        PLAN_EOF,
    ]
    _decide(
        decisions,
        "run.plan",
        plan.plan_hash,
        "the validated plan travels inline in run: and `minivess train --plan` checks it "
        "against the node's GPU (re-plans only on a different GPU, logged)",
    )
    cells, before = train_cells(target, ctx, plan, plan_file, decisions)
    lines += before
    if torchrun:
        lines.append(
            TORCHRUN_FUNCTION.format(
                plan_dir=NODE_PLAN_DIR,
                port=MASTER_PORT,
                code=_preempted_code(),
                shutdown_s=TORCHRUN_SHUTDOWN_S,
            )
        )
        _decide(
            decisions,
            "run.launcher",
            "torchrun",
            f"num_nodes={target.num_nodes}, GPUs per node from the candidates: DDP; a "
            f"worker's exit {_preempted_code()} is propagated through torchrun",
        )
    for args in cells:
        if torchrun:
            lines.append(torchrun_command(args))
        else:
            lines.append(" ".join(_q(a) for a in ["minivess", *args]))
        if target.kind is not Kind.LOCAL:
            # SIGTERM arrived while a cell finished: stop here, the recovery resumes.
            lines.append(f'[ -z "${{preempted:-}}" ] || exit {_preempted_code()}')
    return "\n".join(lines) + "\n"


def _preempted_code() -> int:
    from minivess.training.loop import PREEMPTED_EXIT_CODE

    return PREEMPTED_EXIT_CODE


def setup_section(target: TargetConfig) -> str | None:
    """``setup:``: the node's minivess environment, plus ``dvc pull`` in a DVC repo.

    Default (``install: null``): a Python 3.11 venv made by ``uv`` (SkyPilot's default images
    ship Python 3.10), filled by the project's install script ``.ci/bootstrap.sh`` with the
    pinned ``.ci/constraints.txt``. Idempotent: on a recovered or reused node the venv and the
    bootstrap stamp are there and nothing is installed again.
    """
    lines = ["set -e"]
    if target.install is None:
        lines += NODE_SETUP.format(venv=NODE_VENV, python=NODE_PYTHON).splitlines()
    elif target.install.strip():
        lines.append(target.install.strip())
    if target.data.dvc_pull and target.kind is not Kind.SERVE:
        dvc = f'"{NODE_VENV}/bin/dvc"' if target.install is None else "dvc"
        lines.append(f"if [ -d .dvc ]; then {dvc} pull; fi")
    return "\n".join(lines) + "\n" if len(lines) > 1 else None


#: The default node setup (see :func:`setup_section`).
NODE_SETUP = """\
if [ ! -x "{venv}/bin/python" ]; then
  export PATH="$HOME/.local/bin:$PATH"
  if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --user -q uv \\
      || python3 -m pip install --user -q --break-system-packages uv
  fi
  uv venv -q --seed --python {python} "{venv}"
fi
VENV="{venv}" PYTHON="{venv}/bin/python" bash .ci/bootstrap.sh"""


def file_mounts_section(
    target: TargetConfig, ctx: RenderContext, decisions: list[Decision]
) -> dict[str, Any]:
    """``file_mounts:``: the checkpoint bucket (unless the trainer writes it directly) and the
    data."""
    mounts: dict[str, Any] = {}
    if target.kind in (Kind.LOCAL, Kind.SERVE):
        return mounts
    ck = target.checkpoints
    uri = checkpoint_bucket(target, ctx)
    if ck is not None and target.job is Job.TRAIN and not ck.direct and uri:
        if not uri.startswith(BUCKET_SCHEMES):
            raise ConfigError(
                f"checkpoints.uri '{uri}' is not a bucket URI (s3://, gs://, r2://, ...)."
            )
        mounts[ck.mount_path] = {"source": uri, "mode": ck.mode}
        if ck.mode == "MOUNT_CACHED":
            _decide(
                decisions,
                "file_mounts.checkpoints",
                "MOUNT_CACHED",
                "WARNING: MOUNT_CACHED uploads asynchronously, so the checkpoint written at "
                "SIGTERM may never reach the bucket; use mode MOUNT or checkpoints.direct: true",
            )
    source = target.data.source
    if source is None and ctx.data_dir is not None:
        source = str(Path(ctx.data_dir).absolute())
    if source is not None:
        if source.startswith(BUCKET_SCHEMES):
            mounts[target.data.mount_path] = {"source": source, "mode": "MOUNT"}
        else:
            mounts[target.data.mount_path] = source
        _decide(decisions, "file_mounts.data", target.data.mount_path, f"from {source}")
    return mounts


def serve_resources(
    ctx: RenderContext, decisions: list[Decision]
) -> tuple[list[str], dict[str, Any]]:
    """(accelerators, cpus/memory) of a serve replica: what the capacity plan measured.

    Without a capacity plan (``minivess launch --target serve`` before any deploy) a CPU
    replica from ``configs/gpus.yaml: serve_cpu_vm``: every backend runs on the CPU.
    """
    cap = ctx.capacity
    if cap:
        res = dict(cap["resources"])
        accelerators = [res.pop("accelerators")] if "accelerators" in res else []
        _decide(
            decisions,
            "resources",
            cap["resources"],
            f"capacity plan: {cap['picked']} ({cap['reason']})",
        )
        return accelerators, res
    from minivess.planning.settings import load_gpu_table

    vm = load_gpu_table().serve_cpu_vm
    cpus, memory = (vm.cpus, vm.memory_gb) if vm else (8, 16)
    res = {"cpus": f"{cpus}+", "memory": f"{memory:g}+"}
    _decide(
        decisions,
        "resources",
        res,
        "no capacity plan measured yet: a CPU replica (configs/gpus.yaml serve_cpu_vm); the "
        "deploy flow measures the backends and sizes it",
    )
    return [], res


def service_section(
    target: TargetConfig,
    capacity: dict[str, Any] | None = None,
    decisions: list[Decision] | None = None,
) -> dict[str, Any]:
    """SkyServe ``service:``: readiness probe, replica policy (sized by ``capacity``), port.

    Raises:
        ConfigError: a spot service whose on-demand base covers ``min_replicas`` (SkyPilot's
            autoscaler would then run no spot replica at the minimum).
    """
    assert target.service is not None
    svc = target.service
    policy = svc.replica_policy.model_dump(exclude_none=True)
    notes = decisions if decisions is not None else []
    if capacity:
        for key in ("target_qps_per_replica", "upscale_delay_seconds", "downscale_delay_seconds"):
            policy[key] = capacity[key]
        _decide(
            notes,
            "service.replica_policy",
            {k: policy[k] for k in ("target_qps_per_replica", "upscale_delay_seconds")},
            f"measured {capacity['picked']}; throughput x headroom, delays span several requests",
        )
    if target.use_spot:
        base = policy.get("base_ondemand_fallback_replicas") or 0
        dynamic = bool(policy.get("dynamic_ondemand_fallback"))
        if base >= policy["min_replicas"] and not dynamic:
            raise ConfigError(
                f"{target.name}: base_ondemand_fallback_replicas ({base}) >= min_replicas "
                f"({policy['min_replicas']}): SkyServe would run no spot replica at the minimum "
                "(spot = target - base). Use dynamic_ondemand_fallback: true, or a base below "
                "min_replicas."
            )
    out: dict[str, Any] = {
        "readiness_probe": {
            "path": svc.readiness_path,
            "initial_delay_seconds": svc.initial_delay_seconds,
            "timeout_seconds": svc.readiness_timeout_seconds,
        },
        "replica_policy": policy,
        "ports": svc.port,
    }
    if svc.tls is not None:
        out["tls"] = {"keyfile": svc.tls.keyfile, "certfile": svc.tls.certfile}
        _decide(notes, "service.tls", svc.tls.certfile, "HTTPS at the load balancer")
    return out


def render_task(
    plan: TrainingPlan,
    target: TargetConfig,
    ctx: RenderContext,
    template: dict[str, Any] | None = None,
    origin: str = "target",
) -> Rendered:
    """Render the SkyPilot task for ``target``; the template supplies anything we don't set.

    Raises:
        PlanError: no allowed GPU fits the plan.
        ConfigError: the target cannot be rendered (missing bucket, data, ...).
    """
    decisions: list[Decision] = []
    serve_res: dict[str, Any] = {}
    if target.kind is Kind.LOCAL:
        accelerators = list(ctx.local_accelerators)
        if not accelerators:
            _decide(decisions, "resources.accelerators", [], "this machine has no known GPU")
    elif target.kind is Kind.SERVE:
        accelerators, serve_res = serve_resources(ctx, decisions)
    else:
        accelerators = select_candidates(plan, target, origin)
    base = dict(template or {})
    base_res = {
        k: v
        for k, v in dict(base.pop("resources", None) or {}).items()
        if k not in ("accelerators", "ordered", "any_of", "infra", "cloud")
    }
    task: dict[str, Any] = {"name": target.name}
    if target.num_nodes > 1:
        task["num_nodes"] = target.num_nodes
    task["workdir"] = str(ctx.workdir)
    task["resources"] = deep_merge(
        base_res, {**resources_section(target, accelerators, decisions), **serve_res}
    )
    envs = {"MINIVESS_TARGET": target.kind.value, "MINIVESS_PLAN_HASH": plan.plan_hash}
    if target.kind is Kind.SERVE and ctx.capacity:
        envs["MINIVESS_SERVE_BACKEND"] = str(ctx.capacity["backend"])
        envs["MINIVESS_SERVE_DEVICE"] = str(ctx.capacity["device"])
    if target.kind is not Kind.SERVE:
        envs.update(ctx.s3_envs)
    envs.update(target.envs)
    task["envs"] = envs
    if target.secrets:
        task["secrets"] = {name: None for name in target.secrets}
    mounts = file_mounts_section(target, ctx, decisions)
    if mounts:
        task["file_mounts"] = mounts
    setup = setup_section(target)
    if setup and target.kind is not Kind.LOCAL:
        task["setup"] = setup
    task["run"] = run_section(target, ctx, plan, accelerators, decisions)
    if target.kind is Kind.SERVE:
        task["service"] = service_section(target, ctx.capacity, decisions)
    merged = deep_merge(base, task)
    # Our sections replace the template's (a deep merge would keep stale template keys).
    for key in ("run", "setup", "file_mounts", "resources"):
        if key in task:
            merged[key] = task[key]
    # Secret names come from the target only: they are what the printed command passes.
    merged.pop("secrets", None)
    if "secrets" in task:
        merged["secrets"] = task["secrets"]
    order = [
        "name",
        "num_nodes",
        "workdir",
        "resources",
        "envs",
        "secrets",
        "file_mounts",
        "setup",
        "run",
        "service",
    ]
    config = {k: merged[k] for k in order if k in merged}
    config.update({k: v for k, v in merged.items() if k not in config})
    return Rendered(config=config, decisions=decisions, accelerators=accelerators)


def dump_task(config: dict[str, Any]) -> str:
    """YAML text of a task; multi-line scripts as ``|`` blocks, as people write them."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=100)
