"""Typed configuration: process settings from the environment, monitor settings per model.

Settings are validated once at start and printed in full by `streamdrift config`, passwords
masked, so a user always sees what is in force. Per-model monitor settings travel inside the
reference profile in Redis, so every stateless worker applies the same ones.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamdrift.errors import ConfigError
from streamdrift.redaction import is_secret_setting, mask_settings, mask_url, remember, url_password

DriftStatistic = Literal[
    "cohen_w", "psi", "jensen_shannon", "hellinger", "wasserstein", "ks", "kl_divergence"
]

#: Statistics that exist for categorical features (KS and Wasserstein need an order).
CATEGORICAL_STATISTICS = frozenset(
    {"cohen_w", "psi", "jensen_shannon", "hellinger", "kl_divergence"}
)

#: The effect size that judges when the policy names neither statistic nor threshold:
#: Cohen's w less its sampling noise (`statistics.cohen_w`), one scale for every sample
#: size, kind and number of categories.
DEFAULT_STATISTIC = "cohen_w"

#: Its default threshold per kind of column. 0.3 is Cohen's "medium" effect. The
#: simulation in `benchmarks/drift_power.py` backs it: a categorical shift like
#: .30/.25/.20/.15/.10 -> .20 each (w 0.36) is flagged in every window of 2,000 events
#: or more, a numeric mean shift of 0.5 sd (w 0.48) and a variance doubled (w 0.38) too,
#: while no stationary window is flagged (PSI 0.2, the old default, never reaches a
#: doubled variance, PSI 0.16, nor that category shift, PSI 0.135).
DEFAULT_THRESHOLDS: dict[str, float] = {"numeric": 0.3, "categorical": 0.3}

#: Under Cohen's w, "statistically real" means "shown to exceed half the threshold":
#: the p-value that judges is the minimum-effect test's (`statistics.min_effect_p_value`,
#: null hypothesis w <= threshold * MIN_EFFECT_FRACTION, 0.15 at the default), not the
#: chi-square test's (null hypothesis: nothing changed). Why: the chi-square test passes
#: alpha of stationary windows, and against a small baseline (a rolling or seasonal one
#: of 800 events, windows of 400: an effective sample of 267) w >= 0.3 asks for little
#: more (X2 >= K - 1 + 0.09 * 267), so the two together flagged 1-10 stationary
#: feature-windows in 10,000 in `benchmarks/drift_power.py`. Ruling out 0.15 flags none
#: in any of its regimes (20,000-row reference, baselines of 800 and 2,000 events) and
#: keeps the power against the reference: the issue's category shift and a doubled
#: variance in every window of 2,000 events or more, as before. Ruling out 0.1
#: (Cohen's "small", `--min-effect-fraction 0.333`) still flagged 1-2 in 10,000; ruling
#: out the threshold itself (a lower confidence bound of w above 0.3) caught that
#: category shift in 72 % of windows of 2,000 events and a doubled variance against a
#: small baseline in 6-27 %. Where evidence is plentiful both p-values pass alike.
MIN_EFFECT_FRACTION = 0.5

#: A threshold set without a statistic was a PSI threshold before Cohen's w became the
#: default, and a statistic set without a threshold had 0.2: both still mean that.
LEGACY_STATISTIC = "psi"
LEGACY_THRESHOLD = 0.2

#: What a window's drift can be judged against (see `streamdrift.baselines`).
Baseline = Literal["reference", "rolling", "seasonal"]


class CumulativePolicy(BaseModel):
    """Slow drift across windows (`sequential.mean_cusum`, `share_cusum`): a two-sided
    CUSUM of each numeric feature's (and the score's) window mean in the reference's
    standard deviations, and an upward one of each feature's missing share. A shift
    below the allowance never accumulates; one above it, however slow, crosses the
    threshold, and then the run's mean excess over the allowance must be significant
    too (p below the drift policy's `p_value` / features), so windows of few events
    cannot cross on noise. The defaults design for Cohen's small effect (d = 0.2): a
    mean creeping 0.05 sd a window is caught by +0.25 sd, a lasting shift of 0.2 sd
    after two windows, one of 0.15 sd after three, one of 0.1 sd never."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    mean_allowance: float = Field(
        0.1, ge=0, description="mean shift (reference sds) a window may show without counting"
    )
    mean_threshold: float = Field(
        0.15, gt=0, description="accumulated excess shift (sds x windows) that alarms"
    )
    missing_allowance: float = Field(
        0.01, ge=0, description="missing share above the reference's that does not count"
    )
    missing_threshold: float = Field(
        0.03, gt=0, description="accumulated excess missing share that alarms"
    )
    windows: int = Field(48, ge=2, le=1000, description="windows of history the sums run over")


