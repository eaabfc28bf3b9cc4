"""The deploy flow's body: export -> parity -> ``bentoml build`` -> local HTTP smoke test.

:func:`deploy_model` is the one call the Prefect deploy flow makes. Registry look-ups, marking
the MLflow model version "deployed" and rendering the SkyServe YAML stay in the flow; this
module works from a local checkpoint file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from minivess.errors import MinivessError
from minivess.serving.bento import build_bento
from minivess.serving.capacity import CAPACITY_FILE, CAPACITY_ROUNDS, CapacityPlan
from minivess.serving.export import ParityResult, export_bundle
from minivess.serving.server import LocalServer, start_server
from minivess.serving.settings import Backend, Device, ServeSettings, load_serve_settings

if TYPE_CHECKING:
    from torch import nn

    from minivess.planning.plan import TrainingPlan

log = logging.getLogger(__name__)

#: The steps of :func:`deploy_loaded`, in order (the progress bar's total).
DEPLOY_STEPS = (
    "smoke volume",
    "export + ONNX parity",
    "capacity plan (interleaved backends)",
    "bentoml build",
    "bentoml serve",
    "HTTP smoke test",
)
#: File in ``workdir`` with the deploy figures (JSON).
DEPLOY_REPORT = "deploy.json"


class SmokeTestError(MinivessError):
    """The freshly built service answered wrongly over HTTP."""


@dataclass(frozen=True)
class SmokeResult:
    """What the HTTP smoke test saw. ``mask_shape`` (x, y, z); seconds are wall time."""

    volume: str
    mask_shape: tuple[int, int, int]
    affine_preserved: bool
    vessel_fraction: float
    segment_seconds: float
    bad_input_status: int


@dataclass(frozen=True)
class DeployResult:
    """Everything the deploy flow logs. ``server`` is set only with ``keep_running=True``."""

    endpoint: str
    bento_tag: str
    model_tag: str
    bundle: Path
    onnx_path: Path
    torchscript_path: Path
    parity: ParityResult
    smoke: SmokeResult
    capacity: CapacityPlan | None = None
    server: LocalServer | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures (for MLflow params/metrics and ``deploy.json``)."""
        return {
            "endpoint": self.endpoint,
            "bento_tag": self.bento_tag,
            "model_tag": self.model_tag,
            "bundle": str(self.bundle),
            "onnx_path": str(self.onnx_path),
            "torchscript_path": str(self.torchscript_path),
            "parity": asdict(self.parity),
            "smoke": asdict(self.smoke),
            "capacity": self.capacity.as_dict() if self.capacity else None,
        }


def default_smoke_volume(plan: TrainingPlan, out_dir: Path) -> Path:
    """Write one synthetic MiniVess-like volume two windows wide in x and y (a real NIfTI)."""
    from minivess.data.synth import JSON_DIR, RAW_DIR, SEG_DIR, VolumeSpec, write_volume

    for sub in (RAW_DIR, SEG_DIR, JSON_DIR):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    roi = plan.sw_roi
    shape = (2 * roi[0], 2 * roi[1], max(roi[2], 5))
    spec = VolumeSpec(name="smoke", shape=shape, spacing=(1.0, 1.0, 2.0), seed=7)
    pair = write_volume(out_dir, spec, seed=7)
    log.info(
        "smoke volume: none given, synthesised %s of shape %s (two sliding windows in x/y, so "
        "window blending is exercised)",
        pair.image,
        shape,
    )
    return Path(pair.image)


