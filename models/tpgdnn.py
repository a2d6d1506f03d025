"""TPG-DNN: user intent from total-probability GRU-gated multi-task learning.

Jiang, Wang, Fang, Zhao, "TPG-DNN: A Method for User Intent Prediction Based on Total
Probability Formula and GRU Loss with Multi-task Learning" (Alibaba, 2020).

Per user: P(browse), P(collect), P(cart), P(purchase) in the next window and the expected
order volume. The architecture follows sec. 3 and Fig. 1:

- field embeddings of binned/one-hot features (sec. 3.1), `E = [e_1..e_M]`, `[B, M, D]`;
- CIN over E (eq. 2), each layer sum-pooled over D (as in xDeepFM, ref. [11]);
- a residual deep part with PReLU (Fig. 4, eq. 3) over the flattened embeddings;
- a linear part `Y = WX + b` on the one-hot input (sec. 3.2);
- two independent transformers (eqs. 4-6) over the short- and long-term behaviour series,
  each max-pooled over time (sec. 3.2);
- a fully connected net over the gathered vectors, summed with the linear part (sec. 3.3);
- one tower and head per behaviour plus an order-volume regression (eqs. 7-11);
- the total-probability fusion of P(purchase) through GRU-style gates (eqs. 12-17);
- uncertainty weighting of the task losses with learned log-variances (eq. 22).

NOTE (readings of loose notation, each covered by a test or an ablation switch):
- Eqs. 13-14: eq. 13 mixes `H_Browse` with `H_Purchase`, yet eq. 14 defines a candidate
  `H'_Purchase` that eq. 13 never uses. We read it as a GRU cell (update gate alpha, reset
  gate gamma): `H_{P-B} = alpha * H_B + (1 - alpha) * H'_P` with
  `H'_P = tanh(W [gamma * H_B, H_P])`. The gates are vectors (one per hidden unit), as in a GRU.
- Eq. 15: `sigma(H_{Purchase-Browse})` applies a sigmoid to a vector; we project the vector
  to a scalar logit with a learned linear layer per condition before the sigmoid.
- Eq. 12: the sum of three products of probabilities can exceed 1, and the text says the
  three behaviours' influences "can be considered as equal". We use convex weights
  `pi = softmax(w)` initialised equal (w = 0) and learned:
  `P(purchase) = sum_c pi_c * P(c) * P(purchase | c)`, which is a valid probability and
  equals the paper's equal-influence formula (up to the constant 1/3) at initialisation.
- Which H's feed the gates: the paper's Fig. 6 takes the task-specific tower outputs; we
  use each task tower's last hidden layer (`H_Browse`, ..., `H_Purchase`).
- Eq. 22 writes three classification tasks (BBR, PBR, BBPBR) while sec. 3.3 defines four
  (BBR, CBR, CAR, PBR); we weight all four classification losses and the regression loss,
  with `s_i = log sigma_i^2` learned:
  `L = sum_cls exp(-s_i) L_i + 0.5 exp(-s_ov) L_ov + 0.5 sum_i s_i` (the last term is
  `log(sigma_1 ... sigma_5)`). Classification losses are binary cross-entropy (the
  two-class softmax of eqs. 20-21).
- Sec. 3.3 gathers "the feature cross information vector and the feature time-sequential
  information vector" into the FC net; the residual deep part's output goes in as well
  (Fig. 1 shows it feeding the same DNN).
- Eq. 12's conditionals P(purchase | c) are learned only through the fused P(purchase) in
  a plain reading, which lets a gate drift anywhere its product with P(c) allows. The
  paper intends them as conditional probabilities, so each is also supervised by binary
  cross-entropy against the purchase label on the rows where behaviour c occurred (a row
  without c adds 0; averaged over the batch, so data-parallel shards average to it), the
  mean over the three conditions added to the purchase loss L_PBR before eq. 22's
  weighting (`supervise_conditionals`; ablation: off).
- Order volume (eq. 11) is the number of purchases in the label window; the head ends in a
  softplus so it cannot go negative. MSE as in eq. 11.
- Hyper-parameters (embedding size, CIN widths, layer sizes, heads) are not given in the
  paper; the defaults below are small values suited to the public samples and are marked
  as our choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Batch, SalecastModel, export_onnx

TASKS: tuple[str, ...] = ("browse", "collect", "cart", "purchase")
CONDITIONS: tuple[str, ...] = ("browse", "collect", "cart")  # eq. 12's conditioning behaviours
OUTPUTS: list[str] = ["p_browse", "p_collect", "p_cart", "p_purchase", "order_volume"]
_EPS = 1e-6


@dataclass
class TPGDNNConfig:
    field_vocabs: Sequence[int] = field(default_factory=lambda: [12] * 4)  # sec. 3.1 fields
    n_actions: int = 4  # d in sec. 3.2: behaviours per time step
    short_len: int = 7  # t in sec. 3.2 (recorded days)
    long_len: int = 8  # T in sec. 3.2 (periods)
    embed_dim: int = 8  # n_i in sec. 3.1 (not given; our choice, same for every field)
    cin_layers: Sequence[int] = (16, 16)  # H_k of eq. 2 (not given; our choice)
    res_width: int = 64  # residual deep part width (Fig. 4; not given)
    res_blocks: int = 2  # residual blocks (Fig. 4; not given)
    d_model: int = 16  # transformer width (eqs. 4-6; not given)
    n_heads: int = 2  # multi-head attention heads (eq. 5; not given)
    n_layers: int = 1  # transformer layers per series (Fig. 5 shows one block)
    dnn_hidden: int = 64  # the FC net of sec. 3.3 (not given)
    tower_hidden: int = 16  # task towers H_Browse ... (Fig. 6; not given)
    dropout: float = 0.1  # not given; light regularisation for small samples
    use_fusion: bool = True  # eqs. 12-17 (ablation: off = independent purchase head)
    supervise_conditionals: bool = True  # P(purchase | c) on rows with c (see NOTE)
    use_uncertainty: bool = True  # eq. 22 (ablation: off = plain sum of the losses)

    def __post_init__(self) -> None:
        self.field_vocabs = [int(v) for v in self.field_vocabs]
        self.cin_layers = [int(h) for h in self.cin_layers]
        if not self.field_vocabs or min(self.field_vocabs) < 1:
            raise ValueError("field_vocabs must be a non-empty list of sizes >= 1")
        for name in ("n_actions", "short_len", "long_len", "embed_dim", "res_width", "d_model"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        if not self.cin_layers or min(self.cin_layers) < 1:
            raise ValueError("cin_layers must be non-empty and positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")


class CIN(nn.Module):
    """Compressed interaction network, eq. 2: vector-wise crosses of X^{k-1} with X^0."""

    def __init__(self, n_fields: int, layers: Sequence[int]) -> None:
        super().__init__()
        sizes = [n_fields, *layers]
        # W^{k,h}_{i,j} as a [H_k, H_{k-1} * m] matrix (a 1x1 convolution in xDeepFM)
        self.weights = nn.ModuleList(
            nn.Linear(sizes[k] * n_fields, sizes[k + 1], bias=False) for k in range(len(layers))
        )
        self.out_dim = sum(layers)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        b, _, d = x0.shape  # [B, M, D]
        xk = x0
        pooled = []
        for w in self.weights:
            z = xk.unsqueeze(2) * x0.unsqueeze(1)  # [B, H_{k-1}, M, D] Hadamard products
            z = z.reshape(b, -1, d).transpose(1, 2)  # [B, D, H_{k-1} * M]
            xk = w(z).transpose(1, 2)  # [B, H_k, D]
            pooled.append(xk.sum(2))  # [B, H_k] sum pooling over the embedding axis
        return torch.cat(pooled, dim=1)  # [B, sum H_k]


class ResidualBlock(nn.Module):
    """X^{l+1} = PReLU(f(X^l) + X^l) with f = Linear-PReLU-Linear (Fig. 4, eq. 3)."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.Linear(width, width), nn.PReLU(), nn.Dropout(dropout), nn.Linear(width, width)
        )
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.f(x) + x)


