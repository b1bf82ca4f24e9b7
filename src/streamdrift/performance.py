"""Model performance from joined (prediction, label) pairs, as mergeable counts.

A window's performance state is a handful of sums and histograms that add up across
batches, workers and windows: a confusion matrix, score histograms by actual class (for
ROC-AUC and calibration), log-loss and Brier sums, error moments for regressors, and the
label delay. The join in Redis (store/lua/apply.lua) adds one labelled pair at a time to the
same fields `PerformanceSketch.from_pairs` fills from arrays; metrics are pure functions
of a sketch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

#: Score histogram resolution. Ties inside a bin count half in the AUC, so the AUC error
#: is at most half the share of (positive, negative) pairs sharing a bin: with 200 bins
#: and scores spread over [0, 1] it stays well under 0.005.
SCORE_BINS = 200
#: Calibration is read over this many equal-width score bins (SCORE_BINS merged).
CALIBRATION_BINS = 10
#: Clip for log loss, as scikit-learn does with float64.
LOG_LOSS_EPS = 1e-15
_EPS = float(np.finfo(np.float64).eps)


def delay_bucket(seconds: float) -> int:
    """Label-delay histogram bucket: 0 for under 1 s, else 1 + floor(log2 seconds)."""
    return 0 if seconds < 1 else 1 + int(math.log2(seconds))


def class_key(value: object) -> str:
    """Class names as stored in the confusion matrix ("|" separates actual from predicted)."""
    from streamdrift.profile import category_key

    return category_key(value).replace("|", "/")


@dataclass(slots=True)
class PerformanceSketch:
    """Sums over one window's labelled predictions."""

    labelled: int = 0
    delay_sum: float = 0.0
    delay_hist: Counter[int] = field(default_factory=Counter)
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: pairs beyond the confusion matrix's cap in Redis (a flood of class names)
    confusion_other: int = 0
    scored: int = 0
    positive_hist: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, np.int64))
    negative_hist: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, np.int64))
    log_loss_sum: float = 0.0
    brier_sum: float = 0.0
    abs_error: float = 0.0
    sq_error: float = 0.0
    error: float = 0.0
    #: sums of (y − shift) and its square, shift = the profile's `label_shift()`
    y_sum: float = 0.0
    y_sq: float = 0.0
    ape_sum: float = 0.0
    ape_n: int = 0
    #: per "segment=value": n, ok (correct classes) or ae, se (regression errors)
    segments: dict[str, Counter[str]] = field(default_factory=dict)

    def __add__(self, o: PerformanceSketch) -> PerformanceSketch:
        return PerformanceSketch(
            labelled=self.labelled + o.labelled,
            delay_sum=self.delay_sum + o.delay_sum,
            delay_hist=self.delay_hist + o.delay_hist,
            confusion=self.confusion + o.confusion,
            confusion_other=self.confusion_other + o.confusion_other,
            scored=self.scored + o.scored,
            positive_hist=self.positive_hist + o.positive_hist,
            negative_hist=self.negative_hist + o.negative_hist,
            log_loss_sum=self.log_loss_sum + o.log_loss_sum,
            brier_sum=self.brier_sum + o.brier_sum,
            abs_error=self.abs_error + o.abs_error,
            sq_error=self.sq_error + o.sq_error,
            error=self.error + o.error,
            y_sum=self.y_sum + o.y_sum,
            y_sq=self.y_sq + o.y_sq,
            ape_sum=self.ape_sum + o.ape_sum,
            ape_n=self.ape_n + o.ape_n,
            segments={
                k: self.segments.get(k, Counter()) + o.segments.get(k, Counter())
                for k in self.segments | o.segments
            },
        )

    # ---- vectorised update (reference performance, tests) --------------------------------
    @classmethod
    def from_pairs(
        cls,
        task: str,
        actual: list[object],
        predicted_class: list[object] | None = None,
        score: np.ndarray | None = None,
        positive: str | None = None,
        delays: np.ndarray | None = None,
        shift: float = 0.0,
    ) -> PerformanceSketch:
        """The sketch of labelled pairs given as columns (the same sums the join adds;
        `shift` as the profile's `label_shift()`)."""
        s = cls(labelled=len(actual))
        if delays is not None and len(delays):
            s.delay_sum = float(np.sum(delays))
            s.delay_hist = Counter(delay_bucket(float(d)) for d in delays)
        if task == "regression":
            y = np.asarray(actual, dtype=np.float64)
            yhat = np.asarray(score, dtype=np.float64)
            e = yhat - y
            s.abs_error, s.sq_error, s.error = (
                float(np.abs(e).sum()),
                float((e * e).sum()),
                float(e.sum()),
            )
            centred = y - shift
            s.y_sum, s.y_sq = float(centred.sum()), float((centred * centred).sum())
            nz = y != 0
            s.ape_sum, s.ape_n = float((np.abs(e[nz]) / np.abs(y[nz])).sum()), int(nz.sum())
            return s
        actual_keys = [class_key(a) for a in actual]
        if predicted_class is not None:
            s.confusion = Counter(
                zip(actual_keys, (class_key(p) for p in predicted_class), strict=True)
            )
        if score is not None and positive is not None:
            p = np.asarray(score, dtype=np.float64)
            is_pos = np.asarray([a == positive for a in actual_keys], dtype=bool)
            bins = score_bin(p)
            s.positive_hist = np.bincount(bins[is_pos], minlength=SCORE_BINS)
            s.negative_hist = np.bincount(bins[~is_pos], minlength=SCORE_BINS)
            pc = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
            s.log_loss_sum = float(-np.where(is_pos, np.log(pc), np.log(1 - pc)).sum())
            s.brier_sum = float(((p - is_pos) ** 2).sum())
            s.scored = int(p.size)
        return s


