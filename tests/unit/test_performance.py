"""Performance metrics from mergeable sums, checked against independent references:
scikit-learn's metrics, numpy, and a calibration error computed here from the raw scores."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)

from streamdrift.performance import (
    CALIBRATION_BINS,
    MAX_SCORE_BINS,
    PerformanceSketch,
    calibration_error,
    classification_metrics,
    performance_metrics,
    regression_metrics,
    roc_auc,
    score_bin,
    score_edges,
)
from streamdrift.profile import ReferenceProfile

AUC_TOLERANCE = 0.005
#: Ours takes each calibration bin's mean score at the centres of its 200 fine bins, so
#: it can be off by up to half a fine bin width.
ECE_TOLERANCE = 1 / 400 + 1e-9


# ---- data and independent references ---------------------------------------------------


def binary_data(seed: int, kind: str, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Labels in {0, 1} and scores in (0, 1) of a binary classifier."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    if kind == "separated":
        score = np.where(y == 1, rng.beta(8, 2, n), rng.beta(2, 8, n))
    elif kind == "barely":
        score = np.where(y == 1, rng.beta(2.2, 2, n), rng.beta(2, 2.2, n))
    elif kind == "tied":
        score = np.round(np.where(y == 1, rng.beta(3, 2, n), rng.beta(2, 3, n)), 2)
        score = np.clip(score, 0.01, 0.99)  # keep log loss finite and identical to sklearn's
    else:
        raise ValueError(kind)
    return y, score


BINARY_CASES = [
    (11, "separated"),
    (12, "separated"),
    (21, "barely"),
    (22, "barely"),
    (31, "tied"),
    (32, "tied"),
]


def reference_ece(is_pos: np.ndarray, score: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over `bins` equal-width bins with exact mean scores."""
    idx = np.minimum(np.floor(score * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(is_pos[m].mean() - score[m].mean())
    return total / len(score)


def multiclass_data(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Four classes, unbalanced, with a confusion matrix that has empty cells."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])
    yhat = y.copy()
    wrong = rng.random(n) < 0.3
    yhat[wrong] = rng.choice(3, wrong.sum())  # never predicts class 3 by mistake
    return y, yhat


def regression_data(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(50, 20, n), 1)
    y[rng.random(n) < 0.05] = 0.0  # some zero targets: MAPE skips them
    yhat = y + rng.normal(1.5, 5, n)
    return y, yhat


def sketch_fields_equal(a: PerformanceSketch, b: PerformanceSketch) -> None:
    for f in dataclasses.fields(PerformanceSketch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":  # float sums
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12, err_msg=f.name)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        elif isinstance(x, float):
            assert x == pytest.approx(y, rel=1e-12, abs=1e-9), f.name
        else:
            assert x == y, f.name


def metrics_equal(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if math.isnan(a[k]):
            assert math.isnan(b[k]), k
        else:
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12), k


# ---- binary ---------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "kind"), BINARY_CASES)
def test_binary_scores_match_sklearn(seed: int, kind: str) -> None:
    y, score = binary_data(seed, kind)
    yhat = (score >= 0.5).astype(int)
    s = PerformanceSketch.from_pairs("binary", list(y), list(yhat), score, "1")
    m = performance_metrics(s, "binary", "1")

    exact_auc = roc_auc_score(y, score)
    assert abs(m["roc_auc"] - exact_auc) <= AUC_TOLERANCE
    assert m["log_loss"] == pytest.approx(log_loss(y, score), rel=1e-9)
    assert m["brier"] == pytest.approx(brier_score_loss(y, score), rel=1e-9)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, yhat))
    p, r, f, _ = precision_recall_fscore_support(y, yhat, pos_label=1, average="binary")
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((p, r, f))
    assert abs(m["calibration_error"] - reference_ece(y == 1, score)) <= ECE_TOLERANCE
    assert m["labelled"] == len(y)


def test_auc_exact_when_ties_fall_in_distinct_bins() -> None:
    # Scores on a 0.01 grid land one value per histogram bin, so binned ties are real ties.
    y, score = binary_data(31, "tied")
    s = PerformanceSketch.from_pairs("binary", list(y), None, score, "1")
    assert len(np.unique(score)) < 100  # many tied scores
    assert roc_auc(s.positive_hist, s.negative_hist) == pytest.approx(roc_auc_score(y, score))


def test_string_labels_with_positive_one() -> None:
    y, score = binary_data(5, "barely", n=1500)
    actual = [str(v) for v in y]
    predicted = ["1" if v >= 0.5 else "0" for v in score]
    s = PerformanceSketch.from_pairs("binary", actual, predicted, score, "1")
    m = performance_metrics(s, "binary", "1")

    assert abs(m["roc_auc"] - roc_auc_score(actual, score)) <= AUC_TOLERANCE
    assert m["log_loss"] == pytest.approx(log_loss(actual, score), rel=1e-9)
    assert m["brier"] == pytest.approx(brier_score_loss(actual, score, pos_label="1"), rel=1e-9)
    assert m["accuracy"] == pytest.approx(accuracy_score(actual, predicted))
    p, r, f, _ = precision_recall_fscore_support(actual, predicted, labels=["0", "1"])
    for i, k in enumerate(["0", "1"]):
        assert m[f"precision[{k}]"] == pytest.approx(p[i])
        assert m[f"recall[{k}]"] == pytest.approx(r[i])
        assert m[f"f1[{k}]"] == pytest.approx(f[i])
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((p[1], r[1], f[1]))
    assert abs(m["calibration_error"] - reference_ece(y == 1, score)) <= ECE_TOLERANCE
    # the same numbers as with integer labels
    metrics_equal(
        m,
        performance_metrics(
            PerformanceSketch.from_pairs("binary", list(y), list(predicted), score, "1"),
            "binary",
            "1",
        ),
    )


def test_calibration_of_calibrated_and_miscalibrated_scores() -> None:
    rng = np.random.default_rng(3)
    score = rng.uniform(0, 1, 20000)
    calibrated = rng.random(20000) < score
    overconfident = rng.random(20000) < 0.5 + 0.5 * (score - 0.5) * 0.2
    for is_pos in (calibrated, overconfident):
        s = PerformanceSketch.from_pairs("binary", list(is_pos.astype(int)), None, score, "1")
        ours = calibration_error(s.positive_hist, s.negative_hist)
        assert abs(ours - reference_ece(is_pos, score)) <= ECE_TOLERANCE


def test_scores_at_zero_and_one() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    score = np.array([0.0, 0.2, 0.7, 1.0, 1.0, 0.0])
    s = PerformanceSketch.from_pairs("binary", list(y), None, score, "1")
    m = classification_metrics(s, "1")
    assert s.positive_hist.sum() == 3 and s.negative_hist.sum() == 3
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score))
    assert m["brier"] == pytest.approx(brier_score_loss(y, score))
    assert math.isfinite(m["log_loss"])
    assert abs(m["calibration_error"] - reference_ece(y == 1, score)) <= ECE_TOLERANCE