class TransformerBlock(nn.Module):
    """One post-norm transformer encoder block (Fig. 5) with explicit eqs. 4-6.

    Written out rather than `nn.TransformerEncoderLayer` because the latter's inference fast
    path (`_transformer_encoder_layer_fwd`) has no ONNX export.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.h = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # W^Q, W^K, W^V of eq. 6, all heads
        self.proj = nn.Linear(d_model, d_model)  # W of eq. 5
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(2 * d_model, d_model),
        )  # fmt: skip
        self.norm2 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape  # [B, L, d_model]
        dk = d // self.h
        q, k, v = self.qkv(x).reshape(b, length, 3, self.h, dk).permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.softmax(q @ k.transpose(-1, -2) / dk**0.5, dim=-1)  # eq. 4, [B, h, L, L]
        heads = (att @ v).transpose(1, 2).reshape(b, length, d)  # Connect(head_1..head_h)
        x = self.norm1(x + self.drop(self.proj(heads)))  # eq. 5 + residual
        return self.norm2(x + self.drop(self.ff(x)))


class SeriesTransformer(nn.Module):
    """Self-attention over one behaviour series (Q = K = V, sec. 3.2), max-pooled over time."""

    def __init__(self, n_actions: int, length: int, cfg: TPGDNNConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(n_actions, cfg.d_model)
        self.pos = nn.Parameter(torch.zeros(1, length, cfg.d_model))  # learned positions
        self.blocks = nn.Sequential(
            *(TransformerBlock(cfg.d_model, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        )

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.inp(series) + self.pos)  # [B, L, d_model]
        return h.max(dim=1).values  # [B, d_model] max pooling (sec. 3.2)


class GRUGate(nn.Module):
    """P(purchase | condition) through the gates of eqs. 13-15."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.alpha = nn.Linear(2 * hidden, hidden)  # W_alpha, eq. 13
        self.gamma = nn.Linear(2 * hidden, hidden)  # W_gamma, eq. 14
        self.cand = nn.Linear(2 * hidden, hidden)  # W, eq. 14
        self.out = nn.Linear(hidden, 1)  # eq. 15's projection to a logit (see NOTE)

    def forward(self, h_cond: torch.Tensor, h_purchase: torch.Tensor) -> torch.Tensor:
        both = torch.cat([h_cond, h_purchase], dim=1)  # [B, 2H]
        alpha = torch.sigmoid(self.alpha(both))  # [B, H]
        gamma = torch.sigmoid(self.gamma(both))  # [B, H]
        cand = torch.tanh(self.cand(torch.cat([gamma * h_cond, h_purchase], dim=1)))  # H'_P
        mixed = alpha * h_cond + (1.0 - alpha) * cand  # H_{Purchase-cond}, eq. 13
        return torch.sigmoid(self.out(mixed)).squeeze(1)  # [B] eqs. 15-17


