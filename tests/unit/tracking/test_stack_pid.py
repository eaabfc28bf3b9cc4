"""`stack down` never kills a process that merely reuses the recorded pid."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from minivess.settings import load_settings
from minivess.tracking.stack import StackInfo, stack_down, stack_status


def test_a_reused_pid_is_forgotten_not_killed(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "ws", environ={})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = settings.workspace / "stack"
        state.mkdir(parents=True)
        # the record says "our server" with this pid, but the process there is another one
        info = StackInfo(url="http://127.0.0.1:1", pid=other.pid, log="x", auth=False,
                         create_time=time.time() - 3600)  # fmt: skip
        (state / "stack.json").write_text(json.dumps(asdict(info)))
        assert stack_status(settings) is None
        assert stack_down(settings) is None
        assert other.poll() is None  # still alive: not ours, not killed
        assert not (state / "stack.json").exists()
    finally:
        other.kill()
        other.wait()
