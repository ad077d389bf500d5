"""Runs of one model on one dataset over several seeds: their mean and spread, and whether two
such groups differ by more than seeds alone would explain.

The test is Welch's t-test (scipy.stats.ttest_ind with equal_var=False) on the best validation
accuracy of each run: it does not assume the two models vary equally from seed to seed. With
three seeds a group says little; the output gives n so the reader can judge.
"""
from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass

from runtime.errors import RuntimeUsageError

ALPHA = 0.05  # the significance level the verdict uses; the p-value is printed too


@dataclass
class Group:
    model: str
    dataset: str
    records: list[dict]

    @property
    def n(self) -> int:
        return len(self.values())

    def values(self, key: str = "best_val_acc") -> list[float]:
        return [r[key] for r in self.records if r.get(key) is not None]

    def mean_std(self, key: str = "best_val_acc") -> tuple[float | None, float | None]:
        v = self.values(key)
        if not v:
            return None, None
        return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None)

    def describe(self, key: str = "best_val_acc") -> str:
        mean, std = self.mean_std(key)
        if mean is None:
            return "-"
        return f"{100 * mean:.2f}%" + (f" ± {100 * std:.2f}" if std is not None else "") + f" (n={self.n})"


# The settings that make runs one experiment, repeated over seeds: runs of one model that differ
# in any (an lr sweep) are separate groups, labelled by what differs.
RECIPE = ("recipe", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "lr_schedule", "lr_decay", "lr_decay_every",
          "warmup_steps", "warmup_epochs", "label_smoothing", "augment_flip", "augment_crop_padding", "normalize_std")


def group(records: list[dict]) -> list[Group]:
    """Records of the same model, spec (what it says, not its comments), dataset and training settings, in the order they
    first appear; groups of one model that differ in their settings are named by the difference
    (`tiny (lr 0.05)`)."""
    groups: dict[tuple, Group] = {}
    for r in records:
        settings = r.get("settings") or {}
        key = (r["model"], r.get("spec_data_sha256") or r.get("spec_sha256"), r.get("dataset"), tuple(sorted((k, repr(v)) for k, v in settings.items())))
        groups.setdefault(key, Group(r["model"], r.get("dataset") or "-", []))
        groups[key].records.append(r)
    for (model, spec, dataset, _), g in groups.items():
        siblings = [other for (m, sp, d, _), other in groups.items() if (m, sp, d) == (model, spec, dataset)]
        if len(siblings) > 1:
            mine = g.records[0].get("settings") or {}
            differ = [k for k in RECIPE if len({repr((o.records[0].get("settings") or {}).get(k)) for o in siblings}) > 1]
            g.model = f"{model} ({', '.join(f'{k} {mine.get(k)}' for k in differ)})"
    return list(groups.values())


def welch(a: Group, b: Group, key: str = "best_val_acc") -> dict:
    """Welch's t-test of b against a; a difference in accuracy points, t, df and p."""
    from scipy import stats

    x, y = a.values(key), b.values(key)
    if len(x) < 2 or len(y) < 2:
        raise RuntimeUsageError(f"--test needs at least 2 runs per group (seeds: archc train --seeds 0,1,2); "
                                f"{a.model} has {len(x)}, {b.model} has {len(y)}")
    diff = statistics.fmean(y) - statistics.fmean(x)
    common = {"a": a.model, "b": b.model, "a_dataset": a.dataset, "b_dataset": b.dataset, "metric": key,
              "difference_points": 100 * diff, "n": [len(x), len(y)],
              "unfinished": sum(r.get("status") != "complete" for r in a.records + b.records if r.get(key) is not None)}  # of the n tested
    if len(set(x)) == 1 and len(set(y)) == 1:  # no spread in either group: t is undefined (scipy says inf or nan), not "significant"
        return {**common, "t": None, "df": None, "p": None, "significant": False}
    with warnings.catch_warnings():  # scipy's note on a group without spread ("precision loss")
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(y, x, equal_var=False)
    p = float(result.pvalue)
    return {**common, "t": float(result.statistic), "df": float(getattr(result, "df", float("nan"))), "p": p,
            "significant": bool(p < ALPHA)}


def verdict_line(t: dict, a: Group, b: Group) -> str:
    head = f"{b.model} vs {a.model}: {b.describe()} vs {a.describe()}; difference {t['difference_points']:+.2f} points"
    if t["p"] is None:
        return f"{head}: cannot tell (no spread within either group: the runs of each ended alike, so the test is undefined)"
    verdict = (f"significant at {ALPHA}" if t["significant"] else f"not significant at {ALPHA}: seeds alone could explain it")
    # runs of the pair that did not finish (a --max-steps smoke test, a run still going): the
    # test then compares where they stopped, not the models
    unfinished = (f" (but {t['unfinished']} of these {sum(t['n'])} runs did not finish their training: "
                  "this compares where they stopped, not what the models reach)") if t["unfinished"] else ""
    return f"{head}, Welch's t = {t['t']:.2f}, df = {t['df']:.1f}, p = {t['p']:.3f}: {verdict}{unfinished}"


def same_seed(g: Group) -> tuple[str, str, int] | None:
    """Two runs of one group with the same seed (copies of one run, as a second rsync makes):
    (run, run, seed), else None. A run whose config gives no seed is not compared."""
    seen: dict[int, str] = {}
    for r in g.records:
        seed = r.get("seed")
        if isinstance(seed, int) and seed in seen:
            return seen[seed], r["run"], seed
        if isinstance(seed, int):
            seen[seed] = r["run"]
    return None
