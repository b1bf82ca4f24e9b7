"""MonitorConfig.from_file errors and Settings from STREAMDRIFT_* environment variables."""

from __future__ import annotations

import json
import os

import pytest
from pydantic import ValidationError

from streamdrift.config import DriftPolicy, MonitorConfig, Settings
from streamdrift.errors import ConfigError, StreamdriftError


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    assert isinstance(excinfo.value, StreamdriftError)
    return message


def test_from_file_valid(tmp_path):
    path = tmp_path / "monitor.json"
    path.write_text(
        json.dumps(
            {
                "window_seconds": 600,
                "numeric_bins": 20,
                "drift": {"statistic": "jensen_shannon", "threshold": 0.1, "min_samples": 50},
            }
        )
    )
    cfg = MonitorConfig.from_file(path)
    assert (cfg.window_seconds, cfg.numeric_bins) == (600, 20)
    assert (cfg.drift.statistic, cfg.drift.threshold, cfg.drift.min_samples) == (
        "jensen_shannon",
        0.1,
        50,
    )
    defaults = MonitorConfig()
    assert cfg.max_categories == defaults.max_categories  # unset keys keep their defaults
    assert cfg.drift.p_value == defaults.drift.p_value
    assert MonitorConfig.from_file(str(path)) == cfg


def test_from_file_none_is_the_defaults():
    assert MonitorConfig.from_file(None) == MonitorConfig()


@pytest.mark.parametrize(
    ("content", "pieces"),
    [
        ({"window_secs": 60}, ["window_secs", "Extra inputs are not permitted"]),
        ({"drift": {"treshold": 0.3}}, ["drift.treshold", "Extra inputs"]),
        ({"window_seconds": "an hour"}, ["window_seconds", "integer"]),
        ({"window_seconds": 0}, ["window_seconds", "greater than or equal to 1"]),
        ({"numeric_bins": 1000}, ["numeric_bins", "less than or equal to 200"]),
        ({"drift": {"statistic": "chi2"}}, ["drift.statistic", "psi"]),
        ({"drift": {"p_value": 1.5}}, ["drift.p_value"]),
        ([1, 2], ["MonitorConfig"]),
    ],
    ids=[
        "unknown key",
        "unknown nested key",
        "wrong type",
        "too small",
        "too large",
        "bad choice",
        "bad p",
        "not an object",
    ],
)
def test_from_file_invalid_content(tmp_path, content, pieces):
    path = tmp_path / "monitor.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as e:
        MonitorConfig.from_file(path)
    message = one_line(e)
    assert str(path) in message
    for piece in pieces:
        assert piece in message
    assert "streamdrift config --defaults" in e.value.fix


@pytest.mark.parametrize("text", ['{"window_seconds": 60,}', "", "window_seconds = 60"])
def test_from_file_invalid_json(tmp_path, text):
    path = tmp_path / "monitor.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        MonitorConfig.from_file(path)
    message = one_line(e)
    assert "not valid JSON" in message and str(path) in message


def test_from_file_missing(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError) as e:
        MonitorConfig.from_file(path)
    assert "absent.json" in one_line(e) and "not found" in one_line(e)
    with pytest.raises(ConfigError, match="not found"):
        MonitorConfig.from_file(tmp_path)  # a directory is not a config file


# ---- Settings -------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.upper().startswith("STREAMDRIFT_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_settings_defaults(clean_env):
    s = Settings()
    assert s.kafka_bootstrap == "localhost:9092"
    assert s.redis_url == "redis://localhost:6379/0"
    assert (s.predictions_topic, s.labels_topic, s.alerts_topic) == (
        "predictions",
        "labels",
        "alerts",
    )
    assert s.kafka_common() == {"bootstrap.servers": "localhost:9092"}
    assert s.dlq_topic("predictions") == "predictions.dlq"


def test_settings_from_environment(clean_env):
    env = {
        "STREAMDRIFT_KAFKA_BOOTSTRAP": "broker-1:9093,broker-2:9093",
        "STREAMDRIFT_REDIS_URL": "redis://cache:6380/2",
        "STREAMDRIFT_PREDICTIONS_TOPIC": "preds",
        "STREAMDRIFT_LABELS_TOPIC": "truth",
        "STREAMDRIFT_ALERTS_TOPIC": "drift-alerts",
        "STREAMDRIFT_BATCH_SIZE": "250",
        "STREAMDRIFT_MAX_EVENT_BYTES": "4096",
    }
    for key, value in env.items():
        clean_env.setenv(key, value)
    s = Settings()
    assert s.kafka_bootstrap == "broker-1:9093,broker-2:9093"
    assert s.redis_url == "redis://cache:6380/2"
    assert (s.predictions_topic, s.labels_topic, s.alerts_topic) == (
        "preds",
        "truth",
        "drift-alerts",
    )
    assert (s.batch_size, s.max_event_bytes) == (250, 4096)
    assert s.kafka_common() == {"bootstrap.servers": "broker-1:9093,broker-2:9093"}
    assert s.dlq_topic(s.predictions_topic) == "preds.dlq"


