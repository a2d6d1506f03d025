"""Each training job under torchrun with two CPU processes (DDP, gloo) matches one process.

Each rank takes an equal slice of every global batch (STMP: of every task's query set) and
DDP averages the gradients, weighted by each rank's share, so two processes follow the
single-process trajectory up to float reduction order. The artifacts of both runs must
score the same inputs alike, and record the same metrics.

The bound, and why it is not a plain rtol: float32 reassociation (two half-batch sums plus
an all-reduce instead of one full-batch sum) is ~1e-7 relative per step, but Adam's and
Adagrad's normalised steps amplify it for near-zero gradients, the more epochs the more,
and how much depends on the CPU's kernels (AVX-512 vs AVX2 vs scalar code in ATen and
oneDNN block their reductions differently). A fixed rtol of 1e-3 passed on one machine and
failed on another (intent, two epochs: 0.1017 vs 0.1019). So every output is compared
relative to its own scale, max|single - ddp| / max|single| over 16 random input rows, and
bounded by SCALED_TOL, set between what float order can do and what a broken DDP does.
Measured (AMD EPYC, 2 cores, AVX2; `ATEN_CPU_CAPABILITY=default` forces ATen's
non-vectorised kernels, standing in for a CPU whose kernels reduce in another order),
largest value over each job's outputs, in columns: (a) DDP vs one process; (b) one process,
scalar vs AVX2 kernels; (c) DDP vs one process, both on scalar kernels; (d) no gradient
all-reduce; (e) wrong share weight (rank 1's loss weighed 0.5 instead of its share).

| job    | (a)    | (b)    | (c)    | (d)  | (e)   |
|--------|--------|--------|--------|------|-------|
| intent | 4.2e-6 | 6.5e-7 | 6.5e-7 | 1.68 | 0.23  |
| cvr    | 4.2e-6 | 2.0e-6 | 4.1e-6 | 1.32 | 0.92  |
| dinop  | 1.7e-7 | 1.7e-7 | 2.7e-7 | 0.16 | 0.19  |
| stmp   | 1.8e-7 | 2.7e-7 | 1.8e-7 | 0.15 | 0.075 |

with JOB_ARGS as below (one epoch each). With the earlier settings (intent 2 epochs, dinop
3, cvr's stage 2 two) float order reached 5.4e-3 (intent, (b)) and 4.7e-3 ((c)): that is
the failure mode above, and SCALED_TOL = 0.02 still holds 3.7x above it. It is 3.7x below
the smallest breakage measured (STMP's share weight). Recorded metrics agree within 2 %
relative (float order moved intent's F1 by up to 0.7 % with the earlier settings; metrics
only back up the graph check, which is what catches a broken DDP).
`test_check_fails_when_ddp_is_broken` keeps the negative control in the suite: the same
check, on a run with the gradient all-reduce removed, must fail. What it cannot see: ranks
that each trained on the whole batch would also match. IMN is deliberately not
data-parallel (see `training.jobs.imn.train`).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from service.runtime.manifest import read_manifest

pytest.importorskip("torch")

SCALED_TOL = 0.02  # max |single - ddp| / max |single| per output (see the docstring)
METRIC_RTOL = 0.02

# Tiny settings: each run takes ~8-20 s on a loaded 2-core machine, most of it start-up,
# data generation, the baselines `train` records beside ours, and ONNX export. Dropout off:
# each rank would draw its own masks. One epoch (one validation) per model: the check is on
# the trajectory; which epoch early stopping keeps is `training.loop`'s (tests/test_loop.py),
# and two near-equal validation scores must not turn float order into a different epoch.
JOB_ARGS: dict[str, list[str]] = {
    "intent": ["--epochs", "1", "--dropout", "0", "--batch-size", "64"],
    # Both stages: BASE on D, prototypes, DMN + EPN on D_recent.
    "cvr": [
        "--d-model", "16", "--heads", "2", "--epochs", "1", "--stage2-epochs", "1",
        "--batch-size", "128",
    ],
    # Multi-task (GMV, BSP, SS) with gradient clipping on the all-reduced gradient.
    "dinop": ["--epochs", "1", "--batch-size", "16", "--dropout", "0"],
    # ST-training: 30 steps over both views (view switch every 10), psi noise per task.
    "stmp": [
        "--steps", "30", "--steps-per-epoch", "30", "--tasks", "4", "--context", "8",
        "--query", "8", "--view-steps", "10", "--hidden", "16", "--embed", "32",
        "--psi-dim", "8", "--eval-samples", "20",
    ],
}  # fmt: skip


def _run(cmd: list[str], cwd: Path, extra_env: Mapping[str, str] | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _only_version(root: Path, job: str) -> Path:
    versions = [p for p in (root / job).iterdir() if not p.name.startswith(".")]
    assert len(versions) == 1, versions
    return versions[0]


def _feeds(inputs: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs for a graph: small ids (valid in every vocabulary), positive floats.

    Floats stay away from 0: some inputs are normalisers (DINOP's running softmax sum), where
    a zero would make the outputs huge and the comparison meaningless.
    """
    feeds: dict[str, np.ndarray] = {}
    for tensor in inputs:
        shape = [16 if not isinstance(d, int) else d for d in tensor.shape]
        if tensor.dtype.startswith("int"):
            feeds[tensor.name] = rng.integers(0, 3, size=shape).astype(tensor.dtype)
        else:
            feeds[tensor.name] = rng.uniform(0.5, 2.0, size=shape).astype(tensor.dtype)
    return feeds