class TPGDNN(SalecastModel):
    """TPG-DNN over (fields [B, M] int64, short [B, t, d], long [B, T, d])."""

    name = "intent"

    def __init__(self, config: TPGDNNConfig) -> None:
        super().__init__()
        self.config = cfg = config
        vocabs = list(cfg.field_vocabs)
        m = len(vocabs)
        offsets = torch.tensor([0, *torch.tensor(vocabs).cumsum(0)[:-1].tolist()], dtype=torch.long)
        self.offsets: torch.Tensor
        self.register_buffer("offsets", offsets, persistent=False)
        total = int(sum(vocabs))
        self.embedding = nn.Embedding(total, cfg.embed_dim)  # E, sec. 3.1
        self.linear = nn.Embedding(total, cfg.dnn_hidden)  # WX on the one-hot input
        self.linear_bias = nn.Parameter(torch.zeros(cfg.dnn_hidden))  # b
        nn.init.normal_(self.embedding.weight, std=0.05)
        nn.init.zeros_(self.linear.weight)

        self.cin = CIN(m, cfg.cin_layers)
        self.res_in = nn.Sequential(nn.Linear(m * cfg.embed_dim, cfg.res_width), nn.PReLU())
        self.res = nn.Sequential(
            *(ResidualBlock(cfg.res_width, cfg.dropout) for _ in range(cfg.res_blocks))
        )
        self.short_tf = SeriesTransformer(cfg.n_actions, cfg.short_len, cfg)
        self.long_tf = SeriesTransformer(cfg.n_actions, cfg.long_len, cfg)
        gathered = self.cin.out_dim + cfg.res_width + 2 * cfg.d_model
        self.dnn = nn.Sequential(
            nn.Linear(gathered, cfg.dnn_hidden), nn.PReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dnn_hidden, cfg.dnn_hidden),
        )  # fmt: skip
        self.act = nn.PReLU()
        heads = [*TASKS, "order_volume"]
        self.towers = nn.ModuleDict(
            {
                t: nn.Sequential(nn.Linear(cfg.dnn_hidden, cfg.tower_hidden), nn.PReLU())
                for t in heads
            }
        )
        self.heads = nn.ModuleDict({t: nn.Linear(cfg.tower_hidden, 1) for t in heads})
        self.gates = nn.ModuleDict({c: GRUGate(cfg.tower_hidden) for c in CONDITIONS})
        self.mix_logits = nn.Parameter(torch.zeros(len(CONDITIONS)))  # pi of eq. 12 (NOTE)
        self.log_vars = nn.Parameter(torch.zeros(len(heads)))  # s_i = log sigma_i^2, eq. 22

    # ---- forward --------------------------------------------------------------------------
    def outputs(
        self, fields: torch.Tensor, short: torch.Tensor, long: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """(P of each behaviour with the fused P(purchase), P(purchase | c) per condition
        (empty without fusion), order volume), every tensor [B]."""
        idx = fields + self.offsets  # [B, M]
        emb = self.embedding(idx)  # [B, M, D]
        b = emb.shape[0]
        cross = self.cin(emb)  # [B, sum H_k]
        deep = self.res(self.res_in(emb.reshape(b, -1)))  # [B, res_width]
        seq = torch.cat([self.short_tf(short), self.long_tf(long)], dim=1)  # [B, 2 d_model]
        lin = self.linear(idx).sum(1) + self.linear_bias  # [B, H]
        h = self.act(self.dnn(torch.cat([cross, deep, seq], dim=1)) + lin)  # [B, H]

        hidden = {t: tower(h) for t, tower in self.towers.items()}  # each [B, tower_hidden]
        probs = {t: torch.sigmoid(self.heads[t](hidden[t]).squeeze(1)) for t in TASKS}  # [B]
        conditionals: dict[str, torch.Tensor] = {}
        if self.config.use_fusion:
            pi = torch.softmax(self.mix_logits, dim=0)  # [3]
            p_purchase = torch.zeros_like(probs["purchase"])
            for k, c in enumerate(CONDITIONS):  # eq. 12
                conditionals[c] = self.gates[c](hidden[c], hidden["purchase"])
                p_purchase = p_purchase + pi[k] * probs[c] * conditionals[c]
            probs["purchase"] = p_purchase
        volume = F.softplus(self.heads["order_volume"](hidden["order_volume"]).squeeze(1))
        return probs, conditionals, volume

    def forward(
        self, fields: torch.Tensor, short: torch.Tensor, long: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        probs, _, volume = self.outputs(fields, short, long)
        return probs["browse"], probs["collect"], probs["cart"], probs["purchase"], volume

    def predict(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        outs = self(batch["fields"], batch["short"], batch["long"])
        return dict(zip(OUTPUTS, outs, strict=True))

    def task_losses(self, batch: Batch) -> torch.Tensor:
        """The five unweighted losses [L_BBR, L_CBR, L_CAR, L_PBR, L_OV] (eqs. 7-11); L_PBR
        includes the conditionals' supervision (see NOTE) when it is on."""
        probs, conditionals, volume = self.outputs(batch["fields"], batch["short"], batch["long"])
        labels = batch["labels"].float()  # [B, 4] in TASKS order, 0/1
        cls = [
            F.binary_cross_entropy(probs[t].clamp(_EPS, 1 - _EPS), labels[:, k])
            for k, t in enumerate(TASKS)
        ]
        if self.config.supervise_conditionals and conditionals:
            bought = labels[:, TASKS.index("purchase")]
            # Mean over the whole batch with 0 for rows without c (not over c's rows alone):
            # the term stays a per-row average, so data-parallel shards average to it.
            terms = [
                (
                    F.binary_cross_entropy(p.clamp(_EPS, 1 - _EPS), bought, reduction="none")
                    * labels[:, TASKS.index(c)]
                ).mean()
                for c, p in conditionals.items()
            ]
            cls[TASKS.index("purchase")] = cls[TASKS.index("purchase")] + torch.stack(terms).mean()
        mse = F.mse_loss(volume, batch["order_volume"].float())
        return torch.stack([*cls, mse])

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        losses = self.task_losses(batch)  # [5]
        if not self.config.use_uncertainty:
            return losses.sum()
        s = self.log_vars  # [5], log sigma^2
        scale = torch.cat([torch.ones(4, device=s.device), torch.full((1,), 0.5, device=s.device)])
        # eq. 22: sum 1/sigma^2 L_i + 1/(2 sigma_4^2) L_4 + log(prod sigma); log sigma = s / 2
        return (scale * torch.exp(-s) * losses).sum() + 0.5 * s.sum()

    # ---- export ---------------------------------------------------------------------------
    def example_inputs(self, batch: int = 2) -> dict[str, torch.Tensor]:
        cfg = self.config
        vocab = torch.tensor(cfg.field_vocabs)
        fields = (torch.rand(batch, len(cfg.field_vocabs)) * vocab).long()
        return {
            "fields": fields,
            "short": torch.rand(batch, cfg.short_len, cfg.n_actions),
            "long": torch.rand(batch, cfg.long_len, cfg.n_actions),
        }

    def export_graphs(self, out_dir: Path) -> dict[str, Path]:
        """One graph, `score`: (fields, short, long) -> the four probabilities and the volume."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        was_training = self.training
        path = export_onnx(self, self.example_inputs(), OUTPUTS, out_dir / "score.onnx")
        self.train(was_training)
        return {"score": path}
