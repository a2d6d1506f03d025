"""IMN-Net: shapes, learning on tiny synthetic data, ONNX parity (values, whole-split ranking)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from models.imn import SCORE_INPUTS, UPDATE_INPUTS, IMNConfig, IMNNet
from training.features.imn import (
    Vocab,
    chronological_split,
    encode_stream,
    sequential_chunks,
    t_batches,
)
from training.jobs.imn import States, prepare, replay, train_epoch

torch.set_num_threads(1)


def _events(
    n_users: int = 30, n_items: int = 40, per_user: int = 25, seed: int = 0
) -> pd.DataFrame:
    """A planted sequential pattern: each user walks item -> item + 1 (mod n), buying sometimes."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        item = int(rng.integers(n_items))
        ts = 1_700_000_000 + int(rng.integers(3600))
        for _ in range(per_user):
            action = "purchase" if rng.random() < 0.1 else "browse"
            rows.append((f"u{u}", f"i{item}", action, ts))
            item = (item + 1) % n_items
            ts += int(rng.integers(30, 600))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "action", "ts"])
    frame["event_id"] = [f"t:{k}" for k in range(len(frame))]
    frame["category_id"] = ""
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def _random_inputs(cfg: IMNConfig, b: int = 6) -> tuple[dict, dict]:
    d = cfg.embed_dim
    upd = {
        "user_state": torch.rand(b, 2 * d),
        "item_state": torch.rand(b, d),
        "user_index": torch.randint(0, cfg.num_users, (b,)),
        "item_index": torch.randint(0, cfg.num_items, (b,)),
        "dt_user": torch.rand(b) * 1e4,
        "dt_item": torch.rand(b) * 1e4,
        "dt_purchase": torch.rand(b) * 1e6,
        "features": torch.eye(4)[torch.randint(0, 4, (b,))],
        "is_purchase": (torch.rand(b) < 0.5).float(),
    }
    score = {
        "user_state": torch.rand(b, 2 * d),
        "user_index": torch.randint(0, cfg.num_users, (b,)),
        "last_item": torch.randint(0, cfg.num_items, (b,)),
        "dt_user": torch.rand(b) * 1e4,
        "dt_limited": torch.rand(b) * 1e6,
        "item_table": torch.rand(cfg.num_items, 2 * d),
    }
    return upd, score


def test_shapes_and_purchase_gate() -> None:
    cfg = IMNConfig(num_users=5, num_items=50, embed_dim=8, top_k=7)
    model = IMNNet(cfg).eval()
    upd, score = _random_inputs(cfg)
    new_u, new_i = model.update(*(upd[n] for n in UPDATE_INPUTS))
    assert new_u.shape == (6, 16) and new_i.shape == (6, 8)
    # eq. 6: the resource-limited half moves only on purchases
    browse = upd["is_purchase"] == 0
    assert torch.equal(new_u[browse, 8:], upd["user_state"][browse, 8:])
    out = model.predict(score)
    assert out["item_ids"].shape == (6, 7) and out["scores"].shape == (6, 7)
    assert out["pred_embedding"].shape == (6, 8)
    assert int(out["item_ids"].min()) >= 1  # item 0 ("unknown") is never recommended
    with pytest.raises(ValueError):
        IMNConfig(num_users=1, num_items=10, num_negatives=1)


def test_loss_decreases_on_tiny_data() -> None:
    torch.manual_seed(0)
    prep = prepare(_events(), "x", "test")
    cfg = IMNConfig(
        num_users=len(prep.vocab.users),
        num_items=len(prep.vocab.items),
        embed_dim=16,
        num_negatives=16,
        time_scale=5.0,
    )
    model = IMNNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train = prep.train
    batches = t_batches(train.user_slot, train.item_index)
    gen = torch.Generator().manual_seed(0)
    losses = [train_epoch(model, opt, train, batches, 64, gen)[0] for _ in range(6)]
    assert losses[-1] < losses[0] * 0.9, losses


def test_t_batches_and_chunks_keep_order() -> None:
    events = _events(n_users=8, n_items=6, per_user=6)
    stream = encode_stream(events, Vocab.from_events(events))
    batches = t_batches(stream.user_slot, stream.item_index)
    seen_at: dict[tuple[str, int], tuple[int, int]] = {}
    for b, rows in enumerate(batches):
        users, items = stream.user_slot[rows], stream.item_index[rows]
        assert len(set(users)) == len(users) and len(set(items)) == len(items)
        for r, u, i in zip(rows, users, items, strict=True):
            for key in (("u", int(u)), ("i", int(i))):
                prev = seen_at.get(key)
                assert prev is None or (prev[1] < b and prev[0] < r)
                seen_at[key] = (int(r), b)
    chunks = sequential_chunks(stream.user_slot, stream.item_index)
    assert np.array_equal(np.concatenate(chunks), np.arange(len(stream)))


