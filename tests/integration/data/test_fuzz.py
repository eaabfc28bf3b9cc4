"""Fuzz the data gate: malformed NIfTI files made from valid ones never crash, hang or blow up.

A subprocess (address space capped with RLIMIT_AS, wall time bounded by the harness) builds
a few hundred broken files (header fields set to extreme values, truncations, bit flips in the
compressed and in the uncompressed bytes, image or label) and runs the gate's per-file scan
and header scan on each: every case must end as a profiled volume or a one-line quarantine
reason. The harness timeout is a hang bound, not a benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

N_CASES = 320
MEMORY_CAP_BYTES = 1536 << 20

FUZZ = r"""
import gzip, json, math, resource, sys, time
from pathlib import Path
import numpy as np

cap, out, n = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
sys.path.insert(0, sys.argv[4])
from tests.fixtures.broken import nifti_bytes, set_field
from minivess.data.profiler import scan_volume
from minivess.data.schema import VolumePair
from minivess.data.validation import check_header, rejection_reason

rng = np.random.default_rng(13)
image = nifti_bytes(rng.integers(0, 4000, (16, 16, 4)).astype(np.uint16))
lab = np.zeros((16, 16, 4), dtype=np.uint8); lab[4:9, 4:9, 1:3] = 1
label = nifti_bytes(lab)
FIELDS = [("sizeof_hdr", None), ("dim", 0), ("dim", 1), ("dim", 3), ("dim", 4),
          ("datatype", None), ("bitpix", None), ("pixdim", 1), ("pixdim", 3),
          ("vox_offset", None), ("scl_slope", None), ("scl_inter", None),
          ("qform_code", None), ("sform_code", None), ("srow_x", 0), ("srow_z", 2),
          ("quatern_b", None), ("magic", None)]
VALUES = [0, -1, 1, 2, 3, 7, 8, 255, 32767, -32768, 1 << 30, float("nan"), float("inf"),
          1e30, -1e-30]

def mutate(raw: bytearray, kind: str) -> tuple[bytes, str]:
    raw = bytearray(raw)
    if kind == "field":
        field, index = FIELDS[rng.integers(len(FIELDS))]
        value = VALUES[rng.integers(len(VALUES))]
        if field == "magic":
            value = [b"n+2\0", b"ni1\0", b"\0\0\0\0", b"n+1\0"][rng.integers(4)]
        try:
            set_field(raw, field, index, value)
        except (ValueError, OverflowError, TypeError):
            set_field(raw, field, index, 0)
        return gzip.compress(bytes(raw), 1), f"{field}[{index}]={value!r}"
    if kind == "flip_raw":
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, 352)) if rng.random() < 0.7 else int(rng.integers(len(raw)))
            raw[pos] ^= 1 << int(rng.integers(8))
        return gzip.compress(bytes(raw), 1), "bit flips before compression"
    gz = bytearray(gzip.compress(bytes(raw), 1))
    if kind == "flip_gz":
        for _ in range(int(rng.integers(1, 9))):
            gz[int(rng.integers(len(gz)))] ^= 1 << int(rng.integers(8))
        return bytes(gz), "bit flips in the gzip stream"
    if kind == "truncate_gz":
        return bytes(gz[: int(rng.integers(0, len(gz)))]), "truncated gzip"
    return bytes(raw[: int(rng.integers(0, len(raw)))]), "truncated .nii"

KINDS = ["field", "field", "flip_raw", "flip_gz", "truncate_gz", "truncate_nii"]
(out / "raw").mkdir(parents=True); (out / "seg").mkdir()
results = {"accepted": 0, "rejected": 0, "cases": n, "bad": []}
slowest = 0.0
for i in range(n):
    kind = KINDS[i % len(KINDS)]
    on_label = rng.random() < 0.25
    data, what = mutate(label if on_label else image, kind)
    suffix = ".nii" if kind == "truncate_nii" else ".nii.gz"
    img_path, lab_path = out / "raw" / f"c{i}{suffix}", out / "seg" / f"c{i}_y.nii.gz"
    img_path.write_bytes(data if not on_label else gzip.compress(bytes(image), 1))
    if on_label:
        lab_path.write_bytes(data if suffix == ".nii.gz" else gzip.compress(data, 1))
    else:
        lab_path.write_bytes(gzip.compress(bytes(label), 1))
    t0 = time.perf_counter()
    try:
        r = scan_volume(VolumePair(name=f"c{i}", image=str(img_path), label=str(lab_path)),
                        frozenset({0, 1}), key=str(i))
        try:
            check_header(img_path)
        except Exception as err:  # what scan_headers does with any error
            rejection_reason(err)
    except BaseException as err:
        results["bad"].append(f"{kind} {what}: escaped {type(err).__name__}: {err}")
        continue
    slowest = max(slowest, time.perf_counter() - t0)
    if r.reason is None:
        results["accepted"] += 1
    elif not r.reason.strip() or "\n" in r.reason:
        results["bad"].append(f"{kind} {what}: reason {r.reason!r}")
    else:
        results["rejected"] += 1
results["slowest_case_s"] = slowest
results["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(results))
"""


def test_fuzzed_nifti_files_never_crash_hang_or_exceed_memory(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ, str(MEMORY_CAP_BYTES), str(tmp_path / "fuzz"),
         str(N_CASES), str(repo)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["bad"] == []
    assert out["accepted"] + out["rejected"] == N_CASES
    assert out["rejected"] >= N_CASES // 2  # the mutations really break most files
    assert out["max_rss_mb"] < MEMORY_CAP_BYTES / 2**20
