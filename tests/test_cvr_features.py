"""`history_fields_many` (serving, all pairs at once) equals `history_fields` (training, one
pair at a time) field for field, on random histories with ties, repeats and unsorted input."""

from __future__ import annotations

import numpy as np
import pytest

from service.servables.cvr_features import (
    FeatureSpec,
    Histories,
    history_fields,
    history_fields_many,
)

ITEMS = ["i0", "i1", "i2", "i3", ""]
CATS = ["c0", "c1", ""]


def random_case(
    seed: int, users: int, pairs: int, t_max: int
) -> tuple[list[list[tuple[int, int, str, str]]], list[tuple[int, str, str, int]]]:
    """Per user (ts, action, item, category) events in arrival order; pairs (owner, item,
    category, ts), some before every event and some after."""
    rng = np.random.default_rng(seed)
    hist = [
        [
            (
                int(rng.integers(0, t_max)) if rng.random() > 0.2 else 1_000,  # ties at 1,000
                int(rng.integers(0, 4)),
                ITEMS[int(rng.integers(0, len(ITEMS)))],
                CATS[int(rng.integers(0, len(CATS)))],
            )
            for _ in range(int(rng.integers(0, 40)))
        ]
        for _ in range(users)
    ]
    asked = [
        (
            int(rng.integers(0, users)),
            [*ITEMS, "unseen"][int(rng.integers(0, len(ITEMS) + 1))],
            [*CATS, "other"][int(rng.integers(0, len(CATS) + 1))],
            int(rng.choice([0, 1_000, 1_001, t_max + 5, int(rng.integers(0, t_max))])),
        )
        for _ in range(pairs)
    ]
    return hist, asked


@pytest.mark.parametrize(
    ("seed", "t_max", "spec"),
    [
        (0, 5_000, FeatureSpec()),
        (1, 5_000, FeatureSpec(seq_len=3, stats_window=5)),
        (2, 2**61, FeatureSpec(seq_len=4, stats_window=7)),  # too wide for one int64 key
    ],
)
def test_many_pairs_at_once_equal_one_pair_at_a_time(
    seed: int, t_max: int, spec: FeatureSpec
) -> None:
    hist, asked = random_case(seed, users=12, pairs=200, t_max=t_max)
    events = [e for h in hist for e in h]
    columns = Histories.from_columns(
        [len(h) for h in hist],
        np.asarray([e[0] for e in events], dtype=np.int64),
        np.asarray([e[1] for e in events], dtype=np.int64),
        [e[2] for e in events],
        [e[3] for e in events],
    )
    owner = np.asarray([a[0] for a in asked])
    values, seq_lo, hi = history_fields_many(
        columns,
        owner,
        [a[1] for a in asked],
        [a[2] for a in asked],
        np.asarray([a[3] for a in asked]),
        spec,
    )
    for p, (u, item, cat, ts) in enumerate(asked):
        before = sorted((e for e in hist[u] if e[0] < ts), key=lambda e: e[0])  # stable
        want, window = history_fields(
            np.asarray([e[2] for e in before], dtype=object),
            np.asarray([e[3] for e in before], dtype=object),
            np.asarray([e[1] for e in before], dtype=np.int64),
            np.asarray([e[0] for e in before], dtype=np.int64),
            item,
            cat,
            ts,
            spec,
        )
        assert {k: int(v[p]) for k, v in values.items()} == want, p
        first = int(columns.starts[u])
        got_rows = range(int(seq_lo[p]), int(hi[p]))
        assert [(int(columns.ts[r]), columns.items[r]) for r in got_rows] == [
            (e[0], e[2]) for e in before[window]
        ]
        assert int(hi[p]) - first == len(before)
    assert any(int(v) for v in values["ui_clicks"])  # the case really has repeats to count
    assert any(hi - columns.starts[owner] == 0)  # and pairs with no history before them
