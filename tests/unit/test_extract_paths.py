"""The fast and the event-by-event feature extraction agree, whatever the batch's shape."""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.decode import ModelEvents
from streamdrift.sketch import _extract_each, _layout, extract_features


def _events(features: list[dict]) -> ModelEvents:
    ev = ModelEvents()
    ev.features = features
    return ev


def _rows(rng, n, drop=()):
    out = []
    for _ in range(n):
        f = {
            "amount": float(rng.lognormal(3, 1)),
            "age": int(rng.integers(18, 90)),
            "country": str(rng.choice(["DE", "FR", "US"])),
            "vip": bool(rng.random() < 0.3),
            "channel": int(rng.integers(1, 4)),
        }
        for k in drop:
            f.pop(k)
        out.append(f)
    return out


@pytest.mark.parametrize("drop", [(), ("amount",), ("country",), ("amount", "vip")])
def test_consistently_missing_features_take_the_fast_path_with_the_same_result(small_profile, drop):
    feats = _rows(np.random.default_rng(1), 300, drop)
    fast = extract_features(_events(feats), small_profile)
    slow = _extract_each(_layout(small_profile), feats)
    np.testing.assert_array_equal(fast.numeric, slow.numeric)
    assert fast.categorical == slow.categorical
    assert fast.bad == slow.bad == []
    for name in drop:
        if name in _layout(small_profile).numeric:
            j = _layout(small_profile).numeric.index(name)
            assert np.isnan(fast.numeric[:, j]).all()
        else:
            assert fast.categorical[name] == [None] * 300


def test_features_missing_in_some_events_only_still_extract_right(small_profile):
    feats = _rows(np.random.default_rng(2), 200)
    for f in feats[::7]:
        f.pop("amount")
    fast = extract_features(_events(feats), small_profile)
    slow = _extract_each(_layout(small_profile), feats)
    np.testing.assert_array_equal(fast.numeric, slow.numeric)
    j = _layout(small_profile).numeric.index("amount")
    assert int(np.isnan(fast.numeric[:, j]).sum()) == len(feats[::7])
