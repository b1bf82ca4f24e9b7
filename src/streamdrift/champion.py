"""Champion against challenger: each version's predictions of the same labelled ids,
compared pair by pair.

Shadow traffic is the same `prediction_id` scored by several versions. When the label
of such an id meets (in the join, `streamdrift.pairing`), every challenger's prediction is paired
with the champion's and the pair is counted in the champion prediction's window, as
fields `[cc=<challenger>]...` of its perf hash: the paired 2×2 table of right and wrong
classes, the joint histogram of the two scores per label class, and the sums of the two
absolute errors. Those are mergeable, and they are all the paired tests need: DeLong's
for ROC-AUC, McNemar's for accuracy, a paired t-test on absolute errors for regression
(`streamdrift.comparison`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from streamdrift.comparison import (
    Outcome,
    delong_test,
    mae_comparison,
    mcnemar_test,
    verdict,
)

#: the perf-hash field prefix of one challenger's pairs
PREFIX = "[cc="
#: score bins of the joint histograms per side (DeLong's test reads them): 50 × 50
#: cells per label class at most, whatever the traffic
JOINT_BINS = 50


@dataclass(slots=True)
class PairedSketch:
    """One challenger's pairs with the champion in one window."""

    #: labelled ids both versions scored
    n: int = 0
    #: "<champion right><challenger right>" (y/n) -> ids
    table: Counter[str] = field(default_factory=Counter)
    #: (champion score bin, challenger score bin) -> ids, positives and negatives
    positives: Counter[tuple[int, int]] = field(default_factory=Counter)
    negatives: Counter[tuple[int, int]] = field(default_factory=Counter)
    #: regression: pairs with both values, Σ|e_champion|, Σ|e_challenger|, Σ(difference²)
    errors: int = 0
    abs_champion: float = 0.0
    abs_challenger: float = 0.0
    squared_difference: float = 0.0

    def __add__(self, o: PairedSketch) -> PairedSketch:
        return PairedSketch(
            self.n + o.n,
            self.table + o.table,
            self.positives + o.positives,
            self.negatives + o.negatives,
            self.errors + o.errors,
            self.abs_champion + o.abs_champion,
            self.abs_challenger + o.abs_challenger,
            self.squared_difference + o.squared_difference,
        )

    def set(self, name: str, value: str) -> None:
        """One perf-hash field (its name after the prefix)."""
        head, _, rest = name.partition(":")
        if name == "n":
            self.n += int(value)
        elif head == "mc":
            self.table[rest] += int(value)
        elif head in ("jp", "jn"):
            a, _, b = rest.partition(",")
            target = self.positives if head == "jp" else self.negatives
            target[(int(a), int(b))] += int(value)
        elif name == "nr":
            self.errors += int(value)
        elif name == "aea":
            self.abs_champion += float(value)
        elif name == "aeb":
            self.abs_challenger += float(value)
        elif name == "d2":
            self.squared_difference += float(value)


def decode_comparisons(h: Mapping[str, str]) -> dict[str, PairedSketch]:
    """Each challenger's pairs, from the "[cc=<challenger>]<field>" fields of a perf hash."""
    out: dict[str, PairedSketch] = {}
    for k, v in h.items():
        if k.startswith(PREFIX):
            challenger, _, rest = k[len(PREFIX) :].partition("]")
            s = out.get(challenger)
            if s is None:
                s = out[challenger] = PairedSketch()
            s.set(rest, v)
    return out


@dataclass(frozen=True, slots=True)
class ChallengerResult:
    """One challenger against the champion in one window, on their common labelled ids."""

    champion: str
    challenger: str
    pairs: int
    metric: str
    test: str
    champion_value: float
    challenger_value: float
    #: challenger minus champion, signed so that positive favours the challenger
    difference: float
    p_value: float
    outcome: Outcome

    def as_dict(self) -> dict[str, object]:
        def num(x: float) -> float | None:
            return None if x != x else round(x, 6)

        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "pairs": self.pairs,
            "metric": self.metric,
            "test": self.test,
            "champion_value": num(self.champion_value),
            "challenger_value": num(self.challenger_value),
            "difference": num(self.difference),
            "p_value": num(self.p_value),
            "outcome": self.outcome.value,
        }


def compare(
    champion: str,
    challenger: str,
    s: PairedSketch,
    task: str,
    bins: int,
    *,
    alpha: float,
    min_difference: float,
) -> ChallengerResult | None:
    """The paired test the pairs allow: DeLong on ROC-AUC for scored binary pairs,
    McNemar on accuracy for classes, a paired t-test on absolute errors for regression;
    None without pairs to test."""
    if task == "regression":
        if not s.errors:
            return None
        r = mae_comparison(s.errors, s.abs_champion, s.abs_challenger, s.squared_difference)
        v = verdict(r, alpha, min_difference)
        return ChallengerResult(
            champion, challenger, s.errors, "mae", "paired t", r.mae_a, r.mae_b,
            r.difference, r.p_value, v.outcome,
        )  # fmt: skip
    if s.positives and s.negatives:
        pos, neg = np.zeros((bins, bins)), np.zeros((bins, bins))
        for (a, b), c in s.positives.items():
            pos[a, b] += c
        for (a, b), c in s.negatives.items():
            neg[a, b] += c
        d = delong_test(pos, neg)
        v = verdict(d, alpha, min_difference)
        n = round(d.n_pos + d.n_neg)
        return ChallengerResult(
            champion, challenger, n, "roc_auc", "DeLong", d.auc_a, d.auc_b, d.difference,
            d.p_value, v.outcome,
        )  # fmt: skip
    t = s.table
    if sum(t.values()):
        m = mcnemar_test(t["yy"], t["yn"], t["ny"], t["nn"])
        v = verdict(m, alpha, min_difference)
        return ChallengerResult(
            champion, challenger, m.n, "accuracy", f"McNemar ({m.method})", m.accuracy_a,
            m.accuracy_b, m.difference, m.p_value, v.outcome,
        )  # fmt: skip
    return None
