"""IMN-Net: interest-behaviour multiplicative network for next-item recommendation.

Wu, Zhang, Cui, Yang, "Interest-Behaviour Multiplicative Network for Resource-limited
Recommendation" (papers/004_26324abc0d85be08.txt). A user and an item carry recurrent states
that are updated on every interaction (the mutually-recursive RNNs of eqs. 1-2, as in JODIE);
a second, resource-limited user state moves only on purchases (eq. 6); at prediction time
both user states are projected to "now" with a learned time attention (eqs. 7-10) and fused
into a predicted item embedding (eq. 11) and a log-bilinear mutual-information score
(eqs. 14-21). Training minimises the joint loss of eq. 22.

Serving needs the model split into two graphs (see `export_graphs`):

- ``update``: one event per row -> the user's and the item's new states;
- ``score``: the user's stored state, time since its updates and its last item -> top-k item
  ids and fused scores over the item table (a shared input: per item ``[h_i, i_static]``).

State layout (what the service stores per user / item, float32):
``user_state = [h_u^g (D), h_u^l (D)]`` and ``item_state = h_i (D)``.

NOTE (readings and deviations, each tested or documented):
- sigma in eqs. 1, 2, 6 is the sigmoid, as the paper says (JODIE uses tanh + L2 norm).
- Eq. 1-2 use "v_{t-1}"; we feed the features of the interaction being applied (the event
  that causes the update), which is what JODIE does and the only causal reading online.
- Eqs. 7-10 say "the same projection" for both user states; we learn a separate linear
  layer W_t for each (the general and the resource-limited state age differently).
- Time deltas enter every layer as ``log1p(seconds) / time_scale`` (the paper does not say
  how Delta is scaled; JODIE standardises). ``time_scale`` is fitted on the training data and
  baked into the graphs, so serving passes raw seconds.
- Eq. 11/15 use ``h_i(t-1)`` and ``i_bar(t-1)`` of the user's previous item; like JODIE we read
  the previous item's *current* dynamic state from the item table (so serving needs no copy
  of it in the user state).
- Eqs. 16-17 put ``h_u^g(t+1)`` (the user's state after interacting with the candidate) into
  every candidate x. That needs one RNN step per candidate item per request (N x D x D
  flops), so we drop it: x_i = [h_i, i_bar_i]; the user enters through the context c_t. The
  positive uses the target item's state *before* the interaction, like the negatives, so
  training scores candidates exactly as inference does (the post-interaction state of
  eq. 16 is not known for candidates at inference time).
- N-1 negatives are drawn uniformly from the whole item set (Sec. 4.4, after [46]) once per
  t-batch and shared by its rows; a negative equal to the row's positive is masked out.
- Eq. 20 is called MSE; we use the mean squared error (as JODIE) and stop the gradient into
  the target i_bar_j: the compression embedding is learned, and an unstopped MSE can
  collapse all item embeddings to one point (zero loss, no ranking). i_bar still learns
  through the MI head and as an input of eqs. 6 and 11.
- Eq. 22's slow-drift terms are L2 norms of the state change, averaged over the batch.
- Eq. 23 writes ``alpha_m ||j_hat - j_bar|| + alpha_n f_1`` and takes the argmax; a distance
  must enter with a minus sign and f_1 = exp(.) is used as its logarithm (the logit), so the
  two terms are on comparable scales: ``score = -alpha_m ||j_hat - i_bar|| + alpha_n x^T W c``.
- Item index 0 is "unknown item" and user index 0 "unknown user" (never recommended; the
  unknown-user row is trained by user-id dropout so cold users get a sensible static vector).
- ``use_resource=False, use_mi=False`` gives the JODIE-equivalent baseline the issue asks for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Batch, SalecastModel, export_onnx

# Input and output names of the two graphs (the serving side uses the same strings).
UPDATE_INPUTS = (
    "user_state",
    "item_state",
    "user_index",
    "item_index",
    "dt_user",
    "dt_item",
    "dt_purchase",
    "features",
    "is_purchase",
)
UPDATE_OUTPUTS = ("new_user_state", "new_item_state")
SCORE_INPUTS = ("user_state", "user_index", "last_item", "dt_user", "dt_limited", "item_table")
SCORE_OUTPUTS = ("item_ids", "scores", "pred_embedding")


@dataclass
class IMNConfig:
    """Hyper-parameters; defaults are the paper's where it gives one."""

    num_users: int  # static-embedding rows incl. row 0 = unknown user
    num_items: int  # static-embedding rows incl. row 0 = unknown item
    embed_dim: int = 128  # Sec. 5.2: "dimensions of the dynamic embeddings ... to 128"
    feature_dim: int = 4  # v_t: one-hot action (browse/collect/cart/purchase), Sec. 3
    num_negatives: int = 128  # N of eq. 21; Sec. 5.5: best of {32..320} is 128 (N-1 negatives)
    lambda_m: float = 1.0  # eq. 22; Sec. 5.5 says tuned per data set, no value given
    lambda_n: float = 1.0  # eq. 22; idem
    lambda_u: float = 1.0  # eq. 22 slow drift; JODIE's default weight
    lambda_i: float = 1.0  # eq. 22 slow drift; JODIE's default weight
    alpha_m: float = 0.75  # eq. 23; Sec. 5.5 best on Tmall {0.75, 0.25}
    alpha_n: float = 0.25  # eq. 23; idem
    use_resource: bool = True  # resource-limited branch (eq. 6, 10); off = IMN-Net* / JODIE
    use_mi: bool = True  # mutual-information head (eqs. 14-21); off = IMN_MSE / JODIE
    time_scale: float = 1.0  # Delta feature = log1p(seconds) / time_scale (fitted on train)
    top_k: int = 100  # k max of the scoring graph (the route slices)
    topk_chunk: int = 0  # >0: two-stage TopK with chunks of this many items (PERF-NOTES.md)
    user_dropout: float = 0.1  # share of training rows whose static user id is set to 0

    def __post_init__(self) -> None:
        if self.num_users < 1 or self.num_items < 2:
            raise ValueError("need num_users >= 1 and num_items >= 2 (row 0 is 'unknown')")
        if self.embed_dim < 1 or self.feature_dim < 0:
            raise ValueError("embed_dim must be >= 1 and feature_dim >= 0")
        if self.num_negatives < 2:
            raise ValueError("num_negatives (N) must be >= 2: one positive and N-1 negatives")
        if min(self.lambda_m, self.lambda_n, self.lambda_u, self.lambda_i) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.alpha_m < 0 or self.alpha_n < 0:
            raise ValueError("alpha_m and alpha_n must be >= 0")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        if self.top_k < 1 or self.topk_chunk < 0:
            raise ValueError("top_k must be >= 1 and topk_chunk >= 0")
        if not 0.0 <= self.user_dropout < 1.0:
            raise ValueError("user_dropout must be in [0, 1)")

    @property
    def k(self) -> int:
        """Top-k actually returned: never more than the recommendable items (rows 1..N-1)."""
        return min(self.top_k, self.num_items - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IMNNet(SalecastModel):
    """Mutually-recursive user/item RNNs + resource-limited branch + MI head (see module doc)."""

    name = "imn"

    def __init__(self, config: IMNConfig) -> None:
        super().__init__()
        self.config = config
        d, f = config.embed_dim, config.feature_dim
        # Compression embeddings of the one-hot ids (Sec. 5.5: [N_user, 128] and [N_item, 128]).
        self.user_static = nn.Embedding(config.num_users, d)
        self.item_static = nn.Embedding(config.num_items, d)
        nn.init.normal_(self.user_static.weight, std=1.0 / math.sqrt(d))
        nn.init.normal_(self.item_static.weight, std=1.0 / math.sqrt(d))
        # Learned initial states (JODIE: one initial embedding shared by all users / items).
        self.init_user_g = nn.Parameter(torch.rand(d) * 0.1)
        self.init_user_l = nn.Parameter(torch.rand(d) * 0.1)
        self.init_item = nn.Parameter(torch.rand(d) * 0.1)
        # Eq. 1: W1^u h_u + W2^u h_i + W3^u Delta_u + W4^u v (one Linear over the concatenation).
        self.user_rnn = nn.Linear(d + d + 1 + f, d)
        # Eq. 2: W1^i h_i + W2^i h_u + W3^i Delta_i + W4^i v.
        self.item_rnn = nn.Linear(d + d + 1 + f, d)
        # Eq. 6: W1 h_l + W2 u^g(t) + W3 h_i(t) + W4 u_bar + W5 i_bar + W6 Delta_ip + W7 v_p.
        self.limited_rnn = nn.Linear(5 * d + 1 + f, d)
        # Eqs. 7 and 9: time-context vectors w^g, w^l.
        self.time_g = nn.Linear(1, d)
        self.time_l = nn.Linear(1, d)
        for layer in (self.time_g, self.time_l):
            nn.init.normal_(layer.weight, std=0.1)
            nn.init.zeros_(layer.bias)
        # Eq. 11: j_hat = W1 f(h^g, h^l) + W2 u_bar + W3 h_i(t-1) + W4 i_bar(t-1).
        self.predict_layer = nn.Linear(4 * d, d)
        # Eq. 14/19: log f_1(x, c) = x^T W c with x = [h_i, i_bar] (2D), c of eq. 15 (4D).
        self.bilinear = nn.Parameter(torch.randn(2 * d, 4 * d) / math.sqrt(4 * d))

    # ---- pieces shared by training, evaluation and both graphs -------------------------

    def time_feature(self, dt_seconds: torch.Tensor) -> torch.Tensor:
        """[B] seconds -> [B, 1] scaled log-delta (negative deltas clamp to 0)."""
        return (torch.log1p(dt_seconds.clamp(min=0.0)) / self.config.time_scale).unsqueeze(-1)

    def initial_user_state(self) -> torch.Tensor:
        """[2D] state of a user never seen: [h^g_0, h^l_0]."""
        return torch.cat([self.init_user_g, self.init_user_l])

    def initial_item_state(self) -> torch.Tensor:
        """[D] state of an item never seen."""
        return self.init_item

    def fused_user(
        self, user_state: torch.Tensor, dt_user: torch.Tensor, dt_limited: torch.Tensor
    ) -> torch.Tensor:
        """Eqs. 7-10 and f = h^g(t+Delta) + h^l(t+Delta): [B, 2D] -> [B, D]."""
        d = self.config.embed_dim
        h_g, h_l = user_state[:, :d], user_state[:, d:]
        proj_g = (1.0 + self.time_g(self.time_feature(dt_user))) * h_g  # eq. 8, [B, D]
        if not self.config.use_resource:
            return proj_g
        proj_l = (1.0 + self.time_l(self.time_feature(dt_limited))) * h_l  # eq. 10, [B, D]
        return proj_g + proj_l

    def context(
        self,
        user_state: torch.Tensor,
        user_index: torch.Tensor,
        last_dyn: torch.Tensor,
        last_static: torch.Tensor,
        dt_user: torch.Tensor,
        dt_limited: torch.Tensor,
    ) -> torch.Tensor:
        """Eq. 15: c_t = [f(h^l, h^g), u_bar, h_i(t-1), i_bar(t-1)] -> [B, 4D]."""
        fused = self.fused_user(user_state, dt_user, dt_limited)
        return torch.cat([fused, self.user_static(user_index), last_dyn, last_static], dim=-1)

    def predicted_embedding(self, ctx: torch.Tensor) -> torch.Tensor:
        """Eq. 11 (its four inputs are exactly c_t's four blocks): [B, 4D] -> [B, D]."""
        return self.predict_layer(ctx)

    def fused_scores(
        self, pred: torch.Tensor, ctx: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 23 over candidates x = [h_i, i_bar] ([M, 2D]) -> [B, M]."""
        d = self.config.embed_dim
        static = candidates[:, d:]  # [M, D]
        # ||j_hat - i_bar||_2 without materialising [B, M, D].
        sq = (
            (pred * pred).sum(-1, keepdim=True)
            - 2.0 * pred @ static.T
            + (static * static).sum(-1).unsqueeze(0)
        )
        score = -self.config.alpha_m * torch.sqrt(sq.clamp(min=1e-12))  # [B, M]
        if self.config.use_mi:
            query = ctx @ self.bilinear.T  # W c: [B, 2D]
            score = score + self.config.alpha_n * (query @ candidates.T)  # x^T W c
        return score

    def score_table(
        self,
        user_state: torch.Tensor,
        user_index: torch.Tensor,
        last_item: torch.Tensor,
        dt_user: torch.Tensor,
        dt_limited: torch.Tensor,
        item_table: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused scores of items 1..N-1 ([B, N-1]; column m is item m+1) and j_hat [B, D]."""
        d = self.config.embed_dim
        last = item_table.index_select(0, last_item)  # [B, 2D]
        ctx = self.context(user_state, user_index, last[:, :d], last[:, d:], dt_user, dt_limited)
        pred = self.predicted_embedding(ctx)
        return self.fused_scores(pred, ctx, item_table[1:]), pred

    def update(
        self,
        user_state: torch.Tensor,
        item_state: torch.Tensor,
        user_index: torch.Tensor,
        item_index: torch.Tensor,
        dt_user: torch.Tensor,
        dt_item: torch.Tensor,
        dt_purchase: torch.Tensor,
        features: torch.Tensor,
        is_purchase: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. 1, 2 and 6 for one interaction per row -> (user [B, 2D], item [B, D])."""
        d = self.config.embed_dim
        h_g, h_l = user_state[:, :d], user_state[:, d:]
        feats = features[:, : self.config.feature_dim]
        new_g = torch.sigmoid(
            self.user_rnn(torch.cat([h_g, item_state, self.time_feature(dt_user), feats], -1))
        )  # eq. 1, [B, D]
        new_i = torch.sigmoid(
            self.item_rnn(torch.cat([item_state, h_g, self.time_feature(dt_item), feats], -1))
        )  # eq. 2, [B, D]
        if self.config.use_resource:
            cand_l = torch.sigmoid(
                self.limited_rnn(
                    torch.cat(
                        [
                            h_l,
                            new_g,
                            new_i,
                            self.user_static(user_index),
                            self.item_static(item_index),
                            self.time_feature(dt_purchase),
                            feats,
                        ],
                        -1,
                    )
                )
            )  # eq. 6, [B, D]
            gate = is_purchase.unsqueeze(-1)  # only a purchase moves h^l (Sec. 4.3)
            new_l = gate * cand_l + (1.0 - gate) * h_l
        else:
            new_l = h_l
        return torch.cat([new_g, new_l], -1), new_i

    def item_table(self, item_states: torch.Tensor) -> torch.Tensor:
        """[N, D] dynamic states -> [N, 2D] scoring table ``[h_i, i_bar]``."""
        return torch.cat([item_states, self.item_static.weight], dim=-1)

    # ---- SalecastModel contract ---------------------------------------------------------

    def step(
        self, batch: Batch, neg_items: torch.Tensor, neg_states: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One t-batch: (loss, loss parts, new user states, new item states).

        Keys of `batch` ([B] unless said): user_state [B, 2D], item_state [B, D] (target
        item's state before the event), last_dyn / last_static [B, D] (user's previous item),
        user_index, item_index, dt_user, dt_item, dt_limited, dt_purchase, features [B, F],
        is_purchase. `neg_items` [N-1] ids and their current states `neg_states` [N-1, D].
        """
        cfg = self.config
        user_index = batch["user_index"]
        if self.training and cfg.user_dropout > 0:
            drop = torch.rand(user_index.shape, device=user_index.device) < cfg.user_dropout
            user_index = torch.where(drop, torch.zeros_like(user_index), user_index)
        ctx = self.context(
            batch["user_state"],
            user_index,
            batch["last_dyn"],
            batch["last_static"],
            batch["dt_user"],
            batch["dt_limited"],
        )  # [B, 4D]
        pred = self.predicted_embedding(ctx)  # [B, D]
        target_static = self.item_static(batch["item_index"])  # [B, D]
        parts: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=pred.device)
        if cfg.lambda_m > 0:
            parts["mse"] = F.mse_loss(pred, target_static.detach())  # eq. 20
            loss = loss + cfg.lambda_m * parts["mse"]
        if cfg.use_mi and cfg.lambda_n > 0:
            query = ctx @ self.bilinear.T  # [B, 2D]
            pos = torch.cat([batch["item_state"], target_static], -1)  # [B, 2D]
            neg = torch.cat([neg_states, self.item_static(neg_items)], -1)  # [N-1, 2D]
            pos_logit = (query * pos).sum(-1, keepdim=True)  # [B, 1]
            neg_logit = query @ neg.T  # [B, N-1]
            same = neg_items.unsqueeze(0) == batch["item_index"].unsqueeze(1)
            neg_logit = neg_logit.masked_fill(same, float("-inf"))
            logits = torch.cat([pos_logit, neg_logit], -1)  # [B, N]
            parts["nce"] = -F.log_softmax(logits, dim=-1)[:, 0].mean()  # eq. 21
            loss = loss + cfg.lambda_n * parts["nce"]
        new_user, new_item = self.update(
            batch["user_state"],
            batch["item_state"],
            user_index,
            batch["item_index"],
            batch["dt_user"],
            batch["dt_item"],
            batch["dt_purchase"],
            batch["features"],
            batch["is_purchase"],
        )
        d = cfg.embed_dim
        drift_u = (new_user[:, :d] - batch["user_state"][:, :d]).pow(2).sum(-1)
        drift_i = (new_item - batch["item_state"]).pow(2).sum(-1)
        parts["drift"] = (
            cfg.lambda_u * torch.sqrt(drift_u + 1e-12).mean()
            + cfg.lambda_i * torch.sqrt(drift_i + 1e-12).mean()
        )  # eq. 22 slow-drift terms
        loss = loss + parts["drift"]
        return loss, parts, new_user, new_item

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        """Joint loss of eq. 22 for one t-batch; `batch` as in `step` plus neg_items/neg_states."""
        loss, _, _, _ = self.step(batch, batch["neg_items"], batch["neg_states"])
        return loss

    def predict(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        """Top-k ids, scores and j_hat, exactly as the ``score`` graph computes them."""
        return dict(
            zip(
                SCORE_OUTPUTS,
                ScoreGraph(self)(*(batch[name] for name in SCORE_INPUTS)),
                strict=True,
            )
        )

    def export_graphs(self, out_dir: Path) -> dict[str, Path]:
        """Write ``update.onnx`` and ``score.onnx`` (batch axis first; item_table shared)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        d, b = cfg.embed_dim, 2
        update_example = {
            "user_state": torch.rand(b, 2 * d),
            "item_state": torch.rand(b, d),
            "user_index": torch.zeros(b, dtype=torch.int64),
            "item_index": torch.ones(b, dtype=torch.int64),
            "dt_user": torch.ones(b),
            "dt_item": torch.ones(b),
            "dt_purchase": torch.ones(b),
            "features": torch.zeros(b, cfg.feature_dim),
            "is_purchase": torch.zeros(b),
        }
        score_example = {
            "user_state": torch.rand(b, 2 * d),
            "user_index": torch.zeros(b, dtype=torch.int64),
            "last_item": torch.zeros(b, dtype=torch.int64),
            "dt_user": torch.ones(b),
            "dt_limited": torch.ones(b),
            "item_table": torch.rand(cfg.num_items, 2 * d),
        }
        was_training = self.training
        self.eval()
        try:
            paths = {
                "update": export_onnx(
                    UpdateGraph(self), update_example, UPDATE_OUTPUTS, out_dir / "update.onnx"
                ),
                "score": export_onnx(
                    ScoreGraph(self),
                    score_example,
                    SCORE_OUTPUTS,
                    out_dir / "score.onnx",
                    shared=("item_table",),
                ),
            }
        finally:
            self.train(was_training)
        return paths


class UpdateGraph(nn.Module):
    """Graph ``update``: event rows -> new user and item states (static tables baked in)."""

    def __init__(self, model: IMNNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        user_state: torch.Tensor,
        item_state: torch.Tensor,
        user_index: torch.Tensor,
        item_index: torch.Tensor,
        dt_user: torch.Tensor,
        dt_item: torch.Tensor,
        dt_purchase: torch.Tensor,
        features: torch.Tensor,
        is_purchase: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.update(
            user_state,
            item_state,
            user_index,
            item_index,
            dt_user,
            dt_item,
            dt_purchase,
            features,
            is_purchase,
        )


class ScoreGraph(nn.Module):
    """Graph ``score``: projected user context -> top-k over the shared item table.

    TopK runs inside the graph. With ``topk_chunk > 0`` it is two-stage (PERF-NOTES.md):
    top-k inside each chunk of the item axis, then top-k over the survivors; this returns the
    same ids as one TopK over the whole axis and is much faster on very wide tables.
    """

    def __init__(self, model: IMNNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        user_state: torch.Tensor,
        user_index: torch.Tensor,
        last_item: torch.Tensor,
        dt_user: torch.Tensor,
        dt_limited: torch.Tensor,
        item_table: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores, pred = self.model.score_table(
            user_state, user_index, last_item, dt_user, dt_limited, item_table
        )  # [B, M], [B, D]
        k = self.model.config.k
        chunk = self.model.config.topk_chunk
        m = self.model.config.num_items - 1
        if chunk > 0 and m > chunk and k <= chunk:
            n_chunks = -(-m // chunk)
            pad = n_chunks * chunk - m
            if pad:
                filler = torch.full((1, pad), float("-inf")).expand(scores.shape[0], pad)
                scores = torch.cat([scores, filler], dim=1)
            blocks = scores.reshape(-1, n_chunks, chunk)  # [B, C, chunk]
            top_vals, top_idx = torch.topk(blocks, k, dim=2)  # [B, C, k]
            offsets = (torch.arange(n_chunks, dtype=torch.int64) * chunk).view(1, -1, 1)
            flat_idx = (top_idx + offsets).reshape(-1, n_chunks * k)  # [B, C*k]
            values, pos = torch.topk(top_vals.reshape(-1, n_chunks * k), k, dim=1)
            ids = torch.gather(flat_idx, 1, pos)
        else:
            values, ids = torch.topk(scores, k, dim=1)  # [B, k]
        return ids + 1, values, pred  # column m is item m + 1
