"""What one window shows: every monitor's verdict, as conditions present or checked.

An episode needs two kinds of news from a window: the conditions that show in it (each
with the alert it would raise and how bad it is), and the conditions that were checked
and did not show (what ends an episode). A condition that could not be checked (too
few events, labels still arriving) is neither: it neither opens nor ends anything.
Pure functions over sketches read from Redis, like `monitors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streamdrift.alerts import (
    MODEL_LEVEL,
    challenger_alert,
    condition_key,
    drift_alerts,
    estimated_performance_alert,
    fairness_alert,
    outlier_event_alerts,
    outlier_share_alert,
    output_alerts,
    performance_alert,
    quality_alerts,
    volume_alert,
)
from streamdrift.champion import JOINT_BINS, ChallengerResult, compare
from streamdrift.cumulative_monitor import cumulative_conditions
from streamdrift.estimation import estimation_check
from streamdrift.events import Alert
from streamdrift.group_fairness import fairness_check
from streamdrift.monitors import (
    FeatureDrift,
    PerformanceFinding,
    output_drift,
    performance_check,
    quality_findings,
    volume_check,
    window_drift,
)
from streamdrift.multivariate_monitor import multivariate_conditions
from streamdrift.performance import PerformanceSketch
from streamdrift.profile import LABEL, PREDICTION, ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.slices import split


@dataclass(slots=True)
class WindowConditions:
    window: int
    #: (alert, magnitude): the conditions that show, how bad (larger is worse)
    present: list[tuple[Alert, float]] = field(default_factory=list)
    #: condition keys checked in this window; a key ending in "*" covers a family
    checked: list[str] = field(default_factory=list)
    #: alerts outside episodes: single outlying events, when asked for
    events: list[Alert] = field(default_factory=list)
    #: what the monitors found, for whoever weighs slices against each other
    drift: dict[str, FeatureDrift] = field(default_factory=dict)
    performance: PerformanceFinding | None = None

    def covers(self, key: str) -> bool:
        base, where = split_key(key)
        for c in self.checked:
            c_base, c_where = split_key(c)
            if c_where == where and (
                base == c_base or (c_base.endswith("*") and base.startswith(c_base[:-1]))
            ):
                return True
        return False


def split_key(key: str) -> tuple[str, str | None]:
    """(condition, slice) of a condition key: "data_drift:amount@[region=eu]" is
    ("data_drift:amount", "region=eu"); a model-level key has no slice."""
    if key.endswith("]"):
        head, sep, name = key[:-1].rpartition("@[")
        if sep:
            return head, name
    return key, None


@dataclass(slots=True)
class History:
    """What the window is judged against besides the reference: the earlier windows'
    counts and performance (`recent`, oldest first), and event counts of the windows
    the volume check compares with."""

    recent: list[WindowSketch] = field(default_factory=list)
    rolling_counts: list[int] = field(default_factory=list)
    seasonal_counts: list[int] = field(default_factory=list)


def labels_settled(
    profile: ReferenceProfile, window: WindowSketch, recent: list[WindowSketch]
) -> bool:
    """Have the window's labels mostly arrived? Its label coverage against the typical
    coverage of earlier windows (a model labelling 10 % of its predictions settles at
    10 %). A window whose labels are still arriving cannot end a performance episode:
    its metric on the first labels is not yet the window's."""
    if window.performance is None or not window.count:
        return False
    coverage = window.performance.labelled / window.count
    earlier = sorted(
        w.performance.labelled / w.count
        for w in recent
        if w.performance is not None and w.count and w.start < window.start
    )
    typical = earlier[len(earlier) // 2] if earlier else 1.0
    return coverage >= profile.config.episodes.settled_label_coverage * typical


def window_conditions(
    profile: ReferenceProfile,
    window: WindowSketch,
    history: History,
    now: float,
    *,
    closed: bool,
    followed: bool,
    baselines: dict[str, WindowSketch] | None = None,
    quiet: bool = True,
    sliced: bool = False,
    champion: str | None = None,
    peers: PerformanceSketch | None = None,
) -> WindowConditions:
    """Every monitor on one window: data quality, feature drift, outlier share,
    prediction and label drift, performance (realized, and estimated before labels),
    and volume. Volume is judged only on a
    complete window (`closed`) that a later window follows (`followed`): a window still
    filling is short because it is filling, and the last window of a stream that stopped is
    short because the stream stopped, which is the freshness check's news. `quiet`: no
    apply (no label joined) touched the window lately. `sliced`: `window` is one slice
    of a window (judged against its own reference, no volume, no slices of its own).
    `champion`: the champion version, compared with each challenger on their common
    labelled ids. `peers`: for a version's slice, the other versions' labelled pairs in
    the same window (a version doing worse than its siblings)."""
    cfg = profile.config
    out = WindowConditions(window.start)
    # the KS p-value only where an alert shows it: reported, never judged, O(window)
    drift = out.drift = window_drift(profile, window, baselines, ks_p=False)
    findings = quality_findings(profile, window)
    outputs = output_drift(profile, window, baselines, ks_p=False)

    for alert in quality_alerts(profile, window, findings, now):
        out.present.append((alert, alert.value))
    if window.count >= cfg.quality.min_events:
        out.checked.append("data_quality:*")

    for alert in drift_alerts(profile, window, drift, now):
        out.present.append((alert, alert.value / alert.threshold if alert.threshold else 0.0))
    out.checked += [
        f"data_drift:{d.feature}"
        for d in drift.values()
        if d.judged_by and d.sample_size >= cfg.feature_policy(d.feature).min_samples
    ]
    if cfg.feature_importance and any(d.judged_by for d in drift.values()):
        out.checked.append(f"data_drift:{MODEL_LEVEL}")

    # multivariate drift: reconstruction error, changed correlations (multivariate_monitor)
    # (the whole model's only: slices keep no multivariate state)
    if not sliced:
        present, checked = multivariate_conditions(profile, window, drift, now, baselines)
        out.present += present
        out.checked += checked

    share = outlier_share_alert(profile, window, now)
    if share is not None:
        out.present.append((share, share.value / max(share.threshold, 1e-12)))
    if profile.outliers is not None and window.count >= cfg.quality.min_events:
        out.checked.append("outlier:share")
    if cfg.outlier_alerts == "events" and not sliced:
        out.events = outlier_event_alerts(profile, window, now)

    # labels keep coming after the window's predictions: their absence of a problem
    # counts once the window is complete, no label joined it lately (`quiet`), and its
    # coverage is the model's usual
    settled = closed and quiet and labels_settled(profile, window, history.recent)
    for alert in output_alerts(profile, window, outputs, drift, now):
        out.present.append((alert, alert.value / max(alert.threshold, 1e-12)))
    shown = {
        LABEL: profile.label_column or "label",
        PREDICTION: profile.prediction_column or "prediction",
    }
    for name, d in outputs.items():
        if d.judged_by and d.sample_size >= cfg.drift.min_samples and (name != LABEL or settled):
            kind = "label_drift" if name == LABEL else "prediction_drift"
            out.checked.append(f"{kind}:{shown[name]}")

    if window.performance is not None:
        earlier = [w for w in history.recent if w.start < window.start]
        k = cfg.performance.detector_windows
        finding = out.performance = performance_check(
            profile, window, earlier[-k:], peers, interim=not settled
        )
        if finding is not None:
            alert = performance_alert(
                profile, window, finding, drift, now, quality=findings, outputs=outputs
            )
            if alert is not None and not closed and alert.context.get("cause") == "unknown":
                # the window still fills and its inputs cannot be checked yet (a drop
                # seen from its first labels, or its partitions read unevenly): raised
                # once they can, or once the window is complete and "unknown" is final
                alert = None
            if alert is not None and finding.worst is not None:
                # in multiples of the metric's minimum: one scale whichever metric fired
                base = finding.fired_baselines[finding.worst]
                minimum = cfg.performance.minimum(finding.fired or finding.metric)
                out.present.append((alert, base["drop"] / minimum))
            if settled:
                out.checked.append(f"performance_degradation:{finding.metric}")

    # performance estimated from the scores alone (CBPE): labels or not, any window
    # with enough scored predictions is checked
    estimate = estimation_check(profile, window)
    if estimate is not None:
        alert = estimated_performance_alert(profile, window, estimate, drift, now)
        if alert is not None:
            out.present.append((alert, estimate.drop))
        out.checked.append(f"estimated_performance_degradation:{estimate.metric}")

    if champion is not None and not sliced:
        for r in challenger_results(profile, window, champion):
            alert = challenger_alert(profile, window, r, now)
            if alert is not None:
                out.present.append((alert, abs(r.difference)))
            if settled and r.pairs >= cfg.slices.comparison_min_pairs:
                out.checked.append(f"challenger_comparison:{r.challenger}")

    # slow drift: window means and missing shares summed across windows, for the
    # conditions the window's own tests did not already raise (theirs say more: the
    # statistics, the segments)
    if not sliced:
        raised = {condition_key(a) for a, _ in out.present}
        out.present += [
            (a, m)
            for a, m in cumulative_conditions(profile, window, history.recent, now)
            if condition_key(a) not in raised
        ]

    if window.slices and not sliced:
        fair = fairness_check(profile, window)
        if fair is not None:
            alert = fairness_alert(profile, window, fair, now)
            if alert is not None:
                out.present.append((alert, abs(alert.value - alert.threshold)))
            if fair.checked and settled:
                out.checked.append(f"fairness:{fair.key}")
        if closed:  # slices are many and small: judged on complete windows only
            _add_slices(out, profile, window, now, closed=closed, quiet=quiet)

    if closed and followed and not sliced:
        volume = volume_check(
            profile, window.count, history.rolling_counts, history.seasonal_counts
        )
        if volume is not None:
            if volume.abnormal:
                alert = volume_alert(profile, window, volume, now)
                out.present.append((alert, abs(math.log(max(volume.ratio, 1e-6)))))
            out.checked.append("volume:events")
    return out


#: data-quality kinds about the producer's schema, the same for every slice
SCHEMA_KINDS = frozenset(
    {"feature_missing", "feature_added", "feature_renamed", "type_change", "duplicate_ids"}
)
#: alert types judged against the drift baselines
DRIFT_TYPES = frozenset({"data_drift", "prediction_drift", "label_drift"})


def _add_slices(
    out: WindowConditions,
    profile: ReferenceProfile,
    window: WindowSketch,
    now: float,
    *,
    closed: bool,
    quiet: bool,
) -> None:
    """Each slice of the window judged like the model, against its own reference. A
    condition the model shows too is one alert: the model's, naming the slices that show
    it (`context.slices`, and `context.versions` for versions). A condition only a slice
    shows (a broken version blended away in the model's figures, a region drifting
    alone) is a condition of its own, `<key>@[<slice>]`, with its own episode."""
    cfg = profile.config
    model_alerts = {condition_key(a): a for a, _ in out.present}
    shown: dict[str, list[dict[str, object]]] = {}
    impacts: dict[str, list[dict[str, object]]] = {}
    for name in sorted(window.slices):
        sk = window.slices[name]
        if sk.count < cfg.slices.min_events or sk.count == window.count:
            continue  # too small to judge, or the whole window (its news is the model's)
        view = profile.slice_profile(name)
        dim, value = split(name)
        found = window_conditions(
            view,
            sk,
            History(),
            now,
            closed=closed,
            followed=False,
            quiet=quiet,
            sliced=True,
            peers=_peers(window, name) if dim == "v" else None,
        )
        if dim != "v":
            _impacts(impacts, view, window, sk, name, found)
        for alert, magnitude in found.present:
            if alert.type == "data_quality" and alert.statistic in SCHEMA_KINDS:
                continue  # the producer's schema is the model's: judged on the whole window
            if alert.type in DRIFT_TYPES and cfg.drift.baselines != ["reference"]:
                continue  # a slice has only its reference, the model's policy wants more
            key = condition_key(alert)
            if key in model_alerts:
                shown.setdefault(key, []).append(
                    {"slice": name, "value": alert.value, "sample_size": alert.sample_size}
                )
                continue
            ctx = {**alert.context, "slice": name}
            update: dict[str, object] = {
                "context": ctx,
                "message": f"[{name}] {alert.message}",
            }
            if dim == "v":
                update["model_version"] = value
            out.present.append((alert.model_copy(update=update), magnitude))
        out.checked += [f"{c}@[{name}]" for c in found.checked]
    for key, alert in model_alerts.items():
        rows = impacts.get(key)
        if rows:
            rows.sort(key=lambda r: -float(r["impact"]))  # type: ignore[arg-type]
            alert.context["worst_segments"] = rows[:5]
        if len(window.versions) > 1:
            alert.context["versions"] = sorted(window.versions)
    for key, rows in shown.items():
        alert = model_alerts[key]
        alert.context["slices"] = rows
        versions = [str(r["slice"])[2:] for r in rows if str(r["slice"]).startswith("v=")]
        if versions:
            alert.context["versions"] = versions
            if len(versions) == 1:
                alert.model_version = versions[0]


def _impacts(
    impacts: dict[str, list[dict[str, object]]],
    view: ReferenceProfile,
    window: WindowSketch,
    sk: WindowSketch,
    name: str,
    found: WindowConditions,
) -> None:
    """How much one segment value weighs in each model-level condition: its share of the
    window's events (of its labelled pairs, for performance) times its gap (its drift
    statistic, or how far its metric is worse than its reference) — `worst_segments`."""
    share = sk.count / window.count if window.count else 0.0
    for d in found.drift.values():
        if d.judged_by and d.value == d.value:
            impacts.setdefault(f"data_drift:{d.feature}", []).append(
                {
                    "segment": name,
                    "share": round(share, 4),
                    "statistic": d.statistic,
                    "gap": round(d.value, 6),
                    "impact": round(share * d.value, 6),
                }
            )
    perf = found.performance
    if perf is not None and window.performance is not None and window.performance.labelled:
        base = perf.baselines.get("reference")
        if base is not None and base["drop"] == base["drop"]:
            labelled = perf.labelled / window.performance.labelled
            impacts.setdefault(f"performance_degradation:{perf.metric}", []).append(
                {
                    "segment": name,
                    "share": round(labelled, 4),
                    "metric": perf.metric,
                    "value": round(perf.value, 6),
                    "gap": round(base["drop"], 6),
                    "impact": round(labelled * base["drop"], 6),
                }
            )


def challenger_results(
    profile: ReferenceProfile, window: WindowSketch, champion: str
) -> list[ChallengerResult]:
    """Each challenger against the champion in the window, where they share enough
    labelled ids to test."""
    policy = profile.config.slices
    out = []
    for challenger in sorted(window.comparisons):
        r = compare(
            champion,
            challenger,
            window.comparisons[challenger],
            profile.task,
            JOINT_BINS,
            alpha=policy.comparison_p_value,
            min_difference=policy.comparison_min_difference,
        )
        if r is not None and r.pairs >= policy.comparison_min_pairs:
            out.append(r)
    return out


def _peers(window: WindowSketch, name: str) -> PerformanceSketch | None:
    """The labelled pairs of every version of the window but `name`, pooled."""
    others = [
        sk.performance
        for other, sk in window.slices.items()
        if other != name and other.startswith("v=") and sk.performance is not None
    ]
    if not others:
        return None
    pooled = others[0]
    for s in others[1:]:
        pooled = pooled + s
    return pooled
