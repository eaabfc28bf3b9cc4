"""The README's and the quickstart's shell commands, run in order as a stranger types them.

Every fenced ``bash`` block of each document of :data:`DOCS` runs, in document order, in a fresh
copy of the checkout (its tracked files, with this environment's venv as ``.venv``), each block
as one ``bash -e`` script, and must exit 0. One test per document: a reader follows one page.
A block that cannot run here says so right above it, with its reason, in an HTML comment the
reader does not see rendered:

- ``<!-- docs-test: skip (why) -->``: not run (cloud accounts, your own data, the suite itself);
- ``<!-- docs-test: main-job (why) -->``: the block runs the main job (40 epochs, minutes) and
  the blocks after it read its workspace; the test copies in the workspace of the session's
  1-epoch run of the same chain (:mod:`tests.fixtures.main_job`) instead. Only a document with
  this marker waits for that run (its test joins the main job's xdist group).

A server a block starts must be stopped by the block itself: the test fails when its port is
still open afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from minivess.serving.server import free_port
from tests.fixtures.main_job import GROUP, MainJob, tracked_copy

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/quickstart.md")
ACTIONS = ("skip", "main-job")
BLOCK_TIMEOUT_S = 1200  # a generous bound per block on a loaded 2-core machine
_FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
_MARKER = re.compile(r"<!--\s*docs-test:\s*(\S+)\s*(\((.+)\))?\s*-->")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    body: str
    action: str | None  # None: run it
    reason: str | None


def doc_blocks(doc: str) -> list[Block]:
    """The ``bash`` blocks of ``doc`` (relative to the repo) with the marker right above each."""
    text = (REPO / doc).read_text()
    blocks = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        line = text.count("\n", 0, m.start()) + 1
        action, reason = (marker.group(1), marker.group(3)) if marker else (None, None)
        blocks.append(Block(doc, line, m.group(1), action, reason))
    return blocks


def test_every_marker_is_known_and_says_why() -> None:
    """A typo in a marker must not silently turn a block off (fast: no command runs)."""
    blocks = [b for doc in DOCS for b in doc_blocks(doc)]
    assert any(b.action is None for b in blocks)
    for b in blocks:
        where = f"{b.doc}:{b.line}"
        assert b.action in (None, *ACTIONS), f"{where}: unknown docs-test marker {b.action!r}"
        assert b.action is None or b.reason, f"{where}: docs-test marker without (reason)"
    for doc in DOCS:  # a marker that is not right above a block marks nothing
        text = (REPO / doc).read_text()
        used = sum(1 for b in blocks if b.doc == doc and b.action)
        assert len(_MARKER.findall(text)) == used, f"{doc}: a docs-test marker above no bash block"


def _checkout_copy(dest: Path) -> None:
    """A fresh clone's files (:func:`tracked_copy`) with the venv `make setup` made."""
    tracked_copy(dest)
    (dest / ".venv").symlink_to(Path(sys.prefix))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop_listeners(port: int) -> None:
    """Kill whatever a failed block left on ``port`` (a free port this test picked)."""
    import psutil

    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.pid:
            psutil.Process(conn.pid).kill()


def _stranger_env(tmp: Path, port: int) -> dict[str, str]:
    """This environment minus the venv, the project's and MLflow's variables (a new shell)."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "MINIVESS_", "PREFECT_")) and k != "VIRTUAL_ENV"
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["PREFECT_HOME"] = str(tmp / "prefect-home")
    env["BENTOML_HOME"] = str(tmp / "bentoml")  # what `minivess serve` stores, not in ~/bentoml
    env["PORT"] = str(port)
    return env


def _run_block(block: Block, clone: Path, env: dict[str, str], port: int) -> None:
    where = f"{block.doc}:{block.line}"
    script = clone.parent / "block.sh"
    script.write_text(
        "set -e\n"
        "trap 'echo \"docs-test: exit $? from: $BASH_COMMAND\" >&2' ERR\n" + block.body
    )  # fmt: skip
    proc = subprocess.Popen(
        ["bash", str(script)], cwd=clone, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        pytest.fail(f"{where}: still running after {BLOCK_TIMEOUT_S} s\n{out[-4000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # what the block left in its group
            os.killpg(proc.pid, 9)
    assert proc.returncode == 0, f"{where}: exit {proc.returncode}\n{out[-6000:]}"
    deadline = time.monotonic() + 60  # the block stops its server; it may take a moment
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(1)
    if _listening(port):
        _stop_listeners(port)
        pytest.fail(f"{where}: a server is still listening on port {port} after the block")


def _param(doc: str) -> object:
    """``doc``, in the main job's xdist group when a block needs its workspace."""
    needs_main_job = any(b.action == "main-job" for b in doc_blocks(doc))
    return pytest.param(doc, marks=pytest.mark.xdist_group(GROUP) if needs_main_job else ())


@pytest.mark.slow
@pytest.mark.parametrize(
    "doc",
    [_param(doc) for doc in DOCS],
)
def test_documented_commands_run_as_written(
    doc: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clone = tmp_path / "minivess"
    _checkout_copy(clone)
    port = free_port()
    env = _stranger_env(tmp_path, port)
    ran = []
    for block in doc_blocks(doc):
        if block.action == "skip":
            continue
        if block.action == "main-job":
            main_job: MainJob = request.getfixturevalue("main_job")
            shutil.copytree(main_job.workspace, clone / "workspace", dirs_exist_ok=True)
            continue
        _run_block(block, clone, env, port)
        ran.append(f"{doc}:{block.line}")
    assert ran, f"{doc}: no block ran"
    if doc == "README.md":  # train, then evaluate what it wrote
        assert (clone / "checkpoints" / "best.pt").is_file()
    if doc == "docs/quickstart.md":  # the served model's answer, on the main job's data
        import nibabel as nib

        mask = clone / "workspace" / "mask.nii.gz"
        assert nib.load(mask).shape == nib.load(clone / "workspace/data/raw/mv01.nii.gz").shape
