"""Shared unit-test fixtures (plain objects only; servers live in tests/integration)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from streamdrift.config import MonitorConfig
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile


@pytest.fixture
def small_profile(tmp_path) -> ReferenceProfile:
    """A profile built from a CSV with two numeric features (`amount`: floats, `age`: many
    integers) and three categorical ones (`country`: strings, `vip`: booleans, `channel`:
    integer codes), plus a prediction (`score`) and a label column; 60 s windows, 5 bins."""
    rng = np.random.default_rng(7)
    n = 400
    path = tmp_path / "reference.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["amount", "age", "country", "vip", "channel", "score", "label"])
        for i in range(n):
            w.writerow(
                [
                    float(rng.lognormal(3.0, 1.0)),
                    int(rng.integers(18, 90)),
                    ["DE", "FR", "US", "GB"][i % 4],
                    bool(i % 3 == 0),
                    int(rng.integers(1, 4)),
                    float(rng.uniform()),
                    int(rng.integers(0, 2)),
                ]
            )
    return build_profile(
        "fraud",
        path,
        prediction_column="score",
        label_column="label",
        config=MonitorConfig(window_seconds=60, numeric_bins=5),
    )
