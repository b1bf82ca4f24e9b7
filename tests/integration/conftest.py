"""Fixtures for integration tests: a real Kafka-protocol broker (Tansu) and a real Redis
server, started once per session unless STREAMDRIFT_TEST_KAFKA / STREAMDRIFT_TEST_REDIS
name running ones. Each test gets its own topics, consumer group and model names.

For fault injection, `redis_node` starts controllable Redis servers of the test's own
(killed, frozen, restarted at will) and `redis_cluster` a three-master Redis Cluster shared
by the session; see redis_control.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer  # kafka-python: an independent client, not librdkafka
from kafka.structs import TopicPartition

from streamdrift import embedded, kafka_io, synthetic
from streamdrift.config import MonitorConfig, Settings
from streamdrift.store import REDIS_ERRORS, Store
from streamdrift.store.keys import MODELS

from .redis_control import Persistence, RedisCluster, RedisNode

pytestmark = pytest.mark.integration


@dataclass
class Servers:
    kafka_bootstrap: str
    redis_url: str


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    kafka, redis_url = (
        os.environ.get("STREAMDRIFT_TEST_KAFKA"),
        os.environ.get("STREAMDRIFT_TEST_REDIS"),
    )
    if kafka and redis_url:
        yield Servers(kafka, redis_url)
        return
    running = embedded.start(tmp_path_factory.mktemp("servers"))
    try:
        yield Servers(running.kafka_bootstrap, running.redis_url)
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _forget_models(request: pytest.FixtureRequest) -> Iterator[None]:
    """The tests share one Redis: after each, its models leave the registry and their
    keys go, so the next test's workers (which evaluate every registered model) do not
    raise alerts of earlier tests' models, gone silent, into their own alerts topic."""
    if "servers" not in request.fixturenames:
        yield
        return
    store = Store(request.getfixturevalue("servers").redis_url)
    before = set(store.profiles.models())
    yield
    try:
        for model in set(store.profiles.models()) - before:
            forget(store, model)
    except REDIS_ERRORS:
        pass  # a test that broke Redis on purpose: nothing to tidy


def forget(store: Store, model: str) -> None:
    """A model out of the registry, its keys gone."""
    store.redis.srem(MODELS, model)
    keys = list(store.redis.scan_iter(match=f"sd:{{{model}}}:*", count=1000))
    for i in range(0, len(keys), 500):
        store.redis.delete(*keys[i : i + 500])


@pytest.fixture
def redis_node(tmp_path: Path) -> Iterator[Callable[..., RedisNode]]:
    """A factory of started `RedisNode`s, each in its own directory under the test's
    tmp_path: `redis_node(persistence="aof-everysec", maxmemory=None, policy="noeviction")`
    (further keywords go to `RedisNode`). Every node is stopped when the test ends, frozen
    or not, so a failing test leaves no server behind."""
    nodes: list[RedisNode] = []

    def make(
        persistence: Persistence = "aof-everysec",
        maxmemory: int | None = None,
        policy: str = "noeviction",
        **kwargs: Any,
    ) -> RedisNode:
        node = RedisNode(
            tmp_path / f"redis-{len(nodes)}",
            persistence=persistence,
            maxmemory=maxmemory,
            maxmemory_policy=policy,
            **kwargs,
        )
        nodes.append(node)
        return node.start()

    try:
        yield make
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A three-master Redis Cluster (no replicas) for the whole session. Tests share it:
    they use their own hash tags and must not expect the initial slot layout, since
    resharding tests move slots."""
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli not on PATH (it comes with the redis-server package)")
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def settings(servers: Servers) -> Settings:
    return make_settings(servers)


def make_settings(servers: Servers) -> Settings:
    """Settings of the shared servers with topics and a group of their own."""
    uid = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap=servers.kafka_bootstrap,
        redis_url=servers.redis_url,
        predictions_topic=f"predictions-{uid}",
        labels_topic=f"labels-{uid}",
        alerts_topic=f"alerts-{uid}",
        consumer_group=f"streamdrift-{uid}",
        session_timeout_ms=6000,
        batch_size=2000,
        poll_timeout_seconds=0.3,
        metrics_port=0,
    )
    kafka_io.ensure_topics(s, partitions=4)
    return s


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.redis_url)


@pytest.fixture
def model_id() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a `streamdrift` subprocess talking to the test's servers/topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    env.update(settings.to_env())
    env["STREAMDRIFT_METRICS_PORT"] = "0"
    return env


def cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamdrift", *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(path: Path, **overrides: object) -> Path:
    path.write_text(MonitorConfig(**overrides).model_dump_json())
    return path


def register_model(
    settings: Settings, model_id: str, reference: Path, *args: str, **config: object
) -> subprocess.CompletedProcess:
    """`streamdrift register` of `reference` with a monitor config of `config` (written
    beside the reference) and more arguments `args`; evaluated once, when the worker
    stops, unless the config says otherwise (so no figure depends on the machine's
    speed). Asserts success."""
    config.setdefault("evaluation_interval_seconds", 600)
    path = write_config(reference.with_suffix(".monitor.json"), **config)
    res = cli(
        settings, "register", model_id, "--reference", str(reference), "--config", str(path), *args
    )
    assert res.returncode == 0, res.stderr
    return res


def register_fraud_model(
    settings: Settings, model_id: str, folder: Path, **config: object
) -> subprocess.CompletedProcess:
    """`register_model` of the synthetic fraud model (`synthetic.write_reference`): the
    score is the prediction, `is_fraud` the label."""
    reference = synthetic.write_reference(folder / "reference.csv")
    return register_model(
        settings,
        model_id,
        reference,
        "--prediction-column",
        "score",
        "--label-column",
        "is_fraud",
        **config,
    )


def produce(
    settings: Settings, pairs: Iterable[tuple[bytes | None, bytes]], topic: str | None = None
) -> int:
    producer = kafka_io.producer(settings)
    n = 0
    for key, value in pairs:
        while True:
            try:
                producer.produce(topic or settings.predictions_topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return n


def read_topic(settings: Settings, topic: str, idle_ms: int = 3000) -> list:
    """Every message of `topic`, read with kafka-python (independent of the code under
    test), stopping after `idle_ms` without new messages."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=idle_ms,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def read_topic_now(settings: Settings, topic: str, timeout: float = 30) -> list:
    """Every message of `topic` up to the end offsets it has when called, read with
    kafka-python, without `read_topic`'s idle wait: for polling on something to appear,
    or for reading everything once whatever writes to the topic has stopped and flushed
    (a `Worker.run` returned, a `WorkerThread` left, a CLI process exited). While a
    writer may still be running, `read_topic` waits for it to go quiet."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"{topic} not read to {ends} in {timeout}s"
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()


def read_alerts(settings: Settings, now: bool = False) -> list[dict]:
    """The alerts topic's messages: until 3 s pass without a new one, or, `now`, up to
    its end offsets at the call (see `read_topic_now`)."""
    messages = (
        read_topic_now(settings, settings.alerts_topic)
        if now
        else read_topic(settings, settings.alerts_topic)
    )
    return [orjson.loads(m.value) for m in messages]


def wait_for(predicate, timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
