"""One evaluation run's methods over seeds, and the ranking of ours against the baselines.

Every job's `evaluate` adds each method's scored runs here (one per seed; one for a method
with nothing random in it) and hands the result to `training.reporting.write_accuracy`.
Decided once for every job:

- *roles*: `ours` (the paper model the result is about), `variant` (its ablations and
  sibling configurations: reported, never counted as the peer to beat) and `baseline`;
- *best baseline*: the baseline with the best seed-mean primary metric in the same run
  (the peer a retailer's analyst would pick after seeing the same table);
- *interval and verdict*: `training.stats.paired_bootstrap` over the test units of
  ours minus the best baseline, both as seed means, and `training.stats.verdict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from training.stats import Scorer, TestSize, mean_sd, paired_bootstrap, seed_mean, verdict

Role = Literal["ours", "variant", "baseline"]


@dataclass
class MethodRuns:
    role: Role
    seeds: list[int | None] = field(default_factory=list)
    metrics: list[dict[str, float | None]] = field(default_factory=list)
    scorers: list[Scorer] = field(default_factory=list)
    fits: list[Any] = field(default_factory=list)  # FitReport dicts (or per part), or None
    seconds: list[float | None] = field(default_factory=list)

    def mean(self, key: str) -> float:
        return mean_sd([m.get(key) for m in self.metrics])[0]  # type: ignore[misc]


class Comparison:
    """Collects `add(...)` calls; `record()` is what `write_accuracy` stores."""

    def __init__(
        self,
        *,
        primary_metric: str,
        higher_is_better: bool,
        ours: str,
        units: np.ndarray,
        size: TestSize,
        resamples: int = 1000,
        level: float = 0.95,
        seed: int = 0,
    ) -> None:
        self.primary_metric = primary_metric
        self.higher_is_better = higher_is_better
        self.ours = ours
        self.units = np.asarray(units)
        self.size = size
        self.resamples = resamples
        self.level = level
        self.seed = seed
        self.runs: dict[str, MethodRuns] = {}

    def add(
        self,
        method: str,
        *,
        metrics: Mapping[str, float | None],
        scorer: Scorer,
        seed: int | None,
        role: Role = "baseline",
        fit: Any = None,
        seconds: float | None = None,
    ) -> None:
        """One scored run of `method` (`seed=None`: a method with nothing random in it).

        `scorer(weights)` recomputes the primary metric of exactly this run's test
        predictions under bootstrap row weights.
        """
        if method == self.ours:
            role = "ours"
        runs = self.runs.setdefault(method, MethodRuns(role=role))
        if runs.role != role:
            raise ValueError(f"method {method!r} added as {role} and as {runs.role}")
        if self.primary_metric not in metrics:
            raise ValueError(f"method {method!r}: no {self.primary_metric!r} in its metrics")
        runs.seeds.append(seed)
        runs.metrics.append({k: (None if v is None else float(v)) for k, v in metrics.items()})
        runs.scorers.append(scorer)
        runs.fits.append(fit)
        runs.seconds.append(None if seconds is None else round(float(seconds), 2))

    # ---- tables ---------------------------------------------------------------------------
    def _keys(self, runs: MethodRuns) -> list[str]:
        keys: list[str] = []
        for m in runs.metrics:
            keys += [k for k in m if k not in keys]
        return keys

    def methods(self) -> dict[str, dict[str, float | None]]:
        """Seed-mean of every metric of every method (the BENCHMARKS.md `methods` table)."""
        out: dict[str, dict[str, float | None]] = {}
        for name, runs in self.runs.items():
            out[name] = {}
            for key in self._keys(runs):
                value = runs.mean(key)
                out[name][key] = value if np.isfinite(value) else None
        return out

    def methods_sd(self) -> dict[str, dict[str, float | None]]:
        """Seed sd (ddof 1) of every metric; 0 for a single run."""
        out: dict[str, dict[str, float | None]] = {}
        for name, runs in self.runs.items():
            out[name] = {}
            for key in self._keys(runs):
                sd = mean_sd([m.get(key) for m in runs.metrics])[1]  # type: ignore[misc]
                out[name][key] = sd if np.isfinite(sd) else None
        return out

    def run_info(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "role": runs.role,
                "seeds": runs.seeds,
                "fits": runs.fits,
                "seconds": runs.seconds,
            }
            for name, runs in self.runs.items()
        }

    # ---- ranking --------------------------------------------------------------------------
    def best_baseline(self) -> str | None:
        scored = {
            name: runs.mean(self.primary_metric)
            for name, runs in self.runs.items()
            if runs.role == "baseline" and np.isfinite(runs.mean(self.primary_metric))
        }
        if not scored:
            return None
        pick = max if self.higher_is_better else min
        return pick(scored, key=scored.__getitem__)

    def comparison(self) -> dict[str, Any]:
        """Ours against the best baseline: difference, interval, verdict and the test size."""
        return self._versus(self.best_baseline(), "best_baseline")

    def against(self, other: str) -> dict[str, Any]:
        """Ours against one named method, by the same paired bootstrap and verdict: a job
        reports its paper's strongest baseline this way even when another one is best."""
        return self._versus(other, "baseline")

    def _versus(self, other: str | None, key: str) -> dict[str, Any]:
        if self.ours not in self.runs:
            raise ValueError(f"ours ({self.ours!r}) was never added")
        if other is not None and other not in self.runs:
            raise ValueError(f"{other!r} was never added")
        out: dict[str, Any] = {
            "ours": self.ours,
            key: other,
            "metric": self.primary_metric,
            "higher_is_better": self.higher_is_better,
            "test": self.size.to_dict(),
            "method": (
                "paired bootstrap over test units: units drawn with replacement, each method "
                "scored as its seed-mean on every resample; percentile interval"
            ),
        }
        if other is None:
            return {**out, "verdict": "no baseline", "interval": None}
        interval = paired_bootstrap(
            seed_mean(self.runs[self.ours].scorers),
            seed_mean(self.runs[other].scorers),
            self.units,
            resamples=self.resamples,
            level=self.level,
            seed=self.seed,
        )
        return {
            **out,
            "difference": interval.estimate,
            "interval": [interval.low, interval.high],
            "level": interval.level,
            "resamples": interval.resamples,
            "verdict": verdict(interval, self.higher_is_better, self.size),
        }

    def record(self) -> dict[str, Any]:
        """The keyword arguments `write_accuracy` takes from a comparison."""
        return {
            "primary_metric": self.primary_metric,
            "higher_is_better": self.higher_is_better,
            "methods": self.methods(),
            "ours": self.ours,
            "methods_sd": self.methods_sd(),
            "runs": self.run_info(),
            "comparison": self.comparison(),
        }


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
    }


def validation_summary(
    *,
    metric: str,
    higher_is_better: bool,
    ours: tuple[str, Mapping[str, Any]],
    baselines: Mapping[str, Mapping[str, Any]],
    split: str,
) -> dict[str, Any]:
    """What a manifest records of a trained artifact: its validation metrics beside those of
    the best baseline fitted on the same split (`GET /v1/models/{name}` shows it).

    `behind_baseline` is a plain comparison of the two numbers, no interval: a flag for an
    operator to look at the committed evaluation, not a verdict.
    """
    name, values = ours
    scored = {b: _finite(m)[metric] for b, m in baselines.items() if metric in _finite(m)}
    best = (max if higher_is_better else min)(scored, key=scored.__getitem__) if scored else None
    mine = _finite(values).get(metric)
    behind: bool | None = None
    if best is not None and mine is not None:
        behind = mine < scored[best] if higher_is_better else mine > scored[best]
    return {
        "split": split,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "ours": {"name": name, **_finite(values)},
        "best_baseline": None if best is None else {"name": best, **_finite(baselines[best])},
        "baselines": scored,
        "behind_baseline": behind,
    }
