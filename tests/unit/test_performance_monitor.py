"""Performance degradation on simulated labelled streams: the reference performance, the
check of a window against the reference and the recent windows, and the alerts it
raises. The data's truth is known; every expected number comes from scikit-learn,
scipy.stats or numpy applied to the raw simulated arrays."""

from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from streamdrift.alerts import condition_key, encode, output_alerts, performance_alert
from streamdrift.config import MonitorConfig
from streamdrift.decode import ModelEvents
from streamdrift.episodes import Observation, advance
from streamdrift.events import Alert
from streamdrift.monitors import (
    FeatureDrift,
    PerformanceFinding,
    _standard_error,
    headline_metric,
    output_drift,
    performance_check,
    window_performance,
)
from streamdrift.performance import PerformanceSketch, calibration_error_spread, score_edges
from streamdrift.profile import LABEL, PREDICTION, CategoricalProfile
from streamdrift.reference import binary_classes, build_profile, reference_performance
from streamdrift.sketch import CategoricalSketch, WindowSketch, sketch_events

WINDOW = 3600
AUC_TOLERANCE = 0.005  # the README's bound for binned ROC-AUC
REFERENCE_ROWS = 20_000


# ---- simulated models -----------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def calibrated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a well-calibrated binary model and labels drawn as Bernoulli(score)."""
    score = _sigmoid(rng.normal(-1.0, 1.5, n))
    return score, (rng.random(n) < score).astype(int)


