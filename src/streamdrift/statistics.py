"""Drift statistics over two count vectors (histograms).

Every function takes a *reference* count vector first and a *current* count vector
second: one entry per bin of a numeric feature (bins cut on the reference's
quantiles) or per category of a categorical feature. Counts are non-negative
numbers (ints or floats, e.g. decayed counts); both vectors have the same length.

Conventions shared by all functions:

* A vector whose total is zero (including an empty vector) carries no
  distribution, so the statistic is ``float('nan')`` (and so is any p-value)
  instead of an exception: a monitor should report "no data" for that window, not
  crash.
* Malformed input (different lengths, not 1-D, negative or non-finite counts) is a
  programming error and raises ``ValueError``.
* Cohen's w subtracts its own sampling noise (see :func:`cohen_w`), so it is 0.0
  rather than a small positive number for most windows that did not change.
* :func:`min_effect_p_value` tests "the shift is larger than a small effect" rather
  than "there is a shift", so at a small sample it asks for more evidence than the
  chi-square test.
* Statistics that take the log of a ratio of proportions (PSI, KL) smooth the
  proportions with a floor ``eps`` (see :func:`psi`); the others (Jensen–Shannon,
  Hellinger, KS, Wasserstein, chi-square) are finite on empty bins as they are.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import chdtrc, rel_entr
from scipy.stats import kstwo, ncx2

__all__ = [
    "DEFAULT_EPS",
    "categorical_drift",
    "chi_square",
    "cohen_w",
    "hellinger",
    "jensen_shannon",
    "kl_divergence",
    "ks_binned",
    "ks_p_value",
    "min_effect_p_value",
    "numeric_drift",
    "psi",
    "wasserstein_binned",
]

DEFAULT_EPS = 1e-4
"""Floor for smoothed proportions: 0.0001, the value customary in PSI practice."""

_NAN = float("nan")
_LN2 = math.log(2.0)

Float1D = NDArray[np.float64]


def _kstwo_sf(d: float, n: float) -> float:
    return float(kstwo.sf(d, n))


def _ncx2_sf(x: float, df: int, nc: float) -> float:
    return float(ncx2.sf(x, df, nc))


def _scipy_cores() -> None:
    """Call the functions behind `kstwo.sf` and `ncx2.sf` directly: the evaluator calls
    them per feature and window, and rv_continuous's argument handling around them costs
    ~120 µs a call (ncx2: 180 -> 3 µs; kstwo: 290 -> 150). They are scipy's private
    names, so each is taken only if it is there and gives the public function's values
    on a few probes; else the public ones stay."""
    global _kstwo_sf, _ncx2_sf
    try:
        from scipy.special import _ufuncs
        from scipy.stats._ksstats import kolmogn
    except ImportError:  # pragma: no cover - another scipy layout: the public calls
        return

    # outside the support the public functions answer 1 or 0 without calling the core
    def ks(d: float, n: float) -> float:
        if d <= 0.5 / n:
            return 1.0
        return 0.0 if d >= 1.0 else float(kolmogn(n, d, cdf=False))

    def nc(x: float, df: int, lam: float) -> float:
        if x <= 0.0:
            return 1.0
        with np.errstate(over="ignore"):  # as ncx2._sf: boost's overflow is no error
            return float(_ufuncs._ncx2_sf(x, df, lam))

    ks_probes = ((0.0123, 4567.0), (0.3, 12.0), (0.9, 2.0), (1.0, 3.0), (0.25, 2.0), (0.0, 5.0))
    nc_probes = ((30.5, 12, 4.2), (0.5, 1, 0.01), (400.0, 99, 50.0), (0.0, 1, 0.5), (9e3, 300, 2e3))
    try:
        if all(ks(d, n) == kstwo.sf(d, n) for d, n in ks_probes):
            _kstwo_sf = ks
        if all(nc(x, df, lam) == ncx2.sf(x, df, lam) for x, df, lam in nc_probes):
            _ncx2_sf = nc
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - as above
        return


_scipy_cores()


# --------------------------------------------------------------------------- helpers


def _as_counts(reference: ArrayLike, current: ArrayLike) -> tuple[Float1D, Float1D]:
    """Validate and convert the two count vectors to 1-D float64 arrays."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if r.ndim != 1 or c.ndim != 1:
        raise ValueError(f"count vectors must be 1-D, got shapes {r.shape} and {c.shape}")
    if r.shape != c.shape:
        raise ValueError(f"count vectors differ in length: {r.shape[0]} != {c.shape[0]}")
    if not (np.isfinite(r).all() and np.isfinite(c).all()):
        raise ValueError("count vectors must be finite")
    if (r < 0).any() or (c < 0).any():
        raise ValueError("counts must be non-negative")
    return r, c


