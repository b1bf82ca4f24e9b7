"""Outlier scoring: how far one event lies from the reference, jointly over its numeric
features, calibrated so that reference-like traffic is flagged at a chosen rate.

The score is a robust Mahalanobis distance: features standardised by the reference's
median and IQR (robust to the reference's own outliers), correlation from the clipped
standardised values with Ledoit–Wolf-style shrinkage towards the identity (stable with
20+ features). Scoring a batch is one matrix product. The threshold is calibrated as
follows, for these reasons:

- **Every row is scored out of sample.** A threshold must come from scores of rows the
  model did not see, as a new event's score is. Splitting the reference in halves spent
  half the rows on the model and left the other half to calibrate; K-fold cross-scoring
  (fit on four fifths, score the fifth left out, five times) gives every row such a
  score, and the model the stream is scored with is fit on all rows.
- **The fold models score new data slightly higher than the final model.** A model
  estimated from m rows inflates a new row's squared distance by about
  (1 + 1/m)(m − 1)/(m − d − 2), the Gaussian mean of Hotelling's T². For this robust
  estimate that factor predicts the measured fold/final gap too (0.3 % in score at
  d = 50 and 2,000 rows, which is 14 % of flagged share for Gaussian features), so the
  threshold is scaled by it.
- **The far tail comes from a generalised Pareto fit, not from the last few scores.** An
  empirical (1 − rate) quantile rests on the n·rate scores beyond it: two for 2,000 rows
  at 0.1 %. It is then the third-largest score, which flags 3/(n + 1) = 0.15 % of new
  events on average (2/1,001 = 0.2 % for the half split) and a few times more or less
  from one reference to the next. By the Pickands–Balkema–de Haan theorem the excesses
  over a high threshold are close to generalised Pareto for any tail with a limit law —
  Gaussian, lognormal and Student-t alike, which is why a χ² quantile is not used: real
  features are rarely Gaussian. So the top 10 % of the cross-scores are fitted (peaks
  over threshold, as in SPOT, Siffer et al. 2017) and the quantile is read off the fit,
  carried by a hundred times more points. The fit is Zhang & Stephens' (2009): no
  optimiser, and well behaved with a few dozen excesses (Pareto-smoothed importance
  sampling uses it too). Where enough scores lie beyond the quantile
  (`_EMPIRICAL_COUNT`), the empirical one is as good and needs no tail model.
- **A tail fit from a small reference is read at a calibrated level.** The share a
  threshold flags is convex in its error, so a fit read at the rate flags more than the
  rate on average (up to 1.4 times at 2,000 rows and 0.1 %). Where fewer than
  `_CALIBRATE_BELOW` scores lie beyond the quantile, a parametric bootstrap of the fit
  finds the level whose thresholds flag the rate on average (`calibrated_level`).
- **Ties are stated, not hidden.** Features of a few values make scores of a few
  values, and no threshold flags a share between two of them. The threshold is the
  value whose reference share beyond it is nearest the rate (strictly beyond: events
  alike are flagged alike), and the model stores that share (`flag_rate`), which the
  outlier alert then expects.

What no calibration removes is how little a reference tells about its own 0.1 % tail:
2,000 rows hold two rows beyond it, and `fit` puts a warning in the model (printed by
register) when fewer than `_WARN_TAIL_ROWS` rows lie beyond the threshold. Measured
(benchmarks/outliers.py; benchmarks/outlier_calibration.py for more kinds of
features), the share of reference-like traffic stays within about ±30 % of a 0.1 % rate
for 50,000-row references and scatters by a factor of 2 to 4 either way for 2,000
rows. That much is
the data's, not the method's: even knowing the data Gaussian, the best threshold from
2,000 rows (mean ± 3.29 sd) misses ±30 % for one reference in ten, and heavier tails are
known less well still from the same rows.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

#: standardised values are clipped here when estimating the correlation, so a handful
#: of wild reference rows cannot shape it
_CLIP = 5.0
#: shrinkage towards the identity (Ledoit & Wolf 2004 use a data-driven weight; a fixed
#: small one is enough to keep the inverse stable)
_SHRINK = 0.05
#: cross-scoring folds (five, ten or twenty give the same thresholds once the fold
#: models' size is corrected for; five cost least)
_FOLDS = 5
#: share of the largest cross-scores the generalised Pareto tail is fitted to
_TAIL = 0.1
#: with at least this many scores beyond the quantile (binomial error ≤ 4.5 %) it is
#: read off the scores themselves
_EMPIRICAL_COUNT = 500
#: fewer excesses than this do not make a tail fit
_MIN_EXCESSES = 10
#: with fewer scores than this beyond the quantile, the level the tail fit is read at
#: is calibrated for the fit's uncertainty (`calibrated_level`); with more it changes
#: the flagged share by under 5 %
_CALIBRATE_BELOW = 50
#: bootstrap samples of `calibrated_level`
_BOOTSTRAP = 200


class OutlierModel(BaseModel):
    """The reference's outlier model, stored inside the profile (plain JSON numbers).

    Profiles stored before `flag_rate`, `tail_rows` and `warning` existed load with
    None: their threshold was calibrated to `rate` and nothing was said about it."""

    features: list[str]
    center: list[float]
    scale: list[float]
    precision: list[list[float]]
    threshold: float
    rate: float
    #: the share of reference-like events the threshold flags when it differs from the
    #: configured `rate`: scores of a few values (ties) can only flag one of the shares
    #: P(score > v) over those values; None: the rate
    flag_rate: float | None = None
    #: how many reference rows the calibrated tail rests on (rows × the rate flagged)
    tail_rows: float | None = None
    #: why reference-like traffic may be flagged off the rate (said at register)
    warning: str | None = None

    @property
    def expected_rate(self) -> float:
        """The share of reference-like events this threshold flags: what a window's
        outlier share is tested against."""
        return self.rate if self.flag_rate is None else self.flag_rate

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.asarray(self.center), np.asarray(self.scale), np.asarray(self.precision))

    def flagged(self, x: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Which rows of `x` (columns in `features` order) are outliers: a score strictly
        above the threshold (an event scoring exactly the threshold is not one)."""
        if scores is None:
            scores = score(x, *self.arrays())
        return scores > self.threshold


