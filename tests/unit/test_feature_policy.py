"""Per-feature drift policy (statistic, threshold, p-value, enabled), checked at register,
and feature importance: where it comes from, its normalisation, the importance-weighted
drift figure and the ranking of drifting features, against hand-computed values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import DriftPolicy, FeaturePolicy, MonitorConfig
from streamdrift.errors import ConfigError
from streamdrift.monitors import (
    FeatureDrift,
    importance_weighted_drift,
    rank_drifting,
    window_drift,
)
from streamdrift.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from streamdrift.reference import (
    build_profile,
    check_feature_settings,
    read_importance,
    resolve_importance,
)
from streamdrift.sketch import sketch_events

from .test_monitors import _window

# ---- the config ---------------------------------------------------------------------------


def test_feature_policy_overrides_only_what_it_sets():
    cfg = MonitorConfig(
        drift=DriftPolicy(threshold=0.3, p_value=0.02),
        features={"f0": FeaturePolicy(statistic="ks", threshold=0.1), "f1": FeaturePolicy()},
    )
    f0 = cfg.feature_policy("f0")
    assert (f0.statistic, f0.threshold, f0.p_value, f0.min_samples) == ("ks", 0.1, 0.02, 200)
    assert cfg.feature_policy("f1") == cfg.drift == cfg.feature_policy("unlisted")
    assert cfg.feature_enabled("f0") and cfg.feature_enabled("unlisted")
    assert not MonitorConfig(features={"f2": {"enabled": False}}).feature_enabled("f2")


def test_config_file_errors_name_the_key(tmp_path):
    path = tmp_path / "monitor.json"
    for doc, piece in (
        ({"features": {"f0": {"treshold": 0.1}}}, "features.f0.treshold"),
        ({"features": {"f0": {"statistic": "chi2"}}}, "features.f0.statistic"),
        ({"feature_importance": {"f0": -1}}, "importance of f0 is not a finite number"),
        ({"feature_importance": {"f0": 0, "f1": 0}}, "add up to 0"),
        ({"drift": {"baselines": ["weekly"]}}, "drift.baselines.0"),
        (
            {"window_seconds": 7000, "drift": {"baselines": ["seasonal"]}},
            "drift.season_seconds (86400) must be a multiple of window_seconds (7000)",
        ),
    ):
        path.write_bytes(orjson.dumps(doc))
        with pytest.raises(ConfigError) as e:
            MonitorConfig.from_file(path)
        assert piece in str(e.value) and "\n" not in str(e.value)


# ---- checked against the model's features at register ---------------------------------------


def _features() -> dict:
    num = NumericProfile(
        edges=[0.0, 1.0], counts=[0, 10, 0], count=10, missing=0, mean=0.5, std=0.3, min=0, max=1
    )
    cat = CategoricalProfile(categories={"a": 10}, other=0, count=10, missing=0, cardinality=1)
    return {"amount": num, "age": num, "country": cat}


def test_unknown_features_are_named_with_the_known_ones():
    cfg = MonitorConfig(features={"amout": FeaturePolicy(threshold=0.1)})
    with pytest.raises(ConfigError) as e:
        check_feature_settings(cfg, _features())
    assert e.value.problem == "monitor config 'features' names unknown feature(s) amout"
    assert e.value.fix == "the model's features are: amount, age, country"

    cfg = MonitorConfig(feature_importance={"amount": 1.0, "height": 2.0})
    with pytest.raises(ConfigError) as e:
        check_feature_settings(cfg, _features())
    assert e.value.problem == "feature importance names unknown feature(s) height"
    assert e.value.fix == "the model's features are: amount, age, country"


@pytest.mark.parametrize("statistic", ["ks", "wasserstein"])
def test_a_statistic_a_categorical_feature_cannot_have_is_refused(statistic):
    cfg = MonitorConfig(features={"country": FeaturePolicy(statistic=statistic)})
    with pytest.raises(ConfigError) as e:
        check_feature_settings(cfg, _features())
    assert e.value.problem == (
        f"feature 'country' is categorical: statistic '{statistic}' does not apply"
    )
    assert "hellinger, jensen_shannon, kl_divergence, psi" in e.value.fix
    # a numeric feature may have it, a categorical one a distance
    ok = MonitorConfig(
        features={"age": FeaturePolicy(statistic=statistic), "country": {"statistic": "hellinger"}}
    )
    assert check_feature_settings(ok, _features()).features == ok.features


def test_importance_is_normalised_at_register():
    cfg = MonitorConfig(feature_importance={"amount": 3.0, "age": 1.0})
    checked = check_feature_settings(cfg, _features())
    assert checked.feature_importance == {"amount": 0.75, "age": 0.25}
    assert cfg.feature_importance == {"amount": 3.0, "age": 1.0}  # the given one untouched


def test_importance_comes_from_the_option_the_config_or_beside_the_reference(tmp_path):
    reference = tmp_path / "train.csv"
    reference.write_text("amount\n1\n")
    given = tmp_path / "shap.json"
    given.write_bytes(orjson.dumps({"amount": 2, "age": 1}))
    in_config = MonitorConfig(feature_importance={"age": 1.0})
    none = MonitorConfig()

    assert resolve_importance(reference, None, none) == (None, None)
    sidecar = tmp_path / "train.csv.importance.json"
    sidecar.write_bytes(orjson.dumps({"amount": 5}))
    assert resolve_importance(reference, None, none) == ({"amount": 5.0}, sidecar.name)
    assert resolve_importance(reference, None, in_config) == ({"age": 1.0}, "the monitor config")
    assert resolve_importance(reference, given, in_config) == (
        {"amount": 2.0, "age": 1.0},
        "shap.json",
    )


@pytest.mark.parametrize(
    ("content", "piece"),
    [
        (b"[1, 2]", "is not an object of numbers"),
        (b'{"a": "high"}', "is not an object of numbers"),
        (b'{"a": true}', "is not an object of numbers"),
        (b'{"a": -0.5}', "importance of a is not a finite number >= 0"),
        (b"{", "is not valid JSON"),
    ],
)
def test_bad_importance_files_are_one_line_errors(tmp_path, content, piece):
    path = tmp_path / "imp.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        read_importance(path)
    assert piece in e.value.problem and "JSON object" in e.value.fix
    with pytest.raises(ConfigError, match="not found"):
        read_importance(tmp_path / "missing.json")


def test_build_profile_checks_the_feature_settings(tmp_path):
    ref = synthetic.write_reference(tmp_path / "ref.csv", rows=2000)
    bad = MonitorConfig(features={"country": FeaturePolicy(statistic="ks")})
    with pytest.raises(ConfigError, match="'country' is categorical"):
        build_profile("m", ref, config=bad)
    good = MonitorConfig(feature_importance={"f00": 1, "f01": 3})
    profile = build_profile("m", ref, config=good)
    assert profile.config.feature_importance == {"f00": 0.25, "f01": 0.75}


# ---- per-feature verdicts on real windows ---------------------------------------------------


def _with(profile, **config):
    cfg = MonitorConfig.model_validate({**profile.config.model_dump(), **config})
    return profile.model_copy(update={"config": check_feature_settings(cfg, profile.features)})


def test_per_feature_statistic_threshold_and_disabling(profile):
    rng = np.random.default_rng(5)
    # f02's 0.2-sd shift (Cohen's w about 0.19) is below the default line of 0.3
    events = _window(rng, 2000, 0, shift={"f07": 1.0, "f02": 0.2})
    (window,) = sketch_events(events, profile).values()
    default = window_drift(profile, window)
    assert {d.feature for d in default.values() if d.drifted} == {"f07"}
    assert default["f07"].alpha == pytest.approx(0.01 / 22)

    custom = _with(
        profile,
        features={
            "f07": {"enabled": False},
            "f02": {"statistic": "ks", "threshold": 0.05, "p_value": 0.05},
            "country": {"statistic": "hellinger"},
        },
    )
    drift = window_drift(custom, window)
    f07, f02 = drift["f07"], drift["f02"]
    # disabled: statistics still there (inspect shows them), no verdict, no baselines
    assert not f07.enabled and not f07.drifted and f07.judged_by == [] and f07.baselines == {}
    assert f07.statistics["psi"] == default["f07"].statistics["psi"]
    assert math.isnan(f07.alpha)
    # f02's own policy: KS against 0.05, its own p-value, Bonferroni over 21 features
    assert (f02.statistic, f02.threshold) == ("ks", 0.05)
    assert f02.value == f02.statistics["ks"] >= 0.05
    assert f02.alpha == pytest.approx(0.05 / 21)
    assert f02.drifted
    assert drift["country"].statistic == "hellinger"
    assert drift["f03"].alpha == pytest.approx(0.01 / 21)  # the family lost f07
    assert {d.feature for d in drift.values() if d.drifted} == {"f02"}


# ---- importance-weighted drift, by hand -------------------------------------------------------


def _profile(importance: dict[str, float] | None, **drift) -> ReferenceProfile:
    return ReferenceProfile(
        model_id="m",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="ref.csv",
        rows=10,
        task="binary",
        features=_features(),
        config=check_feature_settings(
            MonitorConfig(feature_importance=importance, drift=DriftPolicy(**drift)), _features()
        ),
    )


def _fd(name, value, p_value, n=1000, threshold=0.2, alpha=0.01 / 3, drifted=None, **kw):
    if drifted is None:
        drifted = n >= 200 and value >= threshold and p_value < alpha
    return FeatureDrift(
        feature=name,
        kind="numeric",
        sample_size=n,
        missing=0,
        statistics={"psi": value},
        statistic="psi",
        value=value,
        threshold=threshold,
        p_value=p_value,
        drifted=drifted,
        alpha=alpha,
        **kw,
    )


def test_importance_weighted_drift_by_hand():
    profile = _profile({"amount": 2.0, "age": 1.0, "country": 1.0})  # 0.5, 0.25, 0.25
    drift = {
        "amount": _fd("amount", 0.4, 1e-9),  # 2 thresholds: 0.5 * 2 = 1.0
        "age": _fd("age", 0.9, 1e-12),  # 4.5 thresholds, capped at 3: 0.25 * 3 = 0.75
        "country": _fd("country", 0.3, 0.2),  # not significant: 0
    }
    out = importance_weighted_drift(profile, drift)
    assert out is not None
    assert out["value"] == pytest.approx(1.75)
    assert (out["threshold"], out["cap"], out["drifted"]) == (0.5, 3.0, True)
    assert out["evaluated"] == pytest.approx(1.0)
    assert [(c["feature"], c["ratio"], c["contribution"]) for c in out["top"]] == [
        ("amount", pytest.approx(2.0), pytest.approx(1.0)),
        ("age", 3.0, 0.75),
    ]
    assert out["top"][0]["importance"] == 0.5 and out["top"][0]["drifted"]

    # its own threshold
    strict = _profile({"amount": 2.0, "age": 1.0, "country": 1.0}, importance_threshold=2.0)
    assert importance_weighted_drift(strict, drift)["drifted"] is False  # type: ignore[index]

    # a small shift of an important feature, significant but under its threshold, counts
    # in proportion; too few values count nothing; a feature absent from the window is
    # left out of `evaluated`
    drift = {
        "amount": _fd("amount", 0.1, 1e-6),  # 0.5 * 0.5 = 0.25
        "age": _fd("age", 0.9, 1e-12, n=150),  # below min_samples: 0
    }
    out = importance_weighted_drift(profile, drift)
    assert out["value"] == pytest.approx(0.25) and out["drifted"] is False  # type: ignore[index]
    assert out["evaluated"] == pytest.approx(0.75)  # type: ignore[index]
    assert [c["feature"] for c in out["top"]] == ["amount"]  # type: ignore[index]

    # disabled features weigh nothing; no importance: no figure
    drift = {"amount": _fd("amount", 0.4, 1e-9, enabled=False)}
    assert importance_weighted_drift(profile, drift)["value"] == 0.0  # type: ignore[index]
    assert importance_weighted_drift(_profile(None), drift) is None


def test_drifting_features_ranked_by_importance_times_drift():
    drift = {
        "amount": _fd("amount", 0.5, 1e-9),  # 2.5 thresholds
        "age": _fd("age", 0.3, 1e-9),  # 1.5 thresholds
        "country": _fd("country", 0.25, 1e-9),  # 1.25 thresholds
    }
    ranked = rank_drifting(_profile({"age": 3.0, "amount": 1.0}), drift)  # 0.75, 0.25
    # age 0.75 * 1.5 = 1.125, amount 0.25 * 2.5 = 0.625, country 0 * 1.25 = 0
    assert ranked == [
        {"feature": "age", "psi": 0.3, "importance": 0.75, "score": 1.125},
        {"feature": "amount", "psi": 0.5, "importance": 0.25, "score": 0.625},
        {"feature": "country", "psi": 0.25, "importance": 0.0, "score": 0.0},
    ]
    # without importance: by drift relative to the threshold
    plain = rank_drifting(_profile(None), drift)
    assert [(r["feature"], r["importance"], r["score"]) for r in plain] == [
        ("amount", None, 2.5),
        ("age", None, 1.5),
        ("country", None, 1.25),
    ]
    drift["age"] = _fd("age", 0.3, 0.5)  # not significant: not drifting, not ranked
    assert [r["feature"] for r in rank_drifting(_profile(None), drift)] == ["amount", "country"]


def test_drift_alerts_rank_by_importance_and_add_the_model_level_figure():
    """The alerts of one window: the most important drift first, each with the
    baselines that judged it; and one model-level alert for the weighted figure."""
    from streamdrift.alerts import MODEL_LEVEL, condition_key, drift_alerts
    from streamdrift.sketch import WindowSketch

    profile = _profile({"amount": 2.0, "age": 1.0, "country": 1.0})
    drift = {
        "amount": _fd("amount", 0.4, 1e-9, judged_by=["reference"]),
        "age": _fd("age", 0.9, 1e-12, judged_by=["reference"]),
        "country": _fd("country", 0.3, 0.2),
    }
    alerts = drift_alerts(profile, WindowSketch(start=0, count=1000), drift, now=1.0)
    # age: 0.25 x 4.5 thresholds = 1.125 before amount: 0.5 x 2 = 1.0; country not significant
    assert [a.feature for a in alerts] == ["age", "amount", MODEL_LEVEL]
    age = alerts[0]
    assert age.context["importance"] == 0.25 and age.context["judged_by"] == ["reference"]
    assert "against the reference" in age.message
    weighted = alerts[-1]
    assert weighted.statistic == "importance_weighted_drift"
    assert weighted.value == pytest.approx(1.75) and weighted.threshold == 0.5
    assert weighted.severity == "critical"  # 1.75 >= 0.5 x 2.5
    assert condition_key(weighted) == "data_drift:*"
