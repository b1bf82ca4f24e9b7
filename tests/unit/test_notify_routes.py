"""The routes file: matching (first match decides, `continue` goes on), loading JSON and
YAML alike, `${VAR}` secrets that are never printed, and one-line errors with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from streamdrift import redaction
from streamdrift.errors import ConfigError
from streamdrift.notify.received import parse_alert
from streamdrift.notify.routes import load_routes, webhook_only
from streamdrift.notify.summary import describe_routes
from streamdrift.redaction import mask_text
from tests.alert_factory import alert_bytes

ENV = {
    "PD_KEY": "pd-routing-key-0123",
    "SLACK_URL": "https://hooks.slack.com/services/T000/B000/slack-token-xyz",
    "HMAC_SECRET": "hmac-secret-4567",
    "SMTP_PASSWORD": "smtp-password-89",
}

ROUTES = {
    "sinks": {
        "audit": {
            "type": "webhook",
            "url": "https://audit.example.com/hook",
            "secret": "${HMAC_SECRET}",
            "headers": {"Authorization": "Bearer literal-token-123"},
        },
        "pager": {"type": "pagerduty", "routing_key": "${PD_KEY}"},
        "ml-slack": {
            "type": "slack",
            "url": "${SLACK_URL}",
            "retry": {"attempts": 2, "max_seconds": 1},
        },
        "data-mail": {
            "type": "email",
            "host": "smtp.example.com",
            "username": "sd",
            "password": "${SMTP_PASSWORD}",
            "from": "sd@example.com",
            "to": ["data@example.com"],
        },
    },
    "routes": [
        {"sinks": "audit", "continue": True},
        {"match": {"route": "ops"}, "sinks": ["pager"]},
        {"match": {"route": "ml-team", "severity": ["warning", "critical"]}, "sinks": ["ml-slack"]},
        {"match": {"model_id": ["fraud", "churn"], "status": "resolved"}, "sinks": ["ml-slack"]},
        {"match": {"route": "data-team", "type": "data_quality"}, "sinks": ["data-mail", "audit"]},
    ],
    "retry": {"attempts": 3, "initial_seconds": 0.1, "max_seconds": 2},
}


@pytest.fixture(autouse=True)
def no_remembered_secrets(monkeypatch):
    monkeypatch.setattr(redaction, "_known", frozenset())


@pytest.fixture
def routes_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(ROUTES))
    return path


def sinks_for(routes, **alert) -> list[str]:
    return routes.sinks_for(parse_alert(alert_bytes(**alert), "alerts:0:0"))


def test_first_match_decides_and_continue_goes_on(routes_yaml):
    routes = load_routes(routes_yaml, ENV)
    # the audit route continues: every alert reaches it, then the first team route decides
    assert sinks_for(routes, route="ops", severity="info") == ["audit", "pager"]
    assert sinks_for(routes, route="ml-team", severity="warning") == ["audit", "ml-slack"]
    # severity info is not taken by the ml-team route; the model_id + status route is
    # next but wants resolved alerts: only the audit webhook
    assert sinks_for(routes, route="ml-team", severity="info") == ["audit"]
    assert sinks_for(routes, route="ml-team", severity="info", status="resolved") == [
        "audit",
        "ml-slack",
    ]
    assert sinks_for(routes, route="data-team", type="data_drift") == ["audit"]
    # a sink named by two matching routes gets the alert once
    assert sinks_for(routes, route="data-team", type="data_quality") == ["audit", "data-mail"]


def test_every_key_must_match_and_a_missing_route_matches_no_route_key(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps(
            {
                "sinks": {"a": {"type": "webhook", "url": "http://127.0.0.1:1/a"}},
                "routes": [
                    {
                        "match": {
                            "route": "ops",
                            "type": ["system", "volume"],
                            "severity": "critical",
                            "status": ["open", "escalated"],
                            "model_id": "fraud",
                        },
                        "sinks": ["a"],
                    }
                ],
            }
        )
    )
    routes = load_routes(path, {})
    good = {"route": "ops", "type": "system", "severity": "critical", "model_id": "fraud"}
    assert sinks_for(routes, **good) == ["a"]
    for key, other in [
        ("route", "data-team"),
        ("type", "data_drift"),
        ("severity", "warning"),
        ("status", "resolved"),
        ("model_id", "churn"),
        ("route", None),  # an alert without context.route
    ]:
        assert sinks_for(routes, **{**good, key: other}) == [], key


def test_an_alert_no_route_matches_goes_nowhere(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "sinks: {a: {type: webhook, url: 'http://127.0.0.1:1/'}}\n"
        "routes: [{match: {route: ops}, sinks: a}]\n"
    )
    assert sinks_for(load_routes(path, {}), route="ml-team") == []


def test_yaml_and_json_files_are_the_same_routes(tmp_path, routes_yaml):
    as_json = tmp_path / "routes.json"
    as_json.write_text(json.dumps(ROUTES))
    assert load_routes(as_json, ENV) == load_routes(routes_yaml, ENV)


def test_retry_policy_of_the_file_and_of_a_sink(routes_yaml):
    routes = load_routes(routes_yaml, ENV)
    assert (routes.retry_of("pager").attempts, routes.retry_of("pager").max_seconds) == (3, 2)
    slack = routes.retry_of("ml-slack")
    assert (slack.attempts, slack.initial_seconds, slack.max_seconds) == (2, 0.5, 1)


def test_secrets_come_from_the_environment_and_are_never_printed(routes_yaml):
    routes = load_routes(routes_yaml, ENV)
    assert routes.sinks["pager"].routing_key.get_secret_value() == ENV["PD_KEY"]
    text = mask_text(describe_routes(routes)) + mask_text(repr(routes)) + str(routes)
    for secret in [*ENV.values(), "literal-token-123"]:
        assert secret not in text
        # and any text that quotes one later (a library's error, a log line) is masked
        assert mask_text(f"failed: {secret}!") == "failed: ***!"
    lines = describe_routes(routes).splitlines()
    assert lines[1].split(";")[0].split() == [
        "audit",
        "webhook",
        "POST",
        "https://audit.example.com/…,",
        "signed,",
        "headers",
        "Authorization",
    ]


def test_dollar_dollar_is_a_literal(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "sinks: {a: {type: webhook, url: 'http://127.0.0.1:1/', headers: {X-T: '$${NOT_A_VAR}'}}}\n"
        "routes: [{sinks: a}]\n"
    )
    headers = load_routes(path, {}).sinks["a"].headers
    assert {k: v.get_secret_value() for k, v in headers.items()} == {"X-T": "${NOT_A_VAR}"}


@pytest.mark.parametrize(
    ("change", "pieces"),
    [
        (lambda d: d["routes"][1].update(sinks=["pagr"]), ["routes[1]", "'pagr'", "pager"]),
        (
            lambda d: d["routes"][2]["match"].update(severity=["high"]),
            ["routes[2].match.severity[0]", "'info', 'warning' or 'critical'"],
        ),
        (
            lambda d: d["routes"][2]["match"].update(severty="warning"),
            ["routes[2].match.severty", "Extra inputs"],
        ),
        (lambda d: d["sinks"]["pager"].update(type="teams"), ["sinks.pager", "'teams'"]),
        (lambda d: d["sinks"]["pager"].pop("routing_key"), ["sinks.pager", "routing_key"]),
        (lambda d: d["sinks"]["audit"].update(url="ftp://x"), ["sinks.audit", "http://"]),
        (
            lambda d: d["sinks"]["audit"].update(secret="${NOPE}"),
            ["NOPE is not set", "export NOPE"],
        ),
        (lambda d: d["sinks"]["audit"].update(secret="${1X}"), ["'${1X}'"]),
        (lambda d: d.update(routes=[]), ["routes", "at least 1"]),
    ],
)
def test_mistakes_name_the_place_and_the_fix(tmp_path, change, pieces):
    doc = json.loads(json.dumps(ROUTES))
    change(doc)
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as e:
        load_routes(path, ENV)
    assert str(path) in e.value.problem
    assert e.value.fix
    for piece in pieces:
        assert piece in str(e.value), str(e.value)
    for secret in ENV.values():
        assert secret not in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_routes(tmp_path / "missing.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("sinks: {a: {type: webhook\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_routes(bad, {})
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="holds no mapping"):
        load_routes(listed, {})
    broken = tmp_path / "bad.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_routes(broken, {})


def test_webhook_only_sends_everything_to_one_url():
    routes = webhook_only("http://127.0.0.1:8080/alerts")
    assert sinks_for(routes, route=None, severity="info") == ["webhook"]
    with pytest.raises(ConfigError, match="--webhook"):
        webhook_only("127.0.0.1:8080/alerts")
