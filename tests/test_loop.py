"""The one training loop: budget, early stopping with the best epoch restored, minibatches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from service.errors import InvalidInput
from training import distributed
from training.loop import Budget, fit, minibatch_epoch, seed_everything

torch.set_num_threads(1)


def _regression(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.mse_loss(self.layer(batch["x"]).squeeze(-1), batch["y"])


def test_best_epoch_is_restored_and_patience_stops() -> None:
    model = Linear()
    snapshots: list[torch.Tensor] = []
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.4, 0.9])  # best at epoch 2, then three worse

    def run_epoch(epoch: int) -> float:
        with torch.no_grad():
            model.layer.weight.add_(1.0)  # a visible change per epoch
        snapshots.append(model.layer.weight.detach().clone())
        return 1.0 / epoch

    report = fit(model, run_epoch, lambda: next(scores), Budget(max_epochs=10, patience=3),
                 label="t")  # fmt: skip
    assert (report.epochs_run, report.best_epoch, report.best_score) == (5, 2, 0.5)
    assert report.stopped_early and report.history[0]["loss"] == 1.0
    torch.testing.assert_close(model.layer.weight, snapshots[1])  # epoch 2's weights
    assert not model.training


def test_lower_is_better_and_no_validation() -> None:
    model = Linear()
    errors = iter([3.0, 1.0, 2.0])
    report = fit(model, lambda e: 0.0, lambda: next(errors), Budget(max_epochs=3, patience=5),
                 label="t", higher_is_better=False)  # fmt: skip
    assert report.best_epoch == 2 and not report.stopped_early
    plain = fit(Linear(), lambda e: 0.0, None, Budget(max_epochs=4), label="t")
    assert plain.epochs_run == 4 and plain.best_epoch == 0  # the last epoch is kept


def test_minibatch_epoch_learns_and_visits_every_row() -> None:
    x, y = _regression()
    model = Linear()
    rng = seed_everything(0)
    trainer = distributed.LossModule(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    seen: list[np.ndarray] = []

    def batch(rows: np.ndarray) -> tuple[dict[str, torch.Tensor]]:
        seen.append(rows)
        index = torch.from_numpy(rows)
        return ({"x": x[index], "y": y[index]},)

    losses = [minibatch_epoch(trainer, opt, len(x), 50, batch, rng) for _ in range(20)]
    assert losses[-1] < 0.1 * losses[0]
    first_epoch = np.concatenate(seen[: -(-len(x) // 50)])
    assert sorted(first_epoch.tolist()) == list(range(len(x)))  # a permutation per epoch


def test_budget_names_the_bad_field() -> None:
    with pytest.raises(InvalidInput) as err:
        Budget(max_epochs=0)
    assert err.value.field == "epochs"
    with pytest.raises(InvalidInput) as err:
        Budget(max_epochs=3, patience=0)
    assert err.value.field == "patience"
