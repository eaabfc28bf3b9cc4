"""Hostile values in a rendered script never execute: the scripts are run with bash.

``minivess`` and ``torchrun`` are shims on PATH that record their argv (NUL-separated), because
the point is what bash hands them, not training. Every user value (data dir, experiment name,
model name, workspace, bucket prefix) carries a payload that would create a file if expanded.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from minivess.launch.render import RenderContext, dump_task, render_task
from minivess.launch.targets import TargetConfig
from minivess.planning.plan import TrainingPlan

#: Each one creates a file named PWNED* when a shell expands or executes it.
PAYLOADS = [
    "inj$(touch PWNED1)",
    "q'uote`touch PWNED2`",
    'dq"$(touch PWNED3)"',
    "sp ace;touch PWNED4",
    "nl\ntouch PWNED5",
    "var${IFS}$HOME~",
]


def _shim(bindir: Path, name: str, log: Path) -> None:
    path = bindir / name
    path.write_text(
        f'#!/bin/bash\nprintf "%s\\0" "{name}" "$@" >> {log}\nprintf "\\n\\0" >> {log}\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run_script(script: str, cwd: Path, home: Path) -> list[list[str]]:
    """Run ``script`` with bash; return the argv of each shim call."""
    bindir = cwd / "shimbin"
    bindir.mkdir(exist_ok=True)
    log = cwd / "calls.bin"
    log.unlink(missing_ok=True)
    for name in ("minivess", "torchrun"):
        _shim(bindir, name, log)
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(home),
        "SKYPILOT_TASK_ID": "sky-managed-7_minivess-train_1-0",
        "SKYPILOT_NODE_IPS": "127.0.0.1\n127.0.0.2",
        "SKYPILOT_NODE_RANK": "0",
        "SKYPILOT_NUM_NODES": "2",
        "SKYPILOT_NUM_GPUS_PER_NODE": "1",
    }
    proc = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    calls: list[list[str]] = []
    current: list[str] = []
    for item in log.read_bytes().decode().split("\0")[:-1]:
        if item == "\n":
            calls.append(current)
            current = []
        else:
            current.append(item)
    return calls


def _pwned(root: Path) -> list[Path]:
    return [p for p in root.rglob("PWNED*")]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("kind", ["spot", "ssh", "local", "spot-2-nodes"])
def test_hostile_values_reach_the_cli_verbatim_and_never_execute(
    payload: str,
    kind: str,
    plan: TrainingPlan,
    shipped: dict[str, TargetConfig],
    changed,
    tmp_path: Path,
) -> None:
    base = shipped["spot" if kind.startswith("spot") else kind]
    target = changed(base, workspace=f"~/ws {payload}", num_nodes=2 if "2" in kind else 1)
    data = tmp_path / f"data {payload}"
    ctx = RenderContext(
        model=f"m{payload}",
        workdir=tmp_path / "project",
        experiment=f"exp{payload}",
        data_dir=data if kind == "local" else None,
        training={"epochs": 1},
        checkpoint_uri=f"s3://bucket/ck {payload}",
        local_checkpoint_dir=tmp_path / f"ck {payload}",
    )
    rendered = render_task(plan, target, ctx)
    # The YAML as written and read back (what SkyPilot hands the node).
    run = yaml.safe_load(dump_task(rendered.config))["run"]
    home = tmp_path / "home"
    home.mkdir()
    calls = _run_script(run, tmp_path, home)
    assert _pwned(tmp_path) == [], f"a payload executed: {_pwned(tmp_path)}"
    train = [c for c in calls if "train" in c]
    assert train, calls
    args = train[-1]
    assert args[args.index("--model") + 1] == f"m{payload}"
    ckpt = args[args.index("--checkpoint-dir") + 1]
    assert f"exp{payload}" in ckpt
    if kind.startswith("spot"):
        # The renderer's own variable expanded; the user's text did not.
        assert ckpt == (
            f"s3://bucket/ck {payload}/exp{payload}/sky-managed-7_minivess-train_1-0/dicece-fold0"
        )
        synth = next(c for c in calls if "synth" in c)
        assert synth[synth.index("synth") + 1] == f"{home}/ws {payload}/data"
    if kind == "local":
        assert args[args.index("--data") + 1] == str(data)
    plan_file = Path(args[args.index("--plan") + 1])
    assert TrainingPlan.model_validate_json(plan_file.read_text()) == plan


def test_bucket_written_as_uri_is_normalised_once() -> None:
    from minivess.settings import load_settings

    for value in ("s3://lab", "lab", "s3://lab/", "lab/"):
        s3 = load_settings(environ={"MINIVESS_S3_BUCKET": value}).storage.s3
        assert s3.bucket == "lab"
        assert s3.uri("checkpoints") == "s3://lab/checkpoints"
    from minivess.errors import ConfigError

    with pytest.raises(ConfigError, match="has a key prefix"):
        load_settings(environ={"MINIVESS_S3_BUCKET": "s3://lab/some/prefix"})


def test_the_node_setup_creates_nothing_twice(tmp_path: Path) -> None:
    """The setup block's own logic (uv, venv) with shims: a second run is a no-op."""
    from minivess.launch.render import setup_section
    from minivess.launch.targets import Kind

    target = TargetConfig(kind=Kind.SPOT, checkpoints={"uri": "s3://b"})
    setup = setup_section(target)
    assert setup is not None
    home = tmp_path / "home"
    work = tmp_path / "work"
    (work / ".ci").mkdir(parents=True)
    calls = tmp_path / "calls.log"
    (work / ".ci" / "bootstrap.sh").write_text(f'echo "bootstrap $VENV $PYTHON" >> {calls}\n')
    bindir = tmp_path / "bin"
    bindir.mkdir()
    uv = bindir / "uv"
    # uv venv: record the call and create the interpreter it promises.
    uv.write_text(
        f'#!/bin/bash\necho "uv $*" >> {calls}\nv="${{@: -1}}"\nmkdir -p "$v/bin"\n'
        'printf "#!/bin/sh\\n" > "$v/bin/python"\nchmod +x "$v/bin/python"\n'
    )
    uv.chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(home)}
    for _ in range(2):
        subprocess.run(["bash", "-c", setup], cwd=work, env=env, check=True)
    lines = calls.read_text().splitlines()
    assert [ln for ln in lines if ln.startswith("uv ")] == [
        f"uv venv -q --seed --python 3.11 {home}/.minivess/venv"
    ]
    assert lines.count(f"bootstrap {home}/.minivess/venv {home}/.minivess/venv/bin/python") == 2
    assert os.access(home / ".minivess" / "venv" / "bin" / "python", os.X_OK)
