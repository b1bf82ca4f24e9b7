"""Faults a worker waits out instead of crashing on, and how long it waits between tries.

Redis or the broker gone, full, loading, read-only, failing over; Redis that lost its
state: each is a `Fault` with a short code (for metrics), a reason (for /readyz and the
one log line it gets) and a fix (for people). A worker in a fault pauses its partitions,
so nothing is fetched and memory stays flat, and retries with capped exponential backoff
and jitter, so a fleet does not hammer a recovering Redis in step.
"""

from __future__ import annotations

import random

from confluent_kafka import KafkaException

from streamdrift.errors import ConnectionProblem
from streamdrift.store.client import REDIS_ERRORS, Fault, fault_of


class BrokerUnavailable(Exception):
    """The broker did not acknowledge what had to reach it (dead letters) in time."""


class StateLost(Exception):
    """Redis no longer holds the state this worker counted into: the state marker is gone
    or changed, or a model it knew has no profile any more."""

    def __init__(self, reason: str, models: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.models = models or []


class EvictingRedis(Exception):
    """Redis's maxmemory-policy was changed to one that evicts keys."""


class Waiting(Exception):
    """Nothing to do until someone acts (e.g. no model registered yet)."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(str(fault))
        self.fault = fault


def classify(error: BaseException) -> Fault | None:
    """The fault behind `error`, or None for an error that is a bug (and stops the worker)."""
    if isinstance(error, Waiting):
        return error.fault
    if isinstance(error, StateLost):
        return Fault(
            "state_lost",
            f"redis lost its state: {error.reason}",
            "register the models again (streamdrift register ...); the worker then re-reads "
            "what Kafka still retains",
        )
    if isinstance(error, EvictingRedis):
        return Fault(
            "redis_evicting",
            f"redis evicts keys: {error}",
            "CONFIG SET maxmemory-policy noeviction",
        )
    if isinstance(error, BrokerUnavailable | KafkaException):
        return Fault("kafka_unreachable", f"kafka unreachable: {error}", "start the broker")
    if isinstance(error, ConnectionProblem):
        code = "redis_unreachable" if "Redis" in error.problem else "kafka_unreachable"
        return Fault(code, error.problem, error.fix)
    if isinstance(error, REDIS_ERRORS):
        return fault_of(error)
    return None


class Backoff:
    """Capped exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential
    Backoff And Jitter", 2015): the n-th wait is uniform in [c/2, c], c = min(cap, base·2^n).
    Never shorter than half the ceiling, so a long outage is not probed too often."""

    def __init__(self, base: float = 0.2, cap: float = 5.0, rng: random.Random | None = None):
        self.base, self.cap, self.tries = base, cap, 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.tries)
        self.tries += 1
        return self.rng.uniform(ceiling / 2, ceiling)
