"""Train a small demo artifact for every model that has none, so `make serve` answers at once."""

from __future__ import annotations

import logging
from pathlib import Path

from training.jobs import JOBS, load_job

log = logging.getLogger(__name__)


def ensure_demo_models(artifacts_root: Path, seed: int = 0) -> list[Path]:
    made = []
    for name in JOBS:
        model_dir = artifacts_root / name
        if model_dir.is_dir() and any(
            p.is_dir() and not p.name.startswith(".") for p in model_dir.iterdir()
        ):
            continue
        log.info(
            "no %s artifact under %s: training the demo model on synthetic data",
            name,
            artifacts_root,
        )
        made.append(load_job(name).train_demo(artifacts_root, seed))
    return made
