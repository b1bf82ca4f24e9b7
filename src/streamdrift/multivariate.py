"""Multivariate drift in the windows: each batch's data reconstruction errors, binned
as a numeric column of their own (`RECONSTRUCTION`), and the correlation sums of the
chosen feature pairs, added to the batch's window sketches.

Called once per batch by `sketch._sketch`, after the features are binned. The whole
batch is scored at once (`reconstruction.errors`: one matrix product) and summed per
pair at once (`CorrelationSketch.from_values`: four), one numpy pass per window the
batch touches: no Python loop over events or features. The models come from the
reference profile (`MultivariateProfile`, fitted by `reference.fit_multivariate`); what
the windows then show is judged in `multivariate_monitor.py`.
"""

from __future__ import annotations

import numpy as np

# `sketch` imports this module; its classes are looked up at call time
from streamdrift import sketch
from streamdrift.correlation import CorrelationSketch, standardise
from streamdrift.profile import RECONSTRUCTION, NumericProfile, ReferenceProfile, bin_index
from streamdrift.reconstruction import errors


def _columns(profile: ReferenceProfile, numeric: list[str], names: list[str]) -> np.ndarray:
    """Positions of `names` among the batch's numeric columns, cached per profile."""
    cache = profile.multivariate._columns  # type: ignore[union-attr]
    key = tuple(names)
    found = cache.get(key)
    if found is None:
        found = cache[key] = np.asarray([numeric.index(n) for n in names], dtype=np.int64)
    return found


def sketch_windows(
    profile: ReferenceProfile,
    numeric: list[str],
    x: np.ndarray,
    inv: np.ndarray,
    windows: list[sketch.WindowSketch],
) -> None:
    """Add the batch's reconstruction-error column and correlation sums to `windows`;
    `x` holds the events' numeric features (columns `numeric`, NaN where missing) and
    `inv` each event's window."""
    mv = profile.multivariate
    assert mv is not None
    model, column = mv.reconstruction, mv.reconstruction_error
    if model is not None and column is not None:
        values = errors(x[:, _columns(profile, numeric, model.features)], *model.arrays())
        margin = profile.config.quality.range_margin
        _error_column(values, column, inv, windows, margin)
    pairs = mv.correlation
    if pairs is not None:
        z = standardise(x[:, _columns(profile, numeric, pairs.features)], pairs)
        for w, window in enumerate(windows):
            rows = z if len(windows) == 1 else z[inv == w]
            window.correlation = CorrelationSketch.from_values(rows)


def _error_column(
    values: np.ndarray,
    column: NumericProfile,
    inv: np.ndarray,
    windows: list[sketch.WindowSketch],
    margin: float,
) -> None:
    """The errors as each window's `RECONSTRUCTION` column: a histogram on the
    reference errors' bins, moments, extremes and values beyond the reference's range
    and its margin, as a numeric feature's."""
    edges = column.edge_array()
    size = edges.size + 1
    present = ~np.isnan(values)
    bins = np.zeros(values.shape, dtype=np.int64)
    bins[present] = bin_index(edges, values[present])
    n_win = len(windows)
    hist = np.bincount((inv * size + bins)[present], minlength=n_win * size)
    hist = hist.reshape(n_win, size)
    spread = column.max - column.min
    low, high = column.min - margin * spread, column.max + margin * spread
    for w, window in enumerate(windows):
        mine = values if n_win == 1 else values[inv == w]
        v = mine[~np.isnan(mine)]
        window.numeric[RECONSTRUCTION] = sketch.NumericSketch(
            bins=hist[w].copy(),
            missing=int(mine.size - v.size),
            n=int(v.size),
            total=float(v.sum()),
            total_sq=float(v @ v),
            minimum=float(v.min()) if v.size else float("inf"),
            maximum=float(v.max()) if v.size else float("-inf"),
            out_of_range=int(((v < low) | (v > high)).sum()),
        )