def _standardise(x: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (x - center) / scale
    return np.where(np.isnan(z), 0.0, z)  # a missing value is not evidence of anything


def estimate(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Center, scale and precision matrix of the robust distance, from reference rows."""
    q25, center, q75 = np.nanquantile(rows, [0.25, 0.5, 0.75], axis=0)
    scale = (q75 - q25) / 1.349
    if not (scale > 0).all():
        spread = np.nanstd(rows, axis=0)
        scale = np.where(scale > 0, scale, np.where(spread > 0, spread, 1.0))
    z = np.clip(_standardise(rows, center, scale), -_CLIP, _CLIP)
    d = rows.shape[1]
    corr = np.cov(z, rowvar=False).reshape(d, d)
    corr = (1 - _SHRINK) * corr + _SHRINK * np.diag(np.diag(corr))
    return center, scale, np.linalg.pinv(corr)


def cross_scores(x: np.ndarray, folds: int = _FOLDS, seed: int = 0) -> np.ndarray:
    """Every row's score under a model fit on the other folds: out of sample, as a new
    event's score is."""
    fold = np.random.default_rng(seed).permutation(x.shape[0]) % folds
    scores = np.empty(x.shape[0])
    for k in range(folds):
        held_out = fold == k
        scores[held_out] = score(x[held_out], *estimate(x[~held_out]))
    return scores


def size_factor(n: int, m: float, d: int) -> float:
    """How much smaller a model fit on n rows scores new data than one fit on m < n rows:
    the square root of the ratio of the squared-distance inflations (1 + 1/m)(m − 1)/
    (m − d − 2) of a Gaussian mean and covariance estimated from m rows (the mean of
    Hotelling's T²)."""
    if m - d - 2 <= 0:
        return 1.0  # fewer rows than that make no covariance worth correcting

    def inflation(rows: float) -> float:
        return (1 + 1 / rows) * (rows - 1) / (rows - d - 2)

    return float(np.sqrt(inflation(n) / inflation(m)))


def gpd_fit(excesses: np.ndarray) -> tuple[float, float]:
    """Shape ξ and scale σ of a generalised Pareto distribution, P(X > x) =
    (1 + ξx/σ)^(−1/ξ), fitted to positive excesses by Zhang & Stephens' (2009)
    empirical-Bayes estimator (a likelihood-weighted average over a grid of θ = −ξ/σ,
    with their prior; as in Vehtari et al.'s Pareto-smoothed importance sampling)."""
    x = np.sort(excesses)
    n = x.size
    grid = 30 + int(np.sqrt(n))
    theta = 1 - np.sqrt(grid / (np.arange(1, grid + 1) - 0.5))
    theta /= 3 * x[int(n / 4 + 0.5) - 1]
    theta += 1 / x[-1]
    shape = np.log1p(-theta[:, None] * x).mean(axis=1)  # the likeliest ξ for each θ
    loglik = n * (np.log(-theta / shape) - shape - 1)  # the profile log-likelihood
    weights = np.exp(loglik - loglik.max())
    theta_hat = float((theta * weights).sum() / weights.sum())
    xi = float(np.log1p(-theta_hat * x).mean())
    return xi, -xi / theta_hat


def gpd_quantile(u: float, xi: float, sigma: float, exceed: float, rate: float) -> float:
    """The score exceeded with probability `rate`, given that a share `exceed` of scores
    exceeds u and the excesses are GPD(ξ, σ): u + σ/ξ ((exceed/rate)^ξ − 1)."""
    ratio = exceed / rate
    if abs(xi) < 1e-9:
        return u + sigma * float(np.log(ratio))
    return u + sigma / xi * (ratio**xi - 1)


def gpd_exceedance(t: np.ndarray, xi: float, sigma: float) -> np.ndarray:
    """P(X > t) for X ~ GPD(ξ, σ) and t ≥ 0 (zero beyond the end point when ξ < 0)."""
    if abs(xi) < 1e-9:
        return np.exp(-t / sigma)
    return np.maximum(1 + xi * t / sigma, 0.0) ** (-1 / xi)


def calibrated_level(
    xi: float, sigma: float, k: int, exceed: float, rate: float, seed: int = 0
) -> float:
    """The level to read the fitted tail at so that, on average over references, the
    threshold flags `rate` of new events (parametric bootstrap, as in Beran's calibrated
    prediction). A tail fitted to a few hundred excesses is uncertain, and flagging is
    convex in the error: a threshold too low by some amount flags more than one too high
    by as much flags less, so reading the fit at the rate flags more than the rate on
    average. Under the fitted GPD: draw _BOOTSTRAP samples of k excesses, refit each,
    and find the level a at which their quantiles are exceeded with mean probability
    `rate` (bisection on log a)."""
    uniform = np.random.default_rng(seed).random((_BOOTSTRAP, k))
    # inverse transform: the GPD quantile of 1 - U
    exponential = -np.log(uniform)
    samples = sigma * (exponential if abs(xi) < 1e-9 else np.expm1(xi * exponential) / xi)
    fits = [gpd_fit(sample) for sample in samples]

    def flagged(level: float) -> float:
        ts = np.array([gpd_quantile(0.0, x, s, exceed, level) for x, s in fits])
        return exceed * float(gpd_exceedance(np.maximum(ts, 0.0), xi, sigma).mean())

    lo, hi = np.log(rate / 100), np.log(min(exceed, 10 * rate))
    for _ in range(30):
        mid = (lo + hi) / 2
        if flagged(float(np.exp(mid))) > rate:
            hi = mid
        else:
            lo = mid
    return float(np.exp((lo + hi) / 2))


def tail_quantile(scores: np.ndarray, rate: float) -> float:
    """The (1 − rate) quantile of the distribution the scores were drawn from: empirical
    where enough scores lie beyond it, else from a generalised Pareto fit to the excesses
    over the (1 − _TAIL) quantile (peaks over threshold); where fewer than
    _CALIBRATE_BELOW scores lie beyond it, read at the level `calibrated_level` finds."""
    n = scores.size
    if n * rate >= _EMPIRICAL_COUNT or rate >= _TAIL:
        return float(np.quantile(scores, 1 - rate))
    u = float(np.quantile(scores, 1 - _TAIL))
    excesses = scores[scores > u] - u
    if excesses.size < _MIN_EXCESSES:
        return float(np.quantile(scores, 1 - rate))
    xi, sigma = gpd_fit(excesses)
    exceed = excesses.size / n
    level = rate
    if n * rate < _CALIBRATE_BELOW:
        level = calibrated_level(xi, sigma, excesses.size, exceed, rate)
    return gpd_quantile(u, xi, sigma, exceed, level)


def few_values(scores: np.ndarray) -> bool:
    """Whether the scores take a few values in their tail (features of a few values
    each: flags, small counts), told by ties: most scores above the (1 − _TAIL)
    quantile equal another one (continuous features make no ties)."""
    above = scores[scores > np.quantile(scores, 1 - _TAIL)]
    return above.size < _MIN_EXCESSES or np.unique(above).size < above.size / 2


def tie_threshold(scores: np.ndarray, rate: float) -> tuple[float, float]:
    """For scores of a few values: the value v whose share P(score > v) among the
    reference's scores is nearest the rate (on a log scale; the lower share when two are
    as near), and that share. An event scoring exactly v is not flagged, so every event
    of one value is treated alike; the share flagged is what the atoms allow, stated."""
    values, counts = np.unique(scores, return_counts=True)
    beyond = (scores.size - np.cumsum(counts)) / scores.size  # share strictly above each
    usable = beyond > 0
    if not usable.any():  # one value only: nothing is ever flagged
        return float(values[-1]), 0.0
    distance = np.abs(np.log(beyond[usable] / rate))
    best = int(np.flatnonzero(distance <= distance.min() + 1e-12)[-1])  # the lower share
    return float(values[usable][best]), float(beyond[usable][best])


#: fewer reference rows than this beyond the threshold: the flagged share of
#: reference-like traffic can be off the rate by more than ±30 % (benchmarks/
#: outlier_calibration.py: within ±30 % from about 50 rows on)
_WARN_TAIL_ROWS = 50


def _warning(n: int, rate: float, flag_rate: float, ties: bool) -> str | None:
    tail = n * flag_rate
    if ties and abs(flag_rate / rate - 1) > 0.3:
        return (
            f"the numeric features take few values: the outlier threshold flags "
            f"{flag_rate:.3%} of the reference, not the configured {rate:.3%} (no score "
            "lies between); the outlier alert tests against that share"
        )
    if tail < _WARN_TAIL_ROWS:
        needed = int(np.ceil(_WARN_TAIL_ROWS / rate))
        return (
            f"{n:,} reference rows hold about {tail:.2g} beyond the {rate:.3%} outlier "
            "threshold, so the share of reference-like traffic it flags is known only "
            "roughly (measured: 0.3–3x the rate with 2 such rows, 0.5–2.4x with 10); "
            f"within ±30 % needs about {_WARN_TAIL_ROWS} ({needed:,} rows, or outlier_rate "
            f"{_WARN_TAIL_ROWS / n:.2%}); the outlier alert allows for the reference's size"
        )
    return None


def fit(x: np.ndarray, features: list[str], rate: float, seed: int = 0) -> OutlierModel | None:
    """Fit on all reference rows; calibrate the threshold on their cross-scores (on
    their own scores when these take a few values)."""
    if x.shape[1] == 0 or x.shape[0] < 200:
        return None
    center, scale, precision = estimate(x)
    n, d = x.shape
    in_sample = score(x, center, scale, precision)
    ties = few_values(in_sample)
    if ties:
        # The share flagged can only be one of P(score > v) over the values v: the one
        # nearest the rate, stated with the model. Cross-scores would not do: the fold
        # models put a value a little off where the final model puts it, and a threshold
        # just below a value flags all events that have it.
        threshold, flag_rate = tie_threshold(in_sample, rate)
    else:
        fold_rows = n * (_FOLDS - 1) / _FOLDS
        threshold = tail_quantile(cross_scores(x, seed=seed), rate) * size_factor(n, fold_rows, d)
        flag_rate = rate
    return OutlierModel(
        features=features,
        center=center.tolist(),
        scale=scale.tolist(),
        precision=precision.tolist(),
        threshold=threshold,
        rate=rate,
        flag_rate=flag_rate if flag_rate != rate else None,
        tail_rows=n * flag_rate,
        warning=_warning(n, rate, flag_rate, ties),
    )


def score(x: np.ndarray, center: np.ndarray, scale: np.ndarray, precision: np.ndarray):
    """Robust Mahalanobis distance of each row."""
    z = _standardise(x, center, scale)
    return np.sqrt(np.maximum(((z @ precision) * z).sum(axis=1), 0.0))


def contributions(x_row: np.ndarray, model: OutlierModel, top: int = 3) -> list[dict]:
    """The features that make one event extreme: each one's share of the squared
    distance, z_j (P z)_j, largest first, with the standardised value."""
    center, scale, precision = model.arrays()
    z = _standardise(x_row[None, :], center, scale)[0]
    parts = z * (precision @ z)
    order = np.argsort(-parts)[:top]
    return [
        {
            "feature": model.features[j],
            "z": round(float(z[j]), 3),
            "share": round(float(parts[j] / max(parts.sum(), 1e-12)), 3),
        }
        for j in order
    ]