def _numbers(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield f"{prefix}{key}", float(value)


def _scaled(reference: np.ndarray, other: np.ndarray) -> float:
    """max |reference - other| relative to the reference's own scale (see the docstring)."""
    a, b = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    assert a.shape == b.shape
    if a.size == 0:
        return 0.0
    return float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-6))


def _differences(one: Path, two: Path, job: str) -> dict[str, float]:
    """Scaled difference of every graph output (on the same random feeds) and table."""
    m1, m2 = read_manifest(one), read_manifest(two)
    assert m1.graphs.keys() == m2.graphs.keys()
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for name, spec in m1.graphs.items():
        feeds = _feeds(spec.inputs, rng)
        results = [
            ort.InferenceSession(str(version / m.graphs[name].file)).run(None, feeds)
            for version, m in ((one, m1), (two, m2))
        ]
        for tensor, a, b in zip(spec.outputs, *results, strict=True):
            if np.asarray(a).dtype.kind == "f":
                out[f"{job}/{name}/{tensor.name}"] = _scaled(a, b)
    # Tables written next to the graphs (STMP's pooled task embeddings) agree too.
    for table in sorted(one.glob("*.npz")):
        with np.load(table) as t1, np.load(two / table.name) as t2:
            for key in t1.files:
                if t1[key].dtype.kind == "f":
                    finite = np.isfinite(t1[key])
                    assert (finite == np.isfinite(t2[key])).all(), f"{table.name}:{key}"
                    out[f"{table.name}:{key}"] = _scaled(t1[key][finite], t2[key][finite])
    return out


REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _args(job: str, root: Path) -> list[str]:
    return ["train", job, "--seed", "3", *JOB_ARGS[job], "--artifacts", str(root)]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The single-process artifact of a job, trained once per module (two tests use it)."""
    done: dict[str, Path] = {}

    def get(job: str) -> Path:
        if job not in done:
            root = tmp_path_factory.mktemp(f"single-{job}")
            _run([sys.executable, "-m", "training.cli", *_args(job, root)], REPO)
            done[job] = _only_version(root, job)
        return done[job]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("job", list(JOB_ARGS))
def test_two_process_ddp_matches_single_process(
    job: str, tmp_path: Path, single_process: Callable[[str], Path]
) -> None:
    one = single_process(job)
    _run([*TORCHRUN, "-m", "training.cli", *_args(job, tmp_path)], REPO)
    two = _only_version(tmp_path, job)  # rank 1 wrote nothing
    differences = _differences(one, two, job)
    worst = max(differences, key=differences.__getitem__)
    assert differences[worst] <= SCALED_TOL, (worst, differences[worst])
    # Same model, same evaluation data: the recorded metrics agree (relative: some are in
    # source units, sales in the thousands).
    n1 = dict(_numbers(read_manifest(one).metrics))
    n2 = dict(_numbers(read_manifest(two).metrics))
    assert n1.keys() == n2.keys()
    for key, value in n1.items():
        assert math.isclose(value, n2[key], rel_tol=METRIC_RTOL, abs_tol=1e-3), (
            key,
            value,
            n2[key],
        )


# Runs `training.cli` with DDP taken out: every rank steps on its own half of each batch.
_NO_ALL_REDUCE = """
import sys

import training.distributed as distributed

distributed.wrap = lambda model, ctx: model
from training.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_check_fails_when_ddp_is_broken(
    tmp_path: Path, single_process: Callable[[str], Path]
) -> None:
    """The negative control: without the gradient all-reduce the same check must fail."""
    job = "intent"
    script = tmp_path / "no_all_reduce.py"
    script.write_text(_NO_ALL_REDUCE)
    root = tmp_path / "broken"
    _run([*TORCHRUN, str(script), *_args(job, root)], REPO, {"PYTHONPATH": str(REPO)})
    differences = _differences(single_process(job), _only_version(root, job), job)
    assert max(differences.values()) > SCALED_TOL * 4, differences