@pytest.mark.parametrize("chunk", [0, 16])
def test_onnx_parity_random_inputs(tmp_path: Path, chunk: int) -> None:
    torch.manual_seed(1)
    cfg = IMNConfig(num_users=9, num_items=200, embed_dim=16, top_k=20, topk_chunk=chunk)
    model = IMNNet(cfg).eval()
    paths = model.export_graphs(tmp_path)
    upd, score = _random_inputs(cfg)
    sess = ort.InferenceSession(str(paths["update"]), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in upd.items()})
    with torch.no_grad():
        ref = model.update(*(upd[n] for n in UPDATE_INPUTS))
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4)
    sess = ort.InferenceSession(str(paths["score"]), providers=["CPUExecutionProvider"])
    ids, scores, pred = sess.run(None, {k: v.numpy() for k, v in score.items()})
    with torch.no_grad():
        ref_out = model.predict(score)
        full, _ = model.score_table(*(score[n] for n in SCORE_INPUTS))
    np.testing.assert_array_equal(ids, ref_out["item_ids"].numpy())
    np.testing.assert_allclose(scores, ref_out["scores"].numpy(), atol=1e-4)
    np.testing.assert_allclose(pred, ref_out["pred_embedding"].numpy(), atol=1e-4)
    # two-stage TopK returns exactly the one-stage ids
    np.testing.assert_array_equal(ids, (torch.topk(full, cfg.k).indices + 1).numpy())


def test_whole_test_split_ranking_identical(tmp_path: Path) -> None:
    """Replay the split with ORT graphs and numpy states; top-k of every test event matches."""
    torch.manual_seed(2)
    events = _events(n_users=12, n_items=30, per_user=15)
    train_df, val_df, test_df = chronological_split(events)
    vocab = Vocab.from_events(train_df)
    stream = encode_stream(pd.concat([train_df, val_df, test_df]), vocab)
    cfg = IMNConfig(
        num_users=len(vocab.users),
        num_items=len(vocab.items),
        embed_dim=8,
        top_k=10,
        time_scale=5.0,
    )
    model = IMNNet(cfg).eval()
    n_before = len(train_df) + len(val_df)
    head, tail = stream.rows(np.arange(n_before)), stream.rows(np.arange(n_before, len(stream)))

    torch_ids: list[np.ndarray] = []
    states = States(model, stream.num_user_slots)
    replay(model, head, states)
    replay(
        model,
        tail,
        states,
        on_scores=lambda rows, s: torch_ids.append((torch.topk(s, cfg.k).indices + 1).numpy()),
    )

    paths = model.export_graphs(tmp_path)
    upd = ort.InferenceSession(str(paths["update"]), providers=["CPUExecutionProvider"])
    sco = ort.InferenceSession(str(paths["score"]), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        init_u = model.initial_user_state().numpy()
        init_i = model.initial_item_state().numpy()
        static = model.item_static.weight.numpy()
    users = np.tile(init_u, (stream.num_user_slots, 1))
    items = np.tile(init_i, (cfg.num_items, 1))
    onnx_ids: list[np.ndarray] = []
    for part, score in ((head, False), (tail, True)):
        for chunk in sequential_chunks(part.user_slot, part.item_index):
            rows = part.rows(chunk)
            if score:
                out = sco.run(
                    ["item_ids"],
                    {
                        "user_state": users[rows.user_slot],
                        "user_index": rows.user_index,
                        "last_item": rows.last_item,
                        "dt_user": rows.dt_user,
                        "dt_limited": rows.dt_purchase,
                        "item_table": np.concatenate([items, static], 1).astype(np.float32),
                    },
                )
                onnx_ids.append(out[0])
            new_u, new_i = upd.run(
                None,
                {
                    "user_state": users[rows.user_slot],
                    "item_state": items[rows.item_index],
                    "user_index": rows.user_index,
                    "item_index": rows.item_index,
                    "dt_user": rows.dt_user,
                    "dt_item": rows.dt_item,
                    "dt_purchase": rows.dt_purchase,
                    "features": rows.features,
                    "is_purchase": rows.is_purchase,
                },
            )
            users[rows.user_slot] = new_u
            items[rows.item_index] = new_i
    np.testing.assert_array_equal(np.concatenate(onnx_ids), np.concatenate(torch_ids))


def test_ranking_metrics_definitions() -> None:
    from training.baselines.nextitem import RankingMetrics

    metrics = RankingMetrics(ks=(1, 2))
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1], [0.2, 0.3, 0.4, 0.5], [1.0, 1.0, 1.0, 1.0]])
    # targets: item 3 (score 0.5, tie with item 2 which wins: rank 3), item 4 (rank 1),
    # item 0 (unknown: a miss)
    metrics.add(scores, torch.tensor([3, 4, 0]))
    res = metrics.result()
    assert res["recall@1"] == pytest.approx(1 / 3)
    assert res["recall@2"] == pytest.approx(1 / 3)
    assert res["mrr"] == pytest.approx((1 / 3 + 1) / 3)
    assert res["ndcg@2"] == pytest.approx(1 / 3)


