"""Fairness of one window: the sensitive segment key's groups, from the labelled pairs
each group's slice keeps (its confusion counts), judged by `streamdrift.fairness`."""

from __future__ import annotations

from dataclasses import dataclass

from streamdrift.fairness import (
    BoundCrossing,
    FairnessBound,
    FairnessReport,
    GroupCounts,
    crossed_bounds,
    fairness_report,
)
from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import WindowSketch


@dataclass(frozen=True, slots=True)
class FairnessFinding:
    key: str
    report: FairnessReport
    crossings: list[BoundCrossing]
    #: enough labelled pairs in the reference group and one other to judge at all
    checked: bool


def group_counts(
    profile: ReferenceProfile, window: WindowSketch, key: str
) -> dict[str, GroupCounts]:
    """Confusion counts per value of segment key `key` (binary task, positive class)."""
    positive = profile.positive_class
    prefix = f"{key}="
    out: dict[str, GroupCounts] = {}
    for name, sk in window.slices.items():
        if not name.startswith(prefix) or sk.performance is None:
            continue
        tp = fp = tn = fn = 0
        for (actual, predicted), c in sk.performance.confusion.items():
            if actual == positive:
                tp, fn = (tp + c, fn) if predicted == positive else (tp, fn + c)
            else:
                fp, tn = (fp + c, tn) if predicted == positive else (fp, tn + c)
        if tp + fp + tn + fn:
            out[name[len(prefix) :]] = GroupCounts(tp=tp, fp=fp, tn=tn, fn=fn)
    return out


def fairness_check(profile: ReferenceProfile, window: WindowSketch) -> FairnessFinding | None:
    """None when the model is not a binary classifier or has no sensitive key."""
    policy = profile.config.fairness
    key = policy.sensitive_key
    if key is None or profile.task != "binary" or profile.positive_class is None:
        return None
    counts = group_counts(profile, window, key)
    if not counts:
        return None
    report = fairness_report(
        counts, policy.reference_group, policy.confidence, policy.min_group_size
    )
    bounds = [FairnessBound(metric, limit) for metric, limit in policy.bounds.items()]
    ref = report.groups.get(report.reference) if report.reference is not None else None
    checked = (
        ref is not None
        and not ref.small
        and any(not g.small for name, g in report.groups.items() if name != report.reference)
    )
    return FairnessFinding(key, report, crossed_bounds(report, bounds), checked)
