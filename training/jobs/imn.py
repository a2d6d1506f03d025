"""`salecast train|evaluate imn`: IMN-Net next-item recommendation (issue 3).

Protocol (Sec. 5.2-5.3 of the paper): the event log is split by time 80/10/10; IMN-Net is
trained on the first 80% with JODIE's t-batches (`training.features.imn.t_batches`: exact
w.r.t. one-by-one processing) inside `training.loop.fit` (epoch budget `--epochs`, early
stopping on the validation Recall@20, best epoch restored), and the test split is replayed
event by event (in conflict-free contiguous chunks) ranking the full item set before each
event is applied. The vocabulary holds the training split's users and items only.

This module holds the data, the fit and the artifact; `training.jobs.imn_evaluate` runs the
baselines (`training.baselines.nextitem`) and the JODIE-equivalent through the same replay
on the same split, over seeds.
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.imn import IMNConfig, IMNNet
from service.actions import ACTIONS
from service.runtime.manifest import DataWindow
from training.artifacts import write_artifact
from training.baselines.nextitem import LastItemCooccurrence, Popularity, RankingMetrics
from training.comparison import validation_summary
from training.features.imn import (
    EventArrays,
    Vocab,
    chronological_split,
    encode_stream,
    sequential_chunks,
    t_batches,
    time_scale,
)
from training.jobs.common import add_common_arguments, budget, set_threads
from training.loop import FitReport, fit

log = logging.getLogger(__name__)
SPLIT = "chronological 80/10/10 by event time; vocabulary from the training 80% only"
PRIMARY = "recall@20"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--epochs", type=int, default=50, help="Sec. 5.2: 50 epochs (budget; early stopping)"
    )
    parser.add_argument("--dim", type=int, default=128, help="Sec. 5.2: embeddings of 128")
    parser.add_argument("--lr", type=float, default=1e-3, help="Sec. 5.2: Adam, lr 1e-3")
    parser.add_argument("--batch-records", type=int, default=256, help="Sec. 5.2: 256 records")
    parser.add_argument("--negatives", type=int, default=128, help="N of eq. 21 (Sec. 5.5)")
    parser.add_argument("--lambda-m", type=float, default=1.0)
    parser.add_argument("--lambda-n", type=float, default=1.0)
    parser.add_argument("--alpha-m", type=float, default=0.75, help="eq. 23 (Tmall: 0.75)")
    parser.add_argument("--alpha-n", type=float, default=0.25, help="eq. 23 (Tmall: 0.25)")
    parser.add_argument(
        "--fusion-search",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Sec. 5.5: after training, pick eq. 23's weights from FUSION_GRID by validation "
        "Recall@20 (no retraining); --no-fusion-search keeps --alpha-m/--alpha-n",
    )
    parser.add_argument("--top-k", type=int, default=100, help="k max of the scoring graph")
    parser.add_argument("--topk-chunk", type=int, default=0, help=">0: two-stage TopK chunk")
    parser.add_argument("--max-events", type=int, default=0, help="keep only the first N events")
    add_common_arguments(parser)


# ---- data --------------------------------------------------------------------------------


@dataclass
class Prepared:
    events: pd.DataFrame
    sha256: str
    source: str
    vocab: Vocab
    stream: EventArrays  # train + val + test, in time order
    n_train: int
    n_val: int

    @property
    def train(self) -> EventArrays:
        return self.stream.rows(np.arange(self.n_train))

    @property
    def val(self) -> EventArrays:
        return self.stream.rows(np.arange(self.n_train, self.n_train + self.n_val))

    @property
    def test(self) -> EventArrays:
        return self.stream.rows(np.arange(self.n_train + self.n_val, len(self.stream)))


def load_frame(args: argparse.Namespace) -> tuple[pd.DataFrame, str, str]:
    """Canonical events from `--data/--format`, or the synthetic generator."""
    if args.format == "synthetic" and not args.data:
        from training.synthetic import generate_events

        log_ = generate_events(seed=args.seed)
        return log_.events, log_.sha256, "synthetic"
    from training.data import load_events

    paths = [Path(p) for p in args.data]
    event_log = load_events(paths, args.format)
    log.info("%s", event_log.report.summary())
    return event_log.events, event_log.sha256, ",".join(p.name for p in paths)


def prepare(events: pd.DataFrame, sha256: str, source: str, max_events: int = 0) -> Prepared:
    events = events.sort_values("ts", kind="stable").reset_index(drop=True)
    if max_events:
        events = events.iloc[:max_events]
    train, val, test = chronological_split(events)
    vocab = Vocab.from_events(train)
    ordered = pd.concat([train, val, test], ignore_index=True)
    stream = encode_stream(ordered, vocab)
    return Prepared(ordered, sha256, source, vocab, stream, len(train), len(val))


# ---- IMN training and replay ---------------------------------------------------------------


class States:
    """Per-user-slot and per-item states of one replay (detached storage + 'seen' masks)."""

    def __init__(self, model: IMNNet, num_user_slots: int) -> None:
        d = model.config.embed_dim
        self.user = torch.zeros(num_user_slots, 2 * d)
        self.item = torch.zeros(model.config.num_items, d)
        self.user_seen = torch.zeros(num_user_slots, dtype=torch.bool)
        self.item_seen = torch.zeros(model.config.num_items, dtype=torch.bool)

    def users(self, model: IMNNet, slots: torch.Tensor) -> torch.Tensor:
        return torch.where(
            self.user_seen[slots, None], self.user[slots], model.initial_user_state()
        )

    def items(self, model: IMNNet, ids: torch.Tensor) -> torch.Tensor:
        return torch.where(self.item_seen[ids, None], self.item[ids], model.initial_item_state())

    def table(self, model: IMNNet) -> torch.Tensor:
        """[N, 2D] scoring table as the service holds it."""
        dyn = torch.where(self.item_seen[:, None], self.item, model.initial_item_state())
        return model.item_table(dyn)


def _tensors(rows: EventArrays) -> dict[str, torch.Tensor]:
    return {
        "user_index": torch.from_numpy(rows.user_index),
        "item_index": torch.from_numpy(rows.item_index),
        "dt_user": torch.from_numpy(rows.dt_user),
        "dt_item": torch.from_numpy(rows.dt_item),
        "dt_limited": torch.from_numpy(rows.dt_purchase),
        "dt_purchase": torch.from_numpy(rows.dt_purchase),
        "features": torch.from_numpy(rows.features),
        "is_purchase": torch.from_numpy(rows.is_purchase),
    }


def train_epoch(
    model: IMNNet,
    opt: torch.optim.Optimizer,
    stream: EventArrays,
    batches: list[np.ndarray],
    batch_records: int,
    gen: torch.Generator,
) -> tuple[float, States]:
    """One pass over the training stream; backprop through each window of t-batches.

    A window is consecutive t-batches holding >= `batch_records` events (Sec. 5.2's 256).
    States touched in a window live in small local tensors so backprop through the window's
    recursion costs O(window), not O(all users); they are written back detached at its end.
    """
    model.train()
    cfg = model.config
    states = States(model, stream.num_user_slots)
    total, count = 0.0, 0
    start = 0
    while start < len(batches):
        stop, size = start, 0
        while stop < len(batches) and (size < batch_records or stop == start):
            size += len(batches[stop])
            stop += 1
        window = batches[start:stop]
        negs = [
            torch.randint(1, cfg.num_items, (cfg.num_negatives - 1,), generator=gen) for _ in window
        ]
        rows_all = stream.rows(np.concatenate(window))
        u_touched = torch.from_numpy(np.unique(rows_all.user_slot))
        i_touched = torch.unique(
            torch.cat(
                [
                    torch.from_numpy(rows_all.item_index),
                    torch.from_numpy(rows_all.last_item),
                    *negs,
                ]
            )
        )
        u_local = states.users(model, u_touched)  # [Uw, 2D], carries grad to init params
        i_local = states.items(model, i_touched)  # [Iw, D]
        loss_sum = torch.zeros(())
        for batch, neg in zip(window, negs, strict=True):
            rows = stream.rows(batch)
            t = _tensors(rows)
            u_loc = torch.searchsorted(u_touched, torch.from_numpy(rows.user_slot))
            i_loc = torch.searchsorted(i_touched, t["item_index"])
            last = torch.from_numpy(rows.last_item)
            last_loc = torch.searchsorted(i_touched, last)
            neg_loc = torch.searchsorted(i_touched, neg)
            t["user_state"] = u_local[u_loc]
            t["item_state"] = i_local[i_loc]
            t["last_dyn"] = i_local[last_loc]
            t["last_static"] = model.item_static(last)
            loss, _, new_u, new_i = model.step(t, neg, i_local[neg_loc])
            u_local = u_local.index_put((u_loc,), new_u)
            i_local = i_local.index_put((i_loc,), new_i)
            loss_sum = loss_sum + loss * len(batch)
        opt.zero_grad()
        (loss_sum / size).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        states.user[u_touched] = u_local.detach()
        states.item[i_touched] = i_local.detach()
        states.user_seen[u_touched] = True
        states.item_seen[i_touched] = True
        # Negatives / last items that were only read keep their value (init if unseen).
        total += float(loss_sum.detach())
        count += size
        start = stop
    return total / max(count, 1), states


@torch.no_grad()
def replay(
    model: IMNNet,
    stream: EventArrays,
    states: States,
    metrics: RankingMetrics | None = None,
    on_scores: Any = None,
    popularity: np.ndarray | None = None,
) -> None:
    """Apply `stream` to `states` in conflict-free chunks, ranking each chunk first if asked.

    Ranking uses exactly the scoring graph's computation (`IMNNet.score_table`) on the
    table as of the chunk's start; `on_scores(rows, scores)` sees the raw scores (parity test).
    With `popularity` (item counts so far, updated here), a user with no state yet is ranked
    by popularity, as the service does (its fallback), so offline and online agree.
    """
    model.eval()
    for chunk in sequential_chunks(stream.user_slot, stream.item_index):
        rows = stream.rows(chunk)
        t = _tensors(rows)
        slots = torch.from_numpy(rows.user_slot)
        user_state = states.users(model, slots)
        if metrics is not None or on_scores is not None:
            scores, _ = model.score_table(
                user_state,
                t["user_index"],
                torch.from_numpy(rows.last_item),
                t["dt_user"],
                t["dt_limited"],
                states.table(model),
            )
            if popularity is not None:
                cold = ~states.user_seen[slots]
                if bool(cold.any()):
                    pop = torch.from_numpy(popularity[1:]).to(scores.dtype)
                    scores = torch.where(cold[:, None], pop.unsqueeze(0), scores)
            if metrics is not None:
                metrics.add(scores, t["item_index"], rows.user_slot)
            if on_scores is not None:
                on_scores(rows, scores)
        new_u, new_i = model.update(
            user_state,
            states.items(model, t["item_index"]),
            t["user_index"],
            t["item_index"],
            t["dt_user"],
            t["dt_item"],
            t["dt_purchase"],
            t["features"],
            t["is_purchase"],
        )
        states.user[slots] = new_u
        states.item[t["item_index"]] = new_i
        if popularity is not None:
            np.add.at(popularity, rows.item_index, 1.0)
        states.user_seen[slots] = True
        states.item_seen[t["item_index"]] = True


def fit_imn(
    prep: Prepared,
    cfg: IMNConfig,
    args: argparse.Namespace,
    label: str = "imn",
    seed: int | None = None,
) -> tuple[IMNNet, FitReport, dict[str, Any]]:
    """IMN-Net (or the JODIE-equivalent config) in `training.loop.fit`: one t-batch pass
    per epoch, validated by replaying the validation split from the epoch's final states.
    Then eq. 23's fusion weights are searched on validation (`search_fusion`) unless
    `--no-fusion-search`; returns the model (with the chosen weights), the fit report and
    what the search found."""
    seed = int(args.seed if seed is None else seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = IMNNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train = prep.train
    batches = t_batches(train.user_slot, train.item_index)
    after_epoch: dict[str, States] = {}

    def run_epoch(epoch: int) -> float:
        loss, after_epoch["states"] = train_epoch(
            model, opt, train, batches, args.batch_records, gen
        )
        return loss

    def validate() -> float:
        val = RankingMetrics()
        replay(model, prep.val, after_epoch["states"], val)
        return val.result().get(PRIMARY, 0.0)

    report = fit(model, run_epoch, validate if len(prep.val) else None, budget(args), label=label)
    fusion = search_fusion(model, prep) if getattr(args, "fusion_search", True) else {}
    return model, report, fusion


#: Sec. 5.5's grid of eq. 23's weights (alpha_m, alpha_n). Only their ratio changes a
#: ranking, so five points span it from distance-only to MI-only; the paper's Tmall best
#: comes first, so a tie on validation keeps it.
FUSION_GRID = ((0.75, 0.25), (1.0, 0.0), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0))


def search_fusion(model: IMNNet, prep: Prepared) -> dict[str, Any]:
    """Pick eq. 23's fusion weights by validation Recall@20, as Sec. 5.5 tunes them.

    The weights only enter the ranking (`IMNNet.fused_scores`), never a state update, so
    no retraining is needed: the training split is replayed once, and the validation split
    from a copy of those states once per grid point. The model keeps the best pair (its
    exported graph bakes them in); without the MI head (JODIE) or a validation split there
    is nothing to choose and the configured pair stays.
    """
    if not model.config.use_mi or not len(prep.val):
        return {}
    after_train = States(model, prep.stream.num_user_slots)
    replay(model, prep.train, after_train)
    found: dict[str, float] = {}
    for alpha_m, alpha_n in FUSION_GRID:
        model.config = replace(model.config, alpha_m=alpha_m, alpha_n=alpha_n)
        metrics = RankingMetrics()
        replay(model, prep.val, copy.deepcopy(after_train), metrics)
        found[f"{alpha_m:g}/{alpha_n:g}"] = metrics.result().get(PRIMARY, 0.0)
    best = max(FUSION_GRID, key=lambda pair: found[f"{pair[0]:g}/{pair[1]:g}"])
    model.config = replace(model.config, alpha_m=best[0], alpha_n=best[1])
    log.info("fusion weights %s chosen on validation: %s", best, found)
    return {"chosen": list(best), f"validation_{PRIMARY}": found}


def imn_config(prep: Prepared, args: argparse.Namespace, **overrides: Any) -> IMNConfig:
    cfg = IMNConfig(
        num_users=len(prep.vocab.users),
        num_items=len(prep.vocab.items),
        embed_dim=args.dim,
        num_negatives=args.negatives,
        lambda_m=args.lambda_m,
        lambda_n=args.lambda_n,
        alpha_m=args.alpha_m,
        alpha_n=args.alpha_n,
        time_scale=time_scale(
            np.concatenate([prep.train.dt_user, prep.train.dt_item, prep.train.dt_purchase])
        ),
        top_k=args.top_k,
        topk_chunk=args.topk_chunk,
    )
    return replace(cfg, **overrides)


def popularity_counts(prep: Prepared, with_val: bool) -> np.ndarray:
    """[N] item counts of train (and validation): the ranking of a user with no history
    yet, the service's fallback; every learned method of the evaluation starts from it."""
    parts = [prep.train.item_index] + ([prep.val.item_index] if with_val else [])
    return np.bincount(np.concatenate(parts), minlength=len(prep.vocab.items)).astype(np.float64)


def score_test(model: IMNNet, prep: Prepared) -> tuple[RankingMetrics, States]:
    """Replay train (no scoring) and val, then rank every test event; final states too.

    Users with no state yet get the popularity fallback, exactly as the service answers them.
    """
    states = States(model, prep.stream.num_user_slots)
    replay(model, prep.train, states)
    replay(model, prep.val, states)
    metrics = RankingMetrics()
    replay(model, prep.test, states, metrics, popularity=popularity_counts(prep, with_val=True))
    return metrics, states


def score_counting(method: Popularity | LastItemCooccurrence, prep: Prepared) -> RankingMetrics:
    """A counting baseline fed train + val, then ranking (and learning) through the test."""
    method.observe(prep.train)
    method.observe(prep.val)
    metrics = RankingMetrics()
    method.evaluate(prep.test, metrics)
    return metrics


def baseline_validation(prep: Prepared) -> dict[str, dict[str, float]]:
    """The counting baselines fed train, ranking the validation split (the manifest's peer)."""
    out: dict[str, dict[str, float]] = {}
    for cls in (Popularity, LastItemCooccurrence):
        method = cls(len(prep.vocab.items))
        method.observe(prep.train)
        metrics = RankingMetrics()
        method.evaluate(prep.val, metrics)
        out[method.name] = metrics.result()
    return out


# ---- the artifact ------------------------------------------------------------------------


def build_artifact(
    model: IMNNet,
    prep: Prepared,
    states: States,
    root: Path,
    metrics: dict[str, Any],
    fresh_state: bool = False,
) -> Path:
    """Export both graphs and write the version: item table seed, popularity, initial states."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        graphs = model.export_graphs(tmp_dir)
        with torch.no_grad():
            table = states.table(model).numpy().astype(np.float32)
            np.save(tmp_dir / "item_table.npy", table)
            np.save(
                tmp_dir / "initial_user_state.npy",
                model.initial_user_state().numpy().astype(np.float32),
            )
            np.save(
                tmp_dir / "initial_item_state.npy",
                model.initial_item_state().numpy().astype(np.float32),
            )
        counts = np.bincount(prep.stream.item_index, minlength=len(prep.vocab.items))
        counts[0] = 0
        if fresh_state:
            counts[:] = 0
        np.save(tmp_dir / "popularity.npy", counts.astype(np.float32))
        start, end = prep.events["ts"].min(), prep.events["ts"].max()
        return write_artifact(
            root,
            "imn",
            graphs,
            data_window=DataWindow(
                start=pd.Timestamp(int(start), unit="s").isoformat(),
                end=pd.Timestamp(int(end), unit="s").isoformat(),
                sha256=prep.sha256,
                source=prep.source,
            ),
            vocabularies={"users": prep.vocab.users, "items": prep.vocab.items},
            normalisation={"time_scale": model.config.time_scale},
            metrics=metrics,
            config={
                **model.config.to_dict(),
                "actions": list(ACTIONS),
                "state_dims": {"user": 2 * model.config.embed_dim, "item": model.config.embed_dim},
            },
            extra_files={
                name: tmp_dir / name
                for name in (
                    "item_table.npy",
                    "initial_user_state.npy",
                    "initial_item_state.npy",
                    "popularity.npy",
                )
            },
            shared_inputs={"score": ["item_table"]},
        )


def train_prepared(
    prep: Prepared, args: argparse.Namespace, fresh_state: bool = False
) -> tuple[Path, IMNNet, dict[str, Any]]:
    """Fit, score the validation and test splits, write the artifact.

    Returns (artifact dir, model, flat metrics: `val_recall@20` and `test_<metric>`). The
    manifest records the validation metrics beside the best counting baseline's on the same
    split. The artifact's item table holds the states after the whole stream, so a fresh service
    ranks with everything training saw. `fresh_state=True` writes the untouched initial
    states and zero popularity instead: for replaying the whole stream through the service
    (`bench.imn_online`), which must not count the history twice.
    """
    set_threads(args)
    model, report, fusion = fit_imn(prep, imn_config(prep, args), args)
    val_states = States(model, prep.stream.num_user_slots)
    replay(model, prep.train, val_states)
    val_metrics = RankingMetrics()
    replay(model, prep.val, val_states, val_metrics)
    test, states = score_test(model, prep)
    flat = {
        f"val_{PRIMARY}": val_metrics.result().get(PRIMARY, 0.0),
        **{f"test_{k}": v for k, v in test.result().items()},
    }
    manifest_metrics = {
        "validation": validation_summary(
            metric=PRIMARY,
            higher_is_better=True,
            ours=("imn", val_metrics.result()),
            baselines=baseline_validation(prep),
            split="the validation 10% (after training, before test)",
        ),
        "test": test.result(),
        "fit": report.to_dict(),
        **({"fusion_search": fusion} if fusion else {}),
    }
    if fresh_state:
        states = States(model, prep.stream.num_user_slots)
    path = build_artifact(model, prep, states, args.artifacts, manifest_metrics, fresh_state)
    return path, model, flat


def train(args: argparse.Namespace) -> Path:
    """Not data-parallel (deliberately left out of DDP, unlike the other jobs): each t-batch
    reads the mutually recursive user/item states the previous one wrote, so splitting it
    over ranks would need an all-gather of the states every t-batch."""
    set_threads(args)
    frame, sha, source = load_frame(args)
    prep = prepare(frame, sha, source, args.max_events)
    return train_prepared(prep, args)[0]


def demo_args(seed: int = 0, **overrides: Any) -> argparse.Namespace:
    """Small settings that train in well under a minute on one core."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    args.seed, args.data, args.format = seed, [], "synthetic"
    args.epochs, args.dim, args.negatives, args.top_k = 3, 32, 32, 50
    args.max_events = 6000
    args.results_dir = Path("bench/results")
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def train_demo(artifacts_root: Path, seed: int = 0) -> Path:
    args = demo_args(seed)
    args.artifacts = Path(artifacts_root)
    return train(args)
