"""Performance estimation before labels (CBPE) against NannyML's CBPE on the same data,
its pieces against scikit-learn and NannyML's own functions, and its verdict on
stationary and shifted windows against the labels the windows really had."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from streamdrift import estimation, synthetic
from streamdrift.alerts import condition_key
from streamdrift.conditions import History, window_conditions
from streamdrift.config import MonitorConfig
from streamdrift.decode import ModelEvents
from streamdrift.estimation import METRICS, estimation_check
from streamdrift.events import Alert
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile
from streamdrift.sketch import WindowSketch, sketch_events

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML phones home otherwise
import nannyml
from nannyml.calibration import IsotonicCalibrator
from nannyml.calibration import needs_calibration as nannyml_needs_calibration
from nannyml.sampling_error import binary_classification as nannyml_se

THRESHOLD = 0.5
CHUNK = 5000
#: the population shift of each analysed chunk (see synthetic.loan_rows)
SHIFTS = (0.0, 0.0, 0.25, 0.5, 0.75, 1.0)


def _loan(seed: int, n: int, shift: float = 0.0, calibrated: bool = False):
    """Scores and outcomes of loan applications: the model's under-confident scores, or
    (`calibrated`) the true default probabilities as scores."""
    r = synthetic.loan_rows(np.random.default_rng(seed), n, shift)
    return (r["probability"] if calibrated else r["score"]), r["default"].astype(bool)


def _nannyml(reference: tuple[np.ndarray, np.ndarray], chunks: list[np.ndarray]):
    """NannyML's CBPE fitted on the reference and estimated on the chunks, as a frame of
    one row per chunk; and the fitted estimator."""
    scores, labels = reference
    ref = pd.DataFrame(
        {"s": scores, "y": labels.astype(int), "p": (scores >= THRESHOLD).astype(int)}
    )
    analysis = pd.DataFrame({"s": np.concatenate(chunks)})
    analysis["p"] = (analysis["s"] >= THRESHOLD).astype(int)
    cbpe = nannyml.CBPE(
        y_pred_proba="s",
        y_pred="p",
        y_true="y",
        problem_type="classification_binary",
        metrics=list(METRICS),
        chunk_size=CHUNK,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cbpe.fit(ref)
        frame = cbpe.estimate(analysis).filter(period="analysis").to_df()
    return frame, cbpe


@pytest.mark.parametrize(
    ("calibrated", "seed", "isotonic"),
    [(False, 0, True), (True, 0, True), (True, 2, False)],
    ids=["raw-scores", "probabilities-recalibrated", "probabilities-as-they-are"],
)
def test_estimates_match_nannyml_cbpe_on_every_chunk(
    calibrated: bool, seed: int, isotonic: bool
) -> None:
    """Six chunks of 5,000 predictions, from the reference population to a strong
    covariate shift: every metric within 0.01 of NannyML's estimate (in fact within
    0.001), the sampling errors NannyML's, the band NannyML's bounds. The scores are the
    model's (isotonic regression needed), or true probabilities, which NannyML's test
    recalibrates or not depending on the reference drawn: both ways are covered."""
    reference = _loan(seed, 20_000, calibrated=calibrated)
    chunks = [_loan(10 + i, CHUNK, shift, calibrated)[0] for i, shift in enumerate(SHIFTS)]
    frame, cbpe = _nannyml(reference, chunks)
    cal = estimation.calibrate(*reference, THRESHOLD)
    assert cal is not None
    assert cal.calibrated == cbpe.needs_calibration == isotonic
    assert len(frame) == len(chunks)
    worst = dict.fromkeys(METRICS, 0.0)
    for i, scores in enumerate(chunks):
        ours = estimation.estimates(cal.histogram(scores), cal)
        row = frame.iloc[i]
        for m in METRICS:
            diff = abs(ours[m].value - row[(m, "value")])
            worst[m] = max(worst[m], diff)
            assert diff < 0.01, (i, m, ours[m].value, row[(m, "value")])
            assert ours[m].sampling_error == pytest.approx(row[(m, "sampling_error")], rel=1e-9)
            assert ours[m].lower == pytest.approx(row[(m, "lower_confidence_boundary")], abs=0.001)
            assert ours[m].upper == pytest.approx(row[(m, "upper_confidence_boundary")], abs=0.001)
    assert max(worst.values()) < 0.001, worst


def test_the_estimate_falls_with_the_true_roc_auc_under_covariate_shift() -> None:
    """What CBPE is for: the shifted chunks' estimated ROC-AUC follows their realized one
    (scikit-learn, on the labels the estimate never saw)."""
    reference = _loan(0, 20_000)
    cal = estimation.calibrate(*reference, THRESHOLD)
    assert cal is not None
    realized, estimated = [], []
    for i, shift in enumerate(SHIFTS):
        scores, labels = _loan(20 + i, CHUNK, shift)
        e = estimation.estimate(cal.histogram(scores), cal)["roc_auc"]
        truth = roc_auc_score(labels, scores)
        # the realized value of 5,000 labels varies by about 0.008 (Hanley–McNeil)
        assert e == pytest.approx(truth, abs=0.025), shift
        realized.append(truth)
        estimated.append(e)
    assert realized[-1] < realized[0] - 0.1  # the shift really costs ROC-AUC
    assert estimated[-1] < estimated[0] - 0.1
    assert np.all(np.diff(estimated[1:]) < 0)


# ---- the pieces ------------------------------------------------------------------------------
def test_isotonic_fit_is_scikit_learns() -> None:
    rng = np.random.default_rng(5)
    scores = rng.uniform(size=3000).round(2)  # many ties
    labels = rng.uniform(size=3000) < scores**2
    x, y = estimation.fit_isotonic(scores, labels)
    ours = np.interp(np.linspace(-0.1, 1.1, 500), x, y)
    sk = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(scores, labels)
    np.testing.assert_allclose(ours, sk.predict(np.linspace(-0.1, 1.1, 500)), atol=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("calibrated", [False, True])
def test_calibration_verdict_is_nannymls(seed: int, calibrated: bool) -> None:
    """The same splits and the same ECE: the same verdict as NannyML's test, also on
    scores that are probabilities already (where it is a close call)."""
    scores, labels = _loan(seed, 4000, calibrated=calibrated)
    theirs = nannyml_needs_calibration(labels.astype(int), scores, IsotonicCalibrator())
    assert estimation.needs_calibration(scores, labels) == theirs


def test_a_perfect_ranking_is_not_calibrated() -> None:
    scores = np.linspace(0, 1, 1000)
    labels = scores > 0.7
    assert not estimation.needs_calibration(scores, labels)
    assert not nannyml_needs_calibration(labels.astype(int), scores, IsotonicCalibrator())


def test_each_bin_holds_the_mean_calibrated_probability_of_its_reference_rows() -> None:
    scores, labels = _loan(0, 20_000)
    cal = estimation.calibrate(scores, labels, THRESHOLD)
    assert cal is not None and cal.calibrated
    edges = np.asarray(cal.edges)
    assert edges[0] == 0.0 and edges[-1] == 1.0 and edges[cal.threshold_bin] == THRESHOLD
    assert cal.bins <= estimation.BINS + 1
    probability = IsotonicRegression(out_of_bounds="clip").fit(scores, labels).predict(scores)
    counts, _ = np.histogram(scores, bins=edges)
    sums, _ = np.histogram(scores, bins=edges, weights=probability)
    filled = counts > 0
    np.testing.assert_allclose(
        np.asarray(cal.probability)[filled], sums[filled] / counts[filled], atol=1e-9
    )
    np.testing.assert_array_equal(cal.histogram(scores), counts)
    assert counts.max() <= 2 * len(scores) / estimation.BINS  # quantile bins: none crowded


def test_sampling_error_components_are_nannymls() -> None:
    scores, labels = _loan(7, 5000)
    y, p = pd.Series(labels.astype(int)), pd.Series((scores >= THRESHOLD).astype(int))
    theirs = {
        "accuracy": (nannyml_se.accuracy_sampling_error_components(y, p)[0], 1.0),
        "precision": nannyml_se.precision_sampling_error_components(y, p),
        "recall": nannyml_se.recall_sampling_error_components(y, p),
        "f1": nannyml_se.f1_sampling_error_components(y, p),
        "roc_auc": nannyml_se.auroc_sampling_error_components(y, pd.Series(scores)),
    }
    ours = estimation.sampling_error_components(scores, labels, scores >= THRESHOLD)
    for m, (std, fraction) in theirs.items():
        assert ours[m].std == pytest.approx(std, rel=1e-12), m
        assert ours[m].fraction == pytest.approx(fraction, rel=1e-12), m


def test_reference_realized_metrics_are_scikit_learns_and_its_estimate_is_close() -> None:
    scores, labels = _loan(3, 20_000)
    cal = estimation.calibrate(scores, labels, THRESHOLD)
    assert cal is not None
    predicted = scores >= THRESHOLD
    assert cal.realized["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert cal.realized["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert cal.realized["precision"] == pytest.approx(precision_score(labels, predicted))
    assert cal.realized["recall"] == pytest.approx(recall_score(labels, predicted))
    assert cal.realized["f1"] == pytest.approx(f1_score(labels, predicted))
    # calibrated on these very rows: the expected confusion matrix is nearly the real one
    for m in METRICS:
        assert cal.estimated[m] == pytest.approx(cal.realized[m], abs=0.01), m


def test_histograms_add_up() -> None:
    """An estimate reads only the histogram: two windows summed estimate as their events
    together."""
    cal = estimation.calibrate(*_loan(0, 20_000), THRESHOLD)
    assert cal is not None
    a, b = _loan(1, 3000, 0.2)[0], _loan(2, 4000, 0.9)[0]
    together = estimation.estimate(cal.histogram(np.concatenate((a, b))), cal)
    summed = estimation.estimate(cal.histogram(a) + cal.histogram(b), cal)
    assert together == pytest.approx(summed, rel=1e-12)


def test_too_little_to_calibrate_gives_no_calibration() -> None:
    scores, labels = _loan(0, 50)
    assert estimation.calibrate(scores, labels, THRESHOLD) is None
    scores, labels = _loan(0, 5000)
    assert estimation.calibrate(scores, np.zeros_like(labels), THRESHOLD) is None
    assert estimation.calibrate(scores * 10, labels, THRESHOLD) is None  # not probabilities


# ---- windows, the verdict and its alert ----------------------------------------------------
WINDOW = 3600


@pytest.fixture(scope="module")
def loan_profile(tmp_path_factory: pytest.TempPathFactory) -> ReferenceProfile:
    path = synthetic.write_loan_reference(Path(tmp_path_factory.mktemp("loan")) / "loans.csv")
    return build_profile(
        "loans",
        path,
        prediction_column="score",
        label_column="default",
        config=MonitorConfig(window_seconds=WINDOW),
    )


def _events(profile: ReferenceProfile, n: int, shift: float, seed: int) -> ModelEvents:
    raw, _, _ = synthetic.loan_events(profile.model_id, n, 0.0, WINDOW, 0.0, shift, seed)
    events = ModelEvents()
    for i, (_, value) in enumerate(raw):
        e = orjson.loads(value)
        events.prediction_ids.append(e["prediction_id"])
        events.timestamps.append(e["timestamp"])
        events.features.append(e["features"])
        events.predictions.append(e["prediction"])
        events.versions.append(e["model_version"])
        events.partitions.append(0)
        events.offsets.append(i)
        events.raws.append(value)
    return events


def _window(profile: ReferenceProfile, n: int, shift: float, seed: int) -> WindowSketch:
    (window,) = sketch_events(_events(profile, n, shift, seed), profile).values()
    return window


def test_a_window_keeps_the_score_histogram_of_all_its_predictions(loan_profile) -> None:
    cal = loan_profile.calibration
    assert cal is not None
    events = _events(loan_profile, 3000, 0.5, 4)
    (window,) = sketch_events(events, loan_profile).values()
    scores = np.array([p["score"] for p in events.predictions])
    counts, _ = np.histogram(scores, bins=np.asarray(cal.edges))
    assert estimation.window_counts(window, cal).tolist() == counts.tolist()
    assert window.performance is None  # no label anywhere


def test_a_shifted_window_is_degraded_and_raises_the_alert(loan_profile) -> None:
    window = _window(loan_profile, 2000, 1.0, 5)
    finding = estimation_check(loan_profile, window)
    assert finding is not None and finding.degraded
    assert finding.metric == "roc_auc" and finding.predictions == 2000
    assert finding.drop >= loan_profile.config.estimation.min_degradation
    assert finding.z > loan_profile.config.estimation.band
    assert finding.estimate.upper < finding.reference

    found = window_conditions(loan_profile, window, History(), 1.0, closed=True, followed=True)
    alerts: list[Alert] = [
        a for a, _ in found.present if a.type == "estimated_performance_degradation"
    ]
    assert len(alerts) == 1
    alert = alerts[0]
    assert condition_key(alert) == "estimated_performance_degradation:roc_auc"
    assert found.covers("estimated_performance_degradation:roc_auc")
    assert alert.value == pytest.approx(finding.estimate.value)
    assert alert.value < alert.threshold < finding.reference
    assert alert.sample_size == 2000 and alert.context["route"] == "ml-team"
    assert alert.context["labelled"] == 0 and alert.context["realized"] == {}
    assert set(alert.context["estimates"]) == set(METRICS)
    assert {d["feature"] for d in alert.context["drifting_features"]} >= {"income"}


def test_stationary_windows_raise_nothing(loan_profile) -> None:
    """Two hundred reference-like windows of 300 predictions: checked, never degraded."""
    for seed in range(200):
        window = _window(loan_profile, 300, 0.0, 100 + seed)
        finding = estimation_check(loan_profile, window)
        assert finding is not None and not finding.degraded, (seed, finding)


def test_too_few_predictions_or_estimation_off_checks_nothing(loan_profile) -> None:
    window = _window(loan_profile, 150, 1.0, 6)
    assert estimation_check(loan_profile, window) is None
    found = window_conditions(loan_profile, window, History(), 1.0, closed=True, followed=True)
    assert not found.covers("estimated_performance_degradation:roc_auc")
    off = loan_profile.model_copy(
        update={
            "config": loan_profile.config.model_copy(
                update={
                    "estimation": loan_profile.config.estimation.model_copy(
                        update={"enabled": False}
                    )
                }
            )
        }
    )
    assert estimation_check(off, _window(loan_profile, 2000, 1.0, 5)) is None


def test_the_watched_metric_follows_the_policy(loan_profile) -> None:
    cfg = loan_profile.config
    f1 = loan_profile.model_copy(
        update={
            "config": cfg.model_copy(
                update={"estimation": cfg.estimation.model_copy(update={"metric": "f1"})}
            )
        }
    )
    finding = estimation_check(f1, _window(loan_profile, 2000, 1.0, 5))
    assert finding is not None and finding.metric == "f1"


def test_only_a_scored_binary_model_with_labels_is_calibrated(loan_profile, tmp_path) -> None:
    """The calibration round-trips through JSON (what Redis stores) and stays small; a
    model registered without labels, or as a regressor, has none."""
    assert loan_profile.calibration is not None
    again = ReferenceProfile.model_validate_json(loan_profile.model_dump_json())
    assert again.calibration == loan_profile.calibration
    assert len(loan_profile.calibration.model_dump_json()) < 16_000
    path = synthetic.write_loan_reference(tmp_path / "loans.csv", rows=2000)
    unlabelled = build_profile("loans", path, prediction_column="score")
    assert unlabelled.calibration is None
    # a regressor: the score itself as its label (a quantity, as a regressor's must be)
    regressor = build_profile(
        "loans", path, task="regression", prediction_column="score", label_column="score"
    )
    assert regressor.calibration is None