def quantized(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The same model with scores at the centres of the 200 score bins, so that the
    binned ROC-AUC equals the exact one (ties count half in both)."""
    score = (np.floor(_sigmoid(rng.normal(-1.0, 1.5, n)) * 200) + 0.5) / 200
    return score, (rng.random(n) < score).astype(int)


def relabel(rng: np.random.Generator, y: np.ndarray, share: float) -> np.ndarray:
    """A degraded relation: a `share` of the labels redrawn independently of the score."""
    y = y.copy()
    hit = rng.random(y.size) < share
    y[hit] = (rng.random(int(hit.sum())) < 0.33).astype(int)
    return y


def binary_window(
    start: int,
    score: np.ndarray,
    y: np.ndarray,
    threshold: float = 0.5,
    count: int | None = None,
    edges: list[float] | None = None,
) -> WindowSketch:
    """A window of labelled pairs, binned in the score layout `edges` (the profile's
    `score_edges`, as the join bins them)."""
    classes = np.where(score >= threshold, "1", "0").tolist()
    perf = PerformanceSketch.from_pairs(
        "binary", y.tolist(), classes, score, "1", score_edges=edges
    )
    return WindowSketch(start=start, count=count or len(y), performance=perf)


def regression_window(start: int, y: np.ndarray, pred: np.ndarray) -> WindowSketch:
    perf = PerformanceSketch.from_pairs("regression", y.tolist(), score=pred)
    return WindowSketch(start=start, count=len(y), performance=perf)


def _write(path, header, columns):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(zip(*columns, strict=True))
    return path


class Reference:
    """A profile built from a reference CSV, and the raw arrays behind it."""

    def __init__(self, profile, score, y):
        self.profile, self.score, self.y = profile, score, y


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("perf_refs")


def _binary_reference(ref_dir, name, sample, seed, **config) -> Reference:
    rng = np.random.default_rng(seed)
    score, y = sample(rng, REFERENCE_ROWS)
    x = rng.normal(0.0, 1.0, REFERENCE_ROWS)
    path = _write(
        ref_dir / f"{name}.csv", ["x", "score", "is_fraud"], [x.tolist(), score.tolist(), y]
    )
    profile = build_profile(
        "fraud",
        path,
        task="binary",
        prediction_column="score",
        label_column="is_fraud",
        config=MonitorConfig(window_seconds=WINDOW, **config),
    )
    return Reference(profile, score, y)


@pytest.fixture(scope="module")
def binary(ref_dir) -> Reference:
    return _binary_reference(ref_dir, "binary", calibrated, 0)


@pytest.fixture(scope="module")
def binned(ref_dir) -> Reference:
    return _binary_reference(ref_dir, "binned", quantized, 1)


@pytest.fixture(scope="module")
def regression(ref_dir) -> Reference:
    rng = np.random.default_rng(2)
    y = rng.normal(50.0, 10.0, REFERENCE_ROWS)
    pred = y + rng.normal(0.0, 2.0, REFERENCE_ROWS)
    x = rng.normal(0.0, 1.0, REFERENCE_ROWS)
    path = _write(ref_dir / "regression.csv", ["x", "pred", "y"], [x, pred, y])
    profile = build_profile(
        "price",
        path,
        task="regression",
        prediction_column="pred",
        label_column="y",
        config=MonitorConfig(window_seconds=WINDOW),
    )
    return Reference(profile, pred, y)


def with_policy(profile, **policy):
    perf = profile.config.performance.model_copy(update=policy)
    return profile.model_copy(
        update={"config": profile.config.model_copy(update={"performance": perf})}
    )


# ---- reference: classes and performance ------------------------------------------------------


def _categorical(counts: dict[str, int]) -> CategoricalProfile:
    n = sum(counts.values())
    return CategoricalProfile(
        categories=counts, other=0, count=n, missing=0, cardinality=len(counts)
    )


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"0": 700, "1": 300}, ("1", "0")),
        ({"1": 900, "0": 100}, ("1", "0")),  # "1" even when it is the common one
        ({"0": 1000}, ("1", "0")),
        ({"true": 200, "false": 800}, ("true", "false")),
        ({"false": 50, "true": 950}, ("true", "false")),
        ({"ok": 900, "fraud": 100}, ("fraud", "ok")),
        ({"fraud": 100, "ok": 900}, ("fraud", "ok")),
        ({"spam": 600, "ham": 400}, ("ham", "spam")),
        ({"a": 500, "b": 300, "c": 200}, (None, None)),
        ({"0": 500, "1": 300, "2": 200}, (None, None)),
        ({"ok": 1000}, (None, None)),
    ],
)
def test_binary_classes(counts, expected):
    assert binary_classes(_categorical(counts)) == expected


def test_two_equally_frequent_classes_are_still_two_classes():
    positive, negative = binary_classes(_categorical({"cat": 500, "dog": 500}))
    assert {positive, negative} == {"cat", "dog"}


def test_reference_performance_matches_sklearn(binary):
    perf = binary.profile.reference_performance
    s, y = binary.score, binary.y
    assert (binary.profile.positive_class, binary.profile.negative_class) == ("1", "0")
    assert perf["labelled"] == REFERENCE_ROWS
    assert perf["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=AUC_TOLERANCE)
    assert perf["accuracy"] == pytest.approx(accuracy_score(y, (s >= 0.5).astype(int)), abs=1e-12)
    assert perf["log_loss"] == pytest.approx(log_loss(y, s), rel=1e-9)
    assert perf["brier"] == pytest.approx(brier_score_loss(y, s), rel=1e-9)
    assert perf["positives"] == y.sum() and perf["negatives"] == (1 - y).sum()


def test_a_scored_binary_profile_has_score_edges_from_its_reference(binary, regression):
    """The layout comes from the reference's scores; the reference's own ROC-AUC, counted
    in it, is within 1e-4 of the exact one."""
    edges = binary.profile.score_edges
    assert edges is not None and edges == score_edges(binary.score)
    perf = binary.profile.reference_performance
    assert perf["roc_auc"] == pytest.approx(roc_auc_score(binary.y, binary.score), abs=1e-4)
    assert regression.profile.score_edges is None


def test_reference_performance_with_rarer_string_positive_and_booleans(ref_dir):
    rng = np.random.default_rng(3)
    score, y = calibrated(rng, 5000)
    strings = np.where(y == 1, "fraud", "ok")
    bools = np.where(y == 1, "true", "false")
    path = _write(
        ref_dir / "classes.csv",
        ["x", "score", "outcome", "flag"],
        [rng.normal(size=5000), score.tolist(), strings.tolist(), bools.tolist()],
    )
    for column, positive in (("outcome", "fraud"), ("flag", "true")):
        profile = build_profile(
            "m", path, task="binary", prediction_column="score", label_column=column
        )
        assert profile.positive_class == positive
        perf = profile.reference_performance
        assert perf["roc_auc"] == pytest.approx(roc_auc_score(y, score), abs=AUC_TOLERANCE)
        assert perf["accuracy"] == pytest.approx(accuracy_score(y, score >= 0.5), abs=1e-12)
        assert perf["log_loss"] == pytest.approx(log_loss(y, score), rel=1e-9)


def test_reference_performance_skips_rows_missing_either_column(binary):
    rng = np.random.default_rng(4)
    score, y = calibrated(rng, 3000)
    preds: list[object] = score.tolist()
    labels: list[object] = y.tolist()
    for i in range(0, 3000, 7):
        preds[i] = None
    for i in range(3, 3000, 11):
        labels[i] = None
    keep = np.array([p is not None and t is not None for p, t in zip(preds, labels, strict=True)])
    perf = reference_performance(binary.profile, preds, labels)
    assert perf["labelled"] == keep.sum()
    assert perf["roc_auc"] == pytest.approx(roc_auc_score(y[keep], score[keep]), abs=AUC_TOLERANCE)
    assert perf["accuracy"] == pytest.approx(accuracy_score(y[keep], score[keep] >= 0.5))
    assert reference_performance(binary.profile, [None, 0.5], [1, None]) == {}


def test_reference_performance_of_a_regressor(regression):
    perf = regression.profile.reference_performance
    pred, y = regression.score, regression.y
    assert perf["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-9)
    assert perf["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, pred)), rel=1e-9)
    assert perf["r2"] == pytest.approx(r2_score(y, pred), rel=1e-9)


def test_headline_metric(binary, regression, tmp_path):
    assert headline_metric(binary.profile) == "roc_auc"
    assert headline_metric(regression.profile) == "mae"
    assert headline_metric(with_policy(binary.profile, metric="f1")) == "f1"
    # a binary model whose prediction column holds classes, not scores
    path = _write(
        tmp_path / "classes.csv", ["x", "pred", "y"], [[0.1, 0.2, 0.3], [1, 0, 1], [1, 1, 0]]
    )
    profile = build_profile("c", path, task="binary", prediction_column="pred", label_column="y")
    assert headline_metric(profile) == "accuracy"


# ---- performance_check -----------------------------------------------------------------------


def test_no_false_alarm_on_a_stationary_labelled_stream(binary):
    """200 windows of the reference model itself, 300 to 3000 labels each, against the
    reference and the pooled recent windows: not one degraded finding."""
    profile = binary.profile
    k_recent = profile.config.performance.recent_windows
    rng = np.random.default_rng(2026)
    windows: list[WindowSketch] = []
    degraded, checked = [], 0
    for k in range(200):
        n = int(rng.integers(300, 3001))
        window = binary_window(
            k * WINDOW, *calibrated(rng, n), count=2 * n, edges=binary.profile.score_edges
        )
        finding = performance_check(profile, window, windows[-k_recent:])
        windows.append(window)
        assert finding is not None and finding.metric == "roc_auc"
        assert finding.labelled == n
        assert finding.metrics["label_coverage"] == 0.5
        assert set(finding.baselines) == ({"reference", "recent"} if k else {"reference"})
        checked += len(finding.baselines)
        if finding.degraded:
            degraded.append((k, finding.worst, finding.baselines))
    assert checked == 399
    assert degraded == []


def test_flipped_labels_are_degraded_against_the_reference(binary):
    rng = np.random.default_rng(10)
    score, y = calibrated(rng, 2000)
    finding = performance_check(
        binary.profile, binary_window(0, score, 1 - y, edges=binary.profile.score_edges), []
    )
    assert finding is not None
    assert finding.degraded and finding.worst == "reference"
    ref = finding.baselines["reference"]
    assert ref["p_value"] < 1e-6
    assert ref["baseline"] == pytest.approx(
        roc_auc_score(binary.y, binary.score), abs=AUC_TOLERANCE
    )
    assert finding.value == pytest.approx(roc_auc_score(1 - y, score), abs=AUC_TOLERANCE)
    assert ref["drop"] == pytest.approx(
        roc_auc_score(binary.y, binary.score) - roc_auc_score(1 - y, score), abs=2 * AUC_TOLERANCE
    )
    assert ref["labelled"] == REFERENCE_ROWS
    assert set(finding.detectors) == {"page_hinkley", "adwin"}
    assert all(type(v) is bool for v in finding.detectors.values())


def test_flipped_labels_after_good_windows(binary):
    """Against both baselines, and the Page–Hinkley detector flags the fall of the
    per-window ROC-AUC series."""
    rng = np.random.default_rng(11)
    recent = [
        binary_window(k * WINDOW, *calibrated(rng, 1000), edges=binary.profile.score_edges)
        for k in range(6)
    ]
    score, y = calibrated(rng, 2000)
    finding = performance_check(
        binary.profile,
        binary_window(6 * WINDOW, score, 1 - y, edges=binary.profile.score_edges),
        recent,
    )
    assert finding.degraded and finding.worst in {"reference", "recent"}
    assert all(b["p_value"] < 1e-6 for b in finding.baselines.values())
    assert finding.baselines["recent"]["labelled"] == 6000
    assert finding.detectors["page_hinkley"] is True
    # the same good windows followed by a good one: no detector fires
    good = performance_check(
        binary.profile,
        binary_window(6 * WINDOW, *calibrated(rng, 2000), edges=binary.profile.score_edges),
        recent,
    )
    assert not good.degraded and good.detectors == {"page_hinkley": False, "adwin": False}


def test_too_few_labels_gives_no_finding(binary):
    rng = np.random.default_rng(12)
    min_labels = binary.profile.config.performance.min_labels
    score, y = calibrated(rng, min_labels)
    # even a hopeless window says nothing below min_labels
    few = binary_window(0, score[:-1], 1 - y[:-1], edges=binary.profile.score_edges)
    assert performance_check(binary.profile, few, []) is None
    enough = performance_check(
        binary.profile, binary_window(0, score, 1 - y, edges=binary.profile.score_edges), []
    )
    assert enough is not None and enough.labelled == min_labels and enough.degraded
    assert performance_check(binary.profile, WindowSketch(start=0, count=5000), []) is None
    stricter = with_policy(binary.profile, min_labels=5000)
    assert (
        performance_check(
            stricter, binary_window(0, *calibrated(rng, 4999), edges=binary.profile.score_edges), []
        )
        is None
    )


def test_significant_but_small_drop_is_not_degraded(binary):
    """A huge window with a real but small drop in ROC-AUC (under min_degradation)."""
    rng = np.random.default_rng(13)
    score, y = calibrated(rng, 200_000)
    y = relabel(rng, y, 0.06)
    finding = performance_check(
        binary.profile, binary_window(0, score, y, edges=binary.profile.score_edges), []
    )
    ref = finding.baselines["reference"]
    drop = roc_auc_score(binary.y, binary.score) - roc_auc_score(y, score)
    assert 0.005 < drop < 0.04
    assert ref["p_value"] < 1e-6
    assert not finding.degraded and finding.worst is None


def test_regression_errors_that_double_degrade_mae(regression):
    rng = np.random.default_rng(14)
    y = rng.normal(50.0, 10.0, 1500)
    pred = y + rng.normal(0.0, 4.0, 1500)
    finding = performance_check(regression.profile, regression_window(0, y, pred), [])
    assert finding.metric == "mae"
    assert finding.degraded and finding.worst == "reference"
    mae_ref = mean_absolute_error(regression.y, regression.score)
    mae_now = mean_absolute_error(y, pred)
    ref = finding.baselines["reference"]
    assert finding.value == pytest.approx(mae_now, rel=1e-9)
    assert ref["baseline"] == pytest.approx(mae_ref, rel=1e-9)
    # the drop of an error metric is relative: about 1 when the errors double
    assert ref["drop"] == pytest.approx((mae_now - mae_ref) / mae_ref, rel=1e-9)
    assert ref["drop"] == pytest.approx(1.0, abs=0.15)
    # standard error of a mean absolute error: the spread of |e| over sqrt(n)
    e_now, e_ref = np.abs(pred - y), np.abs(regression.score - regression.y)
    se = math.hypot(e_now.std() / math.sqrt(e_now.size), e_ref.std() / math.sqrt(e_ref.size))
    assert ref["z"] == pytest.approx((mae_now - mae_ref) / se, rel=1e-6)
    assert ref["p_value"] == pytest.approx(norm.sf((mae_now - mae_ref) / se), rel=1e-6)


def test_regression_stationary_and_better_windows_are_not_degraded(regression):
    rng = np.random.default_rng(15)
    for sd in (2.0, 1.0):  # the same errors, then half of them
        y = rng.normal(50.0, 10.0, 1500)
        window = regression_window(0, y, y + rng.normal(0.0, sd, 1500))
        finding = performance_check(regression.profile, window, [])
        assert not finding.degraded
    assert finding.baselines["reference"]["drop"] == pytest.approx(-0.5, abs=0.05)


def test_accuracy_z_test_is_the_two_proportion_z_test(binary):
    profile = with_policy(binary.profile, metric="accuracy")
    rng = np.random.default_rng(16)
    score, y = calibrated(rng, 1200)
    y = relabel(rng, y, 0.3)
    finding = performance_check(
        profile, binary_window(0, score, y, edges=binary.profile.score_edges), []
    )
    assert finding.metric == "accuracy"
    p_ref = accuracy_score(binary.y, binary.score >= 0.5)
    p_now = accuracy_score(y, score >= 0.5)
    n_ref, n_now = binary.y.size, y.size
    # the unpooled (Wald) two-proportion z statistic
    z = (p_ref - p_now) / math.sqrt(p_ref * (1 - p_ref) / n_ref + p_now * (1 - p_now) / n_now)
    ref = finding.baselines["reference"]
    assert finding.value == pytest.approx(p_now, abs=1e-12)
    assert ref["drop"] == pytest.approx(p_ref - p_now, abs=1e-12)
    assert ref["z"] == pytest.approx(z, rel=1e-9)
    assert ref["p_value"] == pytest.approx(norm.sf(z), rel=1e-9)
    assert 3 < z < 30  # a real test, neither borderline nor degenerate
    assert p_ref - p_now >= 0.05 and norm.sf(z) < 0.001
    assert finding.degraded
    assert _standard_error("accuracy", finding.metrics) == pytest.approx(
        math.sqrt(p_now * (1 - p_now) / n_now), rel=1e-12
    )


def _hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982), Radiology 143:29–36, eq. 2 with Q1 = A/(2-A) and
    Q2 = 2A²/(1+A)."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    numerator = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return math.sqrt(numerator / (n_pos * n_neg))


def test_roc_auc_standard_error_is_hanley_mcneil(binned):
    rng = np.random.default_rng(17)
    score, y = quantized(rng, 1500)
    y = relabel(rng, y, 0.25)
    window = binary_window(0, score, y, edges=binned.profile.score_edges)
    metrics = window_performance(binned.profile, window)
    auc_now, auc_ref = roc_auc_score(y, score), roc_auc_score(binned.y, binned.score)
    # scores at bin centres: the binned ROC-AUC is the exact one
    assert metrics["roc_auc"] == pytest.approx(auc_now, rel=1e-12)
    assert binned.profile.reference_performance["roc_auc"] == pytest.approx(auc_ref, rel=1e-12)
    se_now = _hanley_mcneil(auc_now, int(y.sum()), int((1 - y).sum()))
    se_ref = _hanley_mcneil(auc_ref, int(binned.y.sum()), int((1 - binned.y).sum()))
    assert _standard_error("roc_auc", metrics) == pytest.approx(se_now, rel=1e-9)
    assert _standard_error("roc_auc", binned.profile.reference_performance) == pytest.approx(
        se_ref, rel=1e-9
    )
    finding = performance_check(binned.profile, window, [])
    z = (auc_ref - auc_now) / math.hypot(se_now, se_ref)
    ref = finding.baselines["reference"]
    assert ref["z"] == pytest.approx(z, rel=1e-9)
    assert ref["p_value"] == pytest.approx(norm.sf(z), rel=1e-9)
    assert 3 < z < 30
    assert auc_ref - auc_now >= 0.05 and norm.sf(z) < 0.001
    assert finding.degraded


def test_roc_auc_standard_error_covers_the_spread_of_the_auc(binary):
    """The Hanley–McNeil error against the actual spread of ROC-AUC over 400 independent
    windows of the same model (within 15%: it is an approximation)."""
    rng = np.random.default_rng(18)
    aucs, ses = [], []
    for _ in range(400):
        score, y = calibrated(rng, 600)
        m = window_performance(
            binary.profile, binary_window(0, score, y, edges=binary.profile.score_edges)
        )
        aucs.append(roc_auc_score(y, score))
        ses.append(_standard_error("roc_auc", m))
    assert np.mean(ses) == pytest.approx(np.std(aucs, ddof=1), rel=0.15)


def test_recent_windows_are_the_baseline_without_a_reference(binary):
    profile = binary.profile.model_copy(update={"reference_performance": {}})
    rng = np.random.default_rng(19)
    data = [calibrated(rng, 800) for _ in range(6)]
    recent = [
        binary_window(k * WINDOW, s, y, edges=binary.profile.score_edges)
        for k, (s, y) in enumerate(data)
    ]
    score, y = calibrated(rng, 1500)
    finding = performance_check(
        profile, binary_window(6 * WINDOW, score, 1 - y, edges=binary.profile.score_edges), recent
    )
    assert finding.degraded and finding.worst == "recent"
    assert set(finding.baselines) == {"recent"}
    pooled_s = np.concatenate([s for s, _ in data])
    pooled_y = np.concatenate([y for _, y in data])
    base = finding.baselines["recent"]
    assert base["baseline"] == pytest.approx(roc_auc_score(pooled_y, pooled_s), abs=AUC_TOLERANCE)
    assert base["labelled"] == 4800
    assert base["p_value"] < 1e-6
    # a good window against the same recent windows is fine
    good = performance_check(
        profile,
        binary_window(6 * WINDOW, *calibrated(rng, 1500), edges=binary.profile.score_edges),
        recent,
    )
    assert not good.degraded and set(good.baselines) == {"recent"}


def test_no_baseline_no_verdict(binary):
    """Neither a reference performance nor enough recent labels (pooled): nothing to
    compare with, so not degraded however bad the window."""
    profile = binary.profile.model_copy(update={"reference_performance": {}})
    rng = np.random.default_rng(20)
    recent = [
        binary_window(k, *calibrated(rng, 90), edges=binary.profile.score_edges) for k in range(2)
    ]  # 180 < min_labels
    recent.append(WindowSketch(start=3, count=100))  # no labels at all
    score, y = calibrated(rng, 1000)
    finding = performance_check(
        profile, binary_window(10, score, 1 - y, edges=binary.profile.score_edges), recent
    )
    assert finding.baselines == {} and not finding.degraded and finding.worst is None


# ---- alerts -----------------------------------------------------------------------------------


def _digest(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def _feature_drift(feature: str, drifted: bool, value: float) -> FeatureDrift:
    return FeatureDrift(
        feature=feature,
        kind="numeric",
        sample_size=2000,
        missing=0,
        statistics={"psi": value},
        statistic="psi",
        value=value,
        threshold=0.2,
        p_value=1e-9 if drifted else 0.5,
        drifted=drifted,
    )


@pytest.fixture(scope="module")
def degraded(binary):
    rng = np.random.default_rng(21)
    score, y = calibrated(rng, 2000)
    window = binary_window(5 * WINDOW, score, 1 - y, count=4000, edges=binary.profile.score_edges)
    window.versions["2.1.0"] = 4000
    finding = performance_check(binary.profile, window, [])
    assert finding.degraded
    return window, finding


def test_performance_alert_without_input_drift_suggests_concept_drift(binary, degraded):
    window, finding = degraded
    drift = {"x": _feature_drift("x", False, 0.01)}
    alert = performance_alert(binary.profile, window, finding, drift, now=1_800_000_000.0)
    assert alert.type == "performance_degradation"
    assert alert.feature == alert.statistic == "roc_auc"
    assert alert.context["cause"] == "concept_drift"
    assert alert.context["drifting_features"] == []
    assert alert.context["baseline"] == "reference"
    assert alert.context["label_coverage"] == 0.5
    assert alert.context["detectors"] == finding.detectors
    assert alert.severity == "critical"  # a drop far beyond twice min_degradation
    auc_ref = roc_auc_score(binary.y, binary.score)
    assert alert.threshold == pytest.approx(auc_ref - 0.05, abs=AUC_TOLERANCE)
    assert alert.value == finding.value
    assert alert.sample_size == 2000 and alert.reference_size == REFERENCE_ROWS
    assert alert.model_version == "2.1.0"
    assert alert.window_start == datetime.fromtimestamp(5 * WINDOW, tz=UTC)
    assert (alert.window_end - alert.window_start).total_seconds() == WINDOW
    assert alert.alert_id == _digest(
        "fraud", binary.profile.revision, "performance_degradation", "roc_auc", 5 * WINDOW
    )
    # a valid Alert, and so is what goes on the wire
    assert Alert.model_validate(alert.model_dump()) == alert
    assert Alert.model_validate_json(encode(alert)).alert_id == alert.alert_id


def test_performance_alert_with_input_drift_says_data_drift(binary, degraded):
    window, finding = degraded
    drift = {
        "x": _feature_drift("x", True, 0.4),
        "y": _feature_drift("y", True, 0.9),
        "z": _feature_drift("z", False, 0.05),
    }
    alert = performance_alert(binary.profile, window, finding, drift, now=1.0)
    assert alert.context["cause"] == "data_drift"
    assert [d["feature"] for d in alert.context["drifting_features"]] == ["y", "x"]
    assert "data drift" in alert.message
    Alert.model_validate_json(encode(alert))


def test_performance_alert_id_is_deterministic(binary, degraded):
    window, finding = degraded
    a = performance_alert(binary.profile, window, finding, {}, now=1.0)
    b = performance_alert(binary.profile, window, finding, {}, now=99_999.0)
    assert a.alert_id == b.alert_id and a.created_at != b.created_at
    later = WindowSketch(
        start=window.start + WINDOW, count=window.count, performance=window.performance
    )
    c = performance_alert(binary.profile, later, finding, {}, now=1.0)
    assert c.alert_id != a.alert_id
    assert c.alert_id == _digest(
        "fraud", binary.profile.revision, "performance_degradation", "roc_auc", later.start
    )


def test_no_alert_when_not_degraded(binary):
    rng = np.random.default_rng(22)
    window = binary_window(0, *calibrated(rng, 1000), edges=binary.profile.score_edges)
    finding = performance_check(binary.profile, window, [])
    assert not finding.degraded
    assert performance_alert(binary.profile, window, finding, {}, now=1.0) is None


def _finding(metric: str, baseline: float, drop: float) -> PerformanceFinding:
    return PerformanceFinding(
        metric=metric,
        value=baseline * (1 + drop) if metric == "mae" else baseline - drop,
        labelled=1000,
        baselines={
            "reference": {
                "baseline": baseline,
                "drop": drop,
                "z": 5.0,
                "p_value": 1e-7,
                "labelled": 9000,
            }
        },
        degraded=True,
        worst="reference",
        detectors={"page_hinkley": False, "adwin": False},
        metrics={"labelled": 1000.0, metric: baseline - drop},
    )


@pytest.mark.parametrize(
    ("metric", "baseline", "drop", "severity", "threshold"),
    [
        ("roc_auc", 0.8, 0.07, "warning", 0.75),
        ("roc_auc", 0.8, 0.1, "critical", 0.75),
        ("mae", 2.0, 0.08, "warning", 2.1),  # error metrics: relative, above the baseline
        ("mae", 2.0, 0.5, "critical", 2.1),
    ],
)
def test_performance_alert_severity_and_threshold(
    binary, metric, baseline, drop, severity, threshold
):
    window = WindowSketch(start=0, count=1000)
    alert = performance_alert(binary.profile, window, _finding(metric, baseline, drop), {}, 1.0)
    assert alert.severity == severity
    assert alert.threshold == pytest.approx(threshold, rel=1e-12)


def _events(score: np.ndarray, x: np.ndarray, start: int) -> ModelEvents:
    n = score.size
    ev = ModelEvents()
    ev.partitions = [0] * n
    ev.offsets = list(range(n))
    ev.timestamps = (start + np.arange(n) * (WINDOW / n)).tolist()
    ev.features = [{"x": v} for v in x.tolist()]
    ev.versions = ["1"] * n
    ev.predictions = score.tolist()
    ev.prediction_ids = [str(i) for i in range(n)]
    ev.raws = [b""] * n
    return ev


def _output_window(binary, rng, shift: float, positives: float | None) -> WindowSketch:
    n = 2000
    score = _sigmoid(rng.normal(-1.0 + shift, 1.5, n))
    (window,) = sketch_events(
        _events(score, rng.normal(size=n), 2 * WINDOW), binary.profile
    ).values()
    if positives is not None:
        k = int(rng.binomial(n, positives))
        window.categorical[LABEL] = CategoricalSketch(Counter({"1": k, "0": n - k}))
    return window


def test_output_alerts_name_the_models_columns(binary):
    rng = np.random.default_rng(23)
    base_rate = binary.y.mean()
    # stationary predictions and labels: nothing drifted, no alert
    window = _output_window(binary, rng, 0.0, base_rate)
    drift = output_drift(binary.profile, window)
    assert set(drift) == {PREDICTION, LABEL}
    assert not any(d.drifted for d in drift.values())
    assert output_alerts(binary.profile, window, drift, {}, now=1.0) == []

    # scores shifted up by 2 on the logit scale: prediction drift, named "score"
    window = _output_window(binary, rng, 2.0, base_rate)
    assert window.numeric[PREDICTION].n == 2000
    drift = output_drift(binary.profile, window)
    assert drift[PREDICTION].drifted and not drift[LABEL].drifted
    feature_drift = {"x": _feature_drift("x", True, 0.3)}
    (alert,) = output_alerts(binary.profile, window, drift, feature_drift, now=1.0)
    assert alert.type == "prediction_drift" and alert.feature == "score"
    assert alert.alert_id == _digest(
        "fraud", binary.profile.revision, "prediction_drift", "score", 2 * WINDOW
    )
    assert alert.sample_size == 2000 and alert.reference_size == REFERENCE_ROWS
    assert alert.context["drifting_features"] == [{"feature": "x", "psi": 0.3}]
    assert Alert.model_validate_json(encode(alert)) == alert

    # joined labels three times as often positive: label drift, named "is_fraud"
    window = _output_window(binary, rng, 0.0, 0.9)
    drift = output_drift(binary.profile, window)
    assert drift[LABEL].drifted and not drift[PREDICTION].drifted
    (alert,) = output_alerts(binary.profile, window, drift, {}, now=1.0)
    assert alert.type == "label_drift" and alert.feature == "is_fraud"
    assert alert.alert_id == _digest(
        "fraud", binary.profile.revision, "label_drift", "is_fraud", 2 * WINDOW
    )
    Alert.model_validate_json(encode(alert))

    # both at once: two alerts
    window = _output_window(binary, rng, 2.0, 0.9)
    alerts = output_alerts(binary.profile, window, output_drift(binary.profile, window), {}, 1.0)
    assert sorted((a.type, a.feature) for a in alerts) == [
        ("label_drift", "is_fraud"),
        ("prediction_drift", "score"),
    ]


def test_a_version_worse_than_its_siblings_is_degraded_against_them(profile):
    """One version's window against the other versions' pooled pairs of the same window:
    the two-sample z-test of `performance_check`, checked here by hand on accuracy."""
    policy = profile.config.performance.model_copy(update={"metric": "accuracy"})
    cfg = profile.config.model_copy(update={"performance": policy})
    p = profile.model_copy(update={"config": cfg, "reference_performance": {}})

    def sketch(right: int, wrong: int) -> PerformanceSketch:
        pos, neg = p.positive_class, p.negative_class
        return PerformanceSketch(
            labelled=right + wrong, confusion=Counter({(pos, pos): right, (pos, neg): wrong})
        )

    mine, others = sketch(300, 300), sketch(540, 60)
    window = WindowSketch(start=0, count=600, performance=mine)
    finding = performance_check(p, window, [], others)
    b = finding.baselines["other_versions"]
    a1, a2, n = 0.5, 0.9, 600
    se = ((a1 * (1 - a1) / n) + (a2 * (1 - a2) / n)) ** 0.5
    assert b["drop"] == pytest.approx(a2 - a1)
    assert b["p_value"] == pytest.approx(norm.sf((a2 - a1) / se), rel=1e-6)
    assert finding.degraded and finding.worst == "other_versions"
    # the better version is not degraded against the worse one
    better = performance_check(p, WindowSketch(start=0, count=600, performance=others), [], mine)
    assert not better.degraded


# ---- several clocks: ROC-AUC, log loss, accuracy and calibration error --------------------

CLOCK = ["roc_auc", "log_loss", "accuracy", "calibration_error"]


def _ece(y: np.ndarray, score: np.ndarray) -> float:
    """Expected calibration error over ten equal-width bins, by numpy alone."""
    which = np.minimum((score * 10).astype(int), 9)
    gaps = [abs(y[which == b].mean() - score[which == b].mean()) for b in np.unique(which)]
    sizes = [(which == b).sum() for b in np.unique(which)]
    return float(np.dot(gaps, sizes) / y.size)


def _pair_losses(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    p = np.clip(score, 1e-15, 1 - 1e-15)
    return -np.where(y == 1, np.log(p), np.log(1 - p))


def test_a_scored_binary_model_is_watched_on_four_metrics_each_at_a_quarter_of_p(binary):
    rng = np.random.default_rng(30)
    score, y = calibrated(rng, 1500)
    finding = performance_check(
        binary.profile, binary_window(0, score, y, edges=binary.profile.score_edges), []
    )
    assert finding.metric == "roc_auc" and finding.value == finding.metrics["roc_auc"]
    assert list(finding.tests) == CLOCK and finding.baselines == finding.tests["roc_auc"]
    assert finding.alpha == pytest.approx(0.001 / 4)
    assert not finding.degraded and finding.fired is None
    # the window's values, against scikit-learn's and numpy's
    m = finding.metrics
    assert m["accuracy"] == pytest.approx(accuracy_score(y, score >= 0.5), abs=1e-12)
    assert m["log_loss"] == pytest.approx(log_loss(y, score), rel=1e-9)
    assert m["log_loss_sd"] == pytest.approx(_pair_losses(y, score).std(ddof=1), rel=1e-6)
    assert m["calibration_error"] == pytest.approx(_ece(y, score), abs=1e-9)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score), abs=AUC_TOLERANCE)
    # log loss: the z-test of two means, each with its sample spread
    ref_losses = _pair_losses(binary.y, binary.score)
    now_losses = _pair_losses(y, score)
    se = math.hypot(
        now_losses.std(ddof=1) / math.sqrt(now_losses.size),
        ref_losses.std(ddof=1) / math.sqrt(ref_losses.size),
    )
    ll = finding.tests["log_loss"]["reference"]
    assert ll["z"] == pytest.approx((now_losses.mean() - ref_losses.mean()) / se, rel=1e-6)
    assert ll["drop"] == pytest.approx(now_losses.mean() / ref_losses.mean() - 1, rel=1e-6)
    # a metric set in the policy is watched alone, at p_value itself
    alone = performance_check(
        with_policy(binary.profile, metric="accuracy"),
        binary_window(0, score, y, edges=binary.profile.score_edges),
        [],
    )
    assert list(alone.tests) == ["accuracy"] and alone.alpha == 0.001
    # and so is the headline when the policy watches it alone
    watched = with_policy(binary.profile, watched=["roc_auc"])
    one = performance_check(
        watched, binary_window(0, score, y, edges=binary.profile.score_edges), []
    )
    assert list(one.tests) == ["roc_auc"] and one.alpha == 0.001


def test_scores_shifted_past_the_threshold_fire_on_calibration_not_on_roc_auc(binary):
    """The scores move up by 1.5 on the logit scale while the labels keep following the
    old ones: the ranking is intact (ROC-AUC as before), but the threshold now cuts in
    the wrong place and the scores overstate the odds. ROC-AUC alone sees nothing; the
    alert fires, named by the calibration error, the others listed beside it."""
    rng = np.random.default_rng(31)
    z = rng.normal(-1.0, 1.5, 2000)
    y = (rng.random(z.size) < _sigmoid(z)).astype(int)
    score = _sigmoid(z + 1.5)
    window = binary_window(5 * WINDOW, score, y, edges=binary.profile.score_edges)
    auc_alone = performance_check(with_policy(binary.profile, metric="roc_auc"), window, [])
    assert not auc_alone.degraded
    finding = performance_check(binary.profile, window, [])
    tests = {m: finding.tests[m]["reference"] for m in CLOCK}
    assert tests["roc_auc"]["p_value"] > 0.01  # the ranking did not change
    assert finding.degraded and finding.fired == "calibration_error"
    assert finding.worst == "reference"
    for m in ("log_loss", "accuracy", "calibration_error"):  # all three see it
        assert tests[m]["p_value"] < finding.alpha
    # the sizes, against scikit-learn's and numpy's
    acc_ref, acc_now = (
        accuracy_score(binary.y, binary.score >= 0.5),
        accuracy_score(y, score >= 0.5),
    )
    assert tests["accuracy"]["drop"] == pytest.approx(acc_ref - acc_now, abs=1e-12)
    assert acc_ref - acc_now > 0.1
    assert tests["log_loss"]["drop"] == pytest.approx(
        log_loss(y, score) / log_loss(binary.y, binary.score) - 1, rel=1e-6
    )
    ece_now, ece_ref = _ece(y, score), _ece(binary.y, binary.score)
    ece = tests["calibration_error"]
    assert ece["baseline"] == pytest.approx(ece_ref, abs=1e-9)
    assert 0 < ece["bias"] < 0.05  # a 2000-pair window's own bias, discounted
    assert ece["drop"] == pytest.approx(ece_now - ece["bias"] - ece_ref, abs=1e-9)
    assert ece["drop"] > 0.15  # absolute: a gap of probabilities

    alert = performance_alert(binary.profile, window, finding, {}, now=1.0)
    assert alert.feature == "roc_auc"  # the condition: one episode whichever fires
    assert alert.statistic == alert.context["metric"] == "calibration_error"
    assert alert.value == pytest.approx(ece_now, abs=1e-9)
    assert alert.threshold == pytest.approx(ece_ref + 0.05 + ece["bias"], abs=1e-9)
    assert f"calibration_error {ece_now:.3f} in window" in alert.message
    assert f"against {ece_ref:.3f} (reference)" in alert.message
    assert alert.context["headline"] == "roc_auc"
    assert set(alert.context["tests"]) == set(CLOCK)
    assert alert.context["tests"]["accuracy"]["reference"]["drop"] == pytest.approx(
        acc_ref - acc_now, abs=1e-12
    )
    assert alert.context["alpha"] == pytest.approx(0.00025)
    assert alert.alert_id == _digest(
        "fraud", binary.profile.revision, "performance_degradation", "roc_auc", 5 * WINDOW
    )
    assert Alert.model_validate_json(encode(alert)) == alert


def test_a_calibration_error_bias_and_spread_bound_a_small_windows(binary):
    """Small windows of the reference model read a larger calibration error than the
    reference; `calibration_error_spread` bounds how much larger, and how spread."""
    rng = np.random.default_rng(32)
    n, runs = 300, 400
    ece_large = _ece(*calibrated(rng, 400_000)[::-1])
    eces, biases, ses = [], [], []
    for _ in range(runs):
        score, y = calibrated(rng, n)
        sk = PerformanceSketch.from_pairs(
            "binary", y.tolist(), None, score, "1", score_edges=binary.profile.score_edges
        )
        bias, se = calibration_error_spread(
            sk.positive_hist, sk.negative_hist, binary.profile.score_edges, sk.score_sums
        )
        eces.append(_ece(y, score))
        biases.append(bias)
        ses.append(se)
    eces_a = np.asarray(eces)
    assert eces_a.mean() - ece_large > 0.03  # the bias is real
    assert eces_a.mean() - ece_large <= np.mean(biases)  # and bounded
    assert eces_a.std() <= np.mean(ses)


def test_watching_four_metrics_keeps_the_false_alarm_rate(binary):
    """2,000 windows of the reference model, 300 to 3,000 labels each, every practical
    minimum set near zero so that significance alone decides: with each of the four
    metrics tested at p/4 (Bonferroni), at most a couple of the windows fire, as one
    metric at p would (p = 0.001: 2 expected at most)."""
    tiny = {m: 1e-9 for m in CLOCK}
    profile = with_policy(binary.profile, min_degradations=tiny)
    rng = np.random.default_rng(2027)
    fired, uncorrected = [], 0
    for k in range(2000):
        n = int(rng.integers(300, 3001))
        window = binary_window(k * WINDOW, *calibrated(rng, n), edges=binary.profile.score_edges)
        finding = performance_check(profile, window, [])
        assert list(finding.tests) == CLOCK
        if finding.degraded:
            fired.append((k, finding.fired))
        p = min(t["reference"]["p_value"] for t in finding.tests.values())
        uncorrected += p < 0.001
    assert len(fired) <= 2, fired
    assert uncorrected >= len(fired)


def test_a_real_degradation_opens_one_episode_named_by_the_first_metric_to_see_it(binary):
    """Six good windows of 400 labels, then the relation weakens and shifts (the labels
    follow sigmoid(0.8 z + 0.8) where the scores say sigmoid(z)). The first degraded
    window opens one episode under the headline's name, its alert naming the metric
    that saw it; the windows after, whichever metric fires in them, add to it. ROC-AUC
    alone needs many windows more."""
    profile = binary.profile
    auc_alone = with_policy(profile, metric="roc_auc")
    rng = np.random.default_rng(5)
    windows: list[WindowSketch] = []
    episodes: dict = {}
    raised, fired_in, auc_first = [], [], None
    for k in range(24):
        z = rng.normal(-1.0, 1.5, 400)
        truth = _sigmoid(0.8 * z + 0.8) if k >= 6 else _sigmoid(z)
        y = (rng.random(z.size) < truth).astype(int)
        window = binary_window(k * WINDOW, _sigmoid(z), y, edges=profile.score_edges)
        finding = performance_check(profile, window, windows[-6:])
        if auc_first is None and performance_check(auc_alone, window, windows[-6:]).degraded:
            auc_first = k
        windows.append(window)
        alert = performance_alert(profile, window, finding, {}, now=float(k * WINDOW))
        if finding.degraded:
            fired_in.append((k, finding.fired))
            magnitude = finding.fired_baselines[finding.worst]["drop"]
            magnitude /= profile.config.performance.minimum(finding.fired)
        else:
            magnitude = 0.0
        obs = Observation(
            "performance_degradation:roc_auc" if alert is None else condition_key(alert),
            k * WINDOW,
            alert,
            True,
            magnitude,
        )
        raised += advance(
            episodes, [obs], model="fraud", revision=1, width=WINDOW, resolve_after=2, now=1.0
        )
    assert fired_in[0][0] == 6  # the first degraded window fires
    assert all(k >= 6 for k, _ in fired_in)
    first_metric = fired_in[0][1]
    assert first_metric != "roc_auc"
    assert auc_first is not None and auc_first > 6 + 5  # 17 here
    assert len({m for _, m in fired_in}) > 1  # several metrics fire over the episode
    opened = [a for a in raised if a.status == "open"]
    assert len(opened) == 1 and len(episodes) == 1
    assert opened[0].statistic == first_metric and opened[0].feature == "roc_auc"
    assert {a.episode_id for a in raised} == {opened[0].episode_id}
