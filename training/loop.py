"""The one training loop every neural model and neural baseline goes through.

After RecBole's `Trainer.fit` and GluonTS's `train_model`: a model differs in how one epoch
of optimisation runs (minibatches of rows, ST-training's task batches, IMN's t-batch
windows) and in how it is scored on validation data; everything else is the same for all
of them and lives here once:

- an epoch budget (`Budget.max_epochs`), the same for ours and the baselines of a run;
- early stopping on a time-ordered validation split: after every epoch the job's
  `validate()` scores the model; `patience` epochs without a gain of more than `min_delta`
  stop the run, and the weights of the best epoch are restored at the end;
- no wall-clock cap: a method is never stopped earlier than another because it is slower;
- a progress bar (tqdm; silent when stderr is not a terminal, and on every rank but 0);
- a `FitReport` with the epochs actually run and the best epoch, which results record.

`minibatch_epoch` is the shared epoch for row-based data: a fresh permutation per epoch,
and under torchrun each rank's slice of every global batch with its loss weighted by its
share (`training.distributed`), so N processes follow the single-process trajectory.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from service.errors import InvalidInput
from training import distributed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """How long any learned method of one run may train, and when it stops early."""

    max_epochs: int
    patience: int = 3  # epochs without a validation gain before stopping
    min_delta: float = 0.0  # a gain must exceed this to count (in the validation metric)

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise InvalidInput("epochs", f"must be at least 1, got {self.max_epochs}")
        if self.patience < 1:
            raise InvalidInput("patience", f"must be at least 1, got {self.patience}")
        if self.min_delta < 0:
            raise InvalidInput("min_delta", f"must not be negative, got {self.min_delta}")


@dataclass
class FitReport:
    """What one fit did: recorded in results and manifests, so a reader sees the budget use."""

    label: str
    epochs_run: int = 0
    best_epoch: int = 0  # 1-based; 0 when there was nothing to validate on (last kept)
    best_score: float | None = None
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_val": self.best_score,
            "stopped_early": self.stopped_early,
        }


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's global RNG (initial weights, dropout) and return a numpy generator."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def fit(
    model: nn.Module,
    run_epoch: Callable[[int], float],
    validate: Callable[[], float] | None,
    budget: Budget,
    *,
    label: str,
    higher_is_better: bool = True,
    ctx: distributed.DistContext | None = None,
) -> FitReport:
    """Train `model` epoch by epoch within `budget`; keep the best validation epoch.

    `run_epoch(epoch)` runs one epoch of optimisation and returns its mean training loss;
    `validate()` scores the model on the validation split (`higher_is_better` says which
    way). Without `validate` (no validation data) every epoch of the budget runs and the
    last is kept. Under torchrun every rank validates the same weights on the same data;
    the score is averaged over ranks anyway, so all ranks take the same decisions.
    """
    ctx = ctx or distributed.DistContext()
    report = FitReport(label=label)
    sign = 1.0 if higher_is_better else -1.0
    best_state: dict[str, Any] | None = None
    best = -math.inf
    stale = 0
    bar = tqdm(
        total=budget.max_epochs,
        desc=label,
        unit="epoch",
        leave=False,
        disable=None if ctx.is_main else True,  # None: silent when not a terminal
    )
    try:
        for epoch in range(1, budget.max_epochs + 1):
            model.train()
            loss = float(run_epoch(epoch))
            entry = {"epoch": float(epoch), "loss": loss}
            report.epochs_run = epoch
            if validate is not None:
                score = distributed.mean_across_ranks(float(validate()), ctx)
                entry["val"] = score
                signed = sign * score if math.isfinite(score) else -math.inf
                if best_state is None or signed > best + budget.min_delta:
                    best, best_state, stale = signed, copy.deepcopy(model.state_dict()), 0
                    report.best_epoch, report.best_score = epoch, score
                else:
                    stale += 1
            report.history.append(entry)
            log.info("%s epoch %d: %s", label, epoch, {k: round(v, 5) for k, v in entry.items()})
            bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k != "epoch"})
            bar.update(1)
            if validate is not None and stale >= budget.patience:
                report.stopped_early = epoch < budget.max_epochs
                break
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return report


def minibatch_epoch(
    trainer: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    n_rows: int,
    batch_size: int,
    batch: Callable[[np.ndarray], Sequence[Any]],
    rng: np.random.Generator,
    ctx: distributed.DistContext | None = None,
    clip: tuple[Iterable[nn.Parameter], float] | None = None,
) -> float:
    """One pass over `n_rows` rows in a fresh random order; the mean loss per row.

    `batch(rows)` turns row indices into the arguments of `trainer` (a
    `distributed.LossModule`, DDP-wrapped under torchrun). Every rank draws the same
    permutation from the same `rng` and trains on its `local_slice` of each global batch,
    its loss scaled by `share_weight`; a rank left without rows (a short last batch) still
    joins the gradient all-reduce, with weight 0. `clip` = (parameters, max norm) clips the
    (all-reduced) gradient before each step.
    """
    ctx = ctx or distributed.DistContext()
    if n_rows == 0:
        return float("nan")
    if batch_size < 1:
        raise InvalidInput("batch_size", f"must be at least 1, got {batch_size}")
    clip_params = list(clip[0]) if clip is not None else []
    order = rng.permutation(n_rows)
    total = 0.0
    for start in range(0, n_rows, batch_size):
        rows = order[start : start + batch_size]
        mine = rows[distributed.local_slice(len(rows), ctx)]
        weight = distributed.share_weight(len(mine), len(rows), ctx)
        loss = trainer(*batch(mine if len(mine) else rows[:1]))
        optimizer.zero_grad()
        (loss * weight).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(clip_params, clip[1])
        optimizer.step()
        total += float(loss.detach()) * len(mine)
    return distributed.mean_across_ranks(total, ctx) * ctx.world_size / n_rows
