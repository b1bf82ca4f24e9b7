"""Passwords never printed: URL and librdkafka settings masking, Settings' repr, logs,
error messages, and the real CLI (`config`, and a start that fails on a closed port)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

import streamdrift
from streamdrift import redaction
from streamdrift.config import Settings
from streamdrift.embedded import free_port
from streamdrift.errors import ConnectionProblem
from streamdrift.redaction import mask_settings, mask_text, mask_url, remember
from streamdrift.telemetry import JsonFormatter, TextFormatter

SRC = Path(streamdrift.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_remembered_secrets(monkeypatch):
    """Each test starts with no remembered secrets, and leaves none behind."""
    monkeypatch.setattr(redaction, "_known", frozenset())


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.upper().startswith("STREAMDRIFT_"):
            monkeypatch.delenv(key)
    return monkeypatch


# ---- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://:s3cret@host", "rediss://:***@host"),
        (
            "rediss://default:s3cret@cache.example.com:6380",
            "rediss://default:***@cache.example.com:6380",
        ),
        ("unix://user:s3cret@/var/run/redis.sock?db=2", "unix://user:***@/var/run/redis.sock?db=2"),
        (
            "redis+cluster://app:s3cret@h1:7000,h2:7001,h3:7002/0",
            "redis+cluster://app:***@h1:7000,h2:7001,h3:7002/0",
        ),
        ("SASL_SSL://app:s3cret@b1:9093,b2:9093", "SASL_SSL://app:***@b1:9093,b2:9093"),
        # a password holding @ : / ? # unencoded: all of it masked
        ("redis://app:p@ss@host:6379/0", "redis://app:***@host:6379/0"),
        ("redis://app:p@ss:w/rd@host:6379/0", "redis://app:***@host:6379/0"),
        ("redis://app:pa?ss@host/0", "redis://app:***@host/0"),
        ("redis://app:pa#ss@host/0", "redis://app:***@host/0"),
        ("redis://app:a:b:c@host", "redis://app:***@host"),
        # percent-encoded
        ("redis://app:p%40ss%3Aw%2Frd@host:6379/0", "redis://app:***@host:6379/0"),
        # secret query parameters (redis-py reads `password` and `ssl_password` from them)
        ("unix:///tmp/redis.sock?db=0&password=s3cret", "unix:///tmp/redis.sock?db=0&password=***"),
        ("redis://host/0?password=a@b&db=1", "redis://host/0?password=***&db=1"),
        (
            "rediss://app:s3cret@h:6380/0?ssl_ca_certs=/etc/ssl/ca.pem&ssl_password=k3y",
            "rediss://app:***@h:6380/0?ssl_ca_certs=/etc/ssl/ca.pem&ssl_password=***",
        ),
        ("redis://host/0?Password=x&Auth_Token=y", "redis://host/0?Password=***&Auth_Token=***"),
        # no user info, no password, empty password: unchanged
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        (
            "rediss://cache:6380/1?ssl_cert_reqs=required",
            "rediss://cache:6380/1?ssl_cert_reqs=required",
        ),
        ("redis://app@host:6379", "redis://app@host:6379"),
        ("redis://app:@host:6379", "redis://app:@host:6379"),
        ("unix:///var/run/redis.sock", "unix:///var/run/redis.sock"),
        ("localhost:9092", "localhost:9092"),
        ("b1:9092,b2:9092", "b1:9092,b2:9092"),
        ("", ""),
        # no scheme but user info
        ("app:s3cret@b1:9092", "app:***@b1:9092"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_masked_url_keeps_what_a_user_needs():
    masked = mask_url("rediss://streamdrift:Sup3r-Secret@redis.internal:6380/3")
    assert "Sup3r-Secret" not in masked
    for part in ("rediss://", "streamdrift", "redis.internal", "6380", "/3"):
        assert part in masked


# ---- librdkafka settings ---------------------------------------------------------------


def test_mask_settings_by_key_name():
    settings = {
        "bootstrap.servers": "b1:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "app",
        "sasl.password": "kafka-Secret-9",
        "ssl.key.password": "k1",
        "ssl.keystore.password": "k2",
        "ssl.truststore.password": "k3",
        "ssl.key.pem": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
        "ssl_key": "-----BEGIN PRIVATE KEY-----",
        "ssl.key.location": "/etc/kafka/client.key",
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.pem": "-----BEGIN CERTIFICATE-----",
        "sasl.oauthbearer.client.id": "streamdrift",
        "sasl.oauthbearer.client.secret": "oidc-secret",
        "sasl.oauthbearer.config": "principal=app scope=x",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.jaas.config": "org.apache...PlainLoginModule password=x",
        "SASL_PASSWORD": "upper",
        "Some.Credentials.File.Content": "c",
        "refresh.token": "t",
        "linger.ms": "5",
    }
    assert mask_settings(settings) == {
        "bootstrap.servers": "b1:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "app",
        "sasl.password": "***",
        "ssl.key.password": "***",
        "ssl.keystore.password": "***",
        "ssl.truststore.password": "***",
        "ssl.key.pem": "***",
        "ssl_key": "***",
        "ssl.key.location": "/etc/kafka/client.key",
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.pem": "-----BEGIN CERTIFICATE-----",
        "sasl.oauthbearer.client.id": "streamdrift",
        "sasl.oauthbearer.client.secret": "***",
        "sasl.oauthbearer.config": "***",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.jaas.config": "***",
        "SASL_PASSWORD": "***",
        "Some.Credentials.File.Content": "***",
        "refresh.token": "***",
        "linger.ms": "5",
    }
    assert settings["sasl.password"] == "kafka-Secret-9"  # a copy: clients still get it


def test_mask_settings_urls_empty_and_other_values():
    assert mask_settings(
        {
            "bootstrap.servers": "SASL_SSL://app:pw@b1:9093",
            "sasl.oauthbearer.token.endpoint.url": "https://app:pw@idp/token",
            "sasl.password": "",
            "linger.ms": 5,
        }
    ) == {
        "bootstrap.servers": "SASL_SSL://app:***@b1:9093",
        "sasl.oauthbearer.token.endpoint.url": "https://app:***@idp/token",
        "sasl.password": "",  # unset is worth seeing
        "linger.ms": 5,
    }


# ---- free text -------------------------------------------------------------------------


def test_mask_text_masks_every_url_and_remembered_secrets():
    text = (
        "cannot reach Redis at redis://app:Sup3r-Secret@localhost:6390/0: Error 111, "
        "fallback 'rediss://:other@r2:6380', kafka said kafka-Secret-9"
    )
    assert mask_text(text) == (
        "cannot reach Redis at redis://app:***@localhost:6390/0: Error 111, "
        "fallback 'rediss://:***@r2:6380', kafka said kafka-Secret-9"
    )
    remember("kafka-Secret-9", "p%40ss-word", None, "abc")
    assert mask_text("kafka said kafka-Secret-9; p@ss-word; p%40ss-word; abc") == (
        "kafka said ***; ***; ***; abc"  # too short to remember: abc
    )


# ---- Settings --------------------------------------------------------------------------


def secret_env(env):
    env.setenv("STREAMDRIFT_REDIS_URL", "redis://app:Sup3r-Secret@localhost:6390/0")
    env.setenv("STREAMDRIFT_KAFKA_SASL_USERNAME", "app")
    env.setenv("STREAMDRIFT_KAFKA_SASL_PASSWORD", "kafka-Secret-9")
    env.setenv("STREAMDRIFT_KAFKA_SSL_KEY_PASSWORD", "key-Secret-7")


def test_settings_keep_secrets_for_clients_but_never_print_them(clean_env):
    secret_env(clean_env)
    s = Settings()
    assert s.redis_url == "redis://app:Sup3r-Secret@localhost:6390/0"
    assert s.kafka_common()["sasl.password"] == "kafka-Secret-9"
    redacted = s.redacted()
    assert redacted["redis_url"] == "redis://app:***@localhost:6390/0"
    assert redacted["kafka_extra"] == {
        "sasl.username": "app",
        "sasl.password": "***",
        "ssl.key.password": "***",
    }
    for shown in (repr(s), str(s), f"{s}", f"{s!r}", str(redacted)):
        assert "Sup3r-Secret" not in shown and "kafka-Secret-9" not in shown
        assert "key-Secret-7" not in shown
        assert "redis://app:***@localhost:6390/0" in shown
    # the secrets are remembered: a library echoing one is masked in logs and errors
    assert mask_text("auth failed for kafka-Secret-9") == "auth failed for ***"


def test_logging_settings_does_not_leak(clean_env, caplog):
    secret_env(clean_env)
    with caplog.at_level(logging.INFO):
        logging.getLogger("streamdrift.test").info("settings: %s", Settings())
    assert "Sup3r-Secret" not in caplog.text and "kafka-Secret-9" not in caplog.text
    assert "app:***@localhost:6390" in caplog.text


def test_unreadable_redis_url_is_refused_without_quoting_it(clean_env):
    # urllib would take "Sup3r" for the port and redis-py's error would quote it
    clean_env.setenv("STREAMDRIFT_REDIS_URL", "redis://app:Sup3r/Secret@localhost:6390/0")
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    assert "percent-encode" in str(excinfo.value)
    assert "Sup3r" not in str(excinfo.value) and "Secret" not in str(excinfo.value)
    clean_env.setenv("STREAMDRIFT_REDIS_URL", "redis://app:Sup3r%2FSecret@localhost:6390/0")
    assert Settings().redis_url.endswith("@localhost:6390/0")


def test_error_messages_are_masked():
    e = ConnectionProblem(
        "cannot reach Redis at redis://app:Sup3r-Secret@h:6390/0: refused",
        "check rediss://app:Sup3r-Secret@h:6390",
    )
    assert str(e) == (
        "cannot reach Redis at redis://app:***@h:6390/0: refused (check rediss://app:***@h:6390)"
    )
    assert e.problem == "cannot reach Redis at redis://app:***@h:6390/0: refused"


# ---- logs ------------------------------------------------------------------------------


def log_through(formatter: logging.Formatter, emit) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"streamdrift.test.{id(formatter)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.handlers.clear()
    return stream.getvalue()


def emit_secrets(logger: logging.Logger) -> None:
    url = "redis://app:Sup3r-Secret@localhost:6390/0"
    logger.warning("redis at %s", url, extra={"conf": {"sasl.password": "kafka-Secret-9"}})
    try:
        raise ConnectionError(f"Error 111 connecting to {url}")
    except ConnectionError:
        logger.exception("apply failed", extra={"redis_url": url})


def test_json_log_lines_are_masked():
    out = log_through(JsonFormatter(), emit_secrets)
    assert "Sup3r-Secret" not in out and "kafka-Secret-9" not in out
    first, second = (orjson.loads(line) for line in out.splitlines())
    assert first["message"] == "redis at redis://app:***@localhost:6390/0"
    assert first["conf"] == {"sasl.password": "***"}
    assert second["redis_url"] == "redis://app:***@localhost:6390/0"
    assert "Error 111 connecting to redis://app:***@localhost:6390/0" in second["exception"]


def test_text_log_lines_are_masked():
    out = log_through(TextFormatter(), emit_secrets)
    assert "Sup3r-Secret" not in out
    assert "redis at redis://app:***@localhost:6390/0" in out
    assert "Error 111 connecting to redis://app:***@localhost:6390/0" in out


# ---- the real command line -------------------------------------------------------------


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), clean.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "streamdrift", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_env(port: int) -> dict[str, str]:
    return {
        "STREAMDRIFT_REDIS_URL": f"redis://app:Sup3r-Secret@localhost:{port}/0",
        "STREAMDRIFT_KAFKA_SASL_USERNAME": "app",
        "STREAMDRIFT_KAFKA_SASL_PASSWORD": "kafka-Secret-9",
        "STREAMDRIFT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAMDRIFT_KAFKA_SASL_MECHANISM": "PLAIN",
        "STREAMDRIFT_METRICS_PORT": "-1",
    }


def test_config_command_masks_secrets():
    res = run_cli("config", **cli_env(6390))
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "Sup3r-Secret" not in out and "kafka-Secret-9" not in out
    shown = orjson.loads(res.stdout)
    assert shown["redis_url"] == "redis://app:***@localhost:6390/0"
    assert shown["kafka_extra"] == {
        "sasl.username": "app",
        "sasl.password": "***",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
    }


def test_failed_start_names_the_host_not_the_password():
    port = free_port()  # bound and released: nothing listens there
    res = run_cli("inspect", "somemodel", **cli_env(port))
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    out = res.stderr
    assert "Sup3r-Secret" not in out and "kafka-Secret-9" not in out
    assert "Traceback" not in out
    [line] = out.strip().splitlines()
    assert line.startswith(
        f"streamdrift: error: cannot reach Redis at redis://app:***@localhost:{port}/0: "
    )
    assert f"localhost:{port}" in line and "STREAMDRIFT_REDIS_URL" in line


def test_a_worker_waiting_for_redis_names_the_host_not_the_password():
    """A worker does not exit when Redis is away: it waits, and says so once."""
    port = free_port()
    res = run_cli("worker", "--max-seconds", "3", **cli_env(port))
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "Sup3r-Secret" not in out and "kafka-Secret-9" not in out
    assert "Traceback" not in out
    logs = [orjson.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    pausing = [e for e in logs if e["message"].startswith("pausing: ")]
    assert len(pausing) == 1, logs
    assert f"redis://app:***@localhost:{port}/0" in pausing[0]["message"]
    assert pausing[0]["fault"] == "redis_unreachable"


def test_unreadable_redis_url_is_one_masked_line():
    res = run_cli("inspect", "m", STREAMDRIFT_REDIS_URL="redis://app:Sup3r/Secret@localhost:1/0")
    assert res.returncode == 2
    assert "Sup3r" not in res.stderr and "Secret" not in res.stderr
    assert res.stderr.startswith("streamdrift: error: STREAMDRIFT_REDIS_URL: ")


def test_a_crash_prints_a_masked_traceback(capsys):
    from streamdrift.cli import _user_errors

    @_user_errors
    def crash() -> None:
        raise RuntimeError("lost redis://app:Sup3r-Secret@localhost:6390/0")

    with pytest.raises(SystemExit) as excinfo:
        crash()
    assert excinfo.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError" in err
    assert "Sup3r-Secret" not in err
    assert "redis://app:***@localhost:6390/0" in err