def score_bin(score: np.ndarray) -> np.ndarray:
    """Histogram bin of each score in [0, 1] (1.0 in the last bin); the Lua join uses the
    same rule."""
    return np.clip((np.asarray(score) * SCORE_BINS).astype(np.int64), 0, SCORE_BINS - 1)


def _safe_div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def roc_auc(positive_hist: np.ndarray, negative_hist: np.ndarray) -> float:
    """ROC-AUC as the Mann–Whitney probability P(score_pos > score_neg) + ½ P(tie), with
    scores in the same bin counted as ties (Hanley & McNeil 1982; Fawcett 2006, §5)."""
    pos, neg = positive_hist.astype(np.float64), negative_hist.astype(np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if not n_pos or not n_neg:
        return float("nan")
    neg_below = np.concatenate(([0.0], np.cumsum(neg)[:-1]))
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


def calibration_error(positive_hist: np.ndarray, negative_hist: np.ndarray) -> float:
    """Expected calibration error over CALIBRATION_BINS equal-width bins, with each
    bin's mean score taken at its centre (Naeini et al. 2015)."""
    pos = positive_hist.reshape(CALIBRATION_BINS, -1).sum(axis=1).astype(np.float64)
    neg = negative_hist.reshape(CALIBRATION_BINS, -1).sum(axis=1).astype(np.float64)
    n = pos + neg
    total = n.sum()
    if not total:
        return float("nan")
    sub = SCORE_BINS // CALIBRATION_BINS
    fine = (positive_hist + negative_hist).reshape(CALIBRATION_BINS, sub).astype(np.float64)
    centres = (np.arange(SCORE_BINS) + 0.5).reshape(CALIBRATION_BINS, sub) / SCORE_BINS
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(n > 0, (fine * centres).sum(axis=1) / n, 0.0)
        frac_pos = np.where(n > 0, pos / n, 0.0)
    return float((np.abs(frac_pos - mean_score) * n).sum() / total)


def classification_metrics(s: PerformanceSketch, positive: str | None) -> dict[str, float]:
    classes = sorted({a for a, _ in s.confusion} | {p for _, p in s.confusion})
    total = sum(s.confusion.values())
    correct = sum(c for (a, p), c in s.confusion.items() if a == p)
    out: dict[str, float] = {"accuracy": _safe_div(correct, total)}
    f1s, precisions, recalls = [], [], []
    for k in classes:
        tp = s.confusion.get((k, k), 0)
        predicted = sum(c for (_, p), c in s.confusion.items() if p == k)
        actual = sum(c for (a, _), c in s.confusion.items() if a == k)
        precision = _safe_div(tp, predicted) if predicted else 0.0
        recall = _safe_div(tp, actual) if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"precision[{k}]"], out[f"recall[{k}]"], out[f"f1[{k}]"] = precision, recall, f1
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    if classes:
        out["precision_macro"] = float(np.mean(precisions))
        out["recall_macro"] = float(np.mean(recalls))
        out["f1_macro"] = float(np.mean(f1s))
    if positive is not None and f"f1[{positive}]" in out:
        out["precision"] = out[f"precision[{positive}]"]
        out["recall"] = out[f"recall[{positive}]"]
        out["f1"] = out[f"f1[{positive}]"]
    if s.scored:
        out["roc_auc"] = roc_auc(s.positive_hist, s.negative_hist)
        out["log_loss"] = s.log_loss_sum / s.scored
        out["brier"] = s.brier_sum / s.scored
        out["calibration_error"] = calibration_error(s.positive_hist, s.negative_hist)
        out["positives"] = float(s.positive_hist.sum())
        out["negatives"] = float(s.negative_hist.sum())
    return out