def _load_array(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from minivess.serving.nifti import load_volume

    vol = load_volume(path, max_voxels=2**40)
    return vol.array, vol.affine


def smoke_test(url: str, volume: Path, out_dir: Path, token: str | None = None) -> SmokeResult:
    """POST ``volume`` to ``/segment`` and ``/summary`` and garbage to ``/segment``.

    The returned mask is written to ``out_dir/smoke_mask.nii.gz`` (never next to ``volume``,
    which may sit in a versioned dataset).

    Raises:
        SmokeTestError: wrong mask shape/affine, a failed request, or garbage accepted.
    """
    import gzip
    import io

    import httpx
    import nibabel as nib

    from minivess.serving.client import ServiceError, segment_file, summarize_file

    array, affine = _load_array(volume)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "smoke_mask.nii.gz"
    t0 = time.perf_counter()
    try:
        segment_file(url, volume, out, token=token)
        summary = summarize_file(url, volume, token=token)
    except ServiceError as err:
        raise SmokeTestError(f"smoke test of {url} with {volume}: {err}") from err
    seconds = time.perf_counter() - t0
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(out.read_bytes()))
    shape = tuple(int(s) for s in mask.shape)
    if shape != array.shape:
        raise SmokeTestError(f"smoke test: mask shape {shape} != volume shape {array.shape}")
    affine_ok = bool(np.allclose(mask.affine, affine))
    if not affine_ok:
        raise SmokeTestError("smoke test: the mask's affine differs from the volume's")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    bad = httpx.post(
        f"{url}/segment",
        files={"volume": ("garbage.nii.gz", io.BytesIO(b"not a volume" * 10))},
        headers=headers,
        timeout=60,
    )
    if not 400 <= bad.status_code < 500:
        raise SmokeTestError(f"smoke test: garbage input got HTTP {bad.status_code}, want 4xx")
    return SmokeResult(
        volume=str(volume),
        mask_shape=(shape[0], shape[1], shape[2]),
        affine_preserved=affine_ok,
        vessel_fraction=float(summary["vessel_fraction"]),
        segment_seconds=seconds,
        bad_input_status=bad.status_code,
    )


@contextmanager
def _deploy_progress() -> Iterator[Callable[[str], None]]:
    """A rich progress bar over the deploy steps; ``step(name)`` starts the next one."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("deploy: {task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("", total=len(DEPLOY_STEPS))
        started = [False]

        def step(name: str) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, description=name)
            log.info("deploy: %s", name)

        yield step
        bar.advance(task)


def measure_capacity(
    bundle: Path, volume: np.ndarray, settings: ServeSettings, rounds: int = CAPACITY_ROUNDS
) -> CapacityPlan:
    """Time every backend this host can run on ``volume`` (interleaved, best of each), decide
    backend / resources / replica policy, print it and write ``bundle/capacity.json``.

    ``settings.backend`` set explicitly (config, env, ``--backend``) overrides the pick.
    """
    import os

    from minivess.planning.settings import load_gpu_table
    from minivess.serving.capacity import (
        bundle_candidates,
        measure_backends,
        peak_rss_gb,
        plan_capacity,
    )

    threads = settings.num_threads or os.cpu_count() or 1
    figures = measure_backends(bundle_candidates(bundle, settings.num_threads), volume, rounds)
    explicit = "backend" in settings.model_fields_set
    override = (
        {"backend": settings.backend.value, "device": settings.device.value} if explicit else None
    )
    shape = (int(volume.shape[0]), int(volume.shape[1]), int(volume.shape[2]))
    plan = plan_capacity(figures, shape, threads, load_gpu_table(), peak_rss_gb(), override)
    for line in plan.lines():
        print(line)
        log.info(line)
    (Path(bundle) / CAPACITY_FILE).write_text(json.dumps(plan.as_dict(), indent=2) + "\n")
    return plan


def deploy_loaded(
    model: nn.Module,
    plan: TrainingPlan,
    workdir: Path,
    *,
    settings: ServeSettings | None = None,
    smoke_volume: Path | None = None,
    keep_running: bool = False,
    target_spacing: tuple[float, float, float] | None = None,
    labels: dict[str, str] | None = None,
    capacity_rounds: int = CAPACITY_ROUNDS,
) -> DeployResult:
    """:func:`deploy_model` for a network already in memory (the steps after loading);
    ``target_spacing``: the grid it trained on, when training resampled; ``labels``: of the
    model in BentoML's store."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = settings or load_serve_settings()
    with _deploy_progress() as step:
        step("smoke volume")
        volume_path = (
            Path(smoke_volume) if smoke_volume else default_smoke_volume(plan, workdir / "smoke")
        )
        array, _ = _load_array(volume_path)
        step("export + ONNX parity")
        exported = export_bundle(
            model, plan, workdir / "bundle", parity_volume=array, target_spacing=target_spacing
        )
        parity = cast(ParityResult, exported.parity)  # set: a parity volume was given
        step("capacity plan (interleaved backends)")
        capacity = measure_capacity(exported.bundle, array, settings, capacity_rounds)
        step("bentoml build")
        built = build_bento(exported.bundle, workdir / "bento-ctx", labels=labels)
        tag = built.tag
        step("bentoml serve")
        # The bento's model from BentoML's store (no model_path), as for a plain
        # `bentoml serve <tag>`; the backend is the capacity plan's pick.
        serve_settings = settings.model_copy(
            update={
                "model_path": None,
                "backend": Backend(capacity.backend),
                "device": Device(capacity.device),
            }
        )
        server = start_server(serve_settings, workdir / "serve", target=tag)
        step("HTTP smoke test")
        try:
            smoke = smoke_test(
                server.url, volume_path, workdir / "smoke", token=serve_settings.auth_token()
            )
        except BaseException:
            server.stop()
            raise
    if not keep_running:
        server.stop()
    result = DeployResult(
        endpoint=server.url,
        bento_tag=tag,
        model_tag=built.model_tag,
        bundle=exported.bundle,
        onnx_path=exported.onnx_path,
        torchscript_path=exported.torchscript_path,
        parity=parity,
        smoke=smoke,
        capacity=capacity,
        server=server if keep_running else None,
    )
    (workdir / DEPLOY_REPORT).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    log.info(
        "deployed %s: parity Dice %.4f (max |diff| %.2g), smoke test OK on %s%s",
        tag,
        parity.dice,
        parity.max_abs_diff,
        server.url,
        "" if keep_running else " (stopped)",
    )
    return result


