"""Drift monitors: a window's sketches against the reference profile, as plain numbers.

Pure functions: `window_drift` is what `inspect` shows and what the evaluator turns into
alerts, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamdrift.config import DriftPolicy
from streamdrift.profile import NumericProfile, ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.statistics import categorical_drift, numeric_drift

#: Statistics that exist for categoricals; a policy on another one falls back to PSI there.
_CATEGORICAL_STATISTICS = {"psi", "jensen_shannon", "hellinger", "kl_divergence"}


@dataclass(slots=True)
class FeatureDrift:
    """One feature in one window: its statistics and the policy's verdict."""

    feature: str
    kind: str
    sample_size: int
    missing: int
    statistics: dict[str, float]
    statistic: str
    value: float
    threshold: float
    p_value: float
    drifted: bool


def _p_value(stats: dict[str, float]) -> float:
    return stats.get("chi_square_p_value", float("nan"))


def window_drift(profile: ReferenceProfile, window: WindowSketch) -> dict[str, FeatureDrift]:
    """Drift of every feature of `window` against `profile`, with the policy's verdict.

    The significance gate is Bonferroni-corrected over the model's features, so adding
    features does not add false alarms."""
    policy: DriftPolicy = profile.config.drift
    alpha = policy.p_value / max(len(profile.features), 1)
    out: dict[str, FeatureDrift] = {}
    for name, ref in profile.features.items():
        if isinstance(ref, NumericProfile):
            sk = window.numeric.get(name)
            if sk is None or sk.n == 0:
                continue
            positions = ref.bin_positions(sk.minimum, sk.maximum)
            stats = numeric_drift(ref.counts, sk.bins, positions, scale=ref.std or None)
            stats.update(mean=sk.mean, std=sk.std, min=sk.minimum, max=sk.maximum)
            statistic, n, missing = policy.statistic, sk.n, sk.missing
        else:
            cs = window.categorical.get(name)
            if cs is None or cs.n == 0:
                continue
            ref_counts, cur_counts = cs.aligned(ref)
            stats = categorical_drift(ref_counts, cur_counts)
            stats["unseen_categories"] = float(sum(1 for k in cs.counts if k not in ref.categories))
            statistic = policy.statistic if policy.statistic in _CATEGORICAL_STATISTICS else "psi"
            n, missing = cs.n, cs.missing
        value, p = stats[statistic], _p_value(stats)
        drifted = bool(n >= policy.min_samples and value >= policy.threshold and p < alpha)
        out[name] = FeatureDrift(
            feature=name,
            kind=ref.kind,
            sample_size=n,
            missing=missing,
            statistics=stats,
            statistic=statistic,
            value=value,
            threshold=policy.threshold,
            p_value=p,
            drifted=drifted,
        )
    return out
