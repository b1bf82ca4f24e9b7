"""Delivery mechanics without servers: which HTTP answers are retried, the retry loop's
budget, backoff and cancellation, the order of one model's deliveries, and how far a
partition may be committed when alerts finish out of order."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from streamdrift.notify.lanes import Lanes
from streamdrift.notify.progress import Progress
from streamdrift.notify.received import parse_alert
from streamdrift.notify.retry import backoff, deliver
from streamdrift.notify.sink import DeliveryFailed, post, retry_after
from streamdrift.notify.sink_config import RetryPolicy
from tests.alert_factory import alert_bytes

RECEIVED = parse_alert(alert_bytes(), "alerts:0:0")


def answering(status: int, body: str = "", headers: dict[str, str] | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=body, headers=headers or {})

    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
        (301, False),
    ],
)
def test_http_answers_that_are_retried(status, retryable):
    with pytest.raises(DeliveryFailed) as e:
        post(answering(status, "no_service"), "https://x/y", b"{}", {}, "slack-ml")
    assert e.value.retryable is retryable
    assert str(e.value).startswith(f"slack-ml: HTTP {status}")
    assert "https://x/y" not in str(e.value)  # URLs may carry the token


def test_2xx_is_delivered_and_retry_after_is_read():
    assert post(answering(202), "https://x", b"{}", {}, "pd").status_code == 202
    with pytest.raises(DeliveryFailed) as e:
        post(answering(429, headers={"Retry-After": "7"}), "https://x", b"{}", {}, "pd")
    assert e.value.retry_after == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after(later) or 0) <= 30
    assert retry_after("soon") is None


def test_no_answer_is_retried():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(DeliveryFailed) as e:
        post(client, "https://x", b"{}", {}, "w")
    assert e.value.retryable
    assert "ConnectError" in str(e.value)


class FlakySink:
    kind = "test"

    def __init__(self, failures: list[DeliveryFailed | Exception]) -> None:
        self.name = "flaky"
        self.failures = failures
        self.calls = 0

    def send(self, received) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)

    def describe(self) -> str:
        return "test"

    def close(self) -> None:
        pass


FAST = RetryPolicy(attempts=4, initial_seconds=0.001, max_seconds=0.01)


def test_retries_until_delivered():
    sink = FlakySink([DeliveryFailed("503", True), RuntimeError("bug in a sink")])
    outcome = deliver(sink, RECEIVED, FAST, threading.Event())
    assert (outcome.delivered, outcome.attempts, sink.calls) == (True, 3, 3)


def test_gives_up_after_the_budget_with_the_last_error():
    sink = FlakySink([DeliveryFailed(f"HTTP 500 #{i}", True) for i in range(10)])
    outcome = deliver(sink, RECEIVED, FAST, threading.Event())
    assert outcome.gave_up and outcome.attempts == 4 and outcome.error == "HTTP 500 #3"


def test_a_final_failure_is_not_retried():
    sink = FlakySink([DeliveryFailed("HTTP 400", False)])
    outcome = deliver(sink, RECEIVED, FAST, threading.Event())
    assert outcome.gave_up and outcome.attempts == 1 and sink.calls == 1


def test_cancelled_while_waiting_ends_neither_delivered_nor_given_up():
    cancelled = threading.Event()
    sink = FlakySink([DeliveryFailed("503", True)] * 3)
    slow = RetryPolicy(attempts=3, initial_seconds=30, max_seconds=30)
    threading.Timer(0.05, cancelled.set).start()
    started = time.monotonic()
    outcome = deliver(sink, RECEIVED, slow, cancelled)
    assert time.monotonic() - started < 5
    assert outcome.cancelled and not outcome.gave_up and not outcome.delivered


def test_retry_after_is_honoured_up_to_the_cap():
    sink = FlakySink([DeliveryFailed("429", True, retry_after=0.3)])
    policy = RetryPolicy(attempts=2, initial_seconds=0.001, max_seconds=0.2)
    started = time.monotonic()
    assert deliver(sink, RECEIVED, policy, threading.Event()).delivered
    assert 0.1 <= time.monotonic() - started < 0.3  # the cap (0.2 s), not the 0.3 asked


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half():
    policy = RetryPolicy(attempts=10, initial_seconds=0.5, max_seconds=4)
    rng = random.Random(1)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        waits = [backoff(policy, retry, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling


def test_lanes_keep_one_keys_order_and_run_keys_side_by_side():
    lanes = Lanes(threads=4, name="t")
    done: dict[str, list[int]] = {"a": [], "b": []}
    a_started, b_done = threading.Event(), threading.Event()

    def task(key: str, i: int) -> None:
        if key == "a" and i == 0:
            a_started.set()
            assert b_done.wait(5), "b's tasks must not wait for a's"
        time.sleep(random.random() / 1000)
        done[key].append(i)
        if key == "b" and i == 19:
            b_done.set()

    for i in range(20):
        lanes.submit("a", lambda i=i: task("a", i))
    assert a_started.wait(5)
    for i in range(20):
        lanes.submit("b", lambda i=i: task("b", i))
    lanes.shutdown()
    assert done == {"a": list(range(20)), "b": list(range(20))}


def test_a_busy_key_does_not_starve_the_others():
    lanes = Lanes(threads=1, name="t")
    order: list[str] = []
    gate = threading.Event()
    lanes.submit("busy", gate.wait)
    for i in range(5):
        lanes.submit("busy", lambda i=i: order.append(f"busy{i}"))
    lanes.submit("other", lambda: order.append("other"))
    gate.set()
    lanes.shutdown()
    assert order.index("other") < order.index("busy4")


def test_progress_commits_after_the_longest_finished_run():
    p = Progress()
    for offset in (10, 11, 12, 14):  # 13 missing: a compacted or transaction offset
        p.add(offset)
    assert p.to_commit() is None
    p.finish(11)
    p.finish(14)
    assert p.position is None and p.in_flight == 4  # 10 holds everything back
    p.finish(10)
    assert p.position == 12 and p.to_commit() == 12
    p.committed = 12
    assert p.to_commit() is None
    p.finish(12)
    assert p.position == 15 and p.in_flight == 0
