"""The Dockerfile keeps the properties the images promise, checked without a Docker daemon.

CI machines have no daemon, so the images are not built here; this reads the Dockerfile's
stages and checks what an operator relies on: serving images without torch, running as a
non-root user, with a HEALTHCHECK on the liveness route, and a GPU image whose CUDA base
matches the onnxruntime-gpu wheel (built for CUDA 13).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"
SERVING = ("cpu", "gpu")


def stages() -> dict[str, dict[str, object]]:
    """Stage name -> its base and instructions, with line continuations joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out: dict[str, dict[str, object]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, flags=re.IGNORECASE)
        if match:
            current = []
            out[match.group(2)] = {"base": match.group(1), "lines": current}
        elif out:
            current.append(line)
    return out


def lines_of(name: str) -> list[str]:
    lines = stages()[name]["lines"]
    assert isinstance(lines, list)
    return lines


def test_multi_stage_with_serving_gpu_and_trainer_targets() -> None:
    assert {"wheels", "cpu", "cpu-baked", "gpu", "trainer"} <= set(stages())


@pytest.mark.parametrize("name", SERVING)
def test_serving_image_has_no_torch_runs_as_non_root_and_checks_liveness(name: str) -> None:
    lines = lines_of(name)
    installs = " ".join(line for line in lines if line.startswith("RUN"))
    assert "torch" not in installs and "[train]" not in installs
    users = [line.split()[1] for line in lines if line.startswith("USER")]
    assert users and users[-1] not in {"root", "0"}
    health = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert len(health) == 1 and "/health/live" in health[0]
    assert any(line.startswith("CMD") and "serve" in line for line in lines)


def test_gpu_image_pairs_cuda13_runtime_with_onnxruntime_gpu() -> None:
    base = str(stages()["gpu"]["base"])
    assert base.startswith("nvidia/cuda:13.") and "runtime" in base
    installs = " ".join(line for line in lines_of("gpu") if line.startswith("RUN"))
    assert "onnxruntime-gpu" in installs
    # Both wheels provide the `onnxruntime` module; the CPU one must be gone.
    assert "pip uninstall -y onnxruntime" in installs


def test_baked_image_copies_artifacts_and_trainer_pins_torch() -> None:
    assert stages()["cpu-baked"]["base"] == "cpu"
    assert any("artifacts/" in line for line in lines_of("cpu-baked"))
    trainer = " ".join(lines_of("trainer"))
    assert "torch==2.13.0" in trainer
