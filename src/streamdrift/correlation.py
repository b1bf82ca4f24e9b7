"""Correlation drift: pairs of numeric features whose correlation in a window differs
from the reference's, beyond chance and by a margin that matters.

A window keeps, for each pair of a few chosen features (at most `MAX_FEATURES`, so at
most 45 pairs), sums over the events where both values are present: their count and
the sums of x, y, x², y² and xy, of the values standardised by the reference's mean and
standard deviation (so the sums stay of the order of the count and the correlation's
subtraction loses nothing). Sums add up, so windows merge and pool like the histograms
do (`CorrelationSketch.__add__`), and the window's Pearson correlation of each pair is
a function of its sums (`CorrelationSketch.correlation`): pairwise complete, as
`pandas.DataFrame.corr` computes it.

A pair's change is tested with Fisher's z-transform (Fisher 1921): atanh(r) is nearly
normal with variance 1 / (n − 3), so two independent correlations differ significantly
when

    z = (atanh(r_window) − atanh(r_reference)) / sqrt(1 / (n_window − 3) + 1 / (n_reference − 3))

is large (two-sided normal p-value, `fisher_z_test`: "did it change at all?").

A pair is flagged only when its correlation moved by *significantly more than* the
policy's minimum change δ (`beyond_change_test`: the one-sided test of the nearer edge of
[r_reference − δ, r_reference + δ], in z units, with the same standard error). A large
window makes any trivial wobble significant, so "changed at all" says too little; and a
point estimate beyond δ says too little in a small window, which the evaluator judges
again and again as it fills: with 15 pairs, 200 events and δ = 0.2, a chance correlation
beyond 0.2 that a plain test also calls significant turns up in about one look in a
hundred. Beyond δ *significantly*, it needs about 0.41 there (six standard errors of
nothing), and a correlation that flips sign is flagged from the first 200 events. The
pairs are one family: Holm's step-down procedure (Holm 1979) keeps the chance of any
false flag below the policy's p-value, as Bonferroni does, with more power.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, PrivateAttr
from scipy.special import ndtr

#: at most this many features take part (45 pairs)
MAX_FEATURES = 10
#: the separator of a pair's two names in its name (features holding it are not chosen)
PAIR_SEPARATOR = "|"


def pair_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i < j) of k features, in row-major order of the upper triangle."""
    i, j = np.triu_indices(k, 1)
    return i.astype(np.int64), j.astype(np.int64)


def pair_name(a: str, b: str) -> str:
    return f"{a}{PAIR_SEPARATOR}{b}"


