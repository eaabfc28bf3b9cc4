"""The serve target sized by the capacity plan, checked with SkyPilot 0.14.1's own code:
``validate_service_task`` on the rendered YAML and its autoscaler's decisions on that spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from minivess.errors import ConfigError
from minivess.launch.render import RenderContext, dump_task, render_task
from minivess.launch.targets import TargetConfig
from minivess.planning.settings import load_gpu_table
from minivess.serving.capacity import BackendFigure, plan_capacity


def _fig(name: str, best: float) -> BackendFigure:
    backend, device = name.split("-")
    return BackendFigure(name, backend, device, best, best * 1.1, 3)


CPU_FIGURES = [_fig("eager-cpu", 6.0), _fig("torch-cpu", 5.0), _fig("onnx-cpu", 9.0)]


def test_capacity_picks_the_fastest_and_sizes_the_policy_from_it() -> None:
    cap = plan_capacity(CPU_FIGURES, (512, 512, 16), 8, load_gpu_table(), peak_rss_gb=5.0)
    assert cap.picked == "torch-cpu"
    assert cap.target_qps_per_replica == pytest.approx(0.7 / 5.0)
    assert cap.upscale_delay_seconds == 60  # 10 requests x 5 s, at least a minute
    assert cap.downscale_delay_seconds == 300
    assert cap.resources == {"cpus": "8+", "memory": "10+"}
    slow = plan_capacity([_fig("onnx-cpu", 30.0)], (512, 512, 64), 8, load_gpu_table())
    assert slow.upscale_delay_seconds == 300 and slow.target_qps_per_replica < 0.03
    assert any("<- picked" in line and "torch-cpu" in line for line in cap.lines())


def test_gpu_only_when_cheaper_per_served_volume() -> None:
    table = load_gpu_table()
    fast_gpu = plan_capacity([*CPU_FIGURES, _fig("onnx-cuda", 0.2)], (512, 512, 16), 8, table)
    assert (fast_gpu.picked, fast_gpu.resources) == ("onnx-cuda", {"accelerators": "T4:1"})
    # A GPU 1.2x faster does not pay for its price: stay on the CPU.
    meh_gpu = plan_capacity([*CPU_FIGURES, _fig("torch-cuda", 4.2)], (512, 512, 16), 8, table)
    assert meh_gpu.device == "cpu" and "cpus" in meh_gpu.resources
    assert set(meh_gpu.cost_per_volume_usd) == {"cpu", "cuda"}


def test_override_by_config_and_unmeasured_override_refused() -> None:
    table = load_gpu_table()
    cap = plan_capacity(CPU_FIGURES, (64, 64, 8), 2, table, override={"backend": "onnx"})
    assert cap.picked == "onnx-cpu" and "serve config" in cap.reason
    with pytest.raises(ValueError, match="not measured"):
        plan_capacity(CPU_FIGURES, (64, 64, 8), 2, table, override={"backend": "onnx",
                                                                   "device": "cuda"})  # fmt: skip


def test_spot_base_that_covers_the_minimum_is_refused(plan, ctx, shipped) -> None:
    serve = shipped["serve"]
    policy = serve.service.replica_policy.model_copy(
        update={"base_ondemand_fallback_replicas": 1, "dynamic_ondemand_fallback": None}
    )
    bad = serve.model_copy(
        update={"service": serve.service.model_copy(update={"replica_policy": policy})}
    )
    with pytest.raises(ConfigError, match="no spot replica at the minimum"):
        render_task(plan, bad, ctx)


def _render(plan, ctx: RenderContext, target: TargetConfig, cap, tmp_path: Path) -> Path:
    ctx = RenderContext(**{**ctx.__dict__, "capacity": cap.as_dict()})
    path = tmp_path / "serve.yaml"
    path.write_text(dump_task(render_task(plan, target, ctx).config))
    return path


@pytest.mark.parametrize("figures", [CPU_FIGURES, [*CPU_FIGURES, _fig("onnx-cuda", 0.2)]])
def test_rendered_service_validates_and_skypilots_autoscaler_runs_spot(
    plan, ctx, shipped, tmp_path: Path, figures, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # SkyPilot writes its state under ~/.sky
    cap = plan_capacity(figures, (512, 512, 16), 8, load_gpu_table(), peak_rss_gb=3.0)
    path = _render(plan, ctx, shipped["serve"], cap, tmp_path)
    config = yaml.safe_load(path.read_text())
    assert config["envs"]["MINIVESS_SERVE_BACKEND"] == cap.backend
    assert config["service"]["replica_policy"]["target_qps_per_replica"] == (
        cap.target_qps_per_replica
    )
    if cap.device == "cpu":
        assert "accelerators" not in str(config["resources"]), config["resources"]
        assert config["resources"]["cpus"] == "8+"
    else:
        assert "T4:1" in str(config["resources"])

    from sky.serve import autoscalers, serve_utils, service_spec

    import sky

    task = sky.Task.from_yaml(str(path))
    serve_utils.validate_service_task(task, pool=False)
    spec = service_spec.SkyServiceSpec.from_yaml_config(config["service"])
    scaler = autoscalers.Autoscaler.from_spec("minivess-serve", spec)
    assert isinstance(scaler, autoscalers.FallbackRequestRateAutoscaler)
    decisions = scaler.generate_scaling_decisions([], [])
    overrides = [d.target for d in decisions]
    spot = [o for o in overrides if o and o.get("use_spot") is True]
    ondemand = [o for o in overrides if o and o.get("use_spot") is False]
    # At the minimum (1 replica, no traffic): one SPOT replica; the on-demand one is only the
    # dynamic fallback while that spot replica is not ready yet.
    assert len(spot) == spec.min_replicas == 1, decisions
    assert len(ondemand) <= 1


def test_backends_are_timed_interleaved_and_the_best_run_kept() -> None:
    """A, B, C, A, B, C: a load swing hits every backend alike. Real candidates would run a
    model; these record the call order, and B is slowed down only in round 1."""
    import numpy as np

    from minivess.serving.capacity import Candidate, measure_backends
    from minivess.serving.settings import Backend, Device

    calls: list[str] = []

    def make(name: str):
        def segment(_volume):
            calls.append(name)
            if name == "torch" and calls.count("torch") == 2:  # first timed run of B
                import time

                time.sleep(0.05)

        return segment

    cands = [Candidate(b, Device.CPU, make(b.value)) for b in Backend]
    figures = measure_backends(cands, np.zeros((4, 4, 4)), rounds=3)
    names = [b.value for b in Backend]
    assert calls == names * 4  # one warm-up round, then three interleaved rounds
    torch_fig = next(f for f in figures if f.backend == "torch")
    assert torch_fig.best_s < 0.05  # the slowed-down run is not the one kept


def test_tls_by_path_renders_into_the_service_and_validates(
    plan, ctx, shipped, tmp_path: Path, monkeypatch
) -> None:
    from minivess.launch.targets import TlsConfig

    monkeypatch.setenv("HOME", str(tmp_path))
    key, cert = tmp_path / "serve.key", tmp_path / "serve.crt"
    key.write_text("placeholder key\n")  # SkyPilot checks the schema and the path, not the PEM
    cert.write_text("placeholder certificate\n")
    serve = shipped["serve"]
    tls = TlsConfig(keyfile=str(key), certfile=str(cert))
    target = serve.model_copy(update={"service": serve.service.model_copy(update={"tls": tls})})
    cap = plan_capacity(CPU_FIGURES, (512, 512, 16), 8, load_gpu_table())
    path = _render(plan, ctx, target, cap, tmp_path)
    config = yaml.safe_load(path.read_text())
    assert config["service"]["tls"] == {"keyfile": str(key), "certfile": str(cert)}

    from sky.serve import serve_utils, service_spec

    import sky

    serve_utils.validate_service_task(sky.Task.from_yaml(str(path)), pool=False)
    spec = service_spec.SkyServiceSpec.from_yaml_config(config["service"])
    assert spec.tls_credential is not None
    assert spec.tls_credential.certfile == str(cert)
