"""The one-line mutations of issue 15, each applied by hand and run against its killing tests.

Run from the checkout: ``.venv/bin/python .ci/issue15_mutations.py [ID ...]``. For each mutation
it edits the one line, runs the named tests (fast tier), restores the file, and prints one
JSON line ``{"id", "file", "killed", "rc", "tests"}``; it exits 1 when a mutation survives. The
table in docs/benchmarks.md is this script's output. Not part of CI (each run trains twice).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path("src/minivess")
T = "tests/unit"

#: id -> (file, the line as written, the mutated line, killing tests)
MUTATIONS: dict[str, tuple[str, str, str, list[str]]] = {
    "sw_roi-divisibility": (
        "planning/planner.py",
        "        if ov.sw_roi[a] % divisors[a]:",
        "        if False:",
        [f"{T}/planning/test_planning_policies.py::test_sw_roi_override_must_divide"],
    ),
    "labels-binarised": (
        "training/transforms.py",
        "        steps.append(AsDiscreted(keys=Keys.LABEL.value, threshold=0.5))",
        "        pass",
        [f"{T}/training/test_label_transform.py"],
    ),
    "non-integer-labels": (
        "data/validation.py",
        "            or not np.array_equal(label[finite], np.round(label[finite]))",
        "            or False",
        [f"{T}/data/test_data_validation.py::test_non_integer_label_values_are_quarantined"],
    ),
    "another-runs-checkpoint": (
        "training/loop.py",
        "        if found != self._identity():",
        "        if False:",
        [f"{T}/training/test_resume_in_process.py"],
    ),
    "sigterm-mid-epoch-flush": (
        "training/loop.py",
        "            if at_boundary and i >= skip and _any(self.ctx, stop.requested):",
        "            if False:",
        [f"{T}/training/test_resume_in_process.py"],
    ),
    "bearer-token-junk": (
        "serving/guard.py",
        '        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), '
        "self.token)",
        '        return scheme.lower() == b"bearer" and given.strip().startswith(self.token)',
        [f"{T}/serving/test_serve_guard.py::test_a_token_with_anything_appended_or_cut_is_refused"],
    ),
    "early-413": (
        "serving/guard.py",
        "            if declared.isdigit() and int(declared) > self.max_upload_bytes:",
        "            if False:",
        [f"{T}/serving/test_serve_guard.py::test_declared_length_over_limit_is_413_before_reading"],
    ),
    "task-id-keying-flow": (
        "orchestration/train_flow.py",
        "        settings.checkpoint_root, exp.name, settings.checkpoint_key(plan.plan_hash)",
        "        settings.checkpoint_root, exp.name, plan.plan_hash",
        [f"{T}/flows/test_checkpoint_keying.py"],
    ),
    "task-id-keying-rule": (
        "settings.py",
        "    return task or plan_hash",
        "    return plan_hash",
        [f"{T}/tracking/test_settings.py", f"{T}/flows/test_checkpoint_keying.py"],
    ),
    "deep-supervision-weights": (
        "training/losses.py",
        "    weights = [0.5**i for i in range(len(heads))]",
        "    weights = [1.0 for i in range(len(heads))]",
        [f"{T}/training/test_losses.py::test_deep_supervision_heads_are_weighted"],
    ),
    "atomic-checkpoint-write": (
        "training/checkpoint.py",
        '    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")',
        "    fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), str(path)",
        [f"{T}/training/test_checkpoint_io.py::test_failed_write_keeps_previous_version"],
    ),
    "lr-schedule-step": (
        "training/loop.py",
        "        self.scheduler.step()",
        "        pass",
        [f"{T}/training/test_resume_in_process.py"],
    ),
    "lr-schedule-shape": (
        "training/loop.py",
        "        return cosine_factor(epoch, self.cfg.epochs)",
        "        return 1.0",
        [f"{T}/training/test_resume_in_process.py"],
    ),
}


def run_one(name: str) -> dict:
    file, line, mutant, tests = MUTATIONS[name]
    path = SRC / file
    original = path.read_text()
    lines = original.split("\n")
    hits = [i for i, text in enumerate(lines) if text == line]
    if len(hits) != 1:
        raise SystemExit(f"{name}: {path} has {len(hits)} copies of the line (want 1): {line!r}")
    lines[hits[0]] = mutant
    try:
        path.write_text("\n".join(lines))
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
        rc = subprocess.run(cmd, capture_output=True, text=True).returncode
    finally:
        path.write_text(original)
    return {"id": name, "file": file, "killed": rc == 1, "rc": rc, "tests": tests}


def main(names: list[str]) -> int:
    survived = 0
    for name in names or list(MUTATIONS):
        row = run_one(name)
        survived += not row["killed"]
        print(json.dumps(row), flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