def regression_metrics(s: PerformanceSketch) -> dict[str, float]:
    n = s.labelled
    if not n:
        return {}
    # Σy² - (Σy)²/n cancels: below the rounding error of the sums (≈ n·eps·Σy² when added
    # one pair at a time) y has no variance and R² is undefined.
    sst = s.y_sq - s.y_sum * s.y_sum / n
    return {
        "mae": s.abs_error / n,
        "rmse": math.sqrt(s.sq_error / n),
        "mape": _safe_div(s.ape_sum, s.ape_n),
        "r2": 1 - s.sq_error / sst if sst > n * _EPS * s.y_sq else float("nan"),
        "mean_error": s.error / n,
    }


def segment_metrics(s: PerformanceSketch, task: str) -> dict[str, dict[str, float]]:
    """Per segment ("region=EU"): labelled count and accuracy, or MAE and RMSE."""
    out = {}
    for segment, c in sorted(s.segments.items()):
        n = c.get("n", 0)
        if not n:
            continue
        if task == "regression":
            out[segment] = {
                "labelled": n,
                "mae": c.get("ae", 0) / n,
                "rmse": math.sqrt(c.get("se", 0) / n),
            }
        else:
            out[segment] = {"labelled": n, "accuracy": c.get("ok", 0) / n}
    return out


def performance_metrics(
    s: PerformanceSketch, task: str, positive: str | None, predictions: int | None = None
) -> dict[str, float]:
    """All metrics of a window: the task's, label coverage (share of the window's
    predictions labelled) and label delay (mean, and the median's histogram bucket)."""
    out = regression_metrics(s) if task == "regression" else classification_metrics(s, positive)
    out["labelled"] = float(s.labelled)
    if predictions:
        out["label_coverage"] = s.labelled / predictions
    if s.labelled:
        out["label_delay_mean_seconds"] = s.delay_sum / s.labelled
        ordered = sorted(s.delay_hist.items())
        half, seen = s.labelled / 2, 0
        for bucket, c in ordered:
            seen += c
            if seen >= half:
                out["label_delay_median_bucket_seconds"] = (
                    0.0 if bucket == 0 else 2.0 ** (bucket - 1)
                )
                break
    return out
