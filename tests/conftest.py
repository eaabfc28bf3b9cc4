"""Suite-wide test settings. Area fixtures live in each area's conftest.py."""

from __future__ import annotations

import os

# Plots render off-screen; torch stays on the 2 CPU cores the suite is sized for.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")
