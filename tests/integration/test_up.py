"""`streamdrift up`: a broker and a Redis in the foreground, the exports to use them,
a clean stop on Ctrl-C, and Redis's data kept in --data across restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from streamdrift.config import Settings
from streamdrift.kafka_io import ensure_topics

pytestmark = pytest.mark.integration


def _up(data: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdrift", "up", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    exports: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(exports) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("export "):
            name, _, value = line[len("export ") :].strip().partition("=")
            exports[name] = value
    assert set(exports) == {"STREAMDRIFT_KAFKA_BOOTSTRAP", "STREAMDRIFT_REDIS_URL"}, (
        proc.stderr.read() if proc.poll() is not None else exports
    )
    return proc, exports


def _closed(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), 0.5):
            return False
    except OSError:
        return True


def test_up_runs_both_servers_stops_on_ctrl_c_and_keeps_redis_data(tmp_path):
    data = tmp_path / "data"
    proc, env = _up(data)
    try:
        r = redis.Redis.from_url(env["STREAMDRIFT_REDIS_URL"])
        assert r.ping()
        r.set("sd-up-test", "kept")
        settings = Settings(
            kafka_bootstrap=env["STREAMDRIFT_KAFKA_BOOTSTRAP"],
            redis_url=env["STREAMDRIFT_REDIS_URL"],
            predictions_topic="p-up",
            labels_topic="l-up",
            alerts_topic="a-up",
        )
        ensure_topics(settings, partitions=1)  # the broker answers the Kafka protocol
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    redis_address = env["STREAMDRIFT_REDIS_URL"].split("//")[1].split("/")[0]
    assert _closed(env["STREAMDRIFT_KAFKA_BOOTSTRAP"]) and _closed(redis_address)

    proc, env = _up(data)  # the same folder: what Redis held is still there
    try:
        r = redis.Redis.from_url(env["STREAMDRIFT_REDIS_URL"])
        assert r.get("sd-up-test") == b"kept"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_up_names_a_taken_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "streamdrift", "up", "--redis-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode != 0
    assert f"port {port} is taken" in res.stderr and "--redis-port" in res.stderr
    assert "Traceback" not in res.stderr