def test_kafka_passthrough(clean_env):
    clean_env.setenv("STREAMDRIFT_KAFKA_BOOTSTRAP", "broker:9093")
    clean_env.setenv("STREAMDRIFT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("STREAMDRIFT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    clean_env.setenv("STREAMDRIFT_REDIS_URL", "redis://r:6379/0")  # not a Kafka setting
    common = Settings().kafka_common()
    assert common == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
    }
    assert "bootstrap" not in common


def test_settings_reject_bad_values(clean_env):
    clean_env.setenv("STREAMDRIFT_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="batch_size"):
        Settings()
    clean_env.setenv("STREAMDRIFT_BATCH_SIZE", "many")
    with pytest.raises(ValidationError, match="batch_size"):
        Settings()


def test_settings_to_env_reads_back_as_the_same_settings(monkeypatch):
    """A worker started from code with `to_env()` runs with the settings it was given,
    librdkafka pass-through included."""
    import os

    from streamdrift.config import Settings

    for key in [k for k in os.environ if k.startswith("STREAMDRIFT_")]:
        monkeypatch.delenv(key)
    given = Settings(
        kafka_bootstrap="b1:9092,b2:9092",
        redis_url="redis+cluster://r1:7000,r2:7001",
        predictions_topic="p",
        labels_topic="l",
        alerts_topic="a",
        consumer_group="g",
        batch_size=123,
        session_timeout_ms=7000,
        metrics_port=0,
        log_format="text",
        kafka_extra={"security.protocol": "SASL_SSL", "sasl.username": "u"},
    )
    for key, value in given.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == given


def test_librdkafka_lines_pass_once_each_numbers_aside():
    import logging

    from streamdrift.kafka_io import OncePerMessage

    once = OncePerMessage(limit=2)

    def passes(msg: str) -> bool:
        return once.filter(logging.LogRecord("x", logging.ERROR, "f", 1, msg, None, None))

    refused = "127.0.0.1:{}/bootstrap: Connect failed: refused (after {}ms in state CONNECT)"
    assert passes(refused.format(1, 0))
    assert not passes(refused.format(1, 4))  # the same line, other numbers
    assert passes("Disconnected")
    assert passes("third") and passes("third")  # past the limit nothing is remembered


# ---- which statistic and threshold judge, per kind ------------------------------------------


@pytest.mark.parametrize(
    ("drift", "numeric", "categorical"),
    [
        ({}, ("cohen_w", 0.3), ("cohen_w", 0.3)),
        ({"threshold": 0.25}, ("psi", 0.25), ("psi", 0.25)),  # a bare threshold was PSI's
        ({"statistic": "psi"}, ("psi", 0.2), ("psi", 0.2)),
        ({"statistic": "ks"}, ("ks", 0.2), ("psi", 0.2)),  # no KS for categories
        ({"statistic": "ks", "threshold": 0.1}, ("ks", 0.1), ("psi", 0.1)),
        ({"statistic": "cohen_w"}, ("cohen_w", 0.3), ("cohen_w", 0.3)),
        ({"statistic": "cohen_w", "threshold": 0.5}, ("cohen_w", 0.5), ("cohen_w", 0.5)),
        ({"statistic": "hellinger", "threshold": 0.1}, ("hellinger", 0.1), ("hellinger", 0.1)),
    ],
)
def test_drift_policy_judges_per_kind(drift, numeric, categorical):
    policy = DriftPolicy.model_validate(drift)
    assert policy.judge("numeric") == numeric
    assert policy.judge("categorical") == categorical


def test_a_feature_threshold_over_the_default_policy_is_a_psi_threshold():
    cfg = MonitorConfig.model_validate(
        {"features": {"a": {"threshold": 0.4}, "b": {"statistic": "ks"}}}
    )
    assert cfg.feature_policy("a").judge("numeric") == ("psi", 0.4)
    assert cfg.feature_policy("b").judge("numeric") == ("ks", 0.2)
    assert cfg.feature_policy("c").judge("categorical") == ("cohen_w", 0.3)


def test_the_minimum_effect_ruled_out_is_half_the_threshold_and_only_under_cohen_w():
    assert DriftPolicy().min_effect("numeric") == pytest.approx(0.15)
    assert DriftPolicy().min_effect("categorical") == pytest.approx(0.15)
    named = DriftPolicy(statistic="cohen_w", threshold=0.5)
    assert named.min_effect("categorical") == pytest.approx(0.25)
    for policy in (DriftPolicy(statistic="psi"), DriftPolicy(threshold=0.2)):
        assert policy.min_effect("numeric") is None  # the chi-square test, as before
    assert DriftPolicy(statistic="ks").min_effect("categorical") is None  # judged by PSI