# ---- multiclass -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_multiclass_matches_sklearn(seed: int) -> None:
    y, yhat = multiclass_data(seed)
    s = PerformanceSketch.from_pairs("multiclass", list(y), list(yhat))
    m = performance_metrics(s, "multiclass", None)
    labels = [0, 1, 2, 3]

    assert m["accuracy"] == pytest.approx(accuracy_score(y, yhat))
    p, r, f, _ = precision_recall_fscore_support(y, yhat, labels=labels, zero_division=0)
    for i, k in enumerate(labels):
        assert m[f"precision[{k}]"] == pytest.approx(p[i])
        assert m[f"recall[{k}]"] == pytest.approx(r[i])
        assert m[f"f1[{k}]"] == pytest.approx(f[i])
    pm, rm, fm, _ = precision_recall_fscore_support(y, yhat, average="macro", zero_division=0)
    assert m["precision_macro"] == pytest.approx(pm)
    assert m["recall_macro"] == pytest.approx(rm)
    assert m["f1_macro"] == pytest.approx(fm)
    assert "roc_auc" not in m and "precision" not in m

    cm = confusion_matrix(y, yhat, labels=labels)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            assert s.confusion.get((str(a), str(b)), 0) == cm[i, j]


def test_multiclass_class_never_predicted_and_never_actual() -> None:
    # "c" is never predicted (precision 0 by zero_division) and "d" never occurs (recall 0).
    y = ["a", "a", "b", "b", "c", "c", "a", "b"]
    yhat = ["a", "b", "b", "b", "a", "d", "a", "a"]
    m = classification_metrics(PerformanceSketch.from_pairs("multiclass", y, yhat), None)
    labels = ["a", "b", "c", "d"]
    p, r, f, _ = precision_recall_fscore_support(y, yhat, labels=labels, zero_division=0)
    for i, k in enumerate(labels):
        assert (m[f"precision[{k}]"], m[f"recall[{k}]"], m[f"f1[{k}]"]) == pytest.approx(
            (p[i], r[i], f[i])
        )
    pm, rm, fm, _ = precision_recall_fscore_support(y, yhat, average="macro", zero_division=0)
    assert (m["precision_macro"], m["recall_macro"], m["f1_macro"]) == pytest.approx((pm, rm, fm))


