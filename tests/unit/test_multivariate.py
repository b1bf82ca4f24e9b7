"""Multivariate drift from events to conditions: the windows' reconstruction-error
column against scikit-learn's pipeline binned with numpy, their correlation sums against
numpy.corrcoef, the features chosen at register, and the `multivariate_drift`
conditions a reversed correlation raises (and a stationary window does not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from streamdrift import synthetic
from streamdrift.alerts import condition_key
from streamdrift.conditions import History, window_conditions
from streamdrift.config import MonitorConfig
from streamdrift.correlation import pair_indices
from streamdrift.decode import ModelEvents
from streamdrift.errors import ConfigError
from streamdrift.events import Alert
from streamdrift.monitors import window_drift
from streamdrift.multivariate_monitor import correlation_drift, multivariate_report
from streamdrift.profile import RECONSTRUCTION, ReferenceProfile
from streamdrift.reference import build_profile, read_table
from streamdrift.sketch import WindowSketch, sketch_events

WIDTH = 3600
T0 = 1_800_000_000 - 1_800_000_000 % WIDTH
NUMERIC = list(synthetic.PAIR_NUMERIC)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_pair_reference(tmp_path_factory.mktemp("pair") / "ref.csv")


@pytest.fixture(scope="module")
def profile(reference: Path) -> ReferenceProfile:
    return build_profile(
        "pair", reference, prediction_column="score", config=MonitorConfig(window_seconds=WIDTH)
    )


def _events(x: np.ndarray, merchant: np.ndarray, ts: np.ndarray) -> ModelEvents:
    """Prediction events of the pair model, NaN in `x` sent as null (missing)."""
    n = len(x)
    features = []
    for i in range(n):
        f: dict[str, object] = {
            name: (None if np.isnan(v) else float(v))
            for name, v in zip(NUMERIC, x[i].tolist(), strict=True)
        }
        f["merchant"] = synthetic.MERCHANTS[merchant[i]]
        features.append(f)
    return ModelEvents(
        partitions=[0] * n,
        offsets=list(range(n)),
        timestamps=ts.tolist(),
        features=features,
        versions=["1"] * n,
        predictions=[{"score": 0.5, "label": 1}] * n,
        prediction_ids=[f"p{i}" for i in range(n)],
        raws=[b"{}"] * n,
    )


def _stream(n: int, rho: float, seed: int, missing: float = 0.0, windows: int = 1):
    rng = np.random.default_rng(seed)
    x, merchant, _ = synthetic.pair_rows(rng, n, rho)
    x[rng.uniform(size=x.shape) < missing] = np.nan
    x[:3] = np.nan  # events with no number at all: no reconstruction error
    ts = T0 + np.arange(n) * (windows * WIDTH / n)
    return x, _events(x, merchant, ts), ts


def test_reconstruction_column_matches_scikit_learn_binned_with_numpy(profile, reference):
    """Two windows of events with missing values: each window's reconstruction-error
    column holds the errors scikit-learn's pipeline (mean imputation, StandardScaler,
    PCA keeping 65 %, inverse transform) gives the same events, binned on the profile's
    edges with np.histogram, with their count, missing, sum and extremes."""
    x, events, ts = _stream(3000, 0.8, seed=1, missing=0.1, windows=2)
    ref = read_table(reference).select(NUMERIC).to_pandas().to_numpy(dtype=np.float64)
    prep = make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()).fit(ref)
    pca = PCA(n_components=0.65, svd_solver="full").fit(prep.transform(ref))
    z = prep.transform(x)
    want = np.linalg.norm(z - pca.inverse_transform(pca.transform(z)), axis=1)
    want[np.isnan(x).all(axis=1)] = np.nan
    mv = profile.multivariate
    assert mv is not None and mv.reconstruction is not None
    assert len(mv.reconstruction.components) == pca.n_components_
    edges = np.asarray(mv.reconstruction_error.edges)
    windows = sketch_events(events, profile)
    assert sorted(windows) == [T0, T0 + WIDTH]
    for start, w in windows.items():
        e = want[(ts >= start) & (ts < start + WIDTH)]
        v = e[~np.isnan(e)]
        inner, _ = np.histogram(v[(v >= edges[0]) & (v <= edges[-1])], bins=edges)
        expected = [int((v < edges[0]).sum()), *inner.tolist(), int((v > edges[-1]).sum())]
        col = w.numeric[RECONSTRUCTION]
        assert col.bins.tolist() == expected
        assert (col.n, col.missing) == (v.size, e.size - v.size)
        assert col.total == pytest.approx(v.sum(), rel=1e-9)
        assert col.total_sq == pytest.approx((v * v).sum(), rel=1e-9)
        assert (col.minimum, col.maximum) == pytest.approx((v.min(), v.max()), rel=1e-9)


def test_correlation_sums_give_numpys_pairwise_correlations(profile):
    x, events, ts = _stream(4000, 0.8, seed=2, missing=0.05, windows=2)
    mv = profile.multivariate
    assert mv is not None and mv.correlation is not None
    cols = [NUMERIC.index(f) for f in mv.correlation.features]
    windows = sketch_events(events, profile)
    merged = windows[T0] + windows[T0 + WIDTH]
    for sketch, rows in (
        (windows[T0].correlation, ts < T0 + WIDTH),
        (merged.correlation, np.ones(ts.size, dtype=bool)),
    ):
        assert sketch is not None
        got = sketch.correlation()
        for q, (i, j) in enumerate(zip(*pair_indices(len(cols)), strict=True)):
            a, b = x[rows, cols[i]], x[rows, cols[j]]
            both = ~np.isnan(a) & ~np.isnan(b)
            assert sketch.n[q] == both.sum()
            assert got[q] == pytest.approx(np.corrcoef(a[both], b[both])[0, 1], abs=1e-12)


def test_features_for_pairs_without_importance_are_the_correlated_ones(profile):
    """Four numeric features, the top k = 6 default takes them all; amount and balance,
    the only correlated ones, come first."""
    mv = profile.multivariate
    assert mv is not None and mv.correlation is not None
    assert mv.correlation.chosen_by == "reference"
    assert set(mv.correlation.features[:2]) == {"amount", "balance"}
    assert sorted(mv.correlation.features) == sorted(NUMERIC)


def test_features_for_pairs_by_importance_or_as_declared(reference):
    def chosen(**multivariate: object) -> tuple[list[str], str]:
        config = MonitorConfig.model_validate(
            {
                "multivariate": multivariate,
                "feature_importance": {"tenure": 3, "age": 2, "merchant": 9},
            }
        )
        p = build_profile("pair", reference, config=config)
        assert p.multivariate is not None and p.multivariate.correlation is not None
        return p.multivariate.correlation.features, p.multivariate.correlation.chosen_by

    # by importance first (merchant is not numeric), then by reference correlation
    assert chosen(correlation_top_k=3)[0][:2] == ["tenure", "age"]
    assert chosen(correlation_top_k=3) in (
        (["tenure", "age", "amount"], "importance"),
        (["tenure", "age", "balance"], "importance"),
    )
    assert chosen(correlation_features=["balance", "age"]) == (["balance", "age"], "config")
    with pytest.raises(ConfigError, match="merchant"):
        chosen(correlation_features=["amount", "merchant"])
    with pytest.raises(ValueError, match="at most 10 items"):
        MonitorConfig.model_validate(
            {"multivariate": {"correlation_features": list("abcdefghijk")}}
        )
    off = build_profile(
        "pair",
        reference,
        config=MonitorConfig.model_validate(
            {"multivariate": {"reconstruction": False, "correlation": False}}
        ),
    )
    assert off.multivariate is None


def _multivariate(found) -> list[Alert]:
    return [a for a, _ in found.present if a.type == "multivariate_drift"]


def test_a_reversed_correlation_raises_both_conditions_naming_the_pair(profile):
    """amount and balance correlated −0.8 instead of +0.8, each input's distribution
    as in the reference: no feature drifts, the reconstruction error does, and the
    correlation condition names both features; one episode each."""
    _, events, _ = _stream(4000, -0.8, seed=3)
    (window,) = sketch_events(events, profile).values()
    found = window_conditions(profile, window, History(), T0 + WIDTH, closed=True, followed=True)
    assert not [a for a, _ in found.present if a.type == "data_drift"]
    by_key = {condition_key(a): a for a in _multivariate(found)}
    assert set(by_key) == {
        "multivariate_drift:reconstruction_error",
        "multivariate_drift:correlation",
    }
    corr = by_key["multivariate_drift:correlation"]
    assert corr.feature in ("amount|balance", "balance|amount")
    assert set(corr.context["features"]) == {"amount", "balance"}
    assert "'amount'" in corr.message and "'balance'" in corr.message
    (pair,) = corr.context["pairs"]
    assert pair["reference"] == pytest.approx(0.8, abs=0.03)
    assert pair["window"] == pytest.approx(-0.8, abs=0.03)
    assert corr.severity == "critical" and corr.context["route"] == "ml-team"
    error = by_key["multivariate_drift:reconstruction_error"]
    assert error.feature == "reconstruction_error" and error.statistic == "cohen_w"
    assert error.value >= error.threshold and error.context["drifting_features"] == []
    assert "how the features move together changed" in error.message
    assert found.covers("multivariate_drift:correlation")
    assert found.covers("multivariate_drift:reconstruction_error")


def test_a_stationary_window_is_checked_and_raises_nothing(profile):
    _, events, _ = _stream(4000, 0.8, seed=4)
    (window,) = sketch_events(events, profile).values()
    found = window_conditions(profile, window, History(), T0 + WIDTH, closed=True, followed=True)
    assert _multivariate(found) == []
    assert found.covers("multivariate_drift:correlation")
    assert found.covers("multivariate_drift:reconstruction_error")


def test_too_few_events_check_nothing(profile):
    _, events, _ = _stream(150, -0.8, seed=5)
    (window,) = sketch_events(events, profile).values()
    found = window_conditions(profile, window, History(), T0 + WIDTH, closed=True, followed=True)
    assert _multivariate(found) == []
    assert not [c for c in found.checked if c.startswith("multivariate_drift")]


def test_the_reconstruction_error_leaves_a_feature_drifting_on_its_own_to_data_drift(profile):
    """amount shifted by 1.5 sd (correlation kept): `data_drift` names it; the
    reconstruction error moves with it but is not judged in that window (one real
    change, one alert), and `inspect` says which feature explains it."""
    rng = np.random.default_rng(6)
    x, merchant, _ = synthetic.pair_rows(rng, 4000, 0.8)
    x[:, 0] += 1.5 * synthetic.PAIR_SDS[0]
    ts = T0 + np.arange(4000) * (WIDTH / 4000)
    (window,) = sketch_events(_events(x, merchant, ts), profile).values()
    found = window_conditions(profile, window, History(), T0 + WIDTH, closed=True, followed=True)
    assert {a.feature for a, _ in found.present if a.type == "data_drift"} == {"amount"}
    assert _multivariate(found) == []
    assert not found.covers("multivariate_drift:reconstruction_error")
    assert found.covers("multivariate_drift:correlation")
    report = multivariate_report(profile, window, window_drift(profile, window))
    assert report is not None
    assert report["reconstruction_error"]["explained_by"] == ["amount"]
    assert report["correlation"]["changed"] == []


def test_correlations_are_judged_against_the_policys_baselines(profile):
    """With the rolling baseline, a reversed correlation the earlier windows had too is
    no change; against earlier windows like the reference it is. With reference and
    rolling both chosen, every one that can judge a pair must flag it."""
    _, flipped_events, _ = _stream(3000, -0.8, seed=7)
    _, earlier_events, _ = _stream(3000, -0.8, seed=8)
    _, usual_events, _ = _stream(3000, 0.8, seed=9)
    (window,) = sketch_events(flipped_events, profile).values()
    (flipped_before,) = sketch_events(earlier_events, profile).values()
    (usual_before,) = sketch_events(usual_events, profile).values()

    def changed(baselines: list[str], pooled: WindowSketch | None) -> list[tuple[str, str]]:
        drift = profile.config.drift.model_copy(update={"baselines": baselines})
        p = profile.model_copy(
            update={"config": profile.config.model_copy(update={"drift": drift})}
        )
        found = correlation_drift(p, window, {"rolling": pooled} if pooled else {})
        assert found is not None
        return [c.features for c in found.flagged]

    assert changed(["rolling"], flipped_before) == []
    assert changed(["rolling"], usual_before) == [("amount", "balance")]
    assert changed(["reference", "rolling"], flipped_before) == []
    assert changed(["reference", "rolling"], usual_before) == [("amount", "balance")]
    # no rolling history yet: the reference judges (until_history "reference")
    assert changed(["rolling"], None) == [("amount", "balance")]


def test_a_feature_gone_missing_is_not_a_reconstruction_error_alert(profile):
    """balance dropped upstream (always null): imputed with its mean, the errors shift,
    but that is the missing feature's news (data_quality), not a change of relations."""
    rng = np.random.default_rng(11)
    x, merchant, _ = synthetic.pair_rows(rng, 4000, 0.8)
    x[:, 1] = np.nan
    ts = T0 + np.arange(4000) * (WIDTH / 4000)
    (window,) = sketch_events(_events(x, merchant, ts), profile).values()
    found = window_conditions(profile, window, History(), T0 + WIDTH, closed=True, followed=True)
    assert ("feature_missing", "balance") in {
        (a.statistic, a.feature) for a, _ in found.present if a.type == "data_quality"
    }
    assert _multivariate(found) == []
    assert not found.covers("multivariate_drift:reconstruction_error")
    report = multivariate_report(profile, window, window_drift(profile, window))
    assert report is not None and report["reconstruction_error"]["explained_by"] == ["balance"]
