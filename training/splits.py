"""Seeded user splits, shared by every job whose log cannot be split in time.

Some public logs hold their purchases on one day (IJCAI-15 data_format2: its lines are
Double 11's new buyers; DINOP's BOP pairs: bought on 11-11 or not). A split by time then
leaves no purchaser to train on, so these jobs split *users* instead: every row of a user
lands in one part, no test user is seen in training, and the calendar is shared. One rule,
one copy, so intent, CVR and DINOP's BOP draw the same parts from the same seed.
"""

from __future__ import annotations

import numpy as np

#: Training / validation / test shares of the users.
USER_SPLIT_FRACTIONS = (0.45, 0.15, 0.40)


def user_parts(
    user_ids: np.ndarray, seed: int, fractions: tuple[float, float, float] = USER_SPLIT_FRACTIONS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, validation, test) over `user_ids`, one user wholly in one part.

    The distinct users are permuted by `seed` and cut by `fractions`; every part gets at
    least one user. Raises ValueError for bad shares or fewer than 3 users.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(
            f"user split fractions must be 3 positive shares summing to 1: {fractions}"
        )
    users = np.unique(user_ids)
    if len(users) < 3:
        raise ValueError(
            f"a user split needs at least 3 users with history, the data has {len(users)}"
        )
    order = np.random.default_rng(seed).permutation(users)
    n_train = max(1, round(fractions[0] * len(users)))
    n_val = max(1, min(len(users) - n_train - 1, round(fractions[1] * len(users))))
    in_train = np.isin(user_ids, order[:n_train])
    in_val = np.isin(user_ids, order[n_train : n_train + n_val])
    return in_train, in_val, ~in_train & ~in_val