class CorrelationModel(BaseModel):
    """The reference side, stored inside the profile: the chosen features, their means
    and scales (the standardisation of the window sums), and per pair the reference
    correlation and how many rows it rests on, in `pair_indices` order."""

    features: list[str]
    means: list[float]
    scales: list[float]
    #: None where a pair has no correlation (a constant feature)
    reference: list[float | None]
    counts: list[int]
    #: how the features were chosen: "config", "importance" or "reference"
    chosen_by: str
    _arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = PrivateAttr(default=None)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Means, scales and reference correlations (NaN for None)."""
        if self._arrays is None:
            self._arrays = (
                np.asarray(self.means, dtype=np.float64),
                np.asarray(self.scales, dtype=np.float64),
                np.array([np.nan if r is None else r for r in self.reference], np.float64),
            )
        return self._arrays

    def pair_names(self) -> list[str]:
        i, j = pair_indices(len(self.features))
        return [pair_name(self.features[a], self.features[b]) for a, b in zip(i, j, strict=True)]


@dataclass(slots=True)
class CorrelationSketch:
    """Per pair, over the events where both values are present: the count and the sums
    of x, y, x², y² and xy of the standardised values (x the pair's first feature)."""

    n: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray

    @classmethod
    def zero(cls, pairs: int) -> CorrelationSketch:
        def z() -> np.ndarray:
            return np.zeros(pairs, dtype=np.float64)

        return cls(np.zeros(pairs, dtype=np.int64), z(), z(), z(), z(), z())

    @classmethod
    def from_values(cls, z: np.ndarray) -> CorrelationSketch:
        """The sums of a batch's standardised values (rows: events, NaN where missing),
        for every pair at once: four matrix products, no loop over pairs or events."""
        present = ~np.isnan(z)
        m = present.astype(np.float64)
        x0 = np.where(present, z, 0.0)
        count = m.T @ m  # [a, b]: rows with both present
        total = x0.T @ m  # [a, b]: sum of a over rows where b is present too
        squares = (x0 * x0).T @ m
        products = x0.T @ x0
        i, j = pair_indices(z.shape[1])
        return cls(
            n=np.rint(count[i, j]).astype(np.int64),
            sx=total[i, j],
            sy=total[j, i],
            sxx=squares[i, j],
            syy=squares[j, i],
            sxy=products[i, j],
        )

    def __add__(self, other: CorrelationSketch) -> CorrelationSketch:
        return CorrelationSketch(
            self.n + other.n,
            self.sx + other.sx,
            self.sy + other.sy,
            self.sxx + other.sxx,
            self.syy + other.syy,
            self.sxy + other.sxy,
        )

    def correlation(self) -> np.ndarray:
        """Each pair's Pearson correlation; NaN with fewer than 3 events or a constant."""
        n = self.n.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = self.sxy - self.sx * self.sy / n
            vx = self.sxx - self.sx * self.sx / n
            vy = self.syy - self.sy * self.sy / n
            r = cov / np.sqrt(vx * vy)
        # a constant: its spread is rounding error of its values' size, not variance
        flat = (vx <= 1e-12 * self.sxx) | (vy <= 1e-12 * self.syy) | (n < 3)
        return np.where(flat | ~np.isfinite(r), np.nan, np.clip(r, -1.0, 1.0))


def standardise(x: np.ndarray, model: CorrelationModel) -> np.ndarray:
    means, scales, _ = model.arrays()
    return (x - means) / scales


def fisher_z_test(
    r_window: np.ndarray, n_window: np.ndarray, r_reference: np.ndarray, n_reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The z statistic and two-sided p-value of the difference of two independent
    correlations (Fisher's z-transform), elementwise; NaN where either side has fewer
    than 4 rows or no correlation. |r| is capped just below 1 (atanh(±1) is infinite)."""
    cap = 1 - 1e-12
    zw = np.arctanh(np.clip(r_window, -cap, cap))
    zr = np.arctanh(np.clip(r_reference, -cap, cap))
    nw, nr = np.asarray(n_window, np.float64), np.asarray(n_reference, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(1.0 / (nw - 3) + 1.0 / (nr - 3))
        stat = (zw - zr) / se
    stat = np.where((nw > 3) & (nr > 3), stat, np.nan)
    p = 2.0 * ndtr(-np.abs(stat))
    return stat, p


def beyond_change_test(
    r_window: np.ndarray,
    n_window: np.ndarray,
    r_reference: np.ndarray,
    n_reference: np.ndarray,
    min_change: float,
) -> np.ndarray:
    """One-sided p-values of "the correlation moved by more than `min_change`": the
    window's z against the nearer edge of [r_reference − min_change, r_reference +
    min_change] (edges within ±1), in z units, with Fisher's standard error of the
    difference; 1 inside the band's middle, NaN where `fisher_z_test` has none."""
    cap = 1 - 1e-12
    zw = np.arctanh(np.clip(r_window, -cap, cap))
    low = np.arctanh(np.clip(r_reference - min_change, -cap, cap))
    high = np.arctanh(np.clip(r_reference + min_change, -cap, cap))
    nw, nr = np.asarray(n_window, np.float64), np.asarray(n_reference, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(1.0 / (nw - 3) + 1.0 / (nr - 3))
        beyond = np.maximum(zw - high, low - zw) / se
    beyond = np.where((nw > 3) & (nr > 3) & ~np.isnan(r_window + r_reference), beyond, np.nan)
    return ndtr(-beyond)


def holm(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down rejections at family-wise level `alpha`: sorted ascending, the
    i-th smallest p-value (from 0) is rejected while every one before it and itself
    lies below alpha / (m − i). NaN p-values are not tested (not in the family)."""
    p = np.asarray(p_values, dtype=np.float64)
    tested = np.flatnonzero(~np.isnan(p))
    out = np.zeros(p.shape, dtype=bool)
    m = tested.size
    order = tested[np.argsort(p[tested], kind="stable")]
    below = p[order] < alpha / (m - np.arange(m))
    stop = m if below.all() else int(np.argmin(below))
    out[order[:stop]] = True
    return out


@dataclass(slots=True)
class PairChange:
    """One pair's correlation in a window against a baseline's (`reference`: the
    baseline's correlation, `reference_size` its events; `baseline` names it)."""

    features: tuple[str, str]
    reference: float
    window: float
    change: float
    z: float
    #: two-sided, of any change (Fisher's z)
    p_value: float
    #: one-sided, of a change beyond the minimum (what flags it, with Holm)
    p_beyond: float
    sample_size: int
    reference_size: int
    flagged: bool
    baseline: str = "reference"


def pair_changes(
    features: list[str],
    r_ref: np.ndarray,
    n_ref: np.ndarray,
    sketch: CorrelationSketch,
    *,
    alpha: float,
    min_change: float,
    min_samples: int,
    baseline: str = "reference",
) -> list[PairChange]:
    """Every pair with at least `min_samples` events in the window and a correlation on
    both sides, against a baseline's correlations `r_ref` on `n_ref` events (the
    reference's, `CorrelationModel.arrays`, or pooled windows', then with `min_samples`
    events too), flagged when Holm's
    procedure over those pairs, at `alpha`, rejects that it moved by `min_change` or
    less (`beyond_change_test`)."""
    n_ref = np.asarray(n_ref, dtype=np.int64)
    r_win = sketch.correlation()
    z, p = fisher_z_test(r_win, sketch.n, r_ref, n_ref)
    p_beyond = beyond_change_test(r_win, sketch.n, r_ref, n_ref, min_change)
    judged = (sketch.n >= min_samples) & (n_ref >= min_samples) & ~np.isnan(p)
    change = r_win - r_ref
    flagged = holm(np.where(judged, p_beyond, np.nan), alpha) & (np.abs(change) > min_change)
    i, j = pair_indices(len(features))
    return [
        PairChange(
            features=(features[i[q]], features[j[q]]),
            reference=float(r_ref[q]),
            window=float(r_win[q]),
            change=float(change[q]),
            z=float(z[q]),
            p_value=float(p[q]),
            p_beyond=float(p_beyond[q]),
            sample_size=int(sketch.n[q]),
            reference_size=int(n_ref[q]),
            flagged=bool(flagged[q]),
            baseline=baseline,
        )
        for q in np.flatnonzero(judged)
    ]


def fit(x: np.ndarray, features: list[str], chosen_by: str) -> CorrelationModel | None:
    """The reference side for the columns of `x` (rows: reference rows, NaN where
    missing): means, population standard deviations, pairwise correlations and counts
    (from the same sums a window keeps). None with fewer than two features."""
    if x.shape[1] < 2:
        return None
    means = np.nanmean(x, axis=0)
    scales = np.nanstd(x, axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    sums = CorrelationSketch.from_values((x - means) / scales)
    return CorrelationModel(
        features=features,
        means=means.tolist(),
        scales=scales.tolist(),
        reference=[float(v) if v == v else None for v in sums.correlation()],
        counts=sums.n.tolist(),
        chosen_by=chosen_by,
    )
