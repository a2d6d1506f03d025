"""SASRec baseline: causal attention, its training windows, and learning a planted pattern."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from training.baselines.nextitem import Popularity, RankingMetrics
from training.baselines.sasrec import SASRec, SASRecConfig
from training.jobs import imn as job

torch.set_num_threads(1)


def _walks(n_users: int = 40, n_items: int = 30, per_user: int = 20) -> pd.DataFrame:
    """Each user walks item -> item + 1 (mod n) from a random start: a deterministic next item."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        item = int(rng.integers(n_items))
        ts = 1_700_000_000 + int(rng.integers(3600))
        for _ in range(per_user):
            rows.append((f"u{u}", f"i{item}", "browse", ts))
            item = (item + 1) % n_items
            ts += int(rng.integers(60, 600))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "action", "ts"])


def test_a_later_item_does_not_change_an_earlier_position() -> None:
    model = SASRec(SASRecConfig(num_items=20, dim=16, max_len=8)).eval()
    seq = torch.tensor([[0, 0, 3, 5, 7, 2, 9, 4]])
    changed = seq.clone()
    changed[0, 5:] = torch.tensor([11, 12, 13])
    a, b = model.hidden(seq), model.hidden(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)  # the later positions do see it


def test_padding_rows_stay_finite_and_zero() -> None:
    model = SASRec(SASRecConfig(num_items=20, dim=16, max_len=6)).eval()
    out = model.hidden(torch.zeros(2, 6, dtype=torch.long))
    assert torch.isfinite(out).all() and torch.count_nonzero(out) == 0


def test_windows_make_every_later_event_a_target_once() -> None:
    prep = job.prepare(_walks(n_users=3, per_user=23), "x" * 64, "test")
    model = SASRec(SASRecConfig(num_items=len(prep.vocab.items), dim=8, max_len=5))
    windows = model.sequences(prep.train)
    targets = int(((windows[:, :-1] > 0) & (windows[:, 1:] > 0)).sum())
    per_user = np.bincount(prep.train.user_slot)
    assert targets == int((per_user[per_user > 0] - 1).sum())
    assert windows.shape[1] == 6


def test_replay_appends_history_and_ranks_before_applying() -> None:
    prep = job.prepare(_walks(n_users=4, per_user=10), "x" * 64, "test")
    model = SASRec(SASRecConfig(num_items=len(prep.vocab.items), dim=8, max_len=4))
    history = model.new_history(prep.stream.num_user_slots)
    model.replay(prep.train, history)
    slot = int(prep.train.user_slot[-1])
    mine = prep.train.item_index[prep.train.user_slot == slot]
    assert history[slot].tolist() == mine[-4:].tolist()
    metrics = RankingMetrics()
    counts = job.popularity_counts(prep, with_val=False)
    before = counts.copy()
    model.replay(prep.test, history, metrics, popularity=counts)
    assert metrics.result()["events"] == len(prep.test)
    # the cold-start fallback counts every replayed event, as IMN's replay does
    grown = np.bincount(prep.test.item_index, minlength=len(counts))
    assert np.array_equal(counts - before, grown)


def test_learns_a_deterministic_next_item_well_above_popularity() -> None:
    prep = job.prepare(_walks(), "x" * 64, "test")
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=len(prep.vocab.items), dim=32, max_len=10, dropout=0.1))
    windows = model.sequences(prep.train)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        model.train_epoch(windows, opt, gen, batch_size=32)
    history = model.new_history(prep.stream.num_user_slots)
    model.replay(prep.train, history)
    model.replay(prep.val, history)
    ours = RankingMetrics(ks=(1, 5))
    model.replay(prep.test, history, ours)
    pop = Popularity(len(prep.vocab.items))
    baseline = RankingMetrics(ks=(1, 5))
    pop.observe(prep.train)
    pop.observe(prep.val)
    pop.evaluate(prep.test, baseline)
    assert ours.result()["recall@1"] > 0.8
    assert ours.result()["recall@5"] > baseline.result()["recall@5"] + 0.5
