"""One alert to one sink, with retries: capped exponential backoff with jitter.

Each (alert, sink) delivery has its own retry budget, run on the sink's own threads
(`lanes.py`), so a sink that keeps failing delays nothing but its own later alerts of
the same model. A delivery can be cancelled while it waits (the notifier stops, or the
alert's partition moved to another notifier): it then ends neither delivered nor given
up, and its offset is not committed, so the alert is delivered again later."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamdrift.notify.received import ReceivedAlert
from streamdrift.notify.sink import DeliveryFailed, Sink
from streamdrift.notify.sink_config import RetryPolicy
from streamdrift.redaction import mask_text

log = logging.getLogger("streamdrift.notify")


@dataclass(frozen=True)
class Outcome:
    """How one delivery ended: delivered, given up (with the last error), or cancelled."""

    sink: str
    delivered: bool
    attempts: int
    error: str | None = None
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def gave_up(self) -> bool:
        return not self.delivered and not self.cancelled


def backoff(policy: RetryPolicy, retry: int, rng: random.Random) -> float:
    """The wait before retry number `retry` (1 for the first): uniform in [c/2, c],
    c = min(max_seconds, initial_seconds·2^(retry-1)) ("equal jitter", AWS Architecture
    Blog, "Exponential Backoff And Jitter", 2015): never much shorter than the ceiling,
    yet spread so that retries after one outage do not arrive together."""
    ceiling = min(policy.max_seconds, policy.initial_seconds * 2 ** (retry - 1))
    return rng.uniform(ceiling / 2, ceiling)


def deliver(
    sink: Sink,
    received: ReceivedAlert,
    policy: RetryPolicy,
    cancelled: threading.Event,
    rng: random.Random | None = None,
    on_attempt: Callable[[str, bool], None] | None = None,
) -> Outcome:
    """Send `received` to `sink`, retrying what may pass, until it is delivered, the
    budget is spent, the failure is final, or `cancelled` is set. A receiver's
    `Retry-After` is honoured up to the policy's cap. `on_attempt(sink, ok)` is told of
    every try (metrics)."""
    rng = rng or random.Random()
    started = time.monotonic()
    error = "not tried"
    for attempt in range(1, policy.attempts + 1):
        if cancelled.is_set():
            return Outcome(sink.name, False, attempt - 1, error, cancelled=True)
        retryable = True
        retry_after: float | None = None
        try:
            sink.send(received)
        except DeliveryFailed as e:
            error, retryable, retry_after = str(e), e.retryable, e.retry_after
        except Exception as e:  # a sink's bug must not stop the notifier: retried, logged
            error = mask_text(f"{type(e).__name__}: {e}")
            log.exception("%s: unexpected error delivering %s", sink.name, received.source)
        else:
            if on_attempt:
                on_attempt(sink.name, True)
            return Outcome(sink.name, True, attempt, seconds=time.monotonic() - started)
        if on_attempt:
            on_attempt(sink.name, False)
        if not retryable or attempt == policy.attempts:
            return Outcome(sink.name, False, attempt, error, seconds=time.monotonic() - started)
        wait = backoff(policy, attempt, rng)
        if retry_after is not None:
            wait = max(wait, min(retry_after, policy.max_seconds))
        log.debug(
            "%s: attempt %d failed (%s), next in %.2fs",
            sink.name,
            attempt,
            error,
            wait,
            extra={"sink": sink.name, "alert_source": received.source},
        )
        if cancelled.wait(wait):
            return Outcome(sink.name, False, attempt, error, cancelled=True)
    raise AssertionError("unreachable: the last attempt returns")
