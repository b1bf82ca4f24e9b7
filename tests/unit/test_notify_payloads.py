"""What receivers get: Slack's message, PagerDuty's Events API v2 body (field names as
PagerDuty documents them), the e-mail, and the webhook's headers and HMAC signature,
checked with an independent computation."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from streamdrift.notify.mail import EmailConfig, email_message
from streamdrift.notify.pagerduty import pagerduty_event
from streamdrift.notify.received import parse_alert
from streamdrift.notify.signing import verify
from streamdrift.notify.slack import slack_message
from streamdrift.notify.webhook import WebhookConfig, WebhookSink
from tests.alert_factory import alert_bytes, alert_doc


def received(**kwargs):
    return parse_alert(alert_bytes(**kwargs), "alerts:0:7")


# ---- Slack -------------------------------------------------------------------------------


def test_slack_message_shows_status_and_severity():
    msg = slack_message(received(status="open", severity="critical"))
    assert set(msg) == {"text", "blocks"}
    assert [b["type"] for b in msg["blocks"]] == ["header", "section", "section", "context"]
    header = msg["blocks"][0]["text"]
    assert header["type"] == "plain_text"
    assert header["text"] == ":red_circle: OPEN critical data_drift: fraud / amount"
    assert msg["text"].startswith(header["text"] + ": fraud: feature 'amount' drifted")
    fields = {
        f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1]
        for f in msg["blocks"][2]["fields"]
    }
    assert fields["Status"] == "open"
    assert fields["Severity"] == "critical"
    assert fields["Model"] == "fraud 3.1.0"
    assert fields["Measured"] == "psi 0.93 (threshold 0.2)"
    assert fields["Route"] == "ml-team"
    assert "Lasted" not in fields
    assert all(f["type"] == "mrkdwn" for f in msg["blocks"][2]["fields"])


def test_slack_escalated_and_resolved_read_differently():
    escalated = slack_message(received(status="escalated", severity="critical"))
    assert escalated["blocks"][0]["text"]["text"].startswith(
        ":arrow_double_up::red_circle: ESCALATED critical"
    )
    resolved = slack_message(received(status="resolved", severity="critical", seq=2))
    title = resolved["blocks"][0]["text"]["text"]
    assert title == ":white_check_mark: RESOLVED data_drift: fraud / amount"
    assert "critical" not in title and ":red_circle:" not in resolved["text"]
    fields = [f["text"] for f in resolved["blocks"][2]["fields"]]
    assert "*Lasted*\n2.7 h" in fields  # since 10:00, resolved at 12:41


def test_slack_escapes_user_text_and_keeps_slacks_limits():
    msg = slack_message(received(message="a <b> & c " + "x" * 5000, feature="f" * 200))
    assert msg["blocks"][1]["text"]["text"].startswith("a &lt;b&gt; &amp; c x")
    assert len(msg["blocks"][1]["text"]["text"]) <= 3000
    assert len(msg["blocks"][0]["text"]["text"]) <= 150
    assert len(msg["blocks"][2]["fields"]) <= 10
    assert all(len(f["text"]) <= 2000 for f in msg["blocks"][2]["fields"])


# ---- PagerDuty Events API v2 ------------------------------------------------------------

# https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
EVENT_FIELDS = {
    "routing_key",
    "event_action",
    "dedup_key",
    "payload",
    "images",
    "links",
    "client",
    "client_url",
}
PAYLOAD_FIELDS = {
    "summary",
    "source",
    "severity",
    "timestamp",
    "component",
    "group",
    "class",
    "custom_details",
}


@pytest.mark.parametrize(
    ("status", "severity", "action", "pd_severity"),
    [
        ("open", "warning", "trigger", "warning"),
        ("open", "info", "trigger", "info"),
        ("escalated", "critical", "trigger", "critical"),
    ],
)
def test_pagerduty_trigger(status, severity, action, pd_severity):
    r = received(status=status, severity=severity, episode="fraud-ep0")
    event = pagerduty_event(r, "R0UT1NGKEY", client_url="https://grafana.example.com/d/sd")
    assert set(event) <= EVENT_FIELDS
    assert event["routing_key"] == "R0UT1NGKEY"
    assert event["event_action"] == action
    assert event["dedup_key"] == "fraud-ep0"
    assert event["client"] == "streamdrift"
    assert event["client_url"] == "https://grafana.example.com/d/sd"
    payload = event["payload"]
    assert set(payload) <= PAYLOAD_FIELDS
    assert payload["severity"] == pd_severity
    assert payload["source"] == "fraud"
    assert payload["component"] == "amount"
    assert payload["group"] == "ml-team"
    assert payload["class"] == "data_drift"
    assert payload["timestamp"] == r.alert.created_at.isoformat()
    assert payload["summary"].startswith(f"{status.upper()} {severity} data_drift: fraud / amount")
    assert payload["custom_details"]["alert_id"] == r.alert.alert_id
    orjson.dumps(event)  # JSON-ready as it is


def test_pagerduty_resolve_uses_the_episode_and_needs_no_payload():
    opened = pagerduty_event(received(status="open", episode="ep-9"), "K")
    resolved = pagerduty_event(received(status="resolved", episode="ep-9", seq=2), "K")
    assert resolved == {"routing_key": "K", "event_action": "resolve", "dedup_key": "ep-9"}
    assert opened["dedup_key"] == resolved["dedup_key"]


def test_pagerduty_without_an_episode_deduplicates_on_the_alert():
    r = received(episode=None)
    assert pagerduty_event(r, "K")["dedup_key"] == r.alert.alert_id


def test_pagerduty_summary_is_cut_to_1024_and_source_may_be_configured():
    event = pagerduty_event(received(message="m" * 3000), "K", source="ml-platform")
    assert len(event["payload"]["summary"]) == 1024
    assert event["payload"]["source"] == "ml-platform"


# ---- e-mail ------------------------------------------------------------------------------


def test_email_subject_headers_and_body():
    config = EmailConfig.model_validate(
        {"host": "smtp", "from": "sd@example.com", "to": ["a@example.com", "b@example.com"]}
    )
    r = received(status="escalated", severity="critical", episode="ep-3", seq=1)
    msg = email_message(r, config)
    assert msg["Subject"] == "[streamdrift] ESCALATED critical data_drift: fraud / amount"
    assert msg["To"] == "a@example.com, b@example.com"
    assert msg["Message-ID"] == f"<{r.alert.alert_id}@streamdrift>"
    assert msg["References"] == "<episode-ep-3@streamdrift>"
    body = msg.get_content()
    assert "Measured:  psi 0.93 (threshold 0.2)" in body
    published = body.split("The alert as published:\n", 1)[1]
    assert orjson.loads(published) == orjson.loads(r.raw)
    resolved = email_message(received(status="resolved", episode="ep-3", seq=2), config)
    assert resolved["Subject"] == "[streamdrift] RESOLVED data_drift: fraud / amount"
    assert resolved["References"] == msg["References"]


# ---- webhook -----------------------------------------------------------------------------


def test_webhook_headers_and_signature_verified_independently():
    secret = "whsec-0123456789"
    sink = WebhookSink(
        "audit", WebhookConfig(url="https://example.com/h", secret=secret, headers={"X-A": "1"})
    )
    r = received()
    headers = sink.headers(r, now=1_795_406_400.7)
    assert headers["Idempotency-Key"] == r.alert.alert_id
    assert headers["Content-Type"] == "application/json"
    assert headers["X-A"] == "1"
    timestamp = headers["X-Streamdrift-Timestamp"]
    assert timestamp == "1795406400"
    # what a receiver computes, with nothing of ours
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + r.raw, hashlib.sha256)
    header = headers["X-Streamdrift-Signature"]
    assert header.startswith("sha256=")
    assert hmac.compare_digest(header, "sha256=" + expected.hexdigest())
    assert verify(secret, timestamp, r.raw, header)
    assert not verify(secret, timestamp, r.raw + b" ", header)
    assert not verify(secret, str(int(timestamp) + 1), r.raw, header)
    assert not verify("other-secret", timestamp, r.raw, header)
    sink.close()


def test_unsigned_webhook_has_no_signature_header():
    sink = WebhookSink("w", WebhookConfig(url="http://127.0.0.1:1/"))
    assert "X-Streamdrift-Signature" not in sink.headers(received())
    sink.close()


def test_the_webhook_body_is_the_alert_as_published():
    doc = alert_doc()
    r = parse_alert(orjson.dumps(doc), "alerts:0:1")
    assert orjson.loads(r.raw) == doc


def test_alerts_with_unknown_fields_are_kept_and_non_alerts_refused():
    from streamdrift.notify.received import InvalidAlert

    r = parse_alert(orjson.dumps({**alert_doc(), "new_field": 1}), "alerts:0:1")
    assert r.alert.model_extra == {"new_field": 1}
    for bad, why in [
        (b"", "empty"),
        (b"{", "not JSON"),
        (orjson.dumps({**alert_doc(), "severity": "high"}), "severity"),
        (orjson.dumps({"alert_id": "x"}), "not an alert"),
    ]:
        with pytest.raises(InvalidAlert, match=why):
            parse_alert(bad, "alerts:0:1")