class DriftPolicy(BaseModel):
    """When a feature's window counts as drifted.

    Two gates, both required, keep false alarms rare: an effect size (`statistic` at or
    above `threshold`; by default Cohen's w less its sampling noise, at or above 0.3,
    Cohen's "medium") and a significance test on the window's bins against the
    reference or baseline, p below `p_value` divided by the number of features
    (Bonferroni). Under Cohen's w the test rules out a shift of half the threshold (the
    minimum-effect test, `min_effect`), under the other statistics it rules out no
    shift at all (chi-square). A huge window shows a tiny p-value for a harmless shift;
    a small one can show a large distance by chance. Only both together mean "real and
    large enough to act on". Leaving `statistic` and `threshold` unset takes the
    defaults per kind of column (`judge`); a threshold alone keeps meaning PSI, as it
    did before.
    """

    model_config = ConfigDict(extra="forbid")

    statistic: DriftStatistic | None = Field(
        None,
        description="the effect size that judges (null: cohen_w, or psi when only a "
        "threshold is set)",
    )
    threshold: float | None = Field(
        None,
        gt=0,
        description="the effect size's drift line (null: 0.3 for the default cohen_w, "
        "0.2 for a statistic named without one)",
    )
    p_value: float = Field(0.01, gt=0, lt=1)
    min_samples: int = Field(200, ge=1)
    critical_factor: float = Field(
        2.5, gt=1, description="value >= threshold * critical_factor gives severity critical"
    )
    baselines: list[Baseline] = Field(
        default_factory=lambda: ["reference"],
        min_length=1,
        description="what drift is judged against: reference, rolling, seasonal; with "
        "several, a feature drifts only when every available one says so",
    )
    rolling_windows: int = Field(
        24, ge=1, le=10_000, description="earlier windows pooled by the rolling baseline"
    )
    season_seconds: int = Field(
        86400, ge=1, description="the seasonal baseline's period (a multiple of window_seconds)"
    )
    seasons: int = Field(4, ge=1, le=520, description="periods pooled by the seasonal baseline")
    until_history: Literal["reference", "wait"] = Field(
        "reference",
        description="while no chosen baseline has enough history: judge against the "
        "reference, or give no drift verdict (for a rhythm the reference cannot know)",
    )
    importance_threshold: float = Field(
        0.5, gt=0, description="importance-weighted drift at or above it counts as drifted"
    )
    importance_cap: float = Field(
        3.0, ge=1, description="a feature adds at most this many thresholds' worth of drift"
    )
    cumulative: CumulativePolicy = Field(default_factory=CumulativePolicy)

    def judge(self, kind: str) -> tuple[str, float]:
        """The statistic and threshold that judge a column of `kind` ("numeric" or
        "categorical"). Unset, both take the per-kind defaults; a threshold set alone
        is a PSI threshold and a statistic set alone has 0.2, as before Cohen's w was
        the default, so configs written then keep their meaning. A categorical column
        under a statistic it cannot have (KS, Wasserstein: they need an order) is
        judged by PSI at the policy's threshold, as before."""
        if self.statistic is None and self.threshold is None:
            return DEFAULT_STATISTIC, DEFAULT_THRESHOLDS[kind]
        statistic: str = self.statistic or LEGACY_STATISTIC
        if kind == "categorical" and statistic not in CATEGORICAL_STATISTICS:
            statistic = LEGACY_STATISTIC
        threshold = self.threshold
        if threshold is None:
            threshold = (
                DEFAULT_THRESHOLDS[kind] if statistic == DEFAULT_STATISTIC else LEGACY_THRESHOLD
            )
        return statistic, threshold

    def min_effect(self, kind: str) -> float | None:
        """The effect the significance test must rule out for a column of `kind`: half
        the threshold when Cohen's w judges (`MIN_EFFECT_FRACTION`), None (nothing
        changed: the chi-square test) under any other statistic, whose scale the
        chi-square's non-centrality does not share."""
        statistic, threshold = self.judge(kind)
        return threshold * MIN_EFFECT_FRACTION if statistic == DEFAULT_STATISTIC else None

    @field_validator("baselines")
    @classmethod
    def _distinct_baselines(cls, baselines: list[str]) -> list[str]:
        if len(set(baselines)) != len(baselines):
            raise ValueError("names a baseline twice")
        return baselines


