"""``minivess launch`` end to end through the real CLI: every target renders and passes
SkyPilot's validation, secrets never leak, failures are one clear line, and the local target
trains on small synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

#: Credentials as a researcher's shell would hold them (fake values, unique strings; the key id
#: is assembled so that no credential-shaped literal sits in the repository).
SECRETS = {
    "AWS_ACCESS_KEY_ID": "-".join(["FAKE", "ACCESS", "KEY", "ID", "7654321"]),
    "AWS_SECRET_ACCESS_KEY": "fake/Secret+Access/Key0987654321",
    "MLFLOW_TRACKING_URI": "https://alice:mlflowpw123@mlflow.lab.example",
    "MLFLOW_TRACKING_USERNAME": "alice-mlflow-user",
    "MLFLOW_TRACKING_PASSWORD": "mlflowpw123",
    "HF_TOKEN": "hf_FakeHuggingFaceToken42",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from minivess.data.synth import synthesize

    out = tmp_path_factory.mktemp("launch-data") / "data"
    synthesize(out, n_volumes=4, seed=0, progress=False)
    return out


def _launch(tmp: Path, *args: str, extra_env: dict[str, str] | None = None):
    env = {
        **os.environ,
        "MINIVESS_S3_BUCKET": "lab-bucket",
        "COLUMNS": "200",
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "minivess", "launch", "--workspace", str(tmp / "ws"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
        cwd=tmp,
    )


def test_every_target_renders_validates_and_leaks_no_secret(tmp_path: Path, data_dir: Path):
    out = tmp_path / "out"
    pools = tmp_path / "out" / "ssh_node_pools.yaml"
    pools.parent.mkdir()
    pools.write_text(yaml.safe_dump({"physics-lab": {"hosts": ["192.0.2.9"], "user": "bob"}}))
    texts = []
    from minivess.resources import config_dir

    targets = sorted(p.stem for p in (config_dir() / "targets").glob("*.yaml"))
    assert {"local", "ssh", "spot", "serve"} <= set(targets)  # every shipped target, new ones too
    for target in targets:
        proc = _launch(
            tmp_path,
            "--target",
            target,
            "--data",
            str(data_dir),
            "--dry-run",
            "--out",
            str(out),
            extra_env=SECRETS,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        rendered = out / f"{target}.yaml"
        assert rendered.is_file()
        texts += [proc.stdout, proc.stderr]
        if target != "local":
            secrets = yaml.safe_load(rendered.read_text())["secrets"]
            assert set(secrets) >= {"AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_URI"}
            assert all(v is None for v in secrets.values())
            assert "--secret AWS_ACCESS_KEY_ID" in proc.stdout
    texts += [p.read_text() for p in out.rglob("*") if p.is_file()]
    blob = "\n".join(texts)
    for name, value in SECRETS.items():
        assert value not in blob, f"value of {name} leaked"
    assert "sky jobs launch -n minivess-train" in blob and "sky serve up -n minivess-serve" in blob
    pools_data = yaml.safe_load(pools.read_text())
    assert pools_data["physics-lab"] == {"hosts": ["192.0.2.9"], "user": "bob"}
    assert "lab" in pools_data


def test_typo_in_template_prints_skypilots_message_and_our_hint(tmp_path: Path, data_dir: Path):
    bad = tmp_path / "bad-template.yaml"
    bad.write_text("name: x\nresources:\n  acelerators: L4:1\nrun: echo hi\n")
    spot = yaml.safe_load((Path(__file__).parents[3] / "configs/targets/spot.yaml").read_text())
    target = tmp_path / "spot-typo.yaml"
    target.write_text(yaml.safe_dump({**spot, "template": str(bad)}))
    out = tmp_path / "out"
    proc = _launch(
        tmp_path, "--target", str(target), "--data", str(data_dir), "--dry-run", "--out", str(out)
    )
    assert proc.returncode == 2
    line = " ".join(proc.stderr.split())
    assert "Instead of 'acelerators', did you mean 'accelerators'?" in line
    assert "Hint: fix the key's spelling in the template" in line
    assert not (out / "spot-typo.yaml").exists(), "a rejected task is not written"


def test_an_allowed_gpu_the_table_lacks_fails_clearly(tmp_path: Path, data_dir: Path):
    spot = yaml.safe_load((Path(__file__).parents[3] / "configs/targets/spot.yaml").read_text())
    target = tmp_path / "spot-tiny.yaml"
    target.write_text(yaml.safe_dump({**spot, "accelerators_allowed": ["K80"]}))
    proc = _launch(
        tmp_path,
        "--target",
        str(target),
        "--data",
        str(data_dir),
        "--dry-run",
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 2
    line = " ".join(proc.stderr.split())
    assert "accelerators_allowed names 'K80', which is not in configs/gpus.yaml" in line
    assert "add a row there" in line and "shrink" not in line
    assert "Traceback" not in proc.stderr


def test_local_target_trains_end_to_end(tmp_path: Path, data_dir: Path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: e2e\nmodel: dynunet\ntraining:\n  epochs: 1\n")
    proc = _launch(
        tmp_path,
        "--target",
        "local",
        "--data",
        str(data_dir),
        "--config",
        str(exp),
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpts = list((tmp_path / "ws" / "checkpoints" / "e2e").glob("*/dicece-fold0/last.pt"))
    assert len(ckpts) == 1, "minivess train wrote its checkpoint where the task said"
    run = yaml.safe_load((tmp_path / "out" / "local.yaml").read_text())["run"]
    assert str(ckpts[0].parent) in run


def test_render_for_plan_gives_the_deploy_flow_a_validated_service(tmp_path: Path):
    """The deploy flow's call: an existing plan and a model version, no data, no planning."""
    from minivess.launch.launcher import render_for_plan
    from tests.fixtures.plans import gpu_plan

    plan = gpu_plan(accelerators=["L4:1"])
    prepared = render_for_plan(
        plan,
        "serve",
        out_dir=tmp_path / "out",
        model_uri="models:/minivess-segmenter/3",
        runtime_dir=tmp_path / "sky-runtime",
        environ=SECRETS,
    )
    task = yaml.safe_load(prepared.yaml_path.read_text())
    assert "--model-uri models:/minivess-segmenter/3 --host 0.0.0.0 --port 3000" in task["run"]
    assert prepared.command.startswith("sky serve up -n minivess-serve ")
