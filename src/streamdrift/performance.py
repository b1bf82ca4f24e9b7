"""Model performance from joined (prediction, label) pairs, as mergeable counts.

A window's performance state is a handful of sums and histograms that add up across
batches, workers and windows: a confusion matrix, score histograms by actual class (for
ROC-AUC and calibration), log-loss and Brier sums, error moments for regressors, and the
label delay. The join (`streamdrift.pairing`) adds a batch's labelled pairs to the same
fields `PerformanceSketch.from_pairs` fills from arrays; metrics are pure functions of a
sketch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Score histogram resolution of the equal-width layout, the one of profiles without
#: score edges (registered before edges existed). Ties inside a bin count half in the
#: AUC, so the AUC error is at most half the share of (positive, negative) pairs sharing
#: a bin: fine for scores spread over [0, 1], but a confident model piles its scores into
#: the first and last bins and is off by several hundredths there.
SCORE_BINS = 200
#: Bins of a layout with edges, at most: the length of every score histogram array, so
#: sketches add up whatever their layout, and a window's perf hash keeps at most twice
#: this many bin fields.
MAX_SCORE_BINS = 256
#: Calibration is read over this many equal-width score bins; every layout has their
#: edges k/10 among its own, so each score bin lies in one calibration bin.
CALIBRATION_BINS = 10
#: Edges of a layout placed by the reference's score quantiles (the levels of a mixture
#: that also spreads a share evenly in the score and in its logit, see `score_edges`)
QUANTILE_LEVELS = 192
#: Share of those levels spread evenly in the logit of the score and in the score: bins
#: stay fine in the tails and nowhere much wider than 1/40 when a window's scores move
#: away from the reference's.
LOGIT_SHARE = 0.2
UNIFORM_SHARE = 0.2
#: The logit spread runs over [1e-7, 1 − 1e-7]: a confident model's scores
LOGIT_LIMIT = math.log(1e7)
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
    #: scored pairs per score bin (the profile's layout, see `score_bin`) by actual class
    positive_hist: np.ndarray = field(default_factory=lambda: np.zeros(MAX_SCORE_BINS, np.int64))
    negative_hist: np.ndarray = field(default_factory=lambda: np.zeros(MAX_SCORE_BINS, np.int64))
    #: sum of the scores per calibration bin (layouts with edges only): the exact mean
    #: score of a calibration bin, whatever the widths of the score bins in it
    score_sums: np.ndarray = field(default_factory=lambda: np.zeros(CALIBRATION_BINS))
    log_loss_sum: float = 0.0
    #: sum of the squared per-pair log losses, and the scored pairs it covers (windows
    #: written before it existed lack it): the spread of the log loss
    log_loss_sq: float = 0.0
    log_loss_sq_n: int = 0
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
    #: the sequential scan's sums per part of the window, "<part>:<stat>" (stats in
    #: `sequential.SUB_FIELDS`)
    sub_windows: Counter[str] = field(default_factory=Counter)

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
            score_sums=self.score_sums + o.score_sums,
            log_loss_sum=self.log_loss_sum + o.log_loss_sum,
            log_loss_sq=self.log_loss_sq + o.log_loss_sq,
            log_loss_sq_n=self.log_loss_sq_n + o.log_loss_sq_n,
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
            sub_windows=self.sub_windows + o.sub_windows,
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
        score_edges: Sequence[float] | None = None,
        parts: tuple[np.ndarray, int, int, int] | None = None,
    ) -> PerformanceSketch:
        """The sketch of labelled pairs given as columns (the same sums the join adds;
        `shift` as the profile's `label_shift()`, `score_edges` its score layout).
        `parts`: (the predictions' times, the window's start, its width, the parts of a
        window) for the sequential scan's sums."""
        s = cls._from_pairs(
            task, actual, predicted_class, score, positive, delays, shift, score_edges
        )
        if parts is not None:
            s.sub_windows = _sub_window_sums(task, actual, predicted_class, score, positive, parts)
        return s

    @classmethod
    def _from_pairs(
        cls,
        task: str,
        actual: list[object],
        predicted_class: list[object] | None,
        score: np.ndarray | None,
        positive: str | None,
        delays: np.ndarray | None,
        shift: float,
        score_edges: Sequence[float] | None,
    ) -> PerformanceSketch:
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
            bins = score_bin(p, score_edges)
            s.positive_hist = np.bincount(bins[is_pos], minlength=MAX_SCORE_BINS)
            s.negative_hist = np.bincount(bins[~is_pos], minlength=MAX_SCORE_BINS)
            if score_edges is not None:
                s.score_sums = np.bincount(
                    calibration_bin(p), weights=p, minlength=CALIBRATION_BINS
                ).astype(np.float64)
            pc = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
            loss = -np.where(is_pos, np.log(pc), np.log(1 - pc))
            s.log_loss_sum = float(loss.sum())
            s.log_loss_sq, s.log_loss_sq_n = float((loss * loss).sum()), int(loss.size)
            s.brier_sum = float(((p - is_pos) ** 2).sum())
            s.scored = int(p.size)
        return s


def _sub_window_sums(
    task: str,
    actual: list[object],
    predicted_class: list[object] | None,
    score: np.ndarray | None,
    positive: str | None,
    parts: tuple[np.ndarray, int, int, int],
) -> Counter[str]:
    """What the join adds per part of the window (`sequential.SUB_FIELDS`)."""
    times, start, width, k = parts
    part = np.minimum(
        np.floor((np.asarray(times, dtype=np.float64) - start) * k / width), k - 1
    ).astype(np.int64)
    out: Counter[str] = Counter()

    def put(stat: str, values: np.ndarray, where: np.ndarray | None = None) -> None:
        sel = part if where is None else part[where]
        vals = values if where is None else values[where]
        for j, v in enumerate(np.bincount(sel, weights=vals, minlength=k).tolist()):
            if v:
                out[f"{j}:{stat}"] += v

    if task == "regression":
        e = np.asarray(score, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
        put("an", np.ones(len(e)))
        put("a", np.abs(e))
        put("a2", e * e)
        return out
    keys = [class_key(a) for a in actual]
    if predicted_class is not None:
        wrong = np.array(
            [a != class_key(p) for a, p in zip(keys, predicted_class, strict=True)], dtype=float
        )
        put("en", np.ones(len(wrong)))
        put("e", wrong)
    if score is not None and positive is not None:
        p = np.clip(np.asarray(score, dtype=np.float64), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        is_pos = np.asarray([a == positive for a in keys], dtype=bool)
        loss = -np.where(is_pos, np.log(p), np.log(1 - p))
        put("ln", np.ones(len(loss)))
        put("l", loss)
        put("l2", loss * loss)
    return out


def score_bin(score: np.ndarray, edges: Sequence[float] | None = None) -> np.ndarray:
    """Histogram bin of each score (the join bins its pairs' scores with it).

    With `edges` (a profile's `score_edges`, ascending): the number of edges at or below
    the score, so equal scores always share a bin (a tie, as for scikit-learn) and a
    score equal to an edge opens the bin above it. Without: SCORE_BINS equal-width bins
    over [0, 1] (1.0 in the last bin), the layout of profiles that have no edges."""
    if edges is not None:
        return np.searchsorted(np.asarray(edges, dtype=np.float64), score, side="right")
    return np.clip((np.asarray(score) * SCORE_BINS).astype(np.int64), 0, SCORE_BINS - 1)


def calibration_edges() -> np.ndarray:
    """The inner edges k/10 of the equal-width calibration bins, spelt as the join spells
    them (k / 10 in double precision)."""
    return np.arange(1, CALIBRATION_BINS) / CALIBRATION_BINS


def calibration_bin(score: np.ndarray) -> np.ndarray:
    """Calibration bin of each score (the number of edges k/10 at or below it), the rule
    of `score_bin` with edges: a layout's score bin lies in exactly one of them."""
    return np.searchsorted(calibration_edges(), score, side="right")


def score_edges(scores: np.ndarray, levels: int = QUANTILE_LEVELS) -> list[float] | None:
    """A score layout for a model whose reference scored `scores`: the inner edges of at
    most MAX_SCORE_BINS bins, ascending, or None without any score in [0, 1].

    ROC-AUC from binned scores counts every (positive, negative) pair sharing a bin as a
    tie, so bins must be narrow where the scores are many: the edges sit at quantiles of
    the reference's scores (at reference values, so each distinct value of a discrete
    score opens a bin of its own). A share of the quantile levels is spread evenly in the
    score's logit (fine splits down to 1e-7 and up to 1 − 1e-7, where a confident model's
    scores pile up) and in the score (no bin much wider than 1/40 where the reference had
    few scores). A discrete score (fewer distinct values than bins) has every value as
    an edge. A value holding more than one level's share of the reference (a heavy tie)
    gets a bin of its own, [v, next double), as long as there is room: nothing else is
    counted tied with it. The calibration edges k/10 are always edges, so calibration
    reads equal-width bins; quantile edges take the room left."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.sort(s[np.isfinite(s) & (s >= 0.0) & (s <= 1.0)])
    if not s.size:
        return None
    logit_n = round(levels * LOGIT_SHARE)
    uniform_n = round(levels * UNIFORM_SHARE)
    logit = np.linspace(-LOGIT_LIMIT, LOGIT_LIMIT, logit_n + 1)
    spread = np.concatenate((1.0 / (1.0 + np.exp(-logit)), np.linspace(0.0, 1.0, uniform_n + 1)))
    # the mixture's levels: each reference score and each spread point weighs its share
    reference_share = 1.0 - LOGIT_SHARE - UNIFORM_SHARE
    points = np.concatenate((s, spread))
    weights = np.concatenate(
        (np.full(s.size, reference_share / s.size), np.full(spread.size, 1 - reference_share))
    )
    weights[s.size :] /= spread.size
    order = np.argsort(points, kind="stable")
    points, cumulative = points[order], np.cumsum(weights[order])
    at = np.searchsorted(cumulative, np.arange(1, levels) / levels, side="left")
    quantiles = points[np.minimum(at, points.size - 1)]
    values, counts = np.unique(s, return_counts=True)
    must = calibration_edges()
    if np.union1d(must, values).size < MAX_SCORE_BINS:
        # a discrete score: each of its values opens a bin, so none shares one with another
        must = np.union1d(must, values[values > 0.0])
    # heavy ties, the heaviest first, as many as fit: a value and its next double
    heavy = np.flatnonzero(counts * levels > s.size)
    heavy = heavy[np.argsort(-counts[heavy], kind="stable")]
    for v in values[heavy]:
        tie = np.array([v, np.nextafter(v, np.inf)])
        tie = tie[(tie > 0.0) & (tie <= 1.0)]
        grown = np.union1d(must, tie)
        if grown.size < MAX_SCORE_BINS:
            must = grown
    rest = np.setdiff1d(quantiles[(quantiles > 0.0) & (quantiles <= 1.0)], must)
    spare = MAX_SCORE_BINS - 1 - must.size
    if rest.size > spare:  # a discrete score or many ties: the quantiles thinned evenly
        rest = np.unique(rest[np.linspace(0, rest.size - 1, spare).round().astype(np.int64)])
    edges = np.union1d(must, rest)
    return [float(e) for e in edges]


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


def calibration_bins(
    positive_hist: np.ndarray,
    negative_hist: np.ndarray,
    edges: Sequence[float] | None = None,
    score_sums: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positives, negatives and the sum of the scores in each of the CALIBRATION_BINS
    equal-width calibration bins. With a layout's `edges`, each calibration bin gathers
    the score bins inside it and its score sum is exact (`score_sums`); in the
    equal-width layout the scores are taken at the centres of its fine bins, up to half
    a fine bin off."""
    if edges is not None:
        if score_sums is None:
            raise ValueError("a layout with edges reads the calibration bins' score sums")
        lower = np.concatenate(([-np.inf], np.asarray(edges, dtype=np.float64)))
        which = calibration_bin(lower)
        size = lower.size
        pos = np.bincount(which, positive_hist[:size], CALIBRATION_BINS)
        neg = np.bincount(which, negative_hist[:size], CALIBRATION_BINS)
        sums = np.asarray(score_sums, dtype=np.float64)
    else:
        fine_pos = positive_hist[:SCORE_BINS].astype(np.float64)
        fine_neg = negative_hist[:SCORE_BINS].astype(np.float64)
        pos = fine_pos.reshape(CALIBRATION_BINS, -1).sum(axis=1)
        neg = fine_neg.reshape(CALIBRATION_BINS, -1).sum(axis=1)
        centres = (np.arange(SCORE_BINS) + 0.5) / SCORE_BINS
        sums = ((fine_pos + fine_neg) * centres).reshape(CALIBRATION_BINS, -1).sum(axis=1)
    return pos, neg, sums


def calibration_error(
    positive_hist: np.ndarray,
    negative_hist: np.ndarray,
    edges: Sequence[float] | None = None,
    score_sums: np.ndarray | None = None,
) -> float:
    """Expected calibration error over CALIBRATION_BINS equal-width bins (Naeini et al.
    2015), the bins as `calibration_bins` reads them."""
    pos, neg, sums = calibration_bins(positive_hist, negative_hist, edges, score_sums)
    n = pos + neg
    total = n.sum()
    if not total:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(n > 0, sums / n, 0.0)
        frac_pos = np.where(n > 0, pos / n, 0.0)
    return float((np.abs(frac_pos - mean_score) * n).sum() / total)


def calibration_error_spread(
    positive_hist: np.ndarray,
    negative_hist: np.ndarray,
    edges: Sequence[float] | None = None,
    score_sums: np.ndarray | None = None,
) -> tuple[float, float]:
    """Bounds on the sampling bias and the standard error of a window's calibration
    error, given its bins' sizes: (bias, se).

    A bin of n_b pairs reads its gap g_b (share of positives − mean score) with a
    binomial error e_b of standard deviation s_b = sqrt(p_b(1 − p_b) / n_b), so
    E|g_b + e_b| ≤ |g_b| + s_b·sqrt(2/π) and Var|g_b + e_b| ≤ s_b²: the expected
    calibration error Σ w_b|g_b + e_b| (w_b = n_b / n) is at most its true value plus
    Σ w_b s_b sqrt(2/π), with variance at most Σ w_b² s_b². p_b is taken as the larger
    p(1 − p) of the bin's share of positives (plus one of each class, so an empty class
    does not read as certainty) and its mean score. Small windows read a larger
    calibration error than large ones even when nothing changed; this bias is what a
    test against a baseline must first discount."""
    pos, neg, sums = calibration_bins(positive_hist, negative_hist, edges, score_sums)
    n = pos + neg
    total = n.sum()
    if not total:
        return float("nan"), float("nan")
    seen = n > 0
    share = (pos[seen] + 1) / (n[seen] + 2)
    mean_score = np.clip(sums[seen] / n[seen], 0.0, 1.0)
    p_q = np.maximum(share * (1 - share), mean_score * (1 - mean_score))
    sd = np.sqrt(p_q / n[seen])
    w = n[seen] / total
    bias = float((w * sd).sum() * math.sqrt(2 / math.pi))
    return bias, float(math.sqrt((w * w * sd * sd).sum()))


def classification_metrics(
    s: PerformanceSketch, positive: str | None, score_edges: Sequence[float] | None = None
) -> dict[str, float]:
    """Metrics of a classifier's window; `score_edges` is the layout its score
    histograms were counted in (the profile's), None for equal-width bins."""
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
        if s.log_loss_sq_n == s.scored:  # every scored pair in the sum of squares
            spread = s.log_loss_sq / s.scored - out["log_loss"] ** 2
            # Σl² − (Σl)²/n cancels: a spread below its rounding error is none
            if spread >= -1e-9 * max(s.log_loss_sq / s.scored, 1.0):
                out["log_loss_sd"] = math.sqrt(max(spread, 0.0) * s.scored / max(s.scored - 1, 1))
        out["brier"] = s.brier_sum / s.scored
        out["calibration_error"] = calibration_error(
            s.positive_hist, s.negative_hist, score_edges, s.score_sums
        )
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
    s: PerformanceSketch,
    task: str,
    positive: str | None,
    predictions: int | None = None,
    score_edges: Sequence[float] | None = None,
) -> dict[str, float]:
    """All metrics of a window: the task's, label coverage (share of the window's
    predictions labelled) and label delay (mean, and the median's histogram bucket).
    `score_edges`: the profile's score layout (None: equal-width bins)."""
    out = (
        regression_metrics(s)
        if task == "regression"
        else classification_metrics(s, positive, score_edges)
    )
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
