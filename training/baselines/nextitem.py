"""Next-item baselines and the ranking metrics they share with IMN-Net.

All methods are evaluated by the same streaming protocol (`training.jobs.imn`): the event
stream is cut into contiguous chunks in which no user or item repeats; every event of a chunk
is ranked against the full item set from what the method knew before the chunk, then the
chunk is applied. Counting baselines keep learning online (counts grow with the stream), the
GRU carries each user's hidden state forward, exactly as IMN carries its states, so no
method sees an event before it is asked to predict it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.features.imn import EventArrays, sequential_chunks


class RankingMetrics:
    """Recall@K, NDCG@K and MRR with one target per event, over items 1..N-1.

    Rank = 1 + #items scoring higher + #items scoring equal with a lower id (a deterministic
    tie-break, the order a stable top-k returns). A target outside the vocabulary (id 0)
    cannot be recommended by any method and counts as a miss.
    """

    def __init__(self, ks: Sequence[int] = (10, 20)) -> None:
        self.ks = tuple(ks)
        self.ranks: list[np.ndarray] = []
        self.units: list[np.ndarray] = []

    def add(
        self, scores: torch.Tensor, targets: torch.Tensor, units: np.ndarray | None = None
    ) -> None:
        """`scores` [B, N-1] (column m is item m+1); `targets` [B] item ids; `units` [B] the
        resampling unit of each event (its user slot) for the paired bootstrap."""
        known = targets > 0
        col = (targets - 1).clamp(min=0)
        target_score = scores.gather(1, col.unsqueeze(1))  # [B, 1]
        higher = (scores > target_score).sum(1)
        before = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0) < col.unsqueeze(1)
        ties = ((scores == target_score) & before).sum(1)
        rank = (1 + higher + ties).to(torch.float64)
        rank = torch.where(known, rank, torch.full_like(rank, math.inf))
        self.ranks.append(rank.cpu().numpy())
        self.units.append(
            np.asarray(units) if units is not None else np.full(len(rank), -1, dtype=np.int64)
        )

    def all_ranks(self) -> np.ndarray:
        """1-based rank of every event's target so far, in the order added (inf: a miss)."""
        return np.concatenate(self.ranks) if self.ranks else np.zeros(0)

    def all_units(self) -> np.ndarray:
        return np.concatenate(self.units) if self.units else np.zeros(0, dtype=np.int64)

    def result(self) -> dict[str, float]:
        ranks = np.concatenate(self.ranks) if self.ranks else np.zeros(0)
        out: dict[str, float] = {}
        if not len(ranks):
            return out
        for k in self.ks:
            hit = ranks <= k
            out[f"recall@{k}"] = float(hit.mean())
            out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(1.0 + ranks), 0.0).mean())
        out["mrr"] = float((1.0 / ranks).mean())
        out["events"] = float(len(ranks))
        return out


def _chunks(stream: EventArrays) -> list[np.ndarray]:
    return sequential_chunks(stream.user_slot, stream.item_index)


class Popularity:
    """Items ranked by how often they were interacted with so far (updated online)."""

    name = "popularity"

    def __init__(self, num_items: int) -> None:
        self.counts = np.zeros(num_items, np.float64)

    def observe(self, stream: EventArrays) -> None:
        np.add.at(self.counts, stream.item_index, 1.0)

    def evaluate(self, stream: EventArrays, metrics: RankingMetrics) -> None:
        for chunk in _chunks(stream):
            rows = stream.rows(chunk)
            scores = torch.from_numpy(self.counts[1:]).unsqueeze(0).expand(len(chunk), -1)
            metrics.add(scores, torch.from_numpy(rows.item_index), rows.user_slot)
            self.observe(rows)


