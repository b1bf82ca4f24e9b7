"""`streamdrift notify` end to end: alerts on a real broker, delivered by the real
command to a real HTTP server (standing in for a webhook, Slack and PagerDuty) and a
real SMTP server; a sink failing forever; the notifier SIGKILLed mid-way."""

from __future__ import annotations

import hashlib
import hmac
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from email.message import EmailMessage
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from streamdrift import kafka_io
from streamdrift.config import Settings
from tests.alert_factory import alert_doc, episodes

from .conftest import env_for, produce, read_topic, wait_for
from .notify_receivers import Receiver, Request, smtp_server

pytestmark = pytest.mark.integration

SECRET = "hmac-secret-for-tests"
PD_KEY = "pd-key-0123456"


@pytest.fixture
def alerts_settings(settings: Settings) -> Settings:
    """The test's settings with an alerts topic of three partitions (keyed by model, as
    the workers publish), and the notifier's metrics on any free port."""
    uid = uuid.uuid4().hex[:8]
    s = settings.model_copy(
        update={
            "alerts_topic": f"alerts-n-{uid}",
            "notify_group": f"notify-{uid}",
            "notify_metrics_port": 0,
        }
    )
    admin = kafka_io.admin(s)
    for future in admin.create_topics([NewTopic(s.alerts_topic, 3, 1)]).values():
        future.result(15)
    return s


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp():
    controller, inbox = smtp_server()
    yield controller, inbox
    controller.stop()


def publish(settings: Settings, alerts: list[dict]) -> None:
    produce(
        settings,
        [(a["model_id"].encode(), orjson.dumps(a)) for a in alerts],
        topic=settings.alerts_topic,
    )


