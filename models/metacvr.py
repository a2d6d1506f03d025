"""MetaCVR: conversion rate that holds across promotion occasions (paper 002, Fig. 1).

The paper ("MetaCVR: Conversion Rate Prediction via Meta Learning in Small-Scale
Recommendation Scenarios") builds, in two stages:

1. a base CVR model (BASE) whose body, the Feature Representation Network (FRN), embeds
   user / item / interaction / context features and the behaviour sequence, runs multi-head
   self-attention over the sequence, user attention and target attention in parallel on top,
   a MainNet MLP and a BiasNet MLP, and a 3-layer ranking head (Eq. 3), trained on months of
   data D;
2. with the FRN frozen, a positive and a negative prototype per occasion (BP, DP, AP, NP) as
   the mean FRN representation of one support day's samples of that class (Eq. 4), a
   Distance Metric Network (DMN) scoring a sample against each prototype (Eq. 5-6), and an
   Ensemble Prediction Network (EPN, Eq. 7) combining the base score with the per-occasion
   scores `s_occ = d(F(x), p+_occ) - d(F(x), p-_occ)`; DMN and EPN are trained on recent data.

The extracted text lost most sub- and superscripts, so some equations are readings:

NOTE: F(x) = LayerNorm([h_m; h_b]). Eq. 3 reads "f(Norm([h_m; h_b]))"; the paper does not
say which normalisation. LayerNorm keeps prototype distances on a stable scale.
NOTE: BiasNet input is [e_c; e_u] (context with user): the text says "we concatenate e_? with
e_? ... different users in different context behave differently".
NOTE: SPDM (Eq. 5) is read as d(F, p) = cos(W F, W p) + b with a projection W and bias b per
(occasion, class) prototype. With one shared W and b the bias would cancel in s_occ, so the
"trainable bias scalar" only means something per prototype; cosine is still the W = I case.
NOTE: NNDM (Eq. 6) is printed as W[F(x); p] + b. A single linear layer on the concatenation
makes s_occ = W_p (p+ - p-), the same for every sample, so, as in Relation Networks (which
the paper cites as its model), it is read as a small MLP: Linear(2D, H) -> ReLU -> Linear(H, 1).
NOTE: Euclidean distance enters as the similarity -mean((F - p)^2) (ProtoNets' negative
squared distance, divided by D so its scale does not grow with the representation size).
NOTE: the base score s_b fed to the EPN is the ranking head's logit, not its sigmoid, and the
EPN starts at w = (1, 0, 0, 0, 0), b = 0, so stage 2 starts exactly at the base model and the
occasion scores must earn their weight on D_recent.
NOTE: the paper's prototype is one support day's mean. The job (`training.jobs.cvr`) averages
every day of the occasion in D_recent by default (a one-day BP or AP prototype rests on a
handful of buys); the paper's single day runs as an ablation row of every evaluation.
NOTE: attention is written out (not nn.MultiheadAttention) with a learned always-visible
"empty" token prepended to the sequence, so users without history need no special case and
the ONNX graph has no data-dependent control flow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from models.base import Batch, SalecastModel, export_onnx

N_OCCASIONS = 4  # BP, DP, AP, NP (Sec. I)
DISTANCES = ("spdm", "cosine", "euclidean", "nndm")  # Table III
N_ACTIONS = 5  # pad + browse / collect / cart / purchase


@dataclass
class MetaCVRConfig:
    #: Embedding table size per feature field (0 = unknown); from the feature builder.
    field_cards: list[int] = field(default_factory=list)
    #: Field positions per group (user, item, inter, ctx) and of the item / category ids,
    #: whose tables the behaviour sequence shares (Sec. III-C: "shared embedding layer").
    groups: dict[str, list[int]] = field(default_factory=dict)
    item_field: int = 1
    cat_field: int = 2
    id_fields: list[int] = field(default_factory=lambda: [0, 1, 2])
    id_dim: int = 32  # Sec. IV-A.4: item / category / brand ids embed in 32 dims
    other_dim: int = 8  # Sec. IV-A.4: 8 for the other categorical features
    d_model: int = 128  # Sec. IV-A.4: "hidden size of 128"
    heads: int = 8  # Sec. IV-A.4: "8-head attention structures"
    main_hidden: tuple[int, ...] = (256, 128)  # MainNet MLP (sizes not given; our choice)
    bias_hidden: tuple[int, ...] = (64, 32)  # BiasNet MLP (sizes not given; our choice)
    head_hidden: tuple[int, ...] = (64, 32)  # Eq. 3: 3-layer ranking MLP, ReLU, ReLU, Sigmoid
    distance: str = "spdm"  # Sec. III-E: SPDM is the proposed metric (Table III best)
    proj_dim: int = 64  # SPDM projection size (not given; our choice)
    nndm_hidden: int = 64  # NNDM hidden size (not given; our choice)
    dropout: float = 0.0
    seq_len: int = 20  # behaviour sequence length (graph input width; our choice)

    def __post_init__(self) -> None:
        if not self.field_cards or min(self.field_cards) < 1:
            raise ValueError("field_cards must list a positive size for every field")
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {self.distance!r}")
        if self.d_model % self.heads:
            raise ValueError("d_model must be divisible by heads")
        for name in ("user", "item", "inter", "ctx"):
            if name not in self.groups or not self.groups[name]:
                raise ValueError(f"groups must name the fields of group {name!r}")
        n = len(self.field_cards)
        used = [i for g in self.groups.values() for i in g]
        if any(i < 0 or i >= n for i in [*used, self.item_field, self.cat_field]):
            raise ValueError("group / id field positions must index field_cards")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    def dim_of(self, field_index: int) -> int:
        return self.id_dim if field_index in self.id_fields else self.other_dim

    def group_dim(self, name: str) -> int:
        return sum(self.dim_of(i) for i in self.groups[name])


def _mlp(sizes: Sequence[int], dropout: float = 0.0, last_act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if last_act or k < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention with an additive key mask."""

    def __init__(self, q_dim: int, kv_dim: int, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.q = nn.Linear(q_dim, d_model)
        self.k = nn.Linear(kv_dim, d_model)
        self.v = nn.Linear(kv_dim, d_model)
        self.o = nn.Linear(d_model, d_model)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask_add: torch.Tensor
    ) -> torch.Tensor:
        # query [B, Q, Dq], keys [B, T, Dk], mask_add [B, 1, 1, T] (0 or -1e9)
        b, q_len, _ = query.shape
        t = keys.shape[1]
        q = self.q(query).view(b, q_len, self.heads, self.d_head).transpose(1, 2)  # [B, H, Q, d]
        k = self.k(keys).view(b, t, self.heads, self.d_head).transpose(1, 2)  # [B, H, T, d]
        v = self.v(keys).view(b, t, self.heads, self.d_head).transpose(1, 2)  # [B, H, T, d]
        att = q @ k.transpose(-1, -2) / math.sqrt(self.d_head) + mask_add  # [B, H, Q, T]
        out = torch.softmax(att, dim=-1) @ v  # [B, H, Q, d]
        return self.o(out.transpose(1, 2).reshape(b, q_len, self.heads * self.d_head))


