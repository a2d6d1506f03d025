"""Intent feature helpers shared by training and serving (service.servables.intent_features)."""

from __future__ import annotations

import numpy as np

from service.servables.intent_features import _max_streak


def _streak_by_loop(active: np.ndarray) -> np.ndarray:
    best = np.zeros(active.shape[0], dtype=np.int64)
    for r, row in enumerate(active):
        run = 0
        for on in row:
            run = run + 1 if on else 0
            best[r] = max(best[r], run)
    return best


def test_max_streak_is_the_longest_run_of_active_buckets() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        active = rng.random((int(rng.integers(1, 12)), int(rng.integers(0, 40)))) < rng.random()
        np.testing.assert_array_equal(_max_streak(active), _streak_by_loop(active))
    edge = np.array([[1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(_max_streak(edge), [3, 0, 6])
