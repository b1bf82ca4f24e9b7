"""The window deltas' blobs (store/window_deltas.py) without a server: blobs of parts of
a column's values fold to what numpy computes on all of them at once."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from streamdrift.sketch import NumericSketch
from streamdrift.store.window_deltas import TOKEN, blob, fields_blob, fold, fold_fields

EDGES = np.linspace(-2.0, 2.0, 9)


def _sketch(values: np.ndarray, missing: int) -> NumericSketch:
    bins = np.bincount(np.searchsorted(EDGES, values, side="right"), minlength=len(EDGES) + 1)
    return NumericSketch(
        bins=bins.astype(np.int64),
        missing=missing,
        n=len(values),
        total=float(values.sum()),
        total_sq=float((values * values).sum()),
        minimum=float(values.min()) if len(values) else float("inf"),
        maximum=float(values.max()) if len(values) else float("-inf"),
        out_of_range=int((np.abs(values) > 3).sum()),
    )


def test_blobs_of_parts_fold_to_the_whole() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1.5, 10_000)
    cuts = [0, 1200, 1200, 4000, 9999, 10_000]  # an empty part, a part of one value
    parts = [values[a:b] for a, b in pairwise(cuts)]
    blobs = [
        blob({"x": _sketch(p, missing=i), "empty": _sketch(p[:0], 1)}) for i, p in enumerate(parts)
    ]
    assert len({b[:TOKEN] for b in blobs}) == len(blobs)  # each blob its own token
    got = fold(blobs)
    x = got["x"]
    assert x.n == len(values)
    assert x.missing == sum(range(len(parts)))
    assert x.bins.tolist() == np.histogram(values, bins=[-np.inf, *EDGES, np.inf])[0].tolist()
    assert x.total == pytest.approx(np.sum(values), rel=1e-12)
    assert x.total_sq == pytest.approx(np.sum(values**2), rel=1e-12)
    assert (x.minimum, x.maximum) == (values.min(), values.max())
    assert x.out_of_range == int((np.abs(values) > 3).sum())
    empty = got["empty"]  # only missing values: no extremes, as a sketch without values
    assert (empty.n, empty.missing) == (0, len(parts))
    assert (empty.minimum, empty.maximum) == (float("inf"), float("-inf"))


def test_a_sum_that_is_not_finite_is_refused() -> None:
    s = _sketch(np.array([1.0, 2.0]), 0)
    s.total = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        blob({"x": s})


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"x": [1, 0]}', b'{"x": "n"}', b'{"x": [1, 0, 0, 1.0, 1.0, 1.0, 1.0, "bins"]}'],
)
def test_a_malformed_blob_is_a_named_stop(body: bytes) -> None:
    """Only a hand-edited list holds one; a reader stops on it, naming it."""
    good = blob({"x": _sketch(np.array([0.5]), 0)})
    with pytest.raises(RuntimeError, match="window deltas blob is malformed"):
        fold([good, b"0" * TOKEN + body])


def test_blobs_of_two_bin_counts_are_a_named_stop() -> None:
    wide = _sketch(np.array([0.5]), 0)
    wide.bins = np.zeros(20, dtype=np.int64)
    with pytest.raises(RuntimeError, match="20 bins"):
        fold([blob({"x": _sketch(np.array([0.5]), 0)}), blob({"x": wide})])


@pytest.mark.parametrize("body", [b"[1]", b'{"i": {"n": "x"}}', b'{"f": 3}'])
def test_a_malformed_fields_blob_is_a_named_stop(body: bytes) -> None:
    with pytest.raises(RuntimeError, match="window deltas blob is malformed"):
        fold_fields([fields_blob({"n": 1}, {}), b"0" * TOKEN + body])
