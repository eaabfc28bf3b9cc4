"""SkyPilot accelerator names against the NVML names a node reports (nvidia-smi, torch)."""

from __future__ import annotations

import pytest

from minivess.planning.node import accelerator_matches


@pytest.mark.parametrize(
    ("accelerator", "nvml", "match"),
    [
        ("L4:1", "NVIDIA L4", True),
        ("L4", "NVIDIA L40S", False),  # a prefix is not a match
        ("L40S", "NVIDIA L40S", True),
        ("A10G", "NVIDIA A10G", True),
        ("A10", "NVIDIA A10G", False),
        ("T4", "Tesla T4", True),
        ("V100", "Tesla V100-SXM2-16GB", True),
        ("A100", "NVIDIA A100-SXM4-80GB", True),
        ("A100-80GB", "NVIDIA A100-SXM4-80GB", True),
        ("A100-80GB", "NVIDIA A100-SXM4-40GB", False),
        ("H100", "NVIDIA H100 80GB HBM3", True),
        ("RTX4090:1", "NVIDIA GeForce RTX 4090", True),  # two NVML words, one SkyPilot name
        ("RTX4090", "NVIDIA GeForce RTX 3090", False),
        ("A6000", "NVIDIA RTX A6000", True),
        ("A6000", "NVIDIA RTX 6000 Ada Generation", False),
    ],
)
def test_accelerator_names_match_nvml_names(accelerator: str, nvml: str, match: bool) -> None:
    assert accelerator_matches(accelerator, nvml) is match
