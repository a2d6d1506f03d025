"""Training/evaluation jobs, one module per model, discovered by name.

Each module `training.jobs.<name>` provides:

- `add_arguments(parser)`: model-specific options, shared by `train` and `evaluate`;
- `train(args) -> Path`: train on `args.data`/`args.format`, write an artifact, return its dir;
- `train_demo(artifacts_root, seed) -> Path`: a small run on synthetic data for the demo.

and `training.jobs.<name>_evaluate` provides `evaluate(args) -> dict`: ours and every baseline in
one run, results under `args.results_dir`. Evaluation imports the job (its data and fit), never
the other way round.

Modules are imported lazily so `salecast serve` never imports torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

JOBS: dict[str, str] = {
    "imn": "training.jobs.imn",
    "intent": "training.jobs.intent",
    "cvr": "training.jobs.cvr",
    "stmp": "training.jobs.stmp",
    "dinop": "training.jobs.dinop",
}


def load_job(name: str) -> ModuleType:
    return importlib.import_module(JOBS[name])


def load_evaluation(name: str) -> ModuleType:
    """The module that evaluates job `name` against its baselines."""
    return importlib.import_module(JOBS[name] + "_evaluate")