class LastItemCooccurrence:
    """Item-to-item: how often item j followed the user's last item i so far (online).

    Ties (most candidates never followed i) are broken by popularity, a fraction below one
    count so it never overrides a co-occurrence.
    """

    name = "cooccurrence"

    def __init__(self, num_items: int) -> None:
        self.num_items = num_items
        self.follows: defaultdict[int, defaultdict[int, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self.pop = Popularity(num_items)

    def observe(self, stream: EventArrays) -> None:
        for prev, item, dt in zip(stream.last_item, stream.item_index, stream.dt_user, strict=True):
            if prev > 0 and item > 0 and dt >= 0:
                self.follows[int(prev)][int(item)] += 1.0
        self.pop.observe(stream)

    def evaluate(self, stream: EventArrays, metrics: RankingMetrics) -> None:
        for chunk in _chunks(stream):
            rows = stream.rows(chunk)
            base = self.pop.counts[1:] / (self.pop.counts.max() + 1.0)
            scores = np.tile(base, (len(chunk), 1))
            for r, prev in enumerate(rows.last_item):
                for item, count in self.follows.get(int(prev), {}).items():
                    scores[r, item - 1] += count
            metrics.add(torch.from_numpy(scores), torch.from_numpy(rows.item_index), rows.user_slot)
            self.observe(rows)


def masked_cross_entropy_step(
    opt: torch.optim.Optimizer, logits: torch.Tensor, target: torch.Tensor
) -> tuple[float, int]:
    """One optimiser step on full-softmax cross-entropy over the real (unpadded) positions
    already selected; returns (loss x positions, positions) for the epoch's mean. GRU4Rec and
    SASRec train with the same step, so their losses stay comparable."""
    loss = F.cross_entropy(logits, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    n = int(target.numel())
    return float(loss.detach()) * n, n


class SessionGRU(nn.Module):
    """GRU4Rec-style (Hidasi et al. 2016): item embedding -> GRU -> scores over all items.

    Trained with full-softmax cross-entropy on each user's (session's) next item, one
    `train_epoch` at a time inside `training.loop.fit` (the job validates by replay between
    epochs, like IMN). A user's sequence is cut into windows of `window` steps
    (`sequences`), and each window starts from the hidden state the user's previous window
    ended with (truncated back-propagation through time): the state the replay carries
    across the whole stream is the state training learned to use.
    """

    name = "gru4rec"

    def __init__(self, num_items: int, dim: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_items, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, num_items)
        self.dim = dim

    @staticmethod
    def sequences(stream: EventArrays, window: int = 20) -> list[list[np.ndarray]]:
        """Per user, their items in order cut into windows of `window` + 1 (inputs and
        targets); window k+1's first input is window k's last target, so the windows chain."""
        users: list[list[np.ndarray]] = []
        order = np.argsort(stream.user_slot, kind="stable")
        slots = stream.user_slot[order]
        bounds = np.flatnonzero(np.diff(slots)) + 1
        for seq in np.split(stream.item_index[order], bounds):
            pieces = [seq[s : s + window + 1] for s in range(0, len(seq) - 1, window)]
            pieces = [p for p in pieces if len(p) >= 2]
            if pieces:
                users.append(pieces)
        return users

    def train_epoch(
        self,
        users: list[list[np.ndarray]],
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        batch_size: int = 128,
    ) -> float:
        """One pass over every window, mean loss per target.

        Round r trains every user's r-th window (users in a fresh order each epoch), from
        the detached hidden state their window r-1 ended with (zeros for the first).
        """
        self.train()
        perm = torch.randperm(len(users), generator=gen).tolist()
        carried = torch.zeros(len(users), self.dim)
        total, count = 0.0, 0
        for r in range(max(len(pieces) for pieces in users)):
            active = [u for u in perm if len(users[u]) > r]
            for b in range(0, len(active), batch_size):
                rows = active[b : b + batch_size]
                group = [users[u][r] for u in rows]
                length = max(len(g) for g in group)
                pad = np.zeros((len(group), length), np.int64)
                for i, g in enumerate(group):
                    pad[i, : len(g)] = g
                x = torch.from_numpy(pad)
                index = torch.tensor(rows)
                hidden, _ = self.gru(self.embed(x[:, :-1]), carried[index].unsqueeze(0))
                last = torch.tensor([len(g) - 2 for g in group])  # last real input step
                carried[index] = hidden[torch.arange(len(rows)), last].detach()
                target = x[:, 1:]
                mask = target > 0
                if not mask.any():
                    continue
                loss_sum, n = masked_cross_entropy_step(opt, self.out(hidden)[mask], target[mask])
                total += loss_sum
                count += n
        return total / max(count, 1)

    @torch.no_grad()
    def replay(
        self, stream: EventArrays, hidden: torch.Tensor, metrics: RankingMetrics | None = None
    ) -> None:
        """Walk the stream updating each user's hidden state in place; rank first if asked."""
        self.eval()
        for chunk in _chunks(stream):
            rows = stream.rows(chunk)
            slots = torch.from_numpy(rows.user_slot)
            h = hidden[slots]  # [B, H]
            if metrics is not None:
                metrics.add(self.out(h)[:, 1:], torch.from_numpy(rows.item_index), rows.user_slot)
            x = self.embed(torch.from_numpy(rows.item_index)).unsqueeze(1)  # [B, 1, H]
            _, h_new = self.gru(x, h.unsqueeze(0))
            hidden[slots] = h_new[0]