class CvrEmbeddings(nn.Module):
    """Shared embedding layer: one table per field; the sequence reuses item/category tables."""

    def __init__(self, cfg: MetaCVRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tables = nn.ModuleList(
            nn.Embedding(card, cfg.dim_of(i)) for i, card in enumerate(cfg.field_cards)
        )
        self.action = nn.Embedding(N_ACTIONS, cfg.other_dim)

    def group(self, fields: torch.Tensor, name: str) -> torch.Tensor:
        # fields [B, F] -> [B, group_dim]
        return torch.cat([self.tables[i](fields[:, i]) for i in self.cfg.groups[name]], dim=-1)

    def sequence(
        self, seq_items: torch.Tensor, seq_cats: torch.Tensor, seq_actions: torch.Tensor
    ) -> torch.Tensor:
        # [B, T] x3 -> [B, T, 2 * id_dim + other_dim]
        return torch.cat(
            [
                self.tables[self.cfg.item_field](seq_items),
                self.tables[self.cfg.cat_field](seq_cats),
                self.action(seq_actions),
            ],
            dim=-1,
        )


class BaseCVR(SalecastModel):
    """BASE: FRN + 3-layer ranking head (paper Sec. III-C, Eq. 3)."""

    name = "cvr"

    def __init__(self, cfg: MetaCVRConfig, embeddings: CvrEmbeddings | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = embeddings if embeddings is not None else CvrEmbeddings(cfg)
        d = cfg.d_model
        tok_dim = 2 * cfg.id_dim + cfg.other_dim
        self.tok = nn.Linear(tok_dim, d)
        self.empty = nn.Parameter(torch.zeros(1, 1, d))
        self.self_att = Attention(d, d, d, cfg.heads)
        self.user_att = Attention(cfg.group_dim("user"), d, d, cfg.heads)
        self.target_att = Attention(cfg.group_dim("item"), d, d, cfg.heads)
        main_in = cfg.group_dim("user") + cfg.group_dim("item") + cfg.group_dim("inter") + 2 * d
        self.main = _mlp([main_in, *cfg.main_hidden], cfg.dropout)
        self.bias = _mlp(
            [cfg.group_dim("ctx") + cfg.group_dim("user"), *cfg.bias_hidden], cfg.dropout
        )
        self.repr_dim = cfg.main_hidden[-1] + cfg.bias_hidden[-1]
        self.norm = nn.LayerNorm(self.repr_dim)
        self.head = _mlp([self.repr_dim, *cfg.head_hidden, 1], cfg.dropout, last_act=False)

    def represent(
        self,
        fields: torch.Tensor,
        seq_items: torch.Tensor,
        seq_cats: torch.Tensor,
        seq_actions: torch.Tensor,
    ) -> torch.Tensor:
        """F(x): [B, repr_dim]."""
        e_u = self.emb.group(fields, "user")  # [B, Du]
        e_i = self.emb.group(fields, "item")  # [B, Di]
        e_ui = self.emb.group(fields, "inter")  # [B, Dui]
        e_c = self.emb.group(fields, "ctx")  # [B, Dc]
        seq = self.tok(self.emb.sequence(seq_items, seq_cats, seq_actions))  # [B, T, d]
        b = seq.shape[0]
        seq = torch.cat([self.empty.expand(b, 1, -1), seq], dim=1)  # [B, T+1, d]
        pad = torch.cat(
            [torch.zeros_like(seq_actions[:, :1]), (seq_actions == 0).long()], dim=1
        )  # [B, T+1], 1 = padding
        mask_add = (pad.to(seq.dtype) * -1e9)[:, None, None, :]  # [B, 1, 1, T+1]
        e_hat = self.self_att(seq, seq, mask_add)  # [B, T+1, d]
        s_u = self.user_att(e_u[:, None, :], e_hat, mask_add)[:, 0]  # [B, d]
        s_t = self.target_att(e_i[:, None, :], e_hat, mask_add)[:, 0]  # [B, d]
        h_m = self.main(torch.cat([e_u, e_i, e_ui, s_u, s_t], dim=-1))  # [B, Hm]
        h_b = self.bias(torch.cat([e_c, e_u], dim=-1))  # [B, Hb]
        return self.norm(torch.cat([h_m, h_b], dim=-1))  # [B, D]

    def logit(self, batch: Batch) -> torch.Tensor:
        rep = self.represent(
            batch["fields"], batch["seq_items"], batch["seq_cats"], batch["seq_actions"]
        )
        return self.head(rep)[:, 0]  # [B]

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logit(batch), batch["label"].float())

    def predict(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        return {"cvr": torch.sigmoid(self.logit(batch))}

    def forward(
        self,
        fields: torch.Tensor,
        seq_items: torch.Tensor,
        seq_cats: torch.Tensor,
        seq_actions: torch.Tensor,
    ) -> torch.Tensor:
        rep = self.represent(fields, seq_items, seq_cats, seq_actions)
        return torch.sigmoid(self.head(rep)[:, 0])

    def export_graphs(self, out_dir: Path) -> dict[str, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = export_onnx(self, example_inputs(self.cfg), ["cvr"], out_dir / "base.onnx")
        return {"base": path}


class DistanceMetric(nn.Module):
    """DMN: similarity of F(x) to each of the 2 x 4 prototypes (Eq. 5-6 and Table III)."""

    def __init__(self, kind: str, dim: int, proj_dim: int, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        n_proto = 2 * N_OCCASIONS
        if kind == "spdm":
            # One projection per prototype, initialised near identity-like random projections.
            self.w = nn.Parameter(torch.randn(n_proto, dim, proj_dim) / math.sqrt(dim))
            self.b = nn.Parameter(torch.zeros(n_proto))
        elif kind == "nndm":
            self.rel_f = nn.Linear(dim, hidden)  # the F(x) half of Linear(2D, H)
            self.rel_p = nn.Linear(dim, hidden, bias=False)  # the prototype half
            self.rel_out = nn.Linear(hidden, 1)

    def forward(self, rep: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
        # rep [B, D], protos [P, D] -> similarities [B, P]
        if self.kind == "cosine":
            return F.normalize(rep, dim=-1) @ F.normalize(protos, dim=-1).T
        if self.kind == "euclidean":
            diff = rep[:, None, :] - protos[None, :, :]  # [B, P, D]
            return -(diff * diff).mean(dim=-1)
        if self.kind == "spdm":
            x = torch.einsum("bd,pde->bpe", rep, self.w)  # [B, P, E]
            p = torch.einsum("pd,pde->pe", protos, self.w)  # [P, E]
            cos = (F.normalize(x, dim=-1) * F.normalize(p, dim=-1)[None]).sum(-1)  # [B, P]
            return cos + self.b
        # nndm: Linear(2D, H) on [F; p] == Linear_F(F) + Linear_p(p), summed by broadcasting
        # (no expand to the batch size, so the exported graph keeps a dynamic batch axis).
        hidden = torch.relu(self.rel_f(rep)[:, None, :] + self.rel_p(protos)[None, :, :])
        return self.rel_out(hidden)[..., 0]  # [B, P]


class MetaCVR(SalecastModel):
    """BASE (frozen in stage 2) + prototypes per occasion + DMN + EPN (paper Sec. III-D/E)."""

    name = "cvr"
    prototypes: torch.Tensor

    def __init__(self, cfg: MetaCVRConfig, base: BaseCVR | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.base = base if base is not None else BaseCVR(cfg)
        dim = self.base.repr_dim
        # prototypes[occ, cls]: cls 0 = positive, 1 = negative; baked into the ONNX graph.
        self.register_buffer("prototypes", torch.zeros(N_OCCASIONS, 2, dim))
        self.dmn = DistanceMetric(cfg.distance, dim, cfg.proj_dim, cfg.nndm_hidden)
        self.epn = nn.Linear(1 + N_OCCASIONS, 1)
        with torch.no_grad():
            self.epn.weight.zero_()
            self.epn.weight[0, 0] = 1.0
            self.epn.bias.zero_()

    def freeze_frn(self) -> None:
        """Stage 2: the FRN and its ranking head stop learning (Algorithm 1)."""
        for p in self.base.parameters():
            p.requires_grad_(False)

    def stage2_parameters(self) -> list[nn.Parameter]:
        return [*self.dmn.parameters(), *self.epn.parameters()]

    def set_prototypes(self, prototypes: torch.Tensor) -> None:
        if tuple(prototypes.shape) != tuple(self.prototypes.shape):
            raise ValueError(f"prototypes must be {tuple(self.prototypes.shape)}")
        self.prototypes.copy_(prototypes)

    def scores(
        self,
        fields: torch.Tensor,
        seq_items: torch.Tensor,
        seq_cats: torch.Tensor,
        seq_actions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(final logit [B], base logit [B], s_occ [B, 4])."""
        rep = self.base.represent(fields, seq_items, seq_cats, seq_actions)  # [B, D]
        s_b = self.base.head(rep)[:, 0]  # [B]
        logit, s_occ = self.scores_from_representation(rep, s_b)
        return logit, s_b, s_occ

    def scores_from_representation(
        self, rep: torch.Tensor, s_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(final logit [B], s_occ [B, 4]) from F(x) [B, D] and the base logit [B].

        Stage 2 trains on these directly: the FRN is frozen (and has no dropout at
        inference), so its outputs can be computed once per sample instead of every epoch.
        """
        sim = self.dmn(rep, self.prototypes.reshape(2 * N_OCCASIONS, -1))  # [B, 8]
        sim = sim.reshape(-1, N_OCCASIONS, 2)  # [B, 4, 2]
        s_occ = sim[:, :, 0] - sim[:, :, 1]  # [B, 4]: Eq. 7, d(F, p+) - d(F, p-)
        logit = self.epn(torch.cat([s_b[:, None], s_occ], dim=-1))[:, 0]  # [B]
        return logit, s_occ

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        logit, _, _ = self.scores(
            batch["fields"], batch["seq_items"], batch["seq_cats"], batch["seq_actions"]
        )
        return F.binary_cross_entropy_with_logits(logit, batch["label"].float())

    def predict(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        cvr, base_cvr, s_occ = self(
            batch["fields"], batch["seq_items"], batch["seq_cats"], batch["seq_actions"]
        )
        return {"cvr": cvr, "base_cvr": base_cvr, "occasion_scores": s_occ}

    def forward(
        self,
        fields: torch.Tensor,
        seq_items: torch.Tensor,
        seq_cats: torch.Tensor,
        seq_actions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logit, s_b, s_occ = self.scores(fields, seq_items, seq_cats, seq_actions)
        return torch.sigmoid(logit), torch.sigmoid(s_b), s_occ

    def export_graphs(self, out_dir: Path) -> dict[str, Path]:
        """One graph `score`; prototypes and distance weights are constants inside it."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = export_onnx(
            self,
            example_inputs(self.cfg),
            ["cvr", "base_cvr", "occasion_scores"],
            out_dir / "score.onnx",
        )
        # The TorchScript exporter leaves the occasion axis symbolic; pin it, so the shapes
        # the manifest records are the ones ONNX Runtime reports.
        graph = onnx.load(str(path))
        for out in graph.graph.output:
            if out.name == "occasion_scores":
                out.type.tensor_type.shape.dim[1].dim_value = N_OCCASIONS
        onnx.save(graph, str(path))
        return {"score": path}


GRAPH_INPUTS = ("fields", "seq_items", "seq_cats", "seq_actions")


def example_inputs(cfg: MetaCVRConfig, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Valid random inputs (for export and tests); the sequence length is fixed per artifact."""
    g = torch.Generator().manual_seed(seed)
    seq_len = cfg.seq_len
    fields = torch.stack(
        [torch.randint(0, card, (batch,), generator=g) for card in cfg.field_cards], dim=1
    )
    n_items = cfg.field_cards[cfg.item_field]
    n_cats = cfg.field_cards[cfg.cat_field]
    return {
        "fields": fields,
        "seq_items": torch.randint(0, n_items, (batch, seq_len), generator=g),
        "seq_cats": torch.randint(0, n_cats, (batch, seq_len), generator=g),
        "seq_actions": torch.randint(0, N_ACTIONS, (batch, seq_len), generator=g),
    }
