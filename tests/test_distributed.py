"""A training job under torchrun with two CPU processes (DDP, gloo) matches one process.

Each rank takes an equal slice of every global batch and DDP averages the gradients, so two
processes follow the single-process trajectory up to float reduction order. The artifacts of
both runs must score the same inputs alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.runtime.manifest import read_manifest

pytest.importorskip("torch")

TRAIN_ARGS = [
    "train", "intent", "--epochs", "2", "--dropout", "0", "--seed", "3",
    "--batch-size", "128", "--max-minutes", "10",
]  # fmt: skip


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _only_version(root: Path) -> Path:
    versions = [p for p in (root / "intent").iterdir() if not p.name.startswith(".")]
    assert len(versions) == 1, versions
    return versions[0]


def _scores(version_dir: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    graph = read_manifest(version_dir).graphs["score"]
    session = ort.InferenceSession(str(version_dir / graph.file))
    return [np.asarray(out) for out in session.run(None, feeds)]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    single, multi = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "training.cli", *TRAIN_ARGS, "--artifacts", str(single)], repo)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    _run([*torchrun, "-m", "training.cli", *TRAIN_ARGS, "--artifacts", str(multi)], repo)

    one, two = _only_version(single), _only_version(multi)  # rank 1 wrote nothing
    spec = read_manifest(one).graphs["score"]
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for tensor in spec.inputs:
        shape = [64 if not isinstance(d, int) else d for d in tensor.shape]
        if tensor.dtype.startswith("int"):
            feeds[tensor.name] = rng.integers(0, 3, size=shape).astype(tensor.dtype)
        else:
            feeds[tensor.name] = rng.poisson(1.0, size=shape).astype(tensor.dtype)
    for a, b in zip(_scores(one, feeds), _scores(two, feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    # Same model, same validation data: the recorded metrics agree too.
    m1, m2 = read_manifest(one).metrics, read_manifest(two).metrics
    assert m1.keys() == m2.keys()
    for key in m1:
        assert abs(m1[key] - m2[key]) < 1e-3, key
