"""Is one saved benchmark row slower than another, or is the difference noise?

Each row keeps every timed step (`step_ms`). Two rows are compared on those, not on their
medians alone: the ratio of medians gets a 95% bootstrap interval (steps resampled within each
run), and a Mann-Whitney rank test (scipy) asks whether one run's steps are systematically
slower. A row is a regression only when both say so beyond the threshold; the spread seen
within each run (interquartile range over median) is reported beside it, so a reader knows how
much noise the machine had. Rows saved without enough steps fall back to medians against the
threshold, and say so.
"""
from __future__ import annotations

import statistics

MIN_STEPS = 5  # fewer timed steps than this cannot support an interval; medians are compared instead
ALPHA = 0.01  # the rank test's level: a false alarm in one comparison of a hundred
RESAMPLES = 2000


def spread(times: list[float]) -> float:
    """Interquartile range over median: the run's own noise, as a fraction."""
    q = statistics.quantiles(times, n=4)
    return (q[2] - q[0]) / statistics.median(times)


def compare_steps(old_ms: list[float], new_ms: list[float], threshold: float, seed: int = 0) -> dict:
    """`ratio` is new speed over old (below 1 is slower), with `ci` and the rank test's `p`,
    the `noise` of each run, and a `verdict`: regression, faster, same or unclear."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    old, new = np.asarray(old_ms, dtype=float), np.asarray(new_ms, dtype=float)
    ratio = float(np.median(old) / np.median(new))
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(old, (RESAMPLES, old.size)), axis=1) / np.median(rng.choice(new, (RESAMPLES, new.size)), axis=1)
    low, high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    p = float(mannwhitneyu(old, new, alternative="two-sided").pvalue)
    if high < 1 - threshold and p < ALPHA:
        verdict = "regression"
    elif low > 1 + threshold and p < ALPHA:
        verdict = "faster"
    elif 1 - threshold <= low and high <= 1 + threshold or p >= ALPHA and low <= 1 <= high:
        verdict = "same"
    else:
        verdict = "unclear"  # a difference beyond the threshold is possible but not shown at this noise
    return {"ratio": ratio, "ci": [low, high], "p": p, "noise": [spread(old_ms), spread(new_ms)], "verdict": verdict}


def enough(times: list[float] | None) -> bool:
    return times is not None and len(times) >= MIN_STEPS
