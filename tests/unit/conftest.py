"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile

#: the window of the synthetic fraud model's profile
WINDOW = 3600


@pytest.fixture(scope="session")
def profile(tmp_path_factory: pytest.TempPathFactory) -> ReferenceProfile:
    """The synthetic fraud model (20 numeric and 2 categorical inputs, a score and a
    binary label), registered from its 20,000-row reference with hourly windows. Modules
    that need another profile define their own `profile` fixture."""
    ref = synthetic.write_reference(tmp_path_factory.mktemp("ref") / "ref.csv")
    return build_profile(
        "fraud",
        ref,
        prediction_column="score",
        label_column="is_fraud",
        config=MonitorConfig(window_seconds=WINDOW),
    )
