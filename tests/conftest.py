"""Shared unit-test fixtures (plain objects only; servers live in tests/integration)."""

from __future__ import annotations

import csv
import gc
import os
import sys

import numpy as np
import pytest

from streamdrift.config import MonitorConfig
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile

_exit_status: list[int] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Destroy the Kafka clients the tests left to the garbage collector now, while the
    test servers still run and the interpreter is whole."""
    gc.collect()
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without the interpreter's finalization. A librdkafka client still alive then
    (one a test kept a reference to) is destroyed after the modules it calls back into
    (its logger) are torn down: that once ended a run with SIGSEGV (exit 139) after all
    of its tests had passed. The results are reported by now; the exit status is
    pytest's."""
    if _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])


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
