"""SASRec (Kang & McAuley 2018): causal self-attention over the user's last L items.

The IMN paper's strongest baseline. It is a baseline of `salecast evaluate imn` and runs
through the same streaming protocol as GRU4Rec and IMN (`training.baselines.nextitem`): the
only per-user state is the list of the user's last `max_len` items, so replaying a split
is appending to those lists, and ranking an event is one forward pass over the list the
user had before that event.

NOTE: the loss is full-softmax cross-entropy over every item at every position (the loss
GRU4Rec is trained with here), not the paper's binary cross-entropy with one sampled
negative per position (Sec. III-E). With the epoch budgets of these runs (3-20 epochs) the
full softmax is the stronger reading for a baseline, and it keeps SASRec and GRU4Rec on
one loss; the output scores still come from the shared item embedding (Sec. III-D).
NOTE: a user's training sequence longer than `max_len` + 1 is cut into windows of
`max_len` + 1 items stepping back from the latest one (`sequences`), so every training
event is a target once per epoch; the paper trains on each user's latest `max_len` only.
The first positions of an earlier window see a shorter context than they had in the log.
NOTE: a user with no history yet is ranked by popularity (train + validation counts, then
every test event before it), the service's fallback, as IMN and JODIE are in
`training.jobs.imn.score_test`.
NOTE: padding (id 0, also the id of an item unseen in training) is an all-zero embedding
without position, re-zeroed after each block as the reference code's timeline mask does;
a position attends to the real items at or before it (causal, padded keys masked) and
always to itself, so an all-padding row stays finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.baselines.nextitem import RankingMetrics, masked_cross_entropy_step
from training.features.imn import EventArrays, sequential_chunks


@dataclass(frozen=True)
class SASRecConfig:
    num_items: int
    dim: int = 50  # Sec. IV-C: d = 50 (the jobs pass their shared --dim instead)
    max_len: int = 50  # Sec. IV-C: n = 50 for the sparse data sets (200 for ML-1M)
    blocks: int = 2  # Sec. IV-C: b = 2 self-attention blocks
    heads: int = 1  # Sec. III-B: a single head (multi-head did not help, Sec. IV-F)
    dropout: float = 0.5  # Sec. IV-C: 0.5 on the sparse data sets (0.2 on ML-1M)


class _Block(nn.Module):
    """Sec. III-B/C with the residual, layer-norm, dropout of Sec. III-C: x + Drop(g(LN(x)))."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(cfg.dim)
        self.attn = nn.MultiheadAttention(cfg.dim, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(  # eq. 4: ReLU(S W1 + b1) W2 + b2
            nn.Linear(cfg.dim, cfg.dim),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dim, cfg.dim),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        q = self.norm_attn(x)
        attended, _ = self.attn(q, q, q, attn_mask=blocked, need_weights=False)
        x = (x + self.drop(attended)) * keep
        x = x + self.drop(self.ffn(self.norm_ffn(x)))
        return x * keep


class SASRec(nn.Module):
    """Item + learned position embeddings -> causal blocks -> dot with the item table."""

    name = "sasrec"

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.items = nn.Embedding(cfg.num_items, cfg.dim, padding_idx=0)  # shared (Sec. III-D)
        self.positions = nn.Embedding(cfg.max_len, cfg.dim)  # Sec. III-A: learned P
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.dim)
        # the reference code's Xavier initialisation: with N(0, 1) item vectors the first
        # logits have a spread of ~sqrt(d) and the softmax starts saturated
        nn.init.xavier_normal_(self.items.weight)
        nn.init.xavier_normal_(self.positions.weight)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] item ids (left-padded with 0) -> [B, L, d]; position t sees items <= t."""
        length = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1).to(torch.float32)
        pos = torch.arange(length, device=seq.device) + (self.cfg.max_len - length)
        x = self.items(seq) * self.cfg.dim**0.5 + self.positions(pos).unsqueeze(0)
        x = self.drop(x) * keep
        later = torch.ones(length, length, dtype=torch.bool, device=seq.device).triu(1)
        self_only = torch.eye(length, dtype=torch.bool, device=seq.device)
        padded_key = (seq == 0).unsqueeze(1) & ~self_only  # [B, L(query), L(key)]
        blocked = (later | padded_key).repeat_interleave(self.cfg.heads, dim=0)
        for block in self.blocks:
            x = block(x, blocked, keep)
        return self.norm(x) * keep

    def scores(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, N]: the last position's output against every item (eq. 7)."""
        return self.hidden(seq)[:, -1] @ self.items.weight.T

    def sequences(self, stream: EventArrays) -> np.ndarray:
        """[W, max_len + 1] training windows, left-padded: each user's items cut into
        windows of max_len + 1 stepping back from the latest, sharing one item at a cut, so
        every event after a user's first is a target exactly once."""
        width = self.cfg.max_len + 1
        order = np.argsort(stream.user_slot, kind="stable")
        bounds = np.flatnonzero(np.diff(stream.user_slot[order])) + 1
        windows: list[np.ndarray] = []
        for seq in np.split(stream.item_index[order], bounds):
            end = len(seq)
            while end >= 2:
                piece = seq[max(0, end - width) : end]
                row = np.zeros(width, np.int64)
                row[width - len(piece) :] = piece
                windows.append(row)
                end -= width - 1
        return np.stack(windows) if windows else np.zeros((0, width), np.int64)

    def train_epoch(
        self,
        windows: np.ndarray,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        batch_size: int = 128,  # Sec. IV-C: batch size 128
    ) -> float:
        """One pass over the windows in a fresh order, mean cross-entropy per target."""
        self.train()
        data = torch.from_numpy(windows)
        perm = torch.randperm(len(data), generator=gen)
        total, count = 0.0, 0
        for b in range(0, len(perm), batch_size):
            x = data[perm[b : b + batch_size]]
            inputs, target = x[:, :-1], x[:, 1:]
            mask = (inputs > 0) & (target > 0)
            if not mask.any():
                continue
            logits = self.hidden(inputs)[mask] @ self.items.weight.T
            loss_sum, n = masked_cross_entropy_step(opt, logits, target[mask])
            total += loss_sum
            count += n
        return total / max(count, 1)

    def new_history(self, num_user_slots: int) -> np.ndarray:
        """[slots, max_len] every user's last items, right-aligned, 0 = none yet."""
        return np.zeros((num_user_slots, self.cfg.max_len), np.int64)

    @torch.no_grad()
    def replay(
        self,
        stream: EventArrays,
        history: np.ndarray,
        metrics: RankingMetrics | None = None,
        popularity: np.ndarray | None = None,
    ) -> None:
        """Walk the stream appending each event to its user's history in place; when
        `metrics` is given, rank every event first from the history before it (a user with
        none by `popularity`, [N] counts, when given; it grows by each replayed event, in
        place, as `training.jobs.imn.replay` grows IMN's)."""
        self.eval()
        for chunk in sequential_chunks(stream.user_slot, stream.item_index):
            rows = stream.rows(chunk)
            slots = rows.user_slot
            if metrics is not None:
                seq = torch.from_numpy(history[slots])
                scores = self.scores(seq)[:, 1:]
                empty = torch.from_numpy(~history[slots].any(axis=1))
                if popularity is not None and bool(empty.any()):
                    fallback = torch.from_numpy(popularity[1:]).to(scores.dtype)
                    scores = torch.where(empty.unsqueeze(1), fallback.unsqueeze(0), scores)
                metrics.add(scores, torch.from_numpy(rows.item_index), slots)
            history[slots, :-1] = history[slots, 1:]
            history[slots, -1] = rows.item_index
            if popularity is not None:  # counts so far, as IMN's replay and the service keep them
                np.add.at(popularity, rows.item_index, 1.0)
