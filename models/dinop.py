"""DINOP: Deep Item Network for Online Promotions (Shen et al., CIKM 2019, paper 001).

A universal item representation for promotion-day forecasts, learned from several tasks at
once (section 4, Figure 1):

- a Target-Users-Controlled GRU (TUC-GRU, eq. 3) runs over the pre-sale periods: the
  item's dynamic sales data DIS_t are the cell's inputs, the dynamic target-user profile
  DU_t only drives the update and reset gates;
- attention pooling over the hidden states (eq. 4, Figure 3) scores each h_t together with
  DU_t and the static target-user profile SU, giving rep_d;
- rep = [rep_d, emb_SII, emb_SIS] (section 4.2: 128 + 64 + 64 = 256 dims);
- five heads (Figure 4): GMV regression (MSE, eq. 5), best-seller BSP (BCE, eq. 6), sales
  slot SS (10-way softmax, eq. 7), buy-through-promotion BOP (rep + user features, BCE) and
  join-activity JA (rep + activity features, BCE).

Sub-models of Table 2: DINOP-su drops SU from the attention, DINOP-du drops DU from the
gates and the attention, DINOP-u drops both (`use_su` / `use_du`).

Data mapping used by `training.jobs.dinop` (see also docs/dinop.md): on Walmart store sales
an item is a (store, department) series, a promotion day is a holiday week, the pre-sale
period the `presale_steps` weeks before it, DIS_t = weekly sales and markdowns, DU_t = the
store's shopper context that week (CPI, unemployment, temperature, fuel price), SU = the
same context averaged over the static window, SII = store type/size/id, department and
promotion type, SIS = the 13 weeks before the pre-sale period.

NOTE (eq. 3, reset gate): the printed candidate state h~_t = tanh(w_ht h_{t-1} + w_DIS DIS_t
+ b) never uses the reset gate r_t that the same equation computes. We read it as the
standard GRU candidate tanh(w_ht (r_t * h_{t-1}) + w_DIS DIS_t + b): otherwise r_t would be
dead weight, and Figure 2 draws r_t feeding the candidate. DU_t stays out of the candidate,
which is the point of the cell ("controllers only").
NOTE (eq. 4, attention()): Figure 3 is not machine-readable. We use the usual additive form
v^T tanh(W [h_t, DU_t, SU] + b) (the inputs eq. 4 names, nothing else).
NOTE (Figure 4, head sizes): the task nets are drawn, not sized; each is a two-layer MLP
(128, 64) with ReLU and the paper's dropout 0.5 (section 5.1.2).
NOTE (serving): the softmax in eq. 4 is computed as a streaming ("online") softmax: the state
after each pre-sale period is (h_t, running max m, running sum s, running weighted sum
acc), so rep_d = acc / s is exactly eq. 4 over the periods seen so far, and an item's state
can be advanced one period at a time without keeping its history (`step` graph).
NOTE (GMV scale): the GMV head is trained with MSE (eq. 5) on the promotion-day GMV divided
by the item's usual level (mean |sales| over the static window, floored), z-scored: item
sizes span four orders of magnitude on Walmart, and an MLP on log-scaled inputs fits a
multiplier far better than an absolute amount. This is eq. 5 with per-item weights
1/level^2; the job and the servable multiply back before any MAE is computed.
NOTE (GMV uplift): by default the target is the promotion-day GMV *minus the last pre-sale
period's sales* in those units (`DinopFeatures.gmv_target_kind = "uplift"`), so the head
learns the festival's change from the naive forecast rather than its level, and a
promotion type absent from training falls back towards the naive forecast.
NOTE (naive slot, not in the paper): with `naive_slot=True` the SS logits get a learned
offset on the naive slot, logits = head(rep) + w * one-hot (batch key `naive_ss`, [B, 10]:
eq. 2 applied to the last pre-sale period's sales). That no-model slot beat every learned
SS head on the sales data. As with the GMV uplift, the head then learns corrections to the
naive forecast: w starts at ln 9, where a head output of 0 gives the naive slot half the
probability mass (e^w / (e^w + 9) = 0.5), so training starts near the naive forecast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Batch, SalecastModel, export_onnx

TASKS: tuple[str, ...] = ("gmv", "bsp", "ss", "bop", "ja")
N_SLOTS = 10  # eq. 2: R in {1, ..., 10}
NEG_INF = -1e30  # initial running max of the streaming softmax (finite: ONNX-safe)


@dataclass
class DINOPConfig:
    """Sizes and switches. Input dims come from the data; the rest from the paper."""

    dis_dim: int  # DIS_t, dynamic item sales features per period (Table 1: 99 raw)
    du_dim: int  # DU_t, dynamic target-user profile per period (Table 1: 103 raw)
    su_dim: int  # SU, static target-user profile (Table 1: 103 raw)
    sii_dim: int  # SII, static item inherent profile (Table 1: 84 raw)
    sis_dim: int  # SIS, static item sales profile (Table 1: 99 raw)
    user_dim: int = 1  # BOP user features (Figure 4(d)); 1 = placeholder when BOP is off
    act_dim: int = 1  # JA activity features ACT (Table 1: 269 raw); 1 when JA is off
    hidden: int = 128  # rep_d size: rep is 256 = rep_d + 64 + 64 (section 4.2)
    emb_static: int = 64  # emb_SII and emb_SIS are 64-dim each (section 4.2)
    att_hidden: int = 64  # attention MLP width (Figure 3, not sized: our choice)
    head_hidden: tuple[int, int] = (128, 64)  # task nets (Figure 4, not sized: our choice)
    user_emb: int = 64  # BOP user embedding (Figure 4(d); ACT's 64 in Table 1 by analogy)
    act_emb: int = 64  # ACT encoded to 64 dims (Table 1)
    dropout: float = 0.5  # section 5.1.2: chosen from {0.3, 0.5, 0.8}
    lr: float = 1e-3  # section 5.1.2: chosen from {1e-1, 1e-3, 1e-6}, Adagrad
    weight_decay: float = 1e-5  # "L2-norm is used for regularization" (5.1.2), size ours
    use_su: bool = True  # False = DINOP-su (Table 2)
    use_du: bool = True  # False = DINOP-du (Table 2)
    naive_slot: bool = False  # SS head also reads the naive slot's one-hot (NOTE above)
    tasks: tuple[str, ...] = ("gmv", "bsp", "ss")  # trained heads; all five exist
    task_weights: dict[str, float] = field(default_factory=dict)  # default 1 each

    def __post_init__(self) -> None:
        for name in ("dis_dim", "du_dim", "su_dim", "sii_dim", "sis_dim", "user_dim", "act_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.hidden < 1 or self.emb_static < 1 or self.att_hidden < 1:
            raise ValueError("hidden, emb_static and att_hidden must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
        self.tasks = tuple(self.tasks)
        self.head_hidden = tuple(self.head_hidden)  # type: ignore[assignment]
        unknown = set(self.tasks) - set(TASKS)
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")

    @property
    def rep_dim(self) -> int:
        return self.hidden + 2 * self.emb_static


class TUCGRUCell(nn.Module):
    """Eq. 3: gates see DIS_t, DU_t and h_{t-1}; the candidate sees only DIS_t and h_{t-1}."""

    def __init__(self, dis_dim: int, du_dim: int, hidden: int, use_du: bool) -> None:
        super().__init__()
        self.use_du = use_du
        self.gates_x = nn.Linear(dis_dim, 2 * hidden)  # w_DIS,z ; w_DIS,r ; b_z ; b_r
        self.gates_u = nn.Linear(du_dim, 2 * hidden, bias=False)  # w_DU,z ; w_DU,r
        self.gates_h = nn.Linear(hidden, 2 * hidden, bias=False)  # w_hz ; w_hr
        self.cand_x = nn.Linear(dis_dim, hidden)  # w_DIS ; b
        self.cand_h = nn.Linear(hidden, hidden, bias=False)  # w_ht

    def forward(self, dis: torch.Tensor, du: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gates = self.gates_x(dis) + self.gates_h(h)  # [B, 2H]
        if self.use_du:
            gates = gates + self.gates_u(du)
        z, r = torch.sigmoid(gates).chunk(2, dim=-1)  # [B, H] each
        cand = torch.tanh(self.cand_x(dis) + self.cand_h(r * h))  # [B, H]
        return (1.0 - z) * h + z * cand


def _mlp(in_dim: int, sizes: tuple[int, ...], out_dim: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class DINOP(SalecastModel):
    """DINOP with all five heads; `config.tasks` picks the ones that train.

    Batch keys: dis [B, T, Ddis], du [B, T, Ddu], su [B, Dsu], sii [B, Dsii], sis [B, Dsis],
    mask [B, T] (1 = the period is observed; padding before a late-starting item is 0),
    labels gmv [B] (standardised), bsp [B] (0/1), ss [B] (0..9), and for BOP/JA user [B, Du],
    bop [B], act [B, Da], ja [B].
    """

    name = "dinop"

    def __init__(self, config: DINOPConfig) -> None:
        super().__init__()
        self.config = c = config
        self.cell = TUCGRUCell(c.dis_dim, c.du_dim, c.hidden, c.use_du)
        # eq. 4 / Figure 3: additive attention over [h_t, DU_t, SU]
        self.att_h = nn.Linear(c.hidden, c.att_hidden)
        self.att_du = nn.Linear(c.du_dim, c.att_hidden, bias=False)
        self.att_su = nn.Linear(c.su_dim, c.att_hidden, bias=False)
        self.att_v = nn.Linear(c.att_hidden, 1, bias=False)
        self.emb_sii = nn.Sequential(nn.Linear(c.sii_dim, c.emb_static), nn.ReLU())
        self.emb_sis = nn.Sequential(nn.Linear(c.sis_dim, c.emb_static), nn.ReLU())
        self.rep_dropout = nn.Dropout(c.dropout)
        r = c.rep_dim
        self.heads = nn.ModuleDict(
            {
                "gmv": _mlp(r, c.head_hidden, 1, c.dropout),
                "bsp": _mlp(r, c.head_hidden, 1, c.dropout),
                "ss": _mlp(r, c.head_hidden, N_SLOTS, c.dropout),
                "bop": _mlp(r + c.user_emb, c.head_hidden, 1, c.dropout),
                "ja": _mlp(r + c.act_emb, c.head_hidden, 1, c.dropout),
            }
        )
        if c.naive_slot:  # NOTE above (naive slot): its offset's weight on the SS logits
            self.ss_naive_weight = nn.Parameter(torch.tensor(math.log(N_SLOTS - 1)))
        self.user_enc = nn.Sequential(nn.Linear(c.user_dim, c.user_emb), nn.ReLU())
        self.act_enc = nn.Sequential(nn.Linear(c.act_dim, c.act_emb), nn.ReLU())

    # ---- representation ------------------------------------------------------------------
    def attention_score(self, h: torch.Tensor, du: torch.Tensor, su: torch.Tensor) -> torch.Tensor:
        """attention(h_t, DU_t, SU) of eq. 4 for one period -> [B, 1] score."""
        pre = self.att_h(h)
        if self.config.use_du:
            pre = pre + self.att_du(du)
        if self.config.use_su:
            pre = pre + self.att_su(su)
        return self.att_v(torch.tanh(pre))

    def step(
        self,
        h: torch.Tensor,  # [B, H]
        m: torch.Tensor,  # [B, 1] running max of attention scores
        s: torch.Tensor,  # [B, 1] running sum of exp(score - m)
        acc: torch.Tensor,  # [B, H] running sum of exp(score - m) * h_t
        dis: torch.Tensor,  # [B, Ddis]
        du: torch.Tensor,  # [B, Ddu]
        su: torch.Tensor,  # [B, Dsu]
        valid: torch.Tensor,  # [B, 1] 1 = observed period, 0 = padding (state unchanged)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance one pre-sale period: TUC-GRU (eq. 3) + one term of eq. 4's softmax."""
        h_new = self.cell(dis, du, h)
        score = self.attention_score(h_new, du, su)  # [B, 1]
        m_new = torch.maximum(m, score)
        scale = torch.exp(m - m_new)  # rescale what was accumulated under the old max
        w = torch.exp(score - m_new)
        s_new = s * scale + w
        acc_new = acc * scale + w * h_new
        keep = 1.0 - valid
        return (
            valid * h_new + keep * h,
            valid * m_new + keep * m,
            valid * s_new + keep * s,
            valid * acc_new + keep * acc,
        )

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        H = self.config.hidden
        return (
            torch.zeros(batch, H),
            torch.full((batch, 1), NEG_INF),
            torch.zeros(batch, 1),
            torch.zeros(batch, H),
        )

    def finish(
        self, s: torch.Tensor, acc: torch.Tensor, sii: torch.Tensor, sis: torch.Tensor
    ) -> torch.Tensor:
        """rep = [rep_d, emb_SII, emb_SIS] (section 4.2); rep_d = 0 before any period."""
        rep_d = acc / s.clamp_min(1e-12)  # [B, H]
        return torch.cat([rep_d, self.emb_sii(sii), self.emb_sis(sis)], dim=-1)  # [B, 256]

    def represent(self, batch: Batch) -> torch.Tensor:
        dis, du = batch["dis"], batch["du"]  # [B, T, D*]
        B, T = dis.shape[0], dis.shape[1]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones(B, T)
        su = batch["su"]
        h, m, s, acc = self.initial_state(B)
        h, m, s, acc = h.to(dis), m.to(dis), s.to(dis), acc.to(dis)
        for t in range(T):
            h, m, s, acc = self.step(h, m, s, acc, dis[:, t], du[:, t], su, mask[:, t : t + 1])
        return self.finish(s, acc, batch["sii"], batch["sis"])

    # ---- heads ---------------------------------------------------------------------------
    def head_outputs(
        self,
        rep: torch.Tensor,
        user: torch.Tensor | None = None,
        act: torch.Tensor | None = None,
        tasks: tuple[str, ...] | None = None,
        naive_ss: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Raw head outputs (GMV value, logits) for the requested tasks; `naive_ss` is the
        naive slot's one-hot, required by the SS head when `config.naive_slot`."""
        tasks = tasks or self.config.tasks
        rep = self.rep_dropout(rep)
        out: dict[str, torch.Tensor] = {}
        for task in tasks:
            if task == "bop":
                if user is None:
                    raise ValueError("BOP needs user features")
                out[task] = self.heads[task](torch.cat([rep, self.user_enc(user)], -1)).squeeze(-1)
            elif task == "ja":
                if act is None:
                    raise ValueError("JA needs activity features")
                out[task] = self.heads[task](torch.cat([rep, self.act_enc(act)], -1)).squeeze(-1)
            elif task == "ss":
                if self.config.naive_slot:
                    if naive_ss is None:
                        raise ValueError("the SS head was built with naive_slot: needs naive_ss")
                    out[task] = self.heads[task](rep) + self.ss_naive_weight * naive_ss
                else:
                    out[task] = self.heads[task](rep)  # [B, 10]
            else:
                out[task] = self.heads[task](rep).squeeze(-1)  # [B]
        return out

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        """Sum of eqs. 5-7 (and the BCE of BOP/JA) over the enabled tasks."""
        rep = self.represent(batch)
        outs = self.head_outputs(
            rep, batch.get("user"), batch.get("act"), None, batch.get("naive_ss")
        )
        loss = rep.new_zeros(())
        for task, out in outs.items():
            weight = self.config.task_weights.get(task, 1.0)
            if task == "gmv":
                term = F.mse_loss(out, batch["gmv"])  # eq. 5
            elif task == "ss":
                term = F.cross_entropy(out, batch["ss"].long())  # eq. 7 (mean over items)
            else:
                term = F.binary_cross_entropy_with_logits(out, batch[task].float())  # eq. 6
            loss = loss + weight * term
        return loss

    def predict(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        """gmv (standardised), bsp/bop/ja probabilities, ss probabilities [B, 10], rep."""
        rep = self.represent(batch)
        tasks = tuple(
            t for t in TASKS if t not in ("bop", "ja") or batch.get(_EXTRA[t]) is not None
        )
        outs = self.head_outputs(
            rep, batch.get("user"), batch.get("act"), tasks, batch.get("naive_ss")
        )
        result: dict[str, torch.Tensor] = {"rep": rep}
        for task, out in outs.items():
            result[task] = (
                out if task == "gmv" else (out.softmax(-1) if task == "ss" else out.sigmoid())
            )
        return result

    # ---- export --------------------------------------------------------------------------
    def export_graphs(self, out_dir: Path) -> dict[str, Path]:
        """Three graphs, all with a dynamic batch axis:

        - `step`: one pre-sale period for a batch of item states (the ingestion path);
        - `forecast`: current state + statics -> rep, GMV, BSP, SS, JA (JA needs `act`);
        - `bop`: item representation + user features -> buy-through-promotion probability.
        """
        c = self.config
        if c.naive_slot:  # the servable has no naive slot to feed the SS head
            raise ValueError(
                "naive_slot models are evaluation-only: serving would need every item of the "
                "category on the promotion day to rank the last pre-sale period (eq. 2)"
            )
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.eval()
        B = 2
        step_inputs = {
            "h": torch.randn(B, c.hidden),
            "m": torch.zeros(B, 1),
            "s": torch.ones(B, 1),
            "acc": torch.randn(B, c.hidden),
            "dis": torch.randn(B, c.dis_dim),
            "du": torch.randn(B, c.du_dim),
            "su": torch.randn(B, c.su_dim),
            "valid": torch.ones(B, 1),
        }
        paths = {
            "step": export_onnx(
                _StepGraph(self),
                step_inputs,
                ["h_out", "m_out", "s_out", "acc_out"],
                out_dir / "step.onnx",
            )
        }
        forecast_inputs = {
            "s": torch.ones(B, 1),
            "acc": torch.randn(B, c.hidden),
            "sii": torch.randn(B, c.sii_dim),
            "sis": torch.randn(B, c.sis_dim),
            "act": torch.randn(B, c.act_dim),
        }
        paths["forecast"] = export_onnx(
            _ForecastGraph(self),
            forecast_inputs,
            ["rep", "gmv", "bsp", "ss", "ja"],
            out_dir / "forecast.onnx",
        )
        bop_inputs = {"rep": torch.randn(B, c.rep_dim), "user": torch.randn(B, c.user_dim)}
        paths["bop"] = export_onnx(_BopGraph(self), bop_inputs, ["bop"], out_dir / "bop.onnx")
        for name, module, inputs in (
            ("step", _StepGraph(self), step_inputs),
            ("forecast", _ForecastGraph(self), forecast_inputs),
            ("bop", _BopGraph(self), bop_inputs),
        ):
            _pin_output_shapes(module, inputs, paths[name])
        return paths


_EXTRA = {"bop": "user", "ja": "act"}


def _pin_output_shapes(module: nn.Module, inputs: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write the fixed trailing dims of every output into the graph.

    The TorchScript exporter names some trailing dims symbolically (the masked state update
    broadcasts); ONNX Runtime infers them as constants, and the manifest check wants the
    graph's declared shapes to agree with what the session reports.
    """
    import onnx

    with torch.no_grad():
        outs = module(*inputs.values())
    outs = outs if isinstance(outs, tuple) else (outs,)
    model = onnx.load(str(path))
    for value, tensor in zip(model.graph.output, outs, strict=True):
        dims = value.type.tensor_type.shape.dim
        for k, size in enumerate(tensor.shape):
            if k == 0:
                dims[k].dim_param = "batch"
            else:
                dims[k].ClearField("dim_param")
                dims[k].dim_value = int(size)
    onnx.save(model, str(path))


class _StepGraph(nn.Module):
    def __init__(self, model: DINOP) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        h: torch.Tensor,
        m: torch.Tensor,
        s: torch.Tensor,
        acc: torch.Tensor,
        dis: torch.Tensor,
        du: torch.Tensor,
        su: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.step(h, m, s, acc, dis, du, su, valid)


class _ForecastGraph(nn.Module):
    def __init__(self, model: DINOP) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        s: torch.Tensor,
        acc: torch.Tensor,
        sii: torch.Tensor,
        sis: torch.Tensor,
        act: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rep = self.model.finish(s, acc, sii, sis)
        outs = self.model.head_outputs(rep, act=act, tasks=("gmv", "bsp", "ss", "ja"))
        return (
            rep,
            outs["gmv"],
            outs["bsp"].sigmoid(),
            outs["ss"].softmax(-1),
            outs["ja"].sigmoid(),
        )


class _BopGraph(nn.Module):
    def __init__(self, model: DINOP) -> None:
        super().__init__()
        self.model = model

    def forward(self, rep: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        return self.model.head_outputs(rep, user=user, tasks=("bop",))["bop"].sigmoid()


__all__ = ["DINOP", "NEG_INF", "N_SLOTS", "TASKS", "DINOPConfig", "TUCGRUCell"]