def check_importance(weights: dict[str, float]) -> dict[str, float]:
    """Feature importances as given, if usable: finite, non-negative, not all zero."""
    bad = [k for k, v in weights.items() if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"importance of {', '.join(bad)} is not a finite number >= 0")
    if not sum(weights.values()) > 0:
        raise ValueError("importances add up to 0")
    return weights


class FeaturePolicy(BaseModel):
    """One feature's departures from the model's drift policy (`features` in the monitor
    config): another statistic, threshold, p-value or minimum sample, or no verdict at
    all (`enabled: false`). Unset keys keep the model's."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    statistic: DriftStatistic | None = None
    threshold: float | None = Field(None, gt=0)
    p_value: float | None = Field(None, gt=0, lt=1)
    min_samples: int | None = Field(None, ge=1)


class QualityPolicy(BaseModel):
    """When a window's data quality counts as broken (`data_quality` alerts).

    Each check compares the window with the reference and needs `min_events` events, so
    a handful of odd events do not page anyone; each change is raised once per model and
    feature, with the first window it was seen in."""

    model_config = ConfigDict(extra="forbid")

    min_events: int = Field(200, ge=1)
    range_margin: float = Field(
        0.1, ge=0, description="share of the reference range allowed beyond its min and max"
    )
    out_of_range_share: float = Field(0.01, gt=0, le=1)
    missing_increase: float = Field(
        0.1, gt=0, le=1, description="missing share above the reference's that counts"
    )
    unseen_share: float = Field(0.05, gt=0, le=1, description="share of unseen categories")
    added_share: float = Field(0.5, gt=0, le=1, description="share of events with a new feature")
    wrong_type_events: int = Field(10, ge=1, description="wrong-typed values of one feature")
    duplicate_share: float = Field(
        0.01, gt=0, le=1, description="share of events repeating an earlier prediction_id"
    )
    cardinality_factor: float | None = Field(
        5.0,
        gt=1,
        description="a categorical feature with this many times the reference's distinct "
        "values in a window is a cardinality explosion (null: no distinct counts kept)",
    )
    cardinality_min_excess: int = Field(
        50, ge=1, description="... and with at least this many distinct values more"
    )


class MultivariatePolicy(BaseModel):
    """Drift in how the numeric features move together (`multivariate_drift` alerts).

    The data reconstruction error (PCA on the reference's standardised numeric features,
    the fewest components explaining more than `explained_variance`) is kept per window
    as a binned column and judged like a feature, with the model's drift policy.
    Correlations of pairs of a few features (`correlation_features`, else the top
    `correlation_top_k` by feature importance, else those most correlated in the
    reference) are kept as sums and tested against the reference's with Fisher's z, as
    one family (Holm, `correlation_p_value`), a pair flagged only when its correlation
    moved by significantly more than `min_correlation_change`, with `min_samples` events.
    """

    model_config = ConfigDict(extra="forbid")

    reconstruction: bool = Field(True, description="keep and judge the reconstruction error")
    explained_variance: float = Field(
        0.65, gt=0, lt=1, description="variance the principal components must explain"
    )
    correlation: bool = Field(True, description="keep and test pairwise correlations")
    correlation_features: list[str] | None = Field(
        None,
        min_length=2,
        max_length=10,
        description="numeric features whose pairs are watched (default: by importance)",
    )
    correlation_top_k: int = Field(
        6, ge=2, le=10, description="features chosen when none are named (k(k-1)/2 pairs)"
    )
    correlation_p_value: float = Field(
        0.01, gt=0, lt=1, description="family-wise level over the pairs (Holm)"
    )
    min_correlation_change: float = Field(
        0.2, gt=0, le=2, description="a pair's correlation must move significantly more"
    )
    min_samples: int = Field(200, ge=4, description="events of a pair needed to judge it")

    @field_validator("correlation_features")
    @classmethod
    def _distinct_features(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(set(names)) != len(names):
            raise ValueError("names a feature twice")
        return names


WatchedMetric = Literal["roc_auc", "log_loss", "accuracy", "calibration_error"]


class SequentialPolicy(BaseModel):
    """Degradation found inside windows as labels arrive (`sequential.degradation_scan`):
    the labelled pairs of each of `sub_windows` parts of a window (by the prediction's
    time), scanned for the cut after which the error rate (accuracy) or the mean log loss
    (absolute error for a regressor) is worse than before it. The alarm needs the cut's
    log-likelihood ratio at least `threshold` nats (plus ln of the number of metrics
    scanned: Bonferroni) and the drop at least the policy's minimum for the metric, with
    `min_labels` pairs after the cut and the policy's `min_labels` before it. The default
    threshold keeps false alarms below 1 per 10,000 sub-window evaluations of a
    stationary stream (`benchmarks/sequential.py`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    sub_windows: int = Field(10, ge=1, le=60, description="parts of a window the join keeps")
    threshold: float = Field(10.0, gt=0, description="log-likelihood ratio (nats) that alarms")
    min_labels: int = Field(30, ge=5, description="labelled pairs after the cut")
    span_windows: int = Field(
        1, ge=1, le=100, description="the worse part begins at most this many windows back"
    )


class PerformancePolicy(BaseModel):
    """When a window's performance counts as degraded.

    Compared with the reference performance and with the pooled recent windows, by a
    one-sided z-test on the metric's standard error: the window must be worse by at least
    `min_degradation` (absolute, in the metric's units; relative for error metrics but
    calibration error, a probability gap) and significantly so (p below `p_value`) with
    at least `min_labels` labels. A detector (ADWIN, Page–Hinkley) firing on the
    per-window series adds evidence to the alert.

    With `metric` unset, a scored binary model is watched on each of `watched` (ROC-AUC
    stays its headline): the alert fires on whichever is degraded first and names it,
    each tested at `p_value` / len(watched) (Bonferroni), so that watching several
    metrics raises no more false alarms than watching one.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(
        None,
        description="default: roc_auc for scored binary (the headline, with `watched` "
        "alerting), accuracy, mae for regression; set: that metric alone",
    )
    watched: list[WatchedMetric] = Field(
        ["roc_auc", "log_loss", "accuracy", "calibration_error"],
        min_length=1,
        description="scored binary, metric unset: the metrics the degradation alert "
        "watches, the first degraded one firing (Bonferroni over them)",
    )
    min_labels: int = Field(200, ge=10)
    p_value: float = Field(0.001, gt=0, lt=1)
    min_degradation: float = Field(0.05, gt=0)
    min_degradations: dict[str, float] = Field(
        default_factory=dict,
        description="per metric, the min_degradation it needs instead (same units)",
    )
    recent_windows: int = Field(6, ge=1, le=100, description="pooled as the recent baseline")
    detector_windows: int = Field(
        48, ge=3, le=1000, description="windows of metric history the drift detectors read"
    )
    sequential: SequentialPolicy = Field(default_factory=SequentialPolicy)

    @field_validator("watched")
    @classmethod
    def _distinct_metrics(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("names a metric twice")
        return names

    @field_validator("min_degradations")
    @classmethod
    def _positive_minimums(cls, minimums: dict[str, float]) -> dict[str, float]:
        if any(not v > 0 for v in minimums.values()):
            raise ValueError("a minimum degradation must be above 0")
        return minimums

    def minimum(self, metric: str) -> float:
        """How much worse `metric` must be to count (`min_degradations`, else
        `min_degradation`)."""
        return self.min_degradations.get(metric, self.min_degradation)


class EstimationPolicy(BaseModel):
    """Performance estimated before labels (CBPE, `streamdrift.estimation`), for binary
    classifiers registered with scores and labels: when a window's estimated metric
    counts as degraded (`estimated_performance_degradation`).

    Every window with `min_predictions` scored predictions gets estimates of ROC-AUC,
    accuracy, precision, recall and F1, each within a band of ± `band` sampling errors
    (NannyML's). The watched `metric` counts as degraded when its estimate lies at least
    `min_degradation` below the reference's own estimate and the reference lies outside
    the window's band."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    metric: Literal["roc_auc", "accuracy", "precision", "recall", "f1"] | None = Field(
        None, description="default: performance.metric when estimable, else roc_auc"
    )
    min_predictions: int = Field(200, ge=10, description="scored predictions a window needs")
    min_degradation: float = Field(
        0.05, gt=0, description="how far below the reference's estimate counts (absolute)"
    )
    band: float = Field(
        3.0,
        gt=0,
        description="sampling errors either side of an estimate; a drop beyond it is "
        "significant (NannyML's 3)",
    )


class EpisodePolicy(BaseModel):
    """How findings become alert episodes (see `streamdrift.episodes`): one `open` alert
    when a condition starts, one `resolved` when it has been absent a while."""

    model_config = ConfigDict(extra="forbid")

    resolve_after_windows: int = Field(
        2, ge=1, le=100, description="complete windows without the condition that end it"
    )
    complete_after_idle_seconds: float = Field(
        60.0,
        ge=0,
        description="a window is complete once every partition moving has passed its "
        "end in event time; once none has moved for 10x this long (the stream stopped), "
        "once it is over and nothing was applied to it for this long",
    )
    settled_label_coverage: float = Field(
        0.9,
        gt=0,
        le=1,
        description="a window's performance can end an episode once its label coverage "
        "reaches this share of the recent windows' typical coverage",
    )


class VolumePolicy(BaseModel):
    """When a window's event count is abnormal (`volume` alerts, route ops): below
    `min_ratio` or above `max_ratio` times the expected count, and significantly so
    (Poisson test, p below `p_value`). The expected count is the median of the last
    `history_windows` complete windows, or of the same window position in the last
    periods when `season_seconds` is set (traffic with a daily rhythm)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_ratio: float = Field(0.25, gt=0, lt=1)
    max_ratio: float = Field(4.0, gt=1)
    history_windows: int = Field(24, ge=1, le=1000)
    min_history: int = Field(3, ge=1, description="complete windows needed before judging")
    season_seconds: int | None = Field(None, ge=1)
    seasons: int = Field(4, ge=1, le=52)
    p_value: float = Field(0.001, gt=0, lt=1)


class SlicePolicy(BaseModel):
    """Slices of the model's traffic monitored on their own (see `streamdrift.slices`):
    each model version, and each value of the segment keys named here."""

    model_config = ConfigDict(extra="forbid")

    segment_keys: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="keys of the events' `segments` (columns of the reference) whose "
        "values are monitored one by one",
    )
    max_segment_values: int = Field(
        10,
        ge=1,
        le=100,
        description="values kept per segment key (the reference's most "
        "frequent); others count in `<key>=__other__`",
    )
    max_versions: int = Field(
        10,
        ge=0,
        le=100,
        description="versions with state of their own, the newest; "
        "older ones count in `v=__other__` (0: no version slices)",
    )
    min_events: int = Field(
        200, ge=10, description="a slice's window is judged from this many events on"
    )
    comparison_p_value: float = Field(
        0.001, gt=0, lt=1, description="champion vs challenger: the paired test's level"
    )
    comparison_min_difference: float = Field(
        0.02,
        ge=0,
        description="champion vs challenger: the smallest difference reported "
        "(ROC-AUC or accuracy points, MAE units)",
    )
    comparison_min_pairs: int = Field(
        200, ge=10, description="common labelled ids a comparison needs"
    )

    @field_validator("segment_keys")
    @classmethod
    def _plain_keys(cls, keys: list[str]) -> list[str]:
        for k in keys:
            if not k or any(c in k for c in "=[]|,:"):
                raise ValueError(f"segment key {k!r} must be non-empty, without = [ ] | , :")
        return list(dict.fromkeys(keys))


class FairnessPolicy(BaseModel):
    """Group fairness of a binary classifier across the values of one sensitive segment
    key (declared in `slices.segment_keys`), from each group's labelled pairs: a
    `fairness` alert when a bound is crossed with significance (the whole confidence
    interval beyond it), see `streamdrift.fairness`."""

    model_config = ConfigDict(extra="forbid")

    sensitive_key: str | None = None
    reference_group: str | None = Field(
        None, description="the privileged group compared with (default: the largest)"
    )
    bounds: dict[
        Literal[
            "disparate_impact",
            "demographic_parity_difference",
            "equal_opportunity_difference",
            "false_positive_rate_difference",
            "equalized_odds_difference",
        ],
        float,
    ] = Field(
        default_factory=lambda: {"disparate_impact": 0.8},
        description="disparate_impact: the lowest selection-rate ratio allowed (0.8: the "
        "four-fifths rule); a difference: the largest size allowed",
    )
    confidence: float = Field(0.99, gt=0.5, lt=1)
    min_group_size: int = Field(100, ge=10, description="labelled pairs a group needs")


class MonitorConfig(BaseModel):
    """Per-model monitor settings (`register --config FILE`, JSON)."""

    model_config = ConfigDict(extra="forbid")

    window_seconds: int = Field(3600, ge=1, description="tumbling event-time window length")
    retention_seconds: int = Field(
        7 * 86400, ge=60, description="how long a window's state lives after its end (TTL)"
    )
    numeric_bins: int = Field(10, ge=2, le=200, description="reference-quantile bins")
    max_categories: int = Field(50, ge=1, le=10_000, description="categories kept per feature")
    evaluation_interval_seconds: float = Field(
        2.0, ge=0, description="at most one drift evaluation per model this often"
    )
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    join_horizon_seconds: int = Field(
        30 * 86400, ge=0, description="how long a prediction waits for its label (0: no join)"
    )
    dedupe_horizon_seconds: int = Field(
        3600,
        ge=0,
        description="without a join: how long past its window's end an id is kept to "
        "count repeats (0: ids not kept)",
    )
    decision_threshold: float = Field(
        0.5, gt=0, lt=1, description="binary: a score at or above it predicts the positive class"
    )
    performance: PerformancePolicy = Field(default_factory=lambda: PerformancePolicy())
    estimation: EstimationPolicy = Field(default_factory=lambda: EstimationPolicy())
    quality: QualityPolicy = Field(default_factory=lambda: QualityPolicy())
    outlier_rate: float = Field(
        0.001, gt=0, lt=0.5, description="share of reference-like events flagged as outliers"
    )
    outlier_alerts: Literal["share", "events"] = Field(
        "share",
        description="share: alert on a window's outlier share (an episode); events: also "
        "publish single outlying events (they are always recorded, see inspect)",
    )
    outlier_alerts_per_window: int = Field(
        3,
        ge=0,
        le=1000,
        description="outlying events recorded per window (and published "
        "with outlier_alerts=events)",
    )
    episodes: EpisodePolicy = Field(default_factory=lambda: EpisodePolicy())
    slices: SlicePolicy = Field(default_factory=lambda: SlicePolicy())
    fairness: FairnessPolicy = Field(default_factory=lambda: FairnessPolicy())
    multivariate: MultivariatePolicy = Field(default_factory=lambda: MultivariatePolicy())
    volume: VolumePolicy = Field(default_factory=lambda: VolumePolicy())
    silence_seconds: float | None = Field(
        None,
        ge=0,
        description="a `freshness` alert when the model sent nothing for this long "
        "(default: 3 windows, at least 5 minutes; 0: off)",
    )

    def silence_after(self) -> float | None:
        if self.silence_seconds == 0:
            return None
        if self.silence_seconds is None:
            return max(3.0 * self.window_seconds, 300.0)
        return self.silence_seconds

    features: dict[str, FeaturePolicy] = Field(
        default_factory=dict, description="per-feature drift policy, over the model's"
    )
    feature_importance: dict[str, float] | None = Field(
        None,
        description="feature -> importance (normalised to sum 1 at register); features "
        "not named weigh 0",
    )

    @field_validator("feature_importance")
    @classmethod
    def _usable_importance(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        return None if weights is None else check_importance(weights)

    @model_validator(mode="after")
    def _sensitive_key_is_sliced(self) -> MonitorConfig:
        key = self.fairness.sensitive_key
        if key is not None and key not in self.slices.segment_keys:
            raise ValueError(
                f"fairness.sensitive_key '{key}' must be one of slices.segment_keys "
                f"({', '.join(self.slices.segment_keys) or 'none declared'}): add it there"
            )
        return self

    @model_validator(mode="after")
    def _season_of_whole_windows(self) -> MonitorConfig:
        drift = self.drift
        if "seasonal" in drift.baselines and (
            drift.season_seconds % self.window_seconds or drift.season_seconds < self.window_seconds
        ):
            raise ValueError(
                f"drift.season_seconds ({drift.season_seconds}) must be a multiple of "
                f"window_seconds ({self.window_seconds}) for the seasonal baseline"
            )
        return self

    def feature_policy(self, name: str) -> DriftPolicy:
        """The drift policy of feature `name`: the model's, with the feature's overrides."""
        own = self.features.get(name)
        if own is None:
            return self.drift
        changes = own.model_dump(exclude={"enabled"}, exclude_none=True)
        return self.drift.model_copy(update=changes) if changes else self.drift

    def feature_enabled(self, name: str) -> bool:
        own = self.features.get(name)
        return own is None or own.enabled

    @classmethod
    def from_file(cls, path: str | Path | None) -> MonitorConfig:
        """Read a JSON monitor config; a missing file or a wrong key is a one-line error."""
        if path is None:
            return cls()
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"config file {p} not found", "pass an existing JSON file to --config"
            )
        try:
            return cls.model_validate(orjson.loads(p.read_bytes()))
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"config file {p} is not valid JSON: {e}", "fix the JSON") from None
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])  # empty: the config as a whole
            raise ConfigError(
                f"config file {p}: {where + ': ' if where else ''}{first['msg']}",
                "see `streamdrift config --defaults` for valid keys and values",
            ) from None


_KAFKA_PREFIX = "STREAMDRIFT_KAFKA_"
_MAY_HOLD_SECRETS = frozenset({"kafka_bootstrap", "redis_url", "kafka_extra"})


class Settings(BaseSettings):
    """Process settings, from `STREAMDRIFT_*` environment variables.

    `redis_url` and `kafka_extra` may hold passwords. They stay plain `str`s, as Redis and
    librdkafka take them, but repr, str and `redacted()` mask them, and validation errors
    leave input values out, so neither `streamdrift config` nor a stray
    `log.info("%s", settings)` prints a secret."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMDRIFT_", extra="ignore", hide_input_in_errors=True
    )

    kafka_bootstrap: str = "localhost:9092"
    redis_url: str = "redis://localhost:6379/0"
    predictions_topic: str = "predictions"
    labels_topic: str = "labels"
    alerts_topic: str = "alerts"
    consumer_group: str = "streamdrift"
    notify_group: str = Field(
        "streamdrift-notify", description="`streamdrift notify`'s consumer group on the alerts"
    )
    notify_metrics_port: int = Field(
        9401, ge=-1, le=65535, description="`streamdrift notify`'s /metrics; 0: any, -1: off"
    )
    batch_size: int = Field(5000, ge=1, description="max messages per poll")
    max_apply_ms: float = Field(
        0.0,
        ge=0,
        description="an apply script should hold Redis at most about this long: the "
        "worker polls 1000 messages at first, and grows or shrinks its polls by the "
        "scripts' time (a message costs ~3-4 µs of it), at a cost in throughput; 0 (the "
        "default): always batch_size",
    )
    poll_timeout_seconds: float = Field(0.5, gt=0)
    max_event_bytes: int = Field(65536, ge=256, description="larger messages go to the DLQ")
    columnar_decode: bool = Field(
        True,
        description="read batches of predictions in columns (the compiled reader, or "
        "pyarrow's where it was not built) once a model's event shape is known; off: event "
        "by event with orjson (same counts)",
    )
    session_timeout_ms: int = Field(10000, ge=1000)
    metrics_port: int = Field(
        9400, ge=-1, le=65535, description="/metrics, /healthz, /readyz; 0: any free port, -1: off"
    )
    metrics_max_features: int = Field(
        20, ge=0, description="features per model in the model-health metrics (the most drifted)"
    )
    log_format: Literal["json", "text"] = "json"
    allow_eviction: bool = Field(
        False,
        description="accept a Redis whose maxmemory-policy evicts keys (state may vanish)",
    )
    kafka_extra: dict[str, str] = Field(default_factory=dict)
    ui_token: SecretStr | None = Field(
        None, description="bearer token `streamdrift serve` asks for (none: no token asked)"
    )

    @field_validator("redis_url")
    @classmethod
    def _readable_redis_url(cls, url: str) -> str:
        """A password holding `/`, `?` or `#` unencoded ends the host part early for
        redis-py, whose error would then quote a piece of the password; refuse it here
        with the fix instead. (`@` and `:` are fine.)"""
        password = url_password(url)
        try:
            parts = urlsplit(url)
            # a cluster's URL names several nodes: host:port,host:port
            for node in parts.netloc.rpartition("@")[2].split(","):
                urlsplit(f"//{node}").port  # noqa: B018 - raises on a port that is not a number
            ok = password is None or parts.password == password
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                "cannot be read as a URL: percent-encode / ? # in the password as %2F %3F %23"
            )
        remember(password)
        return url

    @model_validator(mode="after")
    def _collect_kafka_passthrough(self) -> Settings:
        # Any other STREAMDRIFT_KAFKA_<NAME> is a librdkafka setting: SASL, TLS, ...
        if not self.kafka_extra:
            for key, value in os.environ.items():
                if key.startswith(_KAFKA_PREFIX) and key != _KAFKA_PREFIX + "BOOTSTRAP":
                    name = key[len(_KAFKA_PREFIX) :].lower().replace("_", ".")
                    self.kafka_extra[name] = value
        remember(*(v for k, v in self.kafka_extra.items() if is_secret_setting(k)))
        return self

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-ready values, with the Redis password and secret librdkafka
        settings masked: what `streamdrift config` prints."""
        doc = self.model_dump(mode="json")
        doc["kafka_bootstrap"] = mask_url(self.kafka_bootstrap)
        doc["redis_url"] = mask_url(self.redis_url)
        doc["kafka_extra"] = mask_settings(self.kafka_extra)
        return doc

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # pydantic builds repr(), str() and rich's pretty print from these
        masked = self.redacted()
        for name, value in super().__repr_args__():
            yield name, masked[name] if name in _MAY_HOLD_SECRETS else value

    def to_env(self) -> dict[str, str]:
        """The `STREAMDRIFT_*` variables that give a `streamdrift` process these settings
        (the librdkafka pass-through included): for starting workers from code."""
        env = {
            "STREAMDRIFT_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "STREAMDRIFT_REDIS_URL": self.redis_url,
            "STREAMDRIFT_PREDICTIONS_TOPIC": self.predictions_topic,
            "STREAMDRIFT_LABELS_TOPIC": self.labels_topic,
            "STREAMDRIFT_ALERTS_TOPIC": self.alerts_topic,
            "STREAMDRIFT_CONSUMER_GROUP": self.consumer_group,
            "STREAMDRIFT_NOTIFY_GROUP": self.notify_group,
            "STREAMDRIFT_BATCH_SIZE": str(self.batch_size),
            "STREAMDRIFT_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
            "STREAMDRIFT_METRICS_PORT": str(self.metrics_port),
            "STREAMDRIFT_METRICS_MAX_FEATURES": str(self.metrics_max_features),
            "STREAMDRIFT_NOTIFY_METRICS_PORT": str(self.notify_metrics_port),
            "STREAMDRIFT_LOG_FORMAT": self.log_format,
        }
        env.update(
            {_KAFKA_PREFIX + k.upper().replace(".", "_"): v for k, v in self.kafka_extra.items()}
        )
        return env

    def dlq_topic(self, topic: str) -> str:
        return f"{topic}.dlq"

    @property
    def undelivered_topic(self) -> str:
        """Where `streamdrift notify` puts alerts a sink gave up on."""
        return f"{self.alerts_topic}.undelivered"

    def kafka_common(self) -> dict[str, str]:
        """librdkafka settings shared by every client, secrets in clear: pass them to
        clients only, and print `mask_settings(kafka_common())`."""
        return {"bootstrap.servers": self.kafka_bootstrap, **self.kafka_extra}
