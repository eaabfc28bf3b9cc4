"""The calibration harness: a few real training steps per patch size, peak memory measured.

Runs torch (on CPU each size in a fresh forked process). The results are
:class:`~minivess.planning.calibration.Calibration` objects, stored by
:func:`~minivess.planning.calibration.save_calibration`. Kept apart from the types so the pure
planner never imports this module.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from minivess.data.schema import Shape3
from minivess.errors import ConfigError
from minivess.planning.calibration import (
    Calibration,
    CalibrationPoint,
    default_patches,
    fit_memory_model,
    fit_step_time,
)
from minivess.settings import torch_threads

if TYPE_CHECKING:
    from minivess.planning.hardware import HardwareBudget
    from minivess.planning.profiles import ModelProfile

log = logging.getLogger(__name__)

_MIB = 2**20


def _training_steps(
    net, patch: Shape3, batch: int, device: str, amp: bool, steps: int
) -> list[float]:
    """``steps`` Adam steps of ``net`` on random data (cross-entropy, two classes); the wall
    time of each step in seconds (the first includes one-off allocation)."""
    import time

    import torch

    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    cuda = device.startswith("cuda")
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        x = torch.randn(batch, 1, *patch, device=device)
        y = torch.randint(0, 2, (batch, *patch), device=device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], enabled=amp):
            out = net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            loss = loss_fn(out.float(), y)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _steady_step_s(times: list[float]) -> float | None:
    """The fastest step after the first (allocation, Adam's state); None for one step. The
    minimum, not the mean: on a shared machine other processes only ever add time."""
    return min(times[1:]) if len(times) > 1 else None


def matmul_tflops(device: str = "cpu", half: bool = False, n: int = 1024, reps: int = 8) -> float:
    """This device's achieved matmul rate (TFLOPS) in the training precision: the throughput
    a measured step time is scaled from (:mod:`minivess.planning.estimate`)."""
    import time

    import torch

    if device == "cpu":
        torch.set_num_threads(torch_threads())
    dtype = torch.float16 if half and device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    (a @ b).sum().item()  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    c.sum().item()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def _rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) of this process, MiB (Linux /proc)."""
    cur = peak = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            cur = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cur, peak


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _cpu_child(profile: ModelProfile, patch: Shape3, batch: int, steps: int, conn) -> None:
    """Body of the forked measuring process: sends (peak delta MiB, step s) or an error."""
    try:
        import torch

        from minivess.models import build_model
        from minivess.planning.planner import network_plan

        torch.set_num_threads(torch_threads())
        plan = network_plan(profile, patch, batch=batch, amp=False)
        _reset_rss_peak()
        base, _ = _rss_mb()
        net = build_model(plan, profile=profile)
        times = _training_steps(net, plan.patch_size, batch, "cpu", False, steps)
        _, peak = _rss_mb()
        conn.send((peak - base, _steady_step_s(times)))
    except Exception as err:  # reported to the parent, which raises it
        conn.send(f"{type(err).__name__}: {err}")
    finally:
        conn.close()


#: Seconds one CPU measurement may take before it is abandoned.
CHILD_TIMEOUT_S = 600


def measure(
    profile: ModelProfile,
    patch: Shape3,
    batch: int = 1,
    device: str = "cpu",
    amp: bool = False,
    steps: int = 4,
) -> tuple[float, float | None]:
    """(peak training memory MiB, fastest step seconds after the first) of ``steps`` steps.

    On ``cuda`` the peak is ``torch.cuda.max_memory_allocated``; on ``cpu`` the peak RSS delta
    of a forked process (Linux ``/proc/self`` VmHWM after a reset), so sizes don't mask each
    other.
    """
    import torch

    if device.startswith("cuda"):
        from minivess.models import build_model
        from minivess.planning.planner import network_plan

        plan = network_plan(profile, patch, batch=batch, amp=amp)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        net = build_model(plan, profile=profile)
        times = _training_steps(net, plan.patch_size, batch, device, amp, steps)
        peak = torch.cuda.max_memory_allocated(device) - start
        del net
        torch.cuda.empty_cache()
        return peak / _MIB, _steady_step_s(times)
    import multiprocessing as mp

    # forkserver, not fork: a fork of a process whose OpenMP pool already ran (any earlier torch
    # op) can deadlock in the child. The server preloads torch/MONAI once, with no pool started.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "monai.networks.nets", "minivess.models.builders"])
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_cpu_child, args=(profile, patch, batch, steps, child))
    proc.start()
    child.close()
    if not parent.poll(CHILD_TIMEOUT_S):
        proc.kill()
        raise RuntimeError(f"measuring {profile.name} at patch {patch}: no answer in "
                           f"{CHILD_TIMEOUT_S} s; try a smaller --patch")  # fmt: skip
    result = parent.recv()
    proc.join()
    if isinstance(result, str):
        raise RuntimeError(f"measuring {profile.name} at patch {patch} failed: {result}")
    peak, step_s = result
    return float(peak), step_s


def calibrate(
    profile: ModelProfile,
    hardware: HardwareBudget,
    patches: list[Shape3] | None = None,
    batch: int = 1,
    amp: bool | None = None,
    steps: int = 4,
    progress: bool = True,
) -> Calibration:
    """Measure ``profile`` at 2-3 patch sizes on this machine's device and fit the memory model.

    Args:
        profile: the model to measure.
        hardware: this machine (its ``device_key`` names the calibration; GPU -> ``cuda``).
        patches: (x, y, z) sizes, valid for the topology (default: :func:`default_patches`).
        batch: samples per step.
        amp: mixed precision (default: on GPU when the profile supports it).
        steps: training steps per size (the peak is reached by the second, Adam's state;
            the step time is the fastest after the first).
    """
    import torch
    from rich.progress import Progress

    from minivess.planning.topology import network_shape

    device = "cuda" if hardware.has_gpu else "cpu"
    amp = (device == "cuda" and profile.supports_amp) if amp is None else amp
    from minivess.planning.planner import validate_patch_override

    patches = patches or default_patches(profile)
    for patch in patches:
        validate_patch_override(patch, profile)
    if len({p[0] * p[1] * p[2] for p in patches}) < 2:
        raise ConfigError("calibration needs at least two patch sizes with different volumes")
    points = []
    with Progress(disable=not progress, transient=True) as bar:
        label = f"calibrating {profile.name} on {hardware.device_key}"
        task = bar.add_task(label, total=len(patches))
        for patch in patches:
            peak, step_s = measure(profile, patch, batch, device, amp, steps)
            shape = network_shape(patch, profile.topology)
            voxels = shape[0] * shape[1] * shape[2]
            points.append(
                CalibrationPoint(
                    patch=patch, voxels=voxels, batch=batch, peak_mb=peak, step_s=step_s
                )
            )
            log.info("%s %s: peak %.0f MiB, step %s s", profile.name, patch, peak, step_s)
            bar.advance(task)
    base, per_voxel = fit_memory_model(points)
    step_fit = fit_step_time(points)
    return Calibration(
        model=profile.name,
        device=hardware.device_key,
        amp=amp,
        base_mb=round(base, 1),
        train_bytes_per_voxel=round(per_voxel, 1),
        points=points,
        created=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        torch_version=str(torch.__version__),
        step_base_s=round(step_fit[0], 6) if step_fit else None,
        step_s_per_voxel=step_fit[1] if step_fit else None,
        device_tflops=round(matmul_tflops(device, half=amp), 4),
    )
