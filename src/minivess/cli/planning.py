"""CLI commands of this area: ``minivess plan`` and ``minivess calibrate``.

Bodies parse, make one library call and print; heavy imports stay inside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plan(
    data: Annotated[
        Path, typer.Option(help="Dataset folder, or a profile JSON from 'minivess data profile'.")
    ],
    model: Annotated[str, typer.Option(help="Model profile name or YAML path.")] = "dynunet",
    hardware: Annotated[
        Path | None, typer.Option(help="Hardware YAML replacing detection (plan for another box).")
    ] = None,
    gpu: Annotated[
        str | None, typer.Option(help="Plan for a cloud VM with this accelerator, e.g. L4:1.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a plan field: key=value.")
    ] = None,
    overrides: Annotated[
        Path | None, typer.Option(help="YAML mapping of plan fields (or an experiment's plan:).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the plan JSON here.")
    ] = None,
    no_calibration: Annotated[
        bool,
        typer.Option(
            "--no-calibration", help="Ignore stored calibrations; use the profiles' figures."
        ),
    ] = False,
) -> None:
    """Plan training for DATA × MODEL × this machine (or --hardware/--gpu); print decisions."""
    from rich.console import Console

    from minivess.errors import ConfigError, MinivessError
    from minivess.planning import make_plan
    from minivess.planning.plan import TrainingPlan
    from minivess.planning.planner import load_overrides
    from minivess.planning.report import decisions_table

    if hardware is not None and gpu is not None:
        raise ConfigError("--hardware and --gpu both describe the machine: give only one.")
    from minivess.keys import PatchPolicy
    from minivess.planning import load_dataset, resolve_hardware
    from minivess.planning.report import policies_table

    dataset = load_dataset(data)
    hw = resolve_hardware(hardware if gpu is None else f"gpu:{gpu}")
    ov = load_overrides(overrides, set_)

    def _plan(changes: dict[str, object]) -> TrainingPlan:
        return make_plan(
            dataset, model, hardware=hw, overrides=ov | changes, use_calibration=not no_calibration
        )

    result = _plan({})
    console = Console()
    console.print(decisions_table(result))
    if "patch_size" not in ov:  # with a fixed patch, the policies do not differ
        others: dict[str, TrainingPlan | str] = {}
        for pol in PatchPolicy:
            try:
                others[pol.value] = (
                    result if pol is result.patch_policy else _plan({"patch_policy": pol.value})
                )
            except MinivessError as err:
                others[pol.value] = str(err)
        console.print(policies_table(others))
    if json_out is not None:
        typer.echo(f"plan written to {result.save(json_out)}")


def calibrate(
    model: Annotated[str, typer.Option(help="Model profile name or YAML path.")] = "dynunet",
    patch: Annotated[
        list[str] | None, typer.Option(help="Patch x,y,z to measure (repeat; default: 3 sizes).")
    ] = None,
    batch: Annotated[int, typer.Option(help="Samples per training step.", min=1)] = 1,
) -> None:
    """Measure MODEL's peak training memory and step time on this device; store them for the
    planner and the launcher's time and cost estimate."""
    from minivess.errors import ConfigError
    from minivess.planning.calibration import save_calibration
    from minivess.planning.hardware import detect_hardware
    from minivess.planning.harness import calibrate as run_calibration
    from minivess.planning.profiles import load_model_profile

    try:
        patches = [tuple(int(v) for v in p.split(",")) for p in patch or []]
    except ValueError:
        raise ConfigError("--patch: expected x,y,z integers, e.g. --patch 64,64,8") from None
    if any(len(p) != 3 for p in patches):
        raise ConfigError("--patch: expected three integers x,y,z, e.g. --patch 64,64,8")
    profile = load_model_profile(model)
    cal = run_calibration(profile, detect_hardware(), patches or None, batch=batch)  # type: ignore[arg-type]
    path = save_calibration(cal)
    static = profile.memory(cal.device != "cpu")
    typer.echo(
        f"{profile.name} on {cal.device}: base {cal.base_mb:.0f} MiB + "
        f"{cal.train_bytes_per_voxel:.0f} B/voxel (profile: {static.base_mb:.0f} MiB + "
        f"{static.train_bytes_per_voxel:.0f} B/voxel)"
        f" -> {path}"
    )
    if cal.step_base_s is not None and cal.step_s_per_voxel is not None:
        typer.echo(
            f"step time: {cal.step_base_s:.3f} s + {cal.step_s_per_voxel * 1e6:.3f} s per "
            f"million voxels x batch; device {cal.device_tflops:.3f} TFLOPS (matmul)"
        )


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``plan`` and ``calibrate`` to the root app."""
    app.command("plan")(plan)
    app.command("calibrate")(calibrate)
