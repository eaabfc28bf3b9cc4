"""The serving capacity plan: measure every available backend on this host, pick, size SkyServe.

At deploy time :func:`measure_backends` times sliding-window inference of one real volume with
every backend this host can run -- eager PyTorch, TorchScript and ONNX Runtime on the CPU; on a
GPU host also PyTorch and TorchScript on CUDA and ONNX Runtime's CUDA execution provider.
The backends are timed INTERLEAVED (A, B, C, A, B, C, ...) and the best (fastest) run of each
is kept, so a load swing on a shared machine hits every backend alike instead of deciding the
result.

:func:`plan_capacity` then decides, each decision with its figures:

* the device: CPU or GPU, by cost per served volume = price per hour of the replica (the same
  table as training, ``configs/gpus.yaml``: ``usd_per_hour`` per GPU, ``serve_cpu_vm`` for CPU
  replicas) x seconds per volume of the fastest backend on that device;
* the backend: the fastest measured on that device (``backend`` in the config overrides it);
* SkyServe's replica policy: ``target_qps_per_replica`` = measured volumes/s x headroom, and
  upscale/downscale delays that span several requests at the measured latency;
* the replica's resources: ``cpus``/``memory`` for a CPU backend, a GPU only for a GPU backend.

Pure functions except :func:`measure_backends` (which runs the models).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from minivess.serving.settings import Backend, Device

log = logging.getLogger(__name__)

#: The capacity plan inside a serving bundle (the bento's service reads its backend).
CAPACITY_FILE = "capacity.json"
#: Fraction of the measured throughput a replica is asked to carry (SkyServe scales out above).
HEADROOM = 0.7
#: Upscale waits for this many requests at the measured latency (at least a minute) ...
UPSCALE_REQUESTS = 10
MIN_UPSCALE_SECONDS = 60
#: ... and downscale this many times longer (a replica is slow to come back).
DOWNSCALE_FACTOR = 5
#: Memory of a CPU replica: this multiple of the measured peak RSS, at least MIN_MEMORY_GB.
MEMORY_FACTOR = 2.0
MIN_MEMORY_GB = 8


@dataclass(frozen=True)
class Candidate:
    """One way to serve: ``backend`` on ``device``; ``segment(volume) -> mask``."""

    backend: Backend
    device: Device
    segment: Callable[[np.ndarray], Any]

    @property
    def name(self) -> str:
        return f"{self.backend.value}-{self.device.value}"


@dataclass(frozen=True)
class BackendFigure:
    """Seconds per volume of one backend: ``best_s`` (the figure used) and ``median_s``."""

    name: str
    backend: str
    device: str
    best_s: float
    median_s: float
    runs: int

    @property
    def volumes_per_s(self) -> float:
        return 1.0 / self.best_s


@dataclass(frozen=True)
class CapacityPlan:
    """What the deploy measured and decided; :meth:`as_dict` is what MLflow and YAML get."""

    volume_shape: tuple[int, int, int]
    threads: int
    figures: list[BackendFigure]
    backend: str
    device: str
    reason: str
    target_qps_per_replica: float
    upscale_delay_seconds: int
    downscale_delay_seconds: int
    resources: dict[str, Any]
    cost_per_volume_usd: dict[str, float] = field(default_factory=dict)

    def figure(self, name: str) -> BackendFigure:
        return next(f for f in self.figures if f.name == name)

    @property
    def picked(self) -> str:
        return f"{self.backend}-{self.device}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["picked"] = self.picked
        return out

    def lines(self) -> list[str]:
        """Human-readable summary, one decision per line (printed by the deploy)."""
        rows = [
            f"capacity plan on a {list(self.volume_shape)} volume, {self.threads} threads "
            "(interleaved, best of each):"
        ]
        for f in sorted(self.figures, key=lambda f: f.best_s):
            mark = "  <- picked" if f.name == self.picked else ""
            rows.append(
                f"  {f.name:<16} best {f.best_s:8.3f} s  median {f.median_s:8.3f} s  "
                f"{f.volumes_per_s:7.3f} volumes/s{mark}"
            )
        rows.append(f"  backend: {self.picked} ({self.reason})")
        rows.append(
            f"  replica policy: target_qps_per_replica {self.target_qps_per_replica} "
            f"(= {self.figure(self.picked).volumes_per_s:.3f} volumes/s x {HEADROOM} headroom), "
            f"upscale after {self.upscale_delay_seconds} s, downscale after "
            f"{self.downscale_delay_seconds} s"
        )
        rows.append(f"  replica resources: {self.resources}")
        return rows


#: Timed rounds per backend in the capacity plan, after one warm-up each (the experiment's
#: ``deploy.capacity_rounds``).
CAPACITY_ROUNDS = 3


def measure_backends(
    candidates: list[Candidate], volume: np.ndarray, rounds: int = CAPACITY_ROUNDS
) -> list[BackendFigure]:
    """Time ``candidates`` on ``volume`` interleaved: one warm-up each, then ``rounds`` rounds
    of A, B, C, ...; keeps the best and the median of each.

    Raises:
        ValueError: no candidates or ``rounds < 1``.
    """
    if not candidates or rounds < 1:
        raise ValueError("measure_backends needs at least one candidate and one round")
    for cand in candidates:
        log.info("capacity: warming up %s", cand.name)
        cand.segment(volume)
    times: dict[str, list[float]] = {c.name: [] for c in candidates}
    for r in range(rounds):
        for cand in candidates:
            t0 = time.perf_counter()
            cand.segment(volume)
            times[cand.name].append(time.perf_counter() - t0)
        log.info(
            "capacity: round %d/%d: %s",
            r + 1,
            rounds,
            ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items()),
        )
    return [
        BackendFigure(
            name=c.name,
            backend=c.backend.value,
            device=c.device.value,
            best_s=min(times[c.name]),
            median_s=float(np.median(times[c.name])),
            runs=rounds,
        )
        for c in candidates
    ]


def available_devices() -> list[Device]:
    """CPU, plus CUDA when torch sees a GPU."""
    import torch

    return [Device.CPU, *([Device.CUDA] if torch.cuda.is_available() else [])]


def onnx_cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def bundle_candidates(bundle: Any, num_threads: int | None = None) -> list[Candidate]:
    """Every backend x device this host can run for the serving ``bundle``."""
    import torch

    from minivess.planning.plan import TrainingPlan
    from minivess.serving.inference import (
        ONNX_FILE,
        PLAN_FILE,
        TORCHSCRIPT_FILE,
        Segmenter,
        eager_module,
        onnx_predictor,
        onnx_session,
        torch_predictor,
    )

    plan = TrainingPlan.load(bundle / PLAN_FILE)
    if num_threads:
        torch.set_num_threads(num_threads)

    def eager(dev: str) -> Any:
        return torch_predictor(eager_module(bundle, plan), dev)

    def torchscript(dev: str) -> Any:
        module = torch.jit.load(str(bundle / TORCHSCRIPT_FILE), map_location="cpu")
        return torch_predictor(module, dev)

    def onnx(dev: str) -> Any:
        return onnx_predictor(onnx_session(bundle / ONNX_FILE, num_threads, dev))

    out: list[Candidate] = []
    for device in available_devices():
        makers: list[tuple[Backend, Callable[[str], Any]]] = [
            (Backend.EAGER, eager),
            (Backend.TORCH, torchscript),
        ]
        if device is Device.CPU or onnx_cuda_available():
            makers.append((Backend.ONNX, onnx))
        for backend, make in makers:
            seg = Segmenter(make(device.value), plan, backend)
            out.append(Candidate(backend, device, seg.segment))
    return out


def _hourly_prices(gpu_table: Any) -> tuple[float | None, dict[str, float]]:
    cpu = getattr(gpu_table, "serve_cpu_vm", None)
    gpus = {
        name: spec.usd_per_hour
        for name, spec in gpu_table.gpus.items()
        if getattr(spec, "usd_per_hour", None)
    }
    return (cpu.usd_per_hour if cpu else None), gpus


def plan_capacity(
    figures: list[BackendFigure],
    volume_shape: tuple[int, int, int],
    threads: int,
    gpu_table: Any,
    peak_rss_gb: float = 0.0,
    override: Mapping[str, str] | None = None,
) -> CapacityPlan:
    """Decide device, backend, replica policy and resources from ``figures`` (pure).

    Args:
        figures: :func:`measure_backends` output.
        gpu_table: :func:`minivess.planning.settings.load_gpu_table` (prices per hour).
        peak_rss_gb: peak memory of the measuring process (sizes a CPU replica's memory).
        override: ``{"backend": ..., "device": ...}`` from the serve config; wins over the pick.

    Raises:
        ValueError: the override names a backend that was not measured.
    """
    cpu_price, gpu_prices = _hourly_prices(gpu_table)
    cheapest_gpu = min(gpu_prices, key=lambda n: gpu_prices[n]) if gpu_prices else None
    best_on = {}
    for dev in {f.device for f in figures}:
        best_on[dev] = min((f for f in figures if f.device == dev), key=lambda f: f.best_s)
    cost: dict[str, float] = {}
    if Device.CPU.value in best_on and cpu_price:
        cost[Device.CPU.value] = cpu_price / 3600 * best_on[Device.CPU.value].best_s
    if Device.CUDA.value in best_on and cheapest_gpu:
        gpu_s = best_on[Device.CUDA.value].best_s
        cost[Device.CUDA.value] = gpu_prices[cheapest_gpu] / 3600 * gpu_s
    if cost:
        device = min(cost, key=lambda d: cost[d])
        why = "lowest cost per served volume " + ", ".join(
            f"{d} ${c * 1000:.4f}/1000 volumes" for d, c in sorted(cost.items())
        )
    else:
        device = min(best_on, key=lambda d: best_on[d].best_s)
        why = "fastest (no prices in configs/gpus.yaml)"
    picked = best_on[device]
    reason = f"fastest on {device} ({picked.best_s:.3f} s/volume); device by {why}"
    if override and override.get("backend"):
        want = f"{override['backend']}-{override.get('device') or Device.CPU.value}"
        chosen = next((f for f in figures if f.name == want), None)
        if chosen is None:
            raise ValueError(
                f"serve config backend override {want!r} was not measured on this host "
                f"(measured: {', '.join(f.name for f in figures)})"
            )
        picked, device = chosen, chosen.device
        reason = f"set in the serve config (measured fastest: {best_on[device].name})"
    throughput = picked.volumes_per_s
    upscale = max(MIN_UPSCALE_SECONDS, math.ceil(UPSCALE_REQUESTS * picked.best_s))
    resources: dict[str, Any]
    if device == Device.CPU.value:
        memory = max(MIN_MEMORY_GB, math.ceil(MEMORY_FACTOR * peak_rss_gb))
        resources = {"cpus": f"{threads}+", "memory": f"{memory}+"}
    else:
        resources = {"accelerators": f"{cheapest_gpu or 'T4'}:1"}
    return CapacityPlan(
        volume_shape=volume_shape,
        threads=threads,
        figures=figures,
        backend=picked.backend,
        device=device,
        reason=reason,
        target_qps_per_replica=float(f"{throughput * HEADROOM:.4g}"),
        upscale_delay_seconds=upscale,
        downscale_delay_seconds=DOWNSCALE_FACTOR * upscale,
        resources=resources,
        cost_per_volume_usd=cost,
    )


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux ``ru_maxrss`` is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
