"""Tiny IJCAI-15 data_format2 files for the user-split tests (intent, CVR).

The format's lines are Double 11's new buyers, so every purchase is on 11-11: the shape
that makes a split by time useless and a split by user necessary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER = "user_id,age_range,gender,merchant_id,label,activity_log"


def format2_file(path: Path, n_users: int = 40) -> Path:
    """Users click in October and the run-up; two in three buy on 11-11 (the only buys)."""
    rng = np.random.default_rng(0)
    lines = [HEADER]
    for user in range(1, n_users + 1):
        days = sorted(rng.choice(np.arange(1001, 1032), size=4, replace=False).tolist())
        days += sorted(rng.choice(np.arange(1101, 1111), size=3, replace=False).tolist())
        records = [f"{user * 10 + k}:5:7:{d:04d}:0" for k, d in enumerate(days)]
        if user % 3:
            records.append(f"{user * 10}:5:7:1111:0")
            records.append(f"{user * 10}:5:7:1111:2")
        lines.append(f"{user},2,0,{100 + user % 4},0,{'#'.join(records)}")
    path.write_text("\n".join(lines) + "\n")
    return path