def deploy_model(
    model_uri: str,
    workdir: Path,
    *,
    settings: ServeSettings | None = None,
    smoke_volume: Path | None = None,
    keep_running: bool = False,
    labels: dict[str, str] | None = None,
    capacity_rounds: int = CAPACITY_ROUNDS,
) -> DeployResult:
    """Export, check, build and smoke-test the checkpoint ``model_uri``.

    Steps: load the checkpoint (its plan is embedded) -> TorchScript + ONNX with dynamic
    spatial axes -> parity on a real volume (max |diff|, Dice; fails below 0.99) -> capacity
    plan -> the model into BentoML's store + ``bentoml build`` -> ``bentoml serve <tag>`` on a
    free loopback port -> HTTP smoke test (mask shape and affine, summary, garbage refused with
    a 4xx) -> stop the server unless ``keep_running``.

    Args:
        model_uri: a local checkpoint file or run directory (``best.pt`` is used).
        workdir: where the bundle, build context, server log and ``deploy.json`` go.
        settings: serve settings (backend, limits, auth); default from env/YAML.
        smoke_volume: a real NIfTI volume for parity and smoke test; default a synthetic one.
        keep_running: leave the server up (``result.server.stop()`` ends it).
        labels: labels of the model in BentoML's store (the deploy flow: MLflow name/version).
        capacity_rounds: timed rounds per backend in the capacity plan (after one warm-up).

    Raises:
        ParityError, BentoBuildError, ServeError, SmokeTestError, CheckpointError.
    """
    from minivess.training.checkpoint import checkpoint_meta, load_model, target_spacing

    model, plan = load_model(model_uri, map_location="cpu")
    spacing = target_spacing(checkpoint_meta(model_uri))
    log.info("deploy: loaded %s (plan %s, model %s)", model_uri, plan.plan_hash, plan.model)
    return deploy_loaded(
        model,
        plan,
        workdir,
        settings=settings,
        smoke_volume=smoke_volume,
        keep_running=keep_running,
        target_spacing=spacing,
        labels=labels,
        capacity_rounds=capacity_rounds,
    )