# ---- regression -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_regression_matches_sklearn(seed: int) -> None:
    y, yhat = regression_data(seed)
    s = PerformanceSketch.from_pairs("regression", list(y), score=yhat)
    m = performance_metrics(s, "regression", None)
    nz = y != 0
    assert (~nz).sum() > 0

    assert m["mae"] == pytest.approx(mean_absolute_error(y, yhat), rel=1e-9)
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, yhat)), rel=1e-9)
    assert m["r2"] == pytest.approx(r2_score(y, yhat), rel=1e-9)
    assert m["mape"] == pytest.approx(mean_absolute_percentage_error(y[nz], yhat[nz]), rel=1e-9)
    assert m["mean_error"] == pytest.approx(float(np.mean(yhat - y)), rel=1e-9)
    assert m["labelled"] == len(y)


def test_regression_all_zero_targets_has_nan_mape() -> None:
    y = np.zeros(50)
    yhat = np.linspace(-1, 1, 50)
    m = regression_metrics(PerformanceSketch.from_pairs("regression", list(y), score=yhat))
    assert math.isnan(m["mape"])
    assert m["mae"] == pytest.approx(mean_absolute_error(y, yhat))
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, yhat)))
    assert m["mean_error"] == pytest.approx(float(np.mean(yhat - y)), abs=1e-12)


@pytest.mark.parametrize("value", [0.1, 0.2, 0.3, 12.34, 1e6])
@pytest.mark.parametrize("n", [2, 5, 10, 1000])
def test_regression_constant_target_r2_is_not_a_huge_number(value: float, n: int) -> None:
    # y has no variance: R² is undefined, whatever rounding leaves of sum(y²) - sum(y)²/n.
    y = np.full(n, value)
    m = regression_metrics(PerformanceSketch.from_pairs("regression", list(y), score=y + 0.5))
    assert math.isnan(m["r2"])
    assert m["mae"] == pytest.approx(0.5)


# ---- mergeability ---------------------------------------------------------------------


