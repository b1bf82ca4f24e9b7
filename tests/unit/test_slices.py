"""Slices: each slice's sketch is the sketch of its events alone, versions are capped
newest-first, and slice names are stable however values are spelled."""

from __future__ import annotations

import numpy as np

from streamdrift import synthetic
from streamdrift.decode import ModelEvents
from streamdrift.profile import RECONSTRUCTION
from streamdrift.sketch import sketch_batch, sketch_events
from streamdrift.slices import (
    OTHER,
    Slicer,
    dimension,
    fold_segments,
    plan_versions,
    segment_namer,
)

from .conftest import WINDOW


def _events(rng: np.random.Generator, n: int) -> ModelEvents:
    """Two windows of synthetic events: three versions (one of them absent from some
    events), a region and a channel segment (absent from some events), missing values."""
    x, country, device, score, _ = synthetic._rows(rng, n)
    x[rng.random(x.shape) < 0.05] = np.nan
    events = ModelEvents()
    for i in range(n):
        values = zip(synthetic.NUMERIC, x[i].tolist(), strict=True)
        feats = {k: (None if v != v else v) for k, v in values}
        feats["country"] = synthetic.COUNTRIES[country[i]] if i % 17 else None
        feats["device"] = synthetic.DEVICES[device[i]]
        events.partitions.append(0)
        events.offsets.append(i)
        events.timestamps.append(float(i * 2 * WINDOW // n))
        events.features.append(feats)
        events.versions.append([None, "1.0", "2.0", "3.0"][i % 4] if i % 9 else "2.0")
        events.predictions.append(float(score[i]))
        events.prediction_ids.append(str(i))
        events.raws.append(b"")
        region = ["eu", "us", "apac", True, 1][i % 5]
        events.segments.append(None if i % 11 == 0 else {"region": region, "channel": i % 3})
    return events


def test_each_slice_is_the_sketch_of_its_events_alone(profile):
    rng = np.random.default_rng(4)
    events = _events(rng, 6000)
    slicer = Slicer(2, {"region": ["eu", "us"]}, {"0.9": 0})
    windows, bad, good, _ = sketch_batch(events, profile, lambda e: slicer(e.versions, e.segments))
    assert not bad and len(good) == len(events)
    # versions: the two newest of 0.9 (known), then 2.0, 1.0, 3.0 (first met in that order)
    assert [v for v, _ in slicer.plan.new] == ["2.0", "1.0", "3.0"]
    assert slicer.plan.kept == {"1.0", "3.0"}

    def slice_of(i: int) -> set[str]:
        out = set()
        v = events.versions[i]
        if v is not None:
            out.add(f"v={v}" if v in ("1.0", "3.0") else f"v={OTHER}")
        seg = events.segments[i]
        if seg is not None:
            region = {"eu": "eu", "us": "us"}.get(seg["region"], OTHER)
            out.add(f"region={region}")
        return out

    names = {n for w in windows.values() for n in w.slices}
    assert names == {"v=1.0", "v=3.0", f"v={OTHER}", "region=eu", "region=us", f"region={OTHER}"}
    for name in names:
        mine = [i for i in range(len(events)) if name in slice_of(i)]
        alone = sketch_events(events.select(mine), profile)
        for start, w in windows.items():
            got, want = w.slices.get(name), alone.get(start)
            if want is None:
                assert got is None
                continue
            assert got.count == want.count == w.slice_counts[name]
            assert got.outliers == want.outliers
            # slices keep no multivariate state (the reconstruction error's column)
            assert set(want.numeric) - set(got.numeric) == {RECONSTRUCTION}
            for f, g in got.numeric.items():
                s = want.numeric[f]
                assert g.bins.tolist() == s.bins.tolist(), (name, f)
                assert (g.n, g.missing, g.out_of_range) == (s.n, s.missing, s.out_of_range)
                assert np.isclose(g.total, s.total, rtol=1e-12, atol=1e-9)
                assert np.isclose(g.total_sq, s.total_sq, rtol=1e-12, atol=1e-9)
                assert (g.minimum, g.maximum) == (s.minimum, s.maximum)
            for f, c in want.categorical.items():
                assert got.categorical[f].counts == c.counts, (name, f)
                assert got.categorical[f].missing == c.missing
    # a slice keeps no slices or outlier examples of its own
    assert all(
        not s.slices and not s.outlier_examples for w in windows.values() for s in w.slices.values()
    )


def test_a_single_version_slice_is_the_sketch_of_every_event(profile):
    """A batch of one version: its slice is copied from the windows' counts, not counted
    again; it must be what counting the events alone gives."""
    events = _events(np.random.default_rng(5), 3000)
    events.versions = ["1.0"] * len(events)
    events.segments = [None] * len(events)
    slicer = Slicer(2, {}, {})
    windows = sketch_batch(events, profile, lambda e: slicer(e.versions, e.segments))[0]
    alone = sketch_events(events, profile)
    for start, w in windows.items():
        got, want = w.slices["v=1.0"], alone[start]
        assert got.count == want.count == w.slice_counts["v=1.0"]
        assert got.outliers == want.outliers
        assert set(want.numeric) - set(got.numeric) == {RECONSTRUCTION}
        for f, g in got.numeric.items():
            s = want.numeric[f]
            assert g.bins.tolist() == s.bins.tolist(), f
            assert g.bins is not w.numeric[f].bins  # a copy: merging one must not move the other
            assert (g.n, g.missing, g.out_of_range, g.total, g.total_sq) == (
                s.n,
                s.missing,
                s.out_of_range,
                s.total,
                s.total_sq,
            )
            assert (g.minimum, g.maximum) == (s.minimum, s.maximum)
        assert got.categorical.keys() == want.categorical.keys()
        for f, c in want.categorical.items():
            assert (got.categorical[f].counts, got.categorical[f].missing) == (c.counts, c.missing)
        assert not got.slices and not got.outlier_examples and not got.versions


def test_versions_beyond_the_cap_are_the_oldest():
    plan = plan_versions({"a": 0, "b": 1}, ["c", None, "a", "d"], 3)
    assert plan.new == (("c", 2), ("d", 3))
    assert plan.kept == {"b", "c", "d"}
    assert plan.slice_of("a") == f"v={OTHER}" and plan.slice_of("d") == "v=d"
    assert plan.slice_of(None) is None


def test_a_value_is_named_by_its_spelling_not_its_hash():
    """True and 1 are equal as dict keys; as categories they are "true" and "1"."""
    d = dimension([True, 1, "eu", None, 1, True], segment_namer("k", ["true", "1"]))
    assert d.names == ["k=true", "k=1", f"k={OTHER}"]
    assert d.codes.tolist() == [0, 1, 2, -1, 1, 0]
    folded = fold_segments([{"k": True, "z": 5}, {"k": 1}, {"k": "x"}, None], {"k": ["true"]})
    assert folded == [{"k": "true", "z": 5}, {"k": OTHER}, {"k": OTHER}, None]
    assert dimension([None, None], segment_namer("k", [])) is None
