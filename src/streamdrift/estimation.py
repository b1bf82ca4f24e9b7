"""Performance before labels: confidence-based performance estimation (CBPE).

A binary classifier whose score is a calibrated probability says of each prediction how
likely it is to be right: a positive prediction with probability p is a true positive
with probability p and a false positive with probability 1 − p. Summed over a window's
predictions these give the window's *expected* confusion matrix, and from it the
accuracy, precision, recall and F1 the window is expected to have before any label has
arrived; the expected positives and negatives at every score give the expected ROC
curve, hence its area. This is NannyML's CBPE (docs: "How it works: performance
estimation"; `nannyml.performance_estimation.confidence_based`).

Scores are rarely calibrated, so `register` calibrates them on the reference rows with
their labels: isotonic regression, as NannyML does, and only when it lowers the expected
calibration error of held-out reference rows (NannyML's `needs_calibration`). Windows
keep no scores, only how many fell in each of up to `BINS` score bins whose edges are the
reference's score quantiles (the decision threshold one of them); `ScoreCalibration`
holds the bins and the mean calibrated probability of the reference rows in each. One
histogram of a window, or of a day of windows summed, is all an estimate needs.

The band around an estimate is NannyML's: ± `band` (3) sampling errors, the standard
error a window of n predictions' realized metric would have, from components computed
on the reference once (`SamplingError`, NannyML's `sampling_error` module). A window's
estimate counts as degraded when it lies at least `min_degradation` below the reference's
own estimate and the reference lies outside the window's band — NannyML's alert line is
the reference chunks' mean minus 3 standard deviations of their realized metric, which
for chunks of the window's size is this same sampling error.

What CBPE sees is covariate shift: the inputs moving to where the model is less sure (or
surer). It assumes that P(y | score) stays what it was on the reference; concept drift
(the same inputs now meaning other outcomes) leaves the scores unchanged and only labels
can show it (`performance_degradation`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel
from scipy.optimize import isotonic_regression

from streamdrift.performance import roc_auc

if TYPE_CHECKING:
    from streamdrift.profile import ReferenceProfile
    from streamdrift.sketch import WindowSketch

#: score bins of a window's histogram, at most (edges at the reference's score quantiles,
#: plus 0, 1 and the decision threshold; tied quantiles merge)
BINS = 200
#: the metrics CBPE estimates for a binary classifier
METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")
#: fewer reference rows (or fewer of either class) than this: no estimation
MIN_REFERENCE_ROWS = 100
#: NannyML's calibration test: shuffle splits, held-out share, ECE bins
CALIBRATION_SPLITS = 10
CALIBRATION_TEST_SHARE = 0.1
ECE_BINS = 10


class SamplingError(BaseModel):
    """NannyML's sampling-error components of one metric, from the reference: the
    standard deviation of the metric's per-row terms and the share of rows that carry
    them. A window of n predictions: `std / sqrt(n · fraction)`."""

    std: float
    fraction: float

    def at(self, n: float) -> float:
        if not n or not self.fraction or self.std != self.std:
            return float("nan")
        return self.std / math.sqrt(n * self.fraction)


class ScoreCalibration(BaseModel):
    """What CBPE knows of a binary model from its reference: the score bins windows count
    predictions in, the calibrated probability of the positive class in each, and the
    reference's own estimated and realized metrics and sampling-error components."""

    #: bin edges from 0 to 1; bin i is [edges[i], edges[i+1]), the last one closed
    edges: list[float]
    #: calibrated P(positive) of a score in each bin
    probability: list[float]
    #: a score at or above the decision threshold predicts the positive class: bins from
    #: this one on (edges[threshold_bin] is the threshold)
    threshold_bin: int
    #: isotonic regression applied (it lowered the held-out calibration error); else the
    #: scores are taken as probabilities as they are
    calibrated: bool
    #: reference rows with a score in [0, 1] and a label
    rows: int
    #: CBPE on the reference rows themselves, and their realized metrics
    estimated: dict[str, float]
    realized: dict[str, float]
    sampling_error: dict[str, SamplingError]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Edges and probabilities as arrays (a few microseconds: once per batch)."""
        return (
            np.asarray(self.edges, dtype=np.float64),
            np.asarray(self.probability, dtype=np.float64),
        )

    @property
    def bins(self) -> int:
        return len(self.probability)

    def bin_of(self, scores: np.ndarray) -> np.ndarray:
        """Bin of each score in [0, 1] (1.0 in the last bin)."""
        edges, _ = self.arrays()
        idx = np.searchsorted(edges, scores, side="right") - 1
        return np.clip(idx, 0, self.bins - 1)

    def histogram(self, scores: np.ndarray) -> np.ndarray:
        """Predictions per bin; scores outside [0, 1] (and NaN) are not probabilities
        and are left out (the data-quality check counts them)."""
        s = np.asarray(scores, dtype=np.float64)
        s = s[(s >= 0.0) & (s <= 1.0)]
        return np.bincount(self.bin_of(s), minlength=self.bins)


# ---- calibration (register) -------------------------------------------------------------
def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of labels on scores, as scikit-learn's IsotonicRegression
    (increasing, out of bounds clipped): equal scores pooled into their weighted mean
    label, the pool-adjacent-violators fit (scipy), and between fitted points a straight
    line. Returns the points (x, fitted y); predict with `np.interp`."""
    x, inverse = np.unique(scores, return_inverse=True)
    weights = np.bincount(inverse).astype(np.float64)
    means = np.bincount(inverse, weights=labels.astype(np.float64)) / weights
    fitted = isotonic_regression(means, weights=weights, increasing=True).x
    return x, np.asarray(fitted, dtype=np.float64)