@pytest.mark.parametrize("split", [1, 700, 2500])
def test_binary_sketches_merge(split: int) -> None:
    y, score = binary_data(41, "barely", n=3000)
    yhat = list((score >= 0.5).astype(int))
    delays = np.random.default_rng(41).exponential(30, len(y))
    y = list(y)

    def sk(sl: slice) -> PerformanceSketch:
        return PerformanceSketch.from_pairs("binary", y[sl], yhat[sl], score[sl], "1", delays[sl])

    merged = sk(slice(None, split)) + sk(slice(split, None))
    whole = sk(slice(None))
    sketch_fields_equal(merged, whole)
    metrics_equal(
        performance_metrics(merged, "binary", "1", 4000),
        performance_metrics(whole, "binary", "1", 4000),
    )


def test_multiclass_and_regression_sketches_merge() -> None:
    y, yhat = multiclass_data(8)
    a = PerformanceSketch.from_pairs("multiclass", list(y[:1000]), list(yhat[:1000]))
    b = PerformanceSketch.from_pairs("multiclass", list(y[1000:]), list(yhat[1000:]))
    whole = PerformanceSketch.from_pairs("multiclass", list(y), list(yhat))
    sketch_fields_equal(a + b, whole)
    metrics_equal(
        performance_metrics(a + b, "multiclass", None),
        performance_metrics(whole, "multiclass", None),
    )

    y, yhat = regression_data(8)
    parts = [
        PerformanceSketch.from_pairs("regression", list(y[i : i + 300]), score=yhat[i : i + 300])
        for i in range(0, len(y), 300)
    ]
    merged = sum(parts[1:], parts[0])
    whole = PerformanceSketch.from_pairs("regression", list(y), score=yhat)
    sketch_fields_equal(merged, whole)
    metrics_equal(
        performance_metrics(merged, "regression", None),
        performance_metrics(whole, "regression", None),
    )


def test_merging_an_empty_sketch_changes_nothing() -> None:
    y, score = binary_data(9, "separated", n=500)
    s = PerformanceSketch.from_pairs("binary", list(y), list((score > 0.5).astype(int)), score, "1")
    sketch_fields_equal(s + PerformanceSketch(), s)
    sketch_fields_equal(PerformanceSketch() + s, s)


def _delay_bucket(d: float) -> int:
    return int(d).bit_length()  # 0 below 1 s, else 1 + floor(log2 d)


# ---- label coverage and delay ---------------------------------------------------------


def test_label_coverage_and_delay() -> None:
    rng = np.random.default_rng(61)
    y, score = binary_data(61, "separated", n=800)
    delays = rng.exponential(45, len(y))
    s = PerformanceSketch.from_pairs("binary", list(y), None, score, "1", delays)
    m = performance_metrics(s, "binary", "1", predictions=1000)
    assert m["label_coverage"] == pytest.approx(800 / 1000)
    assert m["labelled"] == 800
    assert m["label_delay_mean_seconds"] == pytest.approx(float(np.mean(delays)))
    # the median falls in the histogram bucket [2^(b-1), 2^b) given by its lower edge
    lower_median = float(np.sort(delays)[math.ceil(len(delays) / 2) - 1])
    b = _delay_bucket(lower_median)
    assert m["label_delay_median_bucket_seconds"] == (0.0 if b == 0 else 2.0 ** (b - 1))

    assert "label_coverage" not in performance_metrics(s, "binary", "1")
    assert "label_coverage" not in performance_metrics(s, "binary", "1", predictions=0)


def test_label_delay_buckets_by_hand() -> None:
    delays = np.array([0.2, 0.9, 1.0, 1.5, 2.0, 3.9, 4.0, 100.0, 1000.0])
    s = PerformanceSketch.from_pairs("multiclass", ["a"] * 9, ["a"] * 9, delays=delays)
    # buckets: <1 s -> 0; [1, 2) -> 1; [2, 4) -> 2; [4, 8) -> 3; 100 -> 7; 1000 -> 10
    assert s.delay_hist == Counter({0: 2, 1: 2, 2: 2, 3: 1, 7: 1, 10: 1})
    m = performance_metrics(s, "multiclass", None, predictions=9)
    assert m["label_coverage"] == 1.0
    assert m["label_delay_mean_seconds"] == pytest.approx(delays.mean())
    assert m["label_delay_median_bucket_seconds"] == 2.0  # the 5th of 9 delays is 2.0 s