def test_vocabulary_holds_the_training_split_only() -> None:
    events = _events(n_users=10, n_items=20, per_user=10)
    late = events.iloc[-1:].assign(item_id="only-in-test", event_id="late")
    events = pd.concat([events, late], ignore_index=True)
    prep = prepare(events, "x" * 64, "test")
    assert "only-in-test" not in prep.vocab.items
    assert set(prep.vocab.items[1:]) == set(prep.events.iloc[: prep.n_train]["item_id"])
    assert prep.test.item_index[-1] == 0  # scored as an unknown item: a miss for every method


def _job_args(*extra: str) -> Any:
    import argparse

    from training.jobs.imn import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--epochs", "2", "--dim", "8", "--negatives", "16", *extra])
    args.seed = 0
    return args


def test_fusion_weights_are_chosen_on_validation_and_kept_by_the_model() -> None:
    """Sec. 5.5: eq. 23's weights come from the grid by validation Recall@20; the model
    keeps the winner (its graph bakes them in); JODIE (no MI head) has nothing to choose."""
    from training.baselines.nextitem import RankingMetrics
    from training.jobs import imn as job

    prep = job.prepare(_events(n_users=20, n_items=30, per_user=12), "x" * 64, "test")
    args = _job_args()
    model, _, found = job.fit_imn(prep, job.imn_config(prep, args), args)
    scores = found["validation_recall@20"]
    assert set(scores) == {f"{m:g}/{n:g}" for m, n in job.FUSION_GRID}
    best = max(scores.values())
    first_best = next(p for p in job.FUSION_GRID if scores[f"{p[0]:g}/{p[1]:g}"] == best)
    assert found["chosen"] == list(first_best)  # ties keep the grid's order (paper first)
    assert (model.config.alpha_m, model.config.alpha_n) == first_best
    # the choice is what a validation replay with those weights scores
    states = job.States(model, prep.stream.num_user_slots)
    job.replay(model, prep.train, states)
    again = RankingMetrics()
    job.replay(model, prep.val, states, again)
    assert again.result()["recall@20"] == pytest.approx(best)

    jodie = job.imn_config(prep, args, use_resource=False, use_mi=False, alpha_n=0.0)
    assert job.fit_imn(prep, jodie, args)[2] == {}
    fixed = _job_args("--no-fusion-search")
    model, _, found = job.fit_imn(prep, job.imn_config(prep, fixed), fixed)
    assert found == {} and (model.config.alpha_m, model.config.alpha_n) == (0.75, 0.25)


def test_gru4rec_windows_chain_and_start_from_the_carried_hidden_state() -> None:
    """Training windows start from the state the user's previous window ended with, as the
    replay carries it (the docstring's promise); the first window starts from zeros."""
    from training.baselines.nextitem import SessionGRU
    from training.jobs import imn as job

    prep = job.prepare(_events(n_users=6, n_items=30, per_user=50), "x" * 64, "test")
    users = SessionGRU.sequences(prep.train, window=10)
    assert max(len(p) for p in users) >= 3
    for pieces in users:
        for a, b in itertools.pairwise(pieces):
            assert a[-1] == b[0] and len(a) == 11  # chained: b's first input is a's last target
    gru = SessionGRU(len(prep.vocab.items), dim=8)
    seen: list[torch.Tensor] = []
    gru.gru.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[1].clone()))
    opt = torch.optim.Adam(gru.parameters(), lr=1e-2)
    gru.train_epoch(users, opt, torch.Generator().manual_seed(0), batch_size=64)
    assert len(seen) == max(len(p) for p in users)  # one batch per round here
    assert torch.count_nonzero(seen[0]) == 0  # first windows: no history
    assert all(torch.count_nonzero(h) == h.numel() for h in seen[1:])  # carried, not reset