def write_routes(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def notify_command(routes: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "streamdrift", "notify", "--routes", str(routes), *args]


def notify_env(settings: Settings) -> dict[str, str]:
    return {**env_for(settings), "HOOK_SECRET": SECRET, "PD_KEY": PD_KEY}


def run_notify(settings: Settings, routes: Path, *args: str) -> subprocess.CompletedProcess:
    """The command until the topic is read to its end and settled (`--once`)."""
    res = subprocess.run(
        notify_command(routes, "--once", "--max-seconds", "40", *args),
        env=notify_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert PD_KEY not in res.stderr and SECRET not in res.stderr
    return res


def committed_to_the_end(settings: Settings) -> bool:
    """Whether the notifier's group committed every partition of the alerts topic up to
    its end (just past its last message, read with kafka-python): every alert settled,
    none to be delivered again."""
    ends: dict[int, int] = defaultdict(int)
    for m in read_topic(settings, settings.alerts_topic, idle_ms=1000):
        ends[m.partition] = max(ends[m.partition], m.offset + 1)
    consumer = kafka_io.consumer(settings, **{"group.id": settings.notify_group})
    try:
        committed = consumer.committed(
            [TopicPartition(settings.alerts_topic, p) for p in range(3)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in committed if tp.offset >= 0} == dict(ends)


def by_model(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(model, alert id) pairs as each model's ids in the order given."""
    out: dict[str, list[str]] = defaultdict(list)
    for model, alert_id in pairs:
        out[model].append(alert_id)
    return dict(out)


def ids(alerts: list[dict]) -> dict[str, list[str]]:
    return by_model([(a["model_id"], a["alert_id"]) for a in alerts])


def test_each_alert_reaches_the_sinks_its_routes_name_in_order_per_model(
    alerts_settings, receiver, smtp, tmp_path
):
    controller, inbox = smtp
    alerts = episodes(["fraud", "churn", "ltv", "spam"], per_model=3)  # 36 alerts
    publish(alerts_settings, alerts)
    routes = write_routes(
        tmp_path,
        {
            "sinks": {
                "audit": {
                    "type": "webhook",
                    "url": receiver.url("/audit"),
                    "secret": "${HOOK_SECRET}",
                },
                "ml-slack": {"type": "slack", "url": receiver.url("/slack")},
                "pager": {
                    "type": "pagerduty",
                    "routing_key": "${PD_KEY}",
                    "url": receiver.url("/pagerduty"),
                },
                "data-mail": {
                    "type": "email",
                    "host": "127.0.0.1",
                    "port": controller.port,
                    "security": "none",
                    "from": "streamdrift@example.com",
                    "to": ["data-team@example.com"],
                },
            },
            "routes": [
                {"sinks": ["audit"], "continue": True},
                {"match": {"route": "ml-team"}, "sinks": ["ml-slack"]},
                {"match": {"route": "ops"}, "sinks": ["pager"]},
                {"match": {"route": "data-team"}, "sinks": ["data-mail"]},
            ],
        },
    )
    run_notify(alerts_settings, routes)
    status = {a["alert_id"]: a["status"] for a in alerts}
    model = {a["alert_id"]: a["model_id"] for a in alerts}

    def routed(route: str) -> dict[str, list[str]]:
        return ids([a for a in alerts if a["context"]["route"] == route])

    # the audit webhook: every alert once, in topic order per model, signed, keyed
    audit = receiver.at("/audit")
    assert ids([r.json() for r in audit]) == ids(alerts)
    for r in audit:
        assert r.headers["Idempotency-Key"] == r.json()["alert_id"]
        timestamp = r.headers["X-Streamdrift-Timestamp"]
        mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + r.body, hashlib.sha256)
        assert hmac.compare_digest(
            r.headers["X-Streamdrift-Signature"], "sha256=" + mac.hexdigest()
        )
        assert abs(int(timestamp) - r.at) < 60

    # Slack: the ml-team's alerts, in order per model; resolved ones read so
    slack = receiver.at("/slack")
    keys = [r.headers["Idempotency-Key"] for r in slack]
    assert by_model([(model[k], k) for k in keys]) == routed("ml-team")
    for key, r in zip(keys, slack, strict=True):
        title = r.json()["blocks"][0]["text"]["text"]
        assert (status[key] == "resolved") == title.startswith(":white_check_mark: RESOLVED")
        assert r.json()["text"].startswith(title)

    # PagerDuty: the ops alerts; one dedup_key per episode: trigger, trigger, resolve
    pages = receiver.at("/pagerduty")
    keys = [r.headers["Idempotency-Key"] for r in pages]
    assert by_model([(model[k], k) for k in keys]) == routed("ops")
    actions: dict[str, list[str]] = defaultdict(list)
    for r in pages:
        assert r.json()["routing_key"] == PD_KEY
        actions[r.json()["dedup_key"]].append(r.json()["event_action"])
    ops_episodes = {a["episode_id"] for a in alerts if a["context"]["route"] == "ops"}
    assert set(actions) == ops_episodes
    assert all(v == ["trigger", "trigger", "resolve"] for v in actions.values())

    # e-mail: the data team's alerts, subjects with status, type, model and feature
    mails: list[EmailMessage] = inbox.messages
    keys = [m["X-Streamdrift-Alert-Id"] for m in mails]
    assert by_model([(model[k], k) for k in keys]) == routed("data-team")
    for key, m, envelope in zip(keys, mails, inbox.envelopes, strict=True):
        assert envelope == ("streamdrift@example.com", ["data-team@example.com"])
        assert m["Subject"].startswith(f"[streamdrift] {status[key].upper()} ")
        assert m["Subject"].endswith(f"data_drift: {model[key]} / amount")

    # everything settled and committed: nothing undelivered, nothing to deliver again
    assert read_topic(alerts_settings, alerts_settings.undelivered_topic, idle_ms=1000) == []
    assert committed_to_the_end(alerts_settings)


def test_a_sink_failing_forever_blocks_no_other_and_its_alerts_land_in_undelivered(
    alerts_settings, receiver, tmp_path
):
    receiver.status["/broken"] = 500
    alerts = episodes(["fraud", "churn"], per_model=2)  # 12 alerts
    publish(alerts_settings, alerts)
    # one message that is not an alert at all: recorded too, never blocking the rest
    produce(alerts_settings, [(b"fraud", b"not json")], topic=alerts_settings.alerts_topic)
    routes = write_routes(
        tmp_path,
        {
            "sinks": {
                "good": {"type": "webhook", "url": receiver.url("/good")},
                "broken": {
                    "type": "webhook",
                    "url": receiver.url("/broken"),
                    "retry": {"attempts": 3, "initial_seconds": 0.4, "max_seconds": 0.4},
                },
            },
            "routes": [{"sinks": ["broken", "good"]}],
        },
    )
    started = time.time()
    res = run_notify(alerts_settings, routes)

    good, broken = receiver.at("/good"), receiver.at("/broken")
    assert ids([r.json() for r in good]) == ids(alerts)
    assert len(broken) == 3 * len(alerts)  # each alert tried 3 times, then given up
    # the good sink had everything while the broken one was still retrying: each
    # model's alerts wait 2 × 0.2–0.4 s between tries at the broken sink, six in a row
    assert max(r.at for r in good) < max(r.at for r in broken) - 1.0
    assert max(r.at for r in broken) - started > 6 * 2 * 0.2

    records = [
        orjson.loads(m.value)
        for m in read_topic(alerts_settings, alerts_settings.undelivered_topic, idle_ms=1000)
    ]
    failed = [r for r in records if r["sink"] == "broken"]
    assert sorted(r["alert"]["alert_id"] for r in failed) == sorted(a["alert_id"] for a in alerts)
    for r in failed:
        assert r["attempts"] == 3
        assert r["error"].startswith("broken: HTTP 500")
        assert r["source"].startswith(f"{alerts_settings.alerts_topic}:")
        assert r["alert"] == next(a for a in alerts if a["alert_id"] == r["alert"]["alert_id"])
    [invalid] = [r for r in records if r["sink"] is None]
    assert invalid["alert"] == "not json" and invalid["error"].startswith("not JSON")
    assert "3 given up" not in res.stderr  # counted per delivery: 12
    assert f"{len(alerts)} given up" in res.stderr

    # given up is settled: the commit moved past them, nothing is tried again
    assert committed_to_the_end(alerts_settings)


def test_killed_twice_mid_way_every_alert_is_delivered_with_one_idempotency_key(
    alerts_settings, receiver, tmp_path
):
    receiver.delay["/hook"] = 0.05  # slow enough to be caught mid-way
    # a SIGKILLed member stays in the group until its session times out; the next one's
    # join waits for that
    alerts_settings = alerts_settings.model_copy(update={"session_timeout_ms": 2000})
    alerts = [
        alert_doc(model_id=m, episode=f"{m}-{i}", seq=i, route="ops")
        for i in range(25)
        for m in ("fraud", "churn", "ltv")
    ]  # 75 alerts
    publish(alerts_settings, alerts)
    routes = write_routes(
        tmp_path,
        {
            "sinks": {"hook": {"type": "webhook", "url": receiver.url("/hook"), "concurrency": 2}},
            "routes": [{"sinks": "hook"}],
        },
    )

    def distinct() -> int:
        return len({r.headers["Idempotency-Key"] for r in receiver.at("/hook")})

    for run, until in enumerate((15, 40)):
        receiver.run = run
        proc = subprocess.Popen(
            notify_command(routes, "--max-seconds", "40"),
            env=notify_env(alerts_settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert wait_for(lambda until=until: distinct() >= until, timeout=25, interval=0.02)
        finally:
            proc.kill()  # SIGKILL: no commit, no goodbye
            proc.wait(10)
        assert distinct() < len(alerts), "killed too late to be mid-way"
    # the third runs until everything arrived, serves its metrics, and stops on SIGTERM:
    # it finishes what it holds, commits and exits 0
    receiver.run = 2
    proc = subprocess.Popen(
        notify_command(routes, "--max-seconds", "40"),
        env=notify_env(alerts_settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = _metrics_port(proc)
        assert wait_for(lambda: distinct() == len(alerts), timeout=25, interval=0.05)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        delivered = _metric(
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text,
            'streamdrift_notify_deliveries_total{outcome="delivered",sink="hook"}',
        )
        assert 0 < delivered <= len(alerts)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    assert committed_to_the_end(alerts_settings)

    requests = receiver.at("/hook")
    assert set(by_model([(r.json()["model_id"], r.json()["alert_id"]) for r in requests])) == {
        "fraud",
        "churn",
        "ltv",
    }
    assert {r.headers["Idempotency-Key"] for r in requests} == {a["alert_id"] for a in alerts}
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for r in requests:
        assert r.headers["Idempotency-Key"] == r.json()["alert_id"]
        bodies[r.headers["Idempotency-Key"]].add(r.body)
    assert all(len(b) == 1 for b in bodies.values())  # a repeat is the same alert
    assert len(requests) > len(alerts), "the kills left nothing to deliver twice"
    # within each run, a model's alerts arrive in topic order
    order = {a["alert_id"]: i for i, a in enumerate(alerts)}
    for run in range(3):
        for model_requests in _per_model([r for r in requests if r.run == run]).values():
            positions = [order[r.headers["Idempotency-Key"]] for r in model_requests]
            assert positions == sorted(positions), (run, positions)


def _metrics_port(proc: subprocess.Popen) -> int:
    """The port of the notifier's /metrics, from its start line (JSON logs)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("{") and "notifying from" in line:
            return int(orjson.loads(line)["metrics_port"])
    raise AssertionError(f"the notifier ended without starting: {proc.wait()}")


def _metric(text: str, name: str) -> float:
    [value] = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name)]
    return float(value)


def _per_model(requests: list[Request]) -> dict[str, list[Request]]:
    out: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        out[r.json()["model_id"]].append(r)
    return out


def test_the_one_line_form_and_from_beginning(alerts_settings, receiver):
    alerts = [alert_doc(model_id="fraud", seq=i, episode=f"e{i}") for i in range(3)]
    publish(alerts_settings, alerts)

    def webhook(*args: str) -> None:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamdrift",
                "notify",
                "--webhook",
                receiver.url("/one"),
                "--max-seconds",
                "40",
                *args,
            ],
            env=env_for(alerts_settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr[-2000:]

    webhook("--once")
    keys = [a["alert_id"] for a in alerts]
    assert [r.headers["Idempotency-Key"] for r in receiver.at("/one")] == keys
    assert committed_to_the_end(alerts_settings)
    # --from-beginning in a group that committed everything delivers it all again; the
    # idle time counts from the assignment, not from the start (the join takes ~3 s)
    started = time.monotonic()
    webhook("--from-beginning", "--idle-exit", "1")
    assert time.monotonic() - started < 30
    assert [r.headers["Idempotency-Key"] for r in receiver.at("/one")] == keys + keys