# ---- edge cases -----------------------------------------------------------------------


def test_no_labels_classification() -> None:
    for s in (
        PerformanceSketch(),
        PerformanceSketch.from_pairs("binary", [], [], np.array([]), "1", np.array([])),
        PerformanceSketch.from_pairs("multiclass", [], []),
    ):
        m = performance_metrics(s, "binary", "1", predictions=25)
        assert m["labelled"] == 0.0
        assert m["label_coverage"] == 0.0
        assert "label_delay_mean_seconds" not in m
        assert "roc_auc" not in m
        assert all(math.isnan(v) for k, v in m.items() if k not in ("labelled", "label_coverage"))
        assert math.isnan(roc_auc(s.positive_hist, s.negative_hist))
        assert math.isnan(calibration_error(s.positive_hist, s.negative_hist))


def test_no_labels_regression() -> None:
    for s in (
        PerformanceSketch(),
        PerformanceSketch.from_pairs("regression", [], score=np.array([]), delays=np.array([])),
    ):
        assert regression_metrics(s) == {}
        assert performance_metrics(s, "regression", None, predictions=3) == {
            "labelled": 0.0,
            "label_coverage": 0.0,
        }
        assert performance_metrics(s, "regression", None) == {"labelled": 0.0}


@pytest.mark.parametrize("only", [0, 1])
def test_one_class_present_has_nan_auc(only: int) -> None:
    rng = np.random.default_rng(71)
    score = rng.uniform(0.05, 0.95, 300)
    y = np.full(300, only)
    yhat = (score >= 0.5).astype(int)
    s = PerformanceSketch.from_pairs("binary", list(y), list(yhat), score, "1")
    m = performance_metrics(s, "binary", "1")
    assert math.isnan(m["roc_auc"])
    assert m["log_loss"] == pytest.approx(log_loss(y, score, labels=[0, 1]), rel=1e-9)
    assert m["brier"] == pytest.approx(np.mean((score - y) ** 2))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, yhat))
    assert abs(m["calibration_error"] - reference_ece(y == 1, score)) <= ECE_TOLERANCE


def test_regression_r2_of_a_large_mean_target_with_a_shift() -> None:
    # around 1e9 with a spread of 1: Σy² − (Σy)²/n keeps nothing of the variance unless
    # the sums are taken around a constant near the mean (the profile's label_shift)
    rng = np.random.default_rng(8)
    y = 1e9 + rng.normal(0, 1, 5000)
    yhat = y + rng.normal(0, 0.5, 5000)
    s = PerformanceSketch.from_pairs("regression", list(y), score=yhat, shift=1e9 + 0.3)
    assert regression_metrics(s)["r2"] == pytest.approx(r2_score(y, yhat), abs=1e-9)


# ---- score layouts placed by the reference's scores -------------------------------------