def expected_calibration_error(labels: np.ndarray, probability: np.ndarray) -> float:
    """ECE over `ECE_BINS` bins of equal counts of the sorted probabilities, as
    NannyML's calibration test reads it: Σ share · |mean probability − positive rate|."""
    order = np.argsort(probability)
    p, y = probability[order], labels[order].astype(np.float64)
    n = p.size
    count = n // 2 if n <= 2 * ECE_BINS else ECE_BINS
    width = n // count
    starts = np.arange(0, n + 1, width)[:-1]  # the last bin takes the remainder
    # share · |mean p − mean y| = |Σp − Σy| / n, bin by bin
    return float(np.abs(np.add.reduceat(p - y, starts)).sum() / n)


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of `draws` to take from each class, in proportion, the remainder to the
    largest fractions, ties broken at random (scikit-learn's `_approximate_mode`)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1]:
        if need <= 0:
            break
        (where,) = np.nonzero(remainder == value)
        now = min(where.size, need)
        floored[rng.choice(where, size=now, replace=False)] += 1
        need -= now
    taken: np.ndarray = floored.astype(np.int64)
    return taken


def _stratified_splits(labels: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The train/test splits NannyML's calibration test draws: scikit-learn's
    StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=42), the same
    draws from the same legacy generator, so that the verdict is NannyML's too."""
    y = labels.astype(np.int64)
    n_test = math.ceil(CALIBRATION_TEST_SHARE * y.size)
    counts = np.bincount(y, minlength=2)
    members = np.split(np.argsort(y, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(42)
    for _ in range(CALIBRATION_SPLITS):
        n_train = _approximate_mode(counts, y.size - n_test, rng)
        n_held = _approximate_mode(counts - n_train, n_test, rng)
        train, test = [], []
        for c in range(2):
            shuffled = members[c].take(rng.permutation(counts[c]), mode="clip")
            train.append(shuffled[: n_train[c]])
            test.append(shuffled[n_train[c] : n_train[c] + n_held[c]])
        yield rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def needs_calibration(scores: np.ndarray, labels: np.ndarray) -> bool:
    """Does isotonic regression make the scores better probabilities? NannyML's test:
    fit it on 90 % of the reference (stratified), ten times, and compare the expected
    calibration error of the held-out scores before and after. A score that already
    separates the classes almost perfectly (ROC-AUC > 0.999) is left as it is."""
    if labels.all() or not labels.any() or _exact_roc_auc(scores, labels) > 0.999:
        return False
    truth, raw, calibrated = [], [], []
    for train, test in _stratified_splits(labels):
        x, y = fit_isotonic(scores[train], labels[train])
        truth.append(labels[test])
        raw.append(scores[test])
        calibrated.append(np.interp(scores[test], x, y))
    y_test = np.concatenate(truth)
    before = expected_calibration_error(y_test, np.concatenate(raw))
    after = expected_calibration_error(y_test, np.concatenate(calibrated))
    return bool(before > after)


def _edges(scores: np.ndarray, threshold: float, bins: int) -> np.ndarray:
    inner = np.quantile(scores, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(np.concatenate(([0.0, threshold, 1.0], inner)))


def sampling_error_components(
    scores: np.ndarray, labels: np.ndarray, predicted: np.ndarray
) -> dict[str, SamplingError]:
    """NannyML's sampling-error components of the reference (module
    `nannyml.sampling_error.binary_classification`): accuracy, precision, recall and F1
    as the spread of their per-row terms over the rows that carry them; ROC-AUC as the
    spread of each positive's share of negatives ranked below it (the Mann–Whitney
    terms), positives being the rarer class."""
    n = labels.size
    out: dict[str, SamplingError] = {}
    correct = labels == predicted
    out["accuracy"] = SamplingError(std=float(np.std(correct)), fraction=1.0)
    if predicted.any():
        out["precision"] = SamplingError(
            std=float(np.std(labels[predicted])), fraction=float(predicted.mean())
        )
    if labels.any():
        out["recall"] = SamplingError(
            std=float(np.std(predicted[labels])), fraction=float(labels.mean())
        )
    tp = int((labels & predicted).sum())
    wrong = int((~correct).sum())  # false positives and false negatives
    if tp + wrong:
        terms = np.concatenate((np.ones(tp), np.zeros(wrong)))
        factor = terms.size / (0.5 * wrong + tp)
        out["f1"] = SamplingError(std=float(np.std(terms * factor)), fraction=terms.size / n)
    y, p = labels.astype(np.int64), scores
    if y.mean() > 0.5:  # the rarer class as positives
        y, p = 1 - y, 1 - p
    y_sorted = y[np.argsort(p)]
    ranks = np.flatnonzero(y_sorted)
    ranks = ranks[ranks > 0]  # as NannyML: unique(y · rank)[1:]
    n_pos = int(y.sum())
    if ranks.size and n_pos < n:
        below = (ranks - np.arange(ranks.size)) / (n - n_pos)
        out["roc_auc"] = SamplingError(std=float(np.std(below)), fraction=n_pos / n)
    return out


def realized_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """The metrics as labels give them (scores and predicted classes against labels):
    ROC-AUC by Mann–Whitney over exact score ranks, ties counted half."""
    predicted = scores >= threshold
    tp = float((labels & predicted).sum())
    fp = float((~labels & predicted).sum())
    fn = float((labels & ~predicted).sum())
    return _from_counts(tp, fp, fn, labels.size) | {"roc_auc": _exact_roc_auc(scores, labels)}


def _exact_roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC over the distinct scores (each its own bin: ties count half)."""
    _, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=labels.astype(np.float64))
    return roc_auc(pos, np.bincount(inverse) - pos)


def _from_counts(tp: float, fp: float, fn: float, n: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of a confusion matrix (expected or counted);
    an empty denominator gives 0, as NannyML's estimators do."""
    tn = n - tp - fp - fn
    return {
        "accuracy": (tp + tn) / n if n else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": tp / (tp + 0.5 * (fp + fn)) if tp + fp + fn else 0.0,
    }


def calibrate(
    scores: np.ndarray, labels: np.ndarray, threshold: float, bins: int = BINS
) -> ScoreCalibration | None:
    """The reference's `ScoreCalibration`: reference scores (positive-class
    probabilities) and whether each row is of the positive class. None when there is
    too little to calibrate on: fewer than MIN_REFERENCE_ROWS usable rows, or of a class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    usable = (s >= 0.0) & (s <= 1.0)
    s, y = s[usable], y[usable]
    if s.size < MIN_REFERENCE_ROWS or min(int(y.sum()), int((~y).sum())) < 2:
        return None
    calibrated = needs_calibration(s, y)
    if calibrated:
        x, fitted = fit_isotonic(s, y)

        def probability(v: np.ndarray) -> np.ndarray:
            return np.asarray(np.interp(v, x, fitted), dtype=np.float64)
    else:

        def probability(v: np.ndarray) -> np.ndarray:
            return v

    edges = _edges(s, threshold, bins)
    n_bins = edges.size - 1
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    sums = np.bincount(which, weights=probability(s), minlength=n_bins)
    # a bin no reference row fell in (a tied edge's neighbour): its middle's probability
    empty = probability((edges[:-1] + edges[1:]) / 2)
    per_bin = np.where(counts > 0, sums / np.maximum(counts, 1), empty)
    cal = ScoreCalibration(
        edges=edges.tolist(),
        probability=per_bin.tolist(),
        threshold_bin=int(np.searchsorted(edges, threshold)),
        calibrated=calibrated,
        rows=int(s.size),
        estimated={},
        realized=realized_metrics(s, y, threshold),
        sampling_error=sampling_error_components(s, y, s >= threshold),
    )
    cal.estimated = estimate(counts, cal)
    return cal


# ---- estimation (evaluator, inspect) ----------------------------------------------------
def estimate(counts: np.ndarray, calibration: ScoreCalibration) -> dict[str, float]:
    """CBPE of a window from its score histogram: the expected confusion matrix (sums of
    calibrated probabilities on each side of the threshold) and the expected ROC-AUC
    (expected positives and negatives per bin, scores in one bin counted as ties)."""
    _, p = calibration.arrays()
    c = np.asarray(counts, dtype=np.float64)
    n = float(c.sum())
    if not n:
        return {}
    positives = c * p
    negatives = c - positives
    k = calibration.threshold_bin
    tp, fp = float(positives[k:].sum()), float(negatives[k:].sum())
    fn = float(positives[:k].sum())
    return _from_counts(tp, fp, fn, n) | {"roc_auc": roc_auc(positives, negatives)}


@dataclass(slots=True)
class Estimate:
    """One metric of one window estimated: the value, its sampling error at the window's
    size, and the band (value ± `band` sampling errors, within [0, 1])."""

    value: float
    sampling_error: float
    lower: float
    upper: float

    def as_dict(self) -> dict[str, float | None]:
        def clean(v: float) -> float | None:
            return None if v != v else round(v, 6)

        return {
            "value": clean(self.value),
            "sampling_error": clean(self.sampling_error),
            "lower": clean(self.lower),
            "upper": clean(self.upper),
        }


def estimates(
    counts: np.ndarray, calibration: ScoreCalibration, band: float = 3.0
) -> dict[str, Estimate]:
    """Every metric of a window's histogram, each with its sampling error and band."""
    n = float(np.sum(counts))
    out = {}
    for metric, value in estimate(counts, calibration).items():
        components = calibration.sampling_error.get(metric)
        se = components.at(n) if components is not None else float("nan")
        # NaN stays NaN (no band without a sampling error), unlike min() and max()
        low, high = np.clip((value - band * se, value + band * se), 0.0, 1.0).tolist()
        out[metric] = Estimate(value, se, low, high)
    return out


def window_counts(window: WindowSketch, calibration: ScoreCalibration) -> np.ndarray:
    """A window's score histogram as an array over the calibration's bins."""
    h = window.score_bins
    if not h:
        return np.zeros(calibration.bins, dtype=np.int64)
    keys = np.fromiter(h.keys(), dtype=np.int64, count=len(h))
    values = np.fromiter(h.values(), dtype=np.int64, count=len(h))
    keep = (keys >= 0) & (keys < calibration.bins)
    return np.bincount(keys[keep], weights=values[keep], minlength=calibration.bins)


@dataclass(slots=True)
class EstimationFinding:
    """A window's estimated headline metric against the reference's, and the verdict."""

    metric: str
    predictions: int
    estimate: Estimate
    #: the reference's own estimate (what the window is compared with) and realized value
    reference: float
    reference_realized: float
    #: how far the estimate lies below the reference's, and in sampling errors
    drop: float
    z: float
    #: the line an estimate must fall below: reference − max(min_degradation, band · se)
    threshold: float
    degraded: bool
    estimates: dict[str, Estimate] = field(default_factory=dict)


def estimated_metric(profile: ReferenceProfile) -> str:
    """The metric the alert watches: the policy's, else the performance headline metric
    when CBPE can estimate it, else ROC-AUC."""
    configured = profile.config.estimation.metric
    if configured:
        return configured
    headline = profile.config.performance.metric
    return headline if headline in METRICS else "roc_auc"


def estimation_check(profile: ReferenceProfile, window: WindowSketch) -> EstimationFinding | None:
    """Is the window's estimated headline metric below the reference's by a margin that
    matters (`min_degradation`) and beyond its band (`band` sampling errors)? None when
    the model has no calibration, estimation is off, or the window has fewer than
    `min_predictions` scored predictions."""
    calibration = profile.calibration
    policy = profile.config.estimation
    if calibration is None or not policy.enabled:
        return None
    counts = window_counts(window, calibration)
    n = int(counts.sum())
    if n < policy.min_predictions:
        return None
    metric = estimated_metric(profile)
    found = estimates(counts, calibration, policy.band)
    now = found.get(metric)
    base = calibration.estimated.get(metric, float("nan"))
    if now is None or now.value != now.value or base != base:
        return None
    drop = base - now.value
    se = now.sampling_error
    if se != se:  # no sampling error for the metric (a class the reference never predicts)
        z = float("nan")
    elif se == 0:
        z = math.copysign(math.inf, drop) if drop else 0.0
    else:
        z = drop / se
    margin = max(policy.min_degradation, policy.band * se if se == se else math.inf)
    return EstimationFinding(
        metric=metric,
        predictions=n,
        estimate=now,
        reference=base,
        reference_realized=calibration.realized.get(metric, float("nan")),
        drop=drop,
        z=z,
        threshold=base - margin,
        degraded=drop >= policy.min_degradation and z > policy.band,
        estimates=found,
    )