def _proportions(r: Float1D, c: Float1D) -> tuple[Float1D, Float1D] | None:
    """Normalise counts to proportions; ``None`` if either total is zero."""
    nr = r.sum()
    nc = c.sum()
    if nr <= 0.0 or nc <= 0.0:
        return None
    return r / nr, c / nc


def _smooth(p: Float1D, eps: float) -> Float1D:
    """Floor proportions at ``eps`` and renormalise to a probability vector."""
    s = np.maximum(p, eps)
    return s / s.sum()


def _psi(p: Float1D, q: Float1D, eps: float) -> float:
    ps = _smooth(p, eps)
    qs = _smooth(q, eps)
    return float(np.sum((qs - ps) * np.log(qs / ps)))


def _kl(p: Float1D, q: Float1D, eps: float) -> float:
    # rel_entr(x, y) = x*ln(x/y); both are strictly positive after smoothing.
    return float(np.sum(rel_entr(_smooth(q, eps), _smooth(p, eps))))


def _js(p: Float1D, q: Float1D) -> float:
    m = 0.5 * (p + q)
    # rel_entr gives 0 for 0*ln(0/m), and m > 0 wherever p or q is > 0.
    div = 0.5 * (np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / _LN2
    return float(min(1.0, math.sqrt(max(0.0, float(div)))))


def _hellinger(p: Float1D, q: Float1D) -> float:
    bc = float(np.sum(np.sqrt(p * q)))  # Bhattacharyya coefficient, <= 1 up to rounding
    return min(1.0, math.sqrt(max(0.0, 1.0 - bc)))


def _cdf_gap(r: Float1D, c: Float1D, nr: float, nc: float) -> Float1D:
    # Cumulate counts first, divide last: for integer counts this reproduces the
    # empirical CDF values k/n exactly, as scipy's searchsorted-based ks_2samp does.
    return np.abs(np.cumsum(r) / nr - np.cumsum(c) / nc)


def _ks(r: Float1D, c: Float1D, p_value: bool = True) -> tuple[float, float]:
    """(D, its p-value); without `p_value`, (D, nan): the p-value is the costly part."""
    nr = float(r.sum())
    nc = float(c.sum())
    if nr <= 0.0 or nc <= 0.0:
        return _NAN, _NAN
    d = float(np.max(_cdf_gap(r, c, nr, nc)))
    return d, _ks_p(d, nr, nc) if p_value else _NAN


def _ks_p(d: float, nr: float, nc: float) -> float:
    m, n = max(nr, nc), min(nr, nc)
    en = np.round(m * n / (m + n))
    if en < 1.0:  # total weights below one observation: no meaningful sample size
        return _NAN
    if d <= 0.0:
        return 1.0
    return float(np.clip(_kstwo_sf(d, en), 0.0, 1.0))


def ks_p_value(d: float, n_reference: float, n_current: float) -> float:
    """The p-value :func:`ks_binned` gives for a statistic ``D`` already known, from the
    two count totals: for callers that need ``D`` always and its p-value seldom (the
    exact distribution costs O(en), ~10 ms at ``en`` ~1e4 and small ``D``). Nan if
    ``D`` is nan or a total is not positive."""
    if not (d == d and n_reference > 0.0 and n_current > 0.0):
        return _NAN
    return _ks_p(float(d), float(n_reference), float(n_current))


def _wasserstein(r: Float1D, c: Float1D, x: Float1D, scale: float | None) -> float:
    nr = float(r.sum())
    nc = float(c.sum())
    if nr <= 0.0 or nc <= 0.0:
        return _NAN
    # Between positions x[i] and x[i+1] both CDFs are constant (step functions).
    w = float(np.sum(_cdf_gap(r, c, nr, nc)[:-1] * np.diff(x)))
    if scale is not None and scale > 0.0 and math.isfinite(scale):
        w /= float(scale)
    return float(w)


def _chi_square(r: Float1D, c: Float1D) -> tuple[float, float]:
    nr = float(r.sum())
    nc = float(c.sum())
    if nr <= 0.0 or nc <= 0.0:
        return _NAN, _NAN
    keep = (r + c) > 0.0
    k = int(np.count_nonzero(keep))
    if k < 2:
        return 0.0, 1.0
    r = r[keep]
    c = c[keep]
    col = r + c
    total = nr + nc
    er = col * (nr / total)
    ec = col * (nc / total)
    stat = float(np.sum((r - er) ** 2 / er) + np.sum((c - ec) ** 2 / ec))
    return stat, float(chdtrc(k - 1, stat))


def _cohen_w(r: Float1D, c: Float1D) -> float:
    nr = float(r.sum())
    nc = float(c.sum())
    if nr <= 0.0 or nc <= 0.0:
        return _NAN
    p = r / nr
    q = c / nc
    m = 0.5 * (p + q)
    keep = m > 0.0
    k = int(np.count_nonzero(keep))
    if k < 2:
        return 0.0
    raw = float(np.sum((q[keep] - p[keep]) ** 2 / m[keep]))
    noise = (k - 1) * (1.0 / nr + 1.0 / nc)
    return math.sqrt(max(0.0, raw - noise))


def _min_effect_p(r: Float1D, c: Float1D, w_min: float) -> float:
    nr = float(r.sum())
    nc = float(c.sum())
    if nr <= 0.0 or nc <= 0.0:
        return _NAN
    stat, p = _chi_square(r, c)
    k = int(np.count_nonzero((r + c) > 0.0))
    if k < 2:
        return p
    lam = (nr * nc / (nr + nc)) * w_min * w_min
    if lam <= 0.0:
        return p
    try:
        p_min = _ncx2_sf(stat, k - 1, lam)
    except OverflowError:
        # scipy's (boost's) series overflows for a statistic near 0 with a large λ (a
        # window of ~10^8 events matching the reference to a count): there p is 1
        if stat > k - 1:
            raise
        p_min = 1.0
    return float(np.clip(p_min, 0.0, 1.0))


def _as_positions(positions: ArrayLike, size: int) -> Float1D:
    x = np.asarray(positions, dtype=np.float64)
    if x.shape != (size,):
        raise ValueError(f"positions must be a 1-D vector of length {size}, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("positions must be finite (give under/overflow bins a finite value)")
    if (np.diff(x) < 0).any():
        raise ValueError("positions must be in ascending order")
    return x


# --------------------------------------------------------------------------- public API


def psi(reference: ArrayLike, current: ArrayLike, eps: float = DEFAULT_EPS) -> float:
    """Population Stability Index.

    ``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)`` with ``p`` the reference and ``q`` the
    current proportions (Siddiqi, *Credit Risk Scorecards*, Wiley 2006; Yurdakul,
    "Statistical properties of population stability index", 2018). It equals the
    symmetrised (Jeffreys) divergence ``KL(q||p) + KL(p||q)``, so it is symmetric and
    non-negative. Usual reading: < 0.1 stable, 0.1–0.25 moderate, > 0.25 major shift.

    Empty bins would make the log infinite, so, as is common PSI practice (e.g.
    Evidently replaces zero percentages by 0.0001), proportions are floored at
    ``eps`` (default 1e-4); they are then renormalised to sum to one, which keeps
    ``psi(x, x) == 0`` and the result non-negative. Returns nan if either total is 0.
    """
    r, c = _as_counts(reference, current)
    pq = _proportions(r, c)
    return _NAN if pq is None else _psi(*pq, eps)


def kl_divergence(reference: ArrayLike, current: ArrayLike, eps: float = DEFAULT_EPS) -> float:
    """Kullback–Leibler divergence ``KL(current || reference)`` in nats.

    ``KL(q||p) = sum_i q_i * ln(q_i / p_i)`` (Kullback & Leibler 1951; Cover & Thomas,
    *Elements of Information Theory*, 2nd ed., §2.3), i.e. the information lost when
    the reference is used to describe the current window; same as
    ``scipy.stats.entropy(q, p)``. Proportions are smoothed exactly as in :func:`psi`
    (floor at ``eps``, renormalise) so that a current mass in a bin empty in the
    reference gives a large but finite value. Returns nan if either total is 0.
    """
    r, c = _as_counts(reference, current)
    pq = _proportions(r, c)
    return _NAN if pq is None else _kl(*pq, eps)


def jensen_shannon(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen–Shannon distance, base 2, in [0, 1].

    ``JS = sqrt(0.5*KL(p||m) + 0.5*KL(q||m))`` with ``m = (p + q)/2`` and logs in base 2
    (Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory
    1991; the square root is a metric, Endres & Schindelin 2003); same as
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``. Base 2 bounds it by 1
    (reached for disjoint supports). ``m`` is positive wherever ``p`` or ``q`` is, and
    ``0*log 0 = 0``, so empty bins need no smoothing. Returns nan if a total is 0.
    """
    r, c = _as_counts(reference, current)
    pq = _proportions(r, c)
    return _NAN if pq is None else _js(*pq)


def hellinger(reference: ArrayLike, current: ArrayLike) -> float:
    """Hellinger distance in [0, 1].

    ``H = sqrt(1 - sum_i sqrt(p_i * q_i))``, equivalently
    ``||sqrt(p) - sqrt(q)||_2 / sqrt(2)`` (Hellinger 1909; Le Cam & Yang, *Asymptotics
    in Statistics*, 2000). It is 0 for identical and 1 for disjoint distributions and
    needs no smoothing. Rounding can push the Bhattacharyya coefficient a hair above
    1, so ``1 - BC`` is clipped at 0 before the square root. Nan if a total is 0.
    """
    r, c = _as_counts(reference, current)
    pq = _proportions(r, c)
    return _NAN if pq is None else _hellinger(*pq)


def ks_binned(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov test on binned data: ``(D, p_value)``.

    ``D = max_i |F_r(i) - F_c(i)|`` over the cumulative proportions of the bins
    (Kolmogorov 1933; Smirnov 1948). The p-value is computed as
    ``scipy.stats.ks_2samp(..., method="asymp")`` does for the two-sided test: with
    sample sizes ``n``, ``m`` (the count totals) and effective size
    ``en = n*m/(n+m)``, ``p = kstwo.sf(D, round(en))`` -- the one-sample Kolmogorov
    distribution of Simard & L'Ecuyer (2011) evaluated at ``en`` -- clipped to [0, 1].

    The histogram only shows the empirical CDFs at bin edges, and the supremum over
    those points cannot exceed the supremum over all points, so ``D`` is a lower
    bound of the exact KS statistic on the raw data (equal when each distinct value
    has its own bin): the test is conservative (p-value too large, never too small).

    Returns ``(nan, nan)`` if either total is 0, and ``(D, nan)`` if ``round(en)`` is
    below 1 (fractional counts adding up to less than one observation).
    Note: scipy's ``kstwo.sf`` is exact and can take tens of milliseconds for
    ``en`` near 1e5 with small ``D``; it is sub-millisecond for typical windows.
    """
    r, c = _as_counts(reference, current)
    return _ks(r, c)


def wasserstein_binned(
    reference: ArrayLike,
    current: ArrayLike,
    positions: ArrayLike,
    scale: float | None = None,
) -> float:
    """1-D Wasserstein-1 (earth mover's) distance between two histograms.

    Each bin's mass sits at ``positions[i]`` (one representative value per bin,
    ascending, e.g. bin midpoints). On the line ``W1 = integral |F_r(x) - F_c(x)| dx``
    (Vallender, Theory Probab. Appl. 18, 1974); with step CDFs this is
    ``sum_i |F_r(i) - F_c(i)| * (x[i+1] - x[i])``, the same as
    ``scipy.stats.wasserstein_distance(positions, positions, ref, cur)``.

    The result is in the feature's units; if ``scale`` is given, finite and > 0 it is
    divided by it -- pass the reference standard deviation to get a unit-free number,
    as Evidently's normed Wasserstein distance does. Otherwise (None, 0, nan) the raw
    distance is returned. Returns nan if either total is 0; raises ``ValueError`` if
    ``positions`` has the wrong length, is not finite or not ascending.
    """
    r, c = _as_counts(reference, current)
    x = _as_positions(positions, r.shape[0])
    return _wasserstein(r, c, x, scale)


def chi_square(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """Pearson chi-square test of homogeneity: ``(statistic, p_value)``.

    On the 2×K table ``[reference; current]``: ``X2 = sum (O - E)^2 / E`` with
    ``E = row_total * column_total / N`` and ``K - 1`` degrees of freedom (Pearson
    1900; Agresti, *Categorical Data Analysis*, §3.2); the same as
    ``scipy.stats.chi2_contingency(table, correction=False)``. Categories where both
    counts are zero have no expected frequency and carry no information, so they are
    dropped (scipy would raise on them). With fewer than 2 remaining categories
    there is nothing to compare: ``(0.0, 1.0)``. ``(nan, nan)`` if a total is 0.
    """
    r, c = _as_counts(reference, current)
    return _chi_square(r, c)


def cohen_w(reference: ArrayLike, current: ArrayLike) -> float:
    """Cohen's w, the chi-square effect size, less its sampling noise: in [0, 2].

    ``w = sqrt(max(0, sum_i (q_i - p_i)^2 / m_i - (K - 1) * (1/n_r + 1/n_c)))`` with
    ``p``, ``q`` the reference and current proportions, ``m = (p + q)/2``, ``K`` the
    categories (bins) either side has and ``n_r``, ``n_c`` the count totals.

    Why this form: Cohen's w (*Statistical Power Analysis*, 2nd ed., 1988, ch. 7) is
    the effect size of the chi-square test, ``sum (q - p)^2 / p``, read on one scale
    whatever the number of categories (0.1 small, 0.3 medium, 0.5 large), so one
    threshold can serve a 3-level and a 20-level feature. Two changes make it fit a
    monitor: the denominator is the average of both sides, so a category only the
    window has counts finitely and the value does not depend on which side is larger
    (for equal totals ``sum (q - p)^2 / m`` is exactly Pearson's X² of the 2×K table
    divided by ``n_r*n_c/(n_r+n_c)``); and the plug-in value's expectation when
    nothing changed, ``(K - 1)(1/n_r + 1/n_c)``, is subtracted (X² minus its degrees
    of freedom, the usual estimate of the non-centrality), so a small window does
    not read as a large effect by chance and the value means the same at every
    sample size. Near the reference (small shifts) ``w^2`` is about PSI and about
    ``8 * hellinger^2``. Returns nan if either total is 0, 0.0 with fewer than two
    categories.
    """
    r, c = _as_counts(reference, current)
    return _cohen_w(r, c)


def min_effect_p_value(reference: ArrayLike, current: ArrayLike, w_min: float) -> float:
    """P-value of the minimum-effect test that the shift's Cohen's w exceeds ``w_min``.

    The null hypothesis is no longer "nothing changed" but "the change is at most
    ``w_min``": ``p = P(X^2_{K-1}(lambda_0) >= X2)``, the survival function of the
    noncentral chi-square with ``K - 1`` degrees of freedom and non-centrality
    ``lambda_0 = n_eff * w_min^2``, at Pearson's ``X2`` of the 2×K table (as
    :func:`chi_square`), with ``n_eff = n_r * n_c / (n_r + n_c)``. Under a population
    shift of effect ``w`` (on the pooled shares), ``X2`` is asymptotically noncentral
    chi-square with ``lambda = n_eff * w^2`` (the basis of Cohen's power tables, 1988,
    ch. 7), so this is a "minimum-effect" test in the sense of Murphy & Myors
    (*Statistical Power Analysis*): p below ``alpha`` means the shift is larger than
    ``w_min``, not merely nonzero. A shift well above ``w_min`` in a large sample passes
    both tests alike; in a small sample, where a chance wobble can reach a large ``w``,
    this one asks for more evidence. Never below the chi-square test's p-value, which
    it equals at ``w_min = 0``. nan if either total is 0; with fewer than two
    categories, 1.0.
    """
    if not (w_min >= 0.0 and math.isfinite(w_min)):
        raise ValueError(f"w_min must be finite and >= 0, got {w_min!r}")
    r, c = _as_counts(reference, current)
    return _min_effect_p(r, c, float(w_min))


def _distances(r: Float1D, c: Float1D) -> dict[str, float]:
    """The distances both kinds of feature share: Cohen's w, PSI, Jensen–Shannon,
    Hellinger, KL."""
    pq = _proportions(r, c)
    if pq is None:
        return dict.fromkeys(
            ("cohen_w", "psi", "jensen_shannon", "hellinger", "kl_divergence"), _NAN
        )
    p, q = pq
    return {
        "cohen_w": _cohen_w(r, c),
        "psi": _psi(p, q, DEFAULT_EPS),
        "jensen_shannon": _js(p, q),
        "hellinger": _hellinger(p, q),
        "kl_divergence": _kl(p, q, DEFAULT_EPS),
    }


def numeric_drift(
    reference: ArrayLike,
    current: ArrayLike,
    positions: ArrayLike,
    scale: float | None = None,
    min_effect: float | None = None,
    ks_p: bool = True,
) -> dict[str, float]:
    """All numeric-feature statistics at once (inputs validated once).

    Keys: ``cohen_w``, ``psi``, ``ks``, ``ks_p_value``, ``jensen_shannon``, ``hellinger``,
    ``wasserstein``, ``kl_divergence``, ``chi_square_p_value``, and with ``min_effect``
    given ``min_effect_p_value`` (:func:`min_effect_p_value` at ``w_min = min_effect``);
    see the individual functions. Every value is nan if either total is 0. With
    ``ks_p`` false, no ``ks_p_value`` (the costly one; :func:`ks_p_value` adds it later).
    """
    r, c = _as_counts(reference, current)
    x = _as_positions(positions, r.shape[0])
    _, chi_p = _chi_square(r, c)
    out = _distances(r, c)
    out["ks"], p = _ks(r, c, p_value=ks_p)
    if ks_p:
        out["ks_p_value"] = p
    out["wasserstein"] = _wasserstein(r, c, x, scale)
    out["chi_square_p_value"] = chi_p
    if min_effect is not None:
        out["min_effect_p_value"] = min_effect_p_value(r, c, min_effect)
    return out


def categorical_drift(
    reference: ArrayLike, current: ArrayLike, min_effect: float | None = None
) -> dict[str, float]:
    """All categorical-feature statistics at once (inputs validated once).

    Keys: ``cohen_w``, ``psi``, ``chi_square``, ``chi_square_p_value``, ``jensen_shannon``,
    ``hellinger``, ``kl_divergence``, and with ``min_effect`` given
    ``min_effect_p_value``; see the individual functions. Every value is nan if either
    total is 0.
    """
    r, c = _as_counts(reference, current)
    chi, chi_p = _chi_square(r, c)
    out = {**_distances(r, c), "chi_square": chi, "chi_square_p_value": chi_p}
    if min_effect is not None:
        out["min_effect_p_value"] = min_effect_p_value(r, c, min_effect)
    return out