def _calibrated(rng: np.random.Generator, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (rng.random(score.size) < score).astype(int), score


def _saturated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """beta(0.05, 0.05): piled up at 0 and 1."""
    return _calibrated(rng, rng.beta(0.05, 0.05, n))


def _confident(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Negatives at 1e-7..1e-3, most positives within 1e-3 of 1, a fifth of them at
    1e-4..1e-2: above most negatives, all in the equal-width layout's first bin."""
    y = rng.integers(0, 2, n)
    score = np.where(y == 1, 1 - 10.0 ** -rng.uniform(3, 7, n), 10.0 ** -rng.uniform(3, 7, n))
    low = (y == 1) & (rng.random(n) < 0.2)
    score[low] = 10.0 ** -rng.uniform(2, 4, int(low.sum()))
    return y, score


def _discrete(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten distinct scores, unevenly frequent, four of them below 0.005."""
    values = np.array([1e-4, 5e-4, 1e-3, 3e-3, 0.02, 0.3, 0.5, 0.52, 0.9, 0.999])
    p = [0.3, 0.1, 0.02, 0.1, 0.1, 0.05, 0.03, 0.1, 0.1, 0.1]
    k = rng.choice(10, n, p=p)
    return (rng.random(n) < (k + 1) / 11).astype(int), values[k]


def _tied(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """40 % of the scores exactly 0.5, 10 % exactly 0 or 1, the rest beta(2, 2)."""
    score = rng.beta(2, 2, n)
    u = rng.random(n)
    score[u < 0.4] = 0.5
    score[(u >= 0.4) & (u < 0.45)] = 0.0
    score[(u >= 0.45) & (u < 0.5)] = 1.0
    return _calibrated(rng, score)


def _uniform(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return _calibrated(rng, rng.random(n))


SCORE_DISTRIBUTIONS = {
    "saturated": _saturated,
    "confident": _confident,
    "discrete": _discrete,
    "tied": _tied,
    "uniform": _uniform,
}
WINDOW_SIZES = [1000, 2500, 6000, 10000]


@pytest.mark.parametrize("name", SCORE_DISTRIBUTIONS)
def test_auc_with_reference_edges_is_within_tolerance_of_sklearn(name: str) -> None:
    """Windows of 1,000 to 10,000 pairs drawn like the reference the edges come from:
    the binned ROC-AUC within 0.005 of scikit-learn's on the raw scores, and calibration
    error equal to one computed from the raw scores (the calibration bins' mean scores
    are exact)."""
    draw = SCORE_DISTRIBUTIONS[name]
    rng = np.random.default_rng(list(SCORE_DISTRIBUTIONS).index(name))
    edges = score_edges(draw(rng, 20_000)[1])
    assert edges is not None
    for n in WINDOW_SIZES:
        y, score = draw(rng, n)
        s = PerformanceSketch.from_pairs("binary", list(y), None, score, "1", score_edges=edges)
        m = classification_metrics(s, "1", edges)
        assert abs(m["roc_auc"] - roc_auc_score(y, score)) <= AUC_TOLERANCE, (name, n)
        assert m["calibration_error"] == pytest.approx(reference_ece(y == 1, score), abs=1e-9)


def test_equal_width_bins_miss_a_confident_models_auc() -> None:
    """What the edges are for: in 200 equal-width bins the confident model's ranked
    misses share the first bin with the negatives and count as ties."""
    rng = np.random.default_rng(5)
    y, score = _confident(rng, 5000)
    s = PerformanceSketch.from_pairs("binary", list(y), None, score, "1")
    assert abs(roc_auc(s.positive_hist, s.negative_hist) - roc_auc_score(y, score)) > 0.05


def test_discrete_scores_get_a_bin_each_and_their_auc_is_exact() -> None:
    rng = np.random.default_rng(6)
    edges = score_edges(_discrete(rng, 20_000)[1])
    y, score = _discrete(rng, 5000)
    assert edges is not None
    bins = score_bin(score, edges)
    # one bin per value and one value per bin
    assert len(set(zip(bins.tolist(), score.tolist(), strict=True))) == len(np.unique(score))
    assert len(np.unique(bins)) == len(np.unique(score))
    s = PerformanceSketch.from_pairs("binary", list(y), None, score, "1", score_edges=edges)
    assert roc_auc(s.positive_hist, s.negative_hist) == pytest.approx(
        roc_auc_score(y, score), rel=1e-12
    )


@pytest.mark.parametrize("name", SCORE_DISTRIBUTIONS)
def test_score_edges_are_bounded_ascending_and_hold_the_calibration_edges(name: str) -> None:
    rng = np.random.default_rng(7)
    edges = score_edges(SCORE_DISTRIBUTIONS[name](rng, 20_000)[1])
    assert edges is not None
    e = np.asarray(edges)
    assert 9 <= e.size <= MAX_SCORE_BINS - 1
    assert (np.diff(e) > 0).all() and e[0] > 0.0 and e[-1] <= 1.0
    assert np.isin(np.arange(1, CALIBRATION_BINS) / CALIBRATION_BINS, e).all()


def test_score_edges_of_many_distinct_heavy_ties_stay_bounded() -> None:
    # 150 values of equal weight: each too heavy for one quantile level, too many to
    # have both a value and its next double as edges
    values = np.linspace(0.001, 0.999, 150)
    edges = score_edges(np.repeat(values, 40))
    assert edges is not None and len(edges) <= MAX_SCORE_BINS - 1
    assert np.isin(values, edges).all()  # still one bin per value
    assert np.isin(np.arange(1, 10) / 10, edges).all()
    assert score_edges(np.array([np.nan, -1.0, 2.0])) is None


def test_score_bin_with_edges_counts_the_edges_at_or_below() -> None:
    edges = [0.1, 0.25, 0.5]
    score = np.array([-0.5, 0.0, 0.0999, 0.1, 0.2, 0.25, 0.4999, 0.5, 1.0, 1.5])
    assert score_bin(score, edges).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]


@pytest.mark.parametrize("name", ["saturated", "discrete", "tied"])
def test_sketches_with_edges_merge(name: str) -> None:
    """Two windows' sketches add up to the sketch of their union: histograms exactly,
    score sums within rounding."""
    draw = SCORE_DISTRIBUTIONS[name]
    rng = np.random.default_rng(8)
    edges = score_edges(draw(rng, 20_000)[1])
    y, score = draw(rng, 7000)
    yhat = list((score >= 0.5).astype(int))

    def sk(sl: slice) -> PerformanceSketch:
        return PerformanceSketch.from_pairs(
            "binary", list(y[sl]), yhat[sl], score[sl], "1", score_edges=edges
        )

    merged, whole = sk(slice(None, 2500)) + sk(slice(2500, None)), sk(slice(None))
    sketch_fields_equal(merged, whole)
    metrics_equal(
        performance_metrics(merged, "binary", "1", 7000, edges),
        performance_metrics(whole, "binary", "1", 7000, edges),
    )


def test_calibration_error_with_edges_needs_the_score_sums() -> None:
    s = PerformanceSketch.from_pairs("binary", [0, 1], None, np.array([0.2, 0.7]), "1")
    with pytest.raises(ValueError):
        calibration_error(s.positive_hist, s.negative_hist, [0.5])


def test_profiles_without_score_edges_keep_the_equal_width_bins() -> None:
    """A profile stored before score edges existed reads with `score_edges` None, and
    its windows' metrics are the equal-width layout's."""
    stored = {
        "model_id": "old",
        "created_at": "2026-01-01T00:00:00Z",
        "source": "ref.csv",
        "rows": 10,
        "task": "binary",
        "features": {},
        "positive_class": "1",
        "negative_class": "0",
    }
    old = ReferenceProfile.model_validate_json(json.dumps(stored))
    assert old.score_edges is None
    y, score = binary_data(12, "separated", n=2000)
    s = PerformanceSketch.from_pairs("binary", list(y), None, score, "1", score_edges=None)
    assert score_bin(score).max() < 200
    assert not s.score_sums.any()
    m = performance_metrics(s, "binary", "1", score_edges=old.score_edges)
    assert abs(m["roc_auc"] - roc_auc_score(y, score)) <= AUC_TOLERANCE
    assert abs(m["calibration_error"] - reference_ece(y == 1, score)) <= ECE_TOLERANCE
    # and a profile with edges keeps them through its JSON
    new = old.model_copy(update={"score_edges": score_edges(score)})
    assert ReferenceProfile.model_validate_json(new.model_dump_json()).score_edges == (
        new.score_edges
    )
