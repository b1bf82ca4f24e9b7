"""Real redis-server processes that tests can kill, freeze, restart and roll back, for fault
injection under running streamdrift workers.

Mocks cannot say what a real Redis keeps after SIGKILL, what an RDB restore forgets or how
a cluster answers mid-migration; these classes drive real servers instead. Each server
lives in its own directory and keeps one loopback port across restarts, so clients
configured with its URL reconnect to the same address after every fault.

`RedisNode` is one standalone server; `RedisCluster` is a three-master Redis Cluster made
of `RedisNode`s, with exact single-slot migration for resharding while clients write.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Self

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from streamdrift import embedded

Persistence = Literal["none", "rdb", "aof-everysec", "aof-always"]
Address = tuple[str, int]

HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
DBFILENAME = "dump.rdb"
AOF_DIR = "appendonlydir"  # Redis 7's default `appenddirname`
READY_TIMEOUT = 30.0


class RedisControlError(RuntimeError):
    """A server did not reach the state the harness was asked for (did not start, did not
    become ready, a cluster command failed); the message carries the server's log tail."""


# ---------------------------------------------------------------------------------------
# Ports


_taken_ports: set[int] = set()
_ports_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def stable_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    A restarted server must bind its old port again. While it is down, a port from the
    ephemeral range can be handed to some client's outgoing connection, and the restart
    then fails with EADDRINUSE; ports below that range are never picked for connect().
    Falls back to `embedded.free_port()` when nothing below the range is free."""
    low, _ = _ephemeral_range()
    with _ports_lock:
        for _ in range(200):
            port = random.randint(20000, max(20001, low - 1))
            if port in _taken_ports:
                continue
            with socket.socket() as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    continue
            _taken_ports.add(port)
            return port
        port = embedded.free_port()
        _taken_ports.add(port)
        return port


# ---------------------------------------------------------------------------------------
# Standalone server


@dataclass(frozen=True)
class Snapshot:
    """An RDB file copied aside right after `SAVE`: the dataset of that moment, to restart
    from later with `RedisNode.restart_from_snapshot`."""

    path: Path
    taken_at: float


@dataclass(frozen=True)
class AofCut:
    """What `RedisNode.restart_losing_aof_tail` removed from the newest INCR file of the
    multi-part AOF. A command is one top-level AOF entry; a MULTI…EXEC block counts as one,
    since the harness never cuts inside a transaction."""

    file: Path
    bytes_before: int
    bytes_after: int
    commands_before: int
    commands_after: int

    @property
    def bytes_lost(self) -> int:
        return self.bytes_before - self.bytes_after

    @property
    def commands_lost(self) -> int:
        return self.commands_before - self.commands_after


def _parse_aof(data: bytes) -> tuple[list[int], int]:
    """Command boundaries of an AOF (RESP arrays, plus `#…` annotation lines).

    Returns the end offsets of the complete top-level entries, in order (a MULTI…EXEC block
    is one entry, ending after its EXEC), and the number of bytes that parse: a torn last
    write or an unterminated MULTI is left out, as Redis itself would truncate it."""
    ends: list[int] = []
    pos, n = 0, len(data)
    multi_open = False
    valid = 0
    while pos < n:
        if data[pos : pos + 1] == b"#":  # annotation, e.g. aof-timestamp-enabled
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            pos = nl + 1
            if not multi_open:
                ends.append(pos)
                valid = pos
            continue
        if data[pos : pos + 1] != b"*":
            break
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            break
        try:
            argc = int(data[pos + 1 : nl])
        except ValueError:
            break
        p = nl + 2
        name = b""
        complete = True
        for i in range(argc):
            if data[p : p + 1] != b"$":
                complete = False
                break
            nl = data.find(b"\r\n", p)
            if nl < 0:
                complete = False
                break
            try:
                size = int(data[p + 1 : nl])
            except ValueError:
                complete = False
                break
            start, end = nl + 2, nl + 2 + size
            if end + 2 > n or data[end : end + 2] != b"\r\n":
                complete = False
                break
            if i == 0:
                name = data[start:end].upper()
            p = end + 2
        if not complete:
            break
        pos = p
        if name == b"MULTI":
            multi_open = True
        elif name == b"EXEC":
            multi_open = False
        if not multi_open:
            ends.append(pos)
            valid = pos
    return ends, valid


class RedisNode:
    """One redis-server on a fixed loopback port, with the faults a deployment meets: a
    crash (SIGKILL), a stall (SIGSTOP), a restart from an older RDB, a lost AOF tail, an
    empty restart.

    `persistence` picks what survives `restart()`: "none" (nothing), "rdb" (the last RDB
    save; `rdb_save` sets the automatic save points, `snapshot()` saves now), "aof-everysec"
    / "aof-always" (the append-only file, multi-part in Redis 7, with an RDB preamble).

    "aof-always" keeps every acknowledged write through SIGKILL. "aof-everysec" usually
    does too, but not always: while a background fsync is running, Redis 7.0 holds the AOF
    write(2) back for up to 2 s and still answers clients, so a SIGKILL then loses writes
    that were acknowledged. Tests on everysec must expect a prefix, not everything."""

    def __init__(
        self,
        workdir: Path,
        *,
        persistence: Persistence = "aof-everysec",
        maxmemory: int | None = None,
        maxmemory_policy: str = "noeviction",
        extra_args: list[str] | tuple[str, ...] = (),
        port: int | None = None,
        rdb_save: str = "3600 1 300 100 60 10000",
    ) -> None:
        if persistence not in ("none", "rdb", "aof-everysec", "aof-always"):
            raise ValueError(f"unknown persistence mode {persistence!r}")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.persistence: Persistence = persistence
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        self.extra_args = list(extra_args)
        self.rdb_save = rdb_save
        self.port = port or stable_port()
        self.log_path = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._frozen = False
        self._snapshots = 0

    # -- addresses and clients ----------------------------------------------------------

    @property
    def address(self) -> Address:
        return (HOST, self.port)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """The process exists (it may be frozen)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def frozen(self) -> bool:
        return self._frozen

    def client(self, **overrides: Any) -> redis.Redis:
        """A redis-py client with short timeouts and no retries, so a fault shows up at
        once as an error instead of being hidden by redis-py's default of ten retries with
        backoff. Keyword arguments override the defaults."""
        kwargs: dict[str, Any] = {
            "host": HOST,
            "port": self.port,
            "db": 0,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 1.0,
            "retry": Retry(NoBackoff(), 0),
        }
        kwargs.update(overrides)
        return redis.Redis(**kwargs)

    def info(self, section: str | None = None) -> dict[str, Any]:
        with self.client() as c:
            return c.info(section) if section else c.info()

    # -- process control ----------------------------------------------------------------

    def _args(self, appendonly: bool) -> list[str]:
        aof = self.persistence.startswith("aof")
        args = [
            embedded.redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--dir",
            str(self.dir),
            "--dbfilename",
            DBFILENAME,
            "--appendfilename",
            "appendonly.aof",
            "--daemonize",
            "no",
            "--save",
            self.rdb_save if self.persistence == "rdb" else "",
            "--appendonly",
            "yes" if aof and appendonly else "no",
            "--appendfsync",
            "always" if self.persistence == "aof-always" else "everysec",
            "--maxmemory-policy",
            self.maxmemory_policy,
            "--enable-debug-command",
            "local",
        ]
        if self.maxmemory is not None:
            args += ["--maxmemory", str(self.maxmemory)]
        return args + self.extra_args

    def start(self) -> Self:
        """Start the server on its port and return once it answers PING and has finished
        loading its data. In "none" mode every start is empty: data files left by
        `snapshot()` or `stop(save=True)` are removed first."""
        if self.running:
            raise RedisControlError(f"redis-server on port {self.port} is already running")
        if self.persistence == "none":
            self._wipe()
        return self._start(appendonly=True)

    def _start(self, *, appendonly: bool) -> Self:
        """Start with whatever is on disk; `appendonly=False` keeps AOF off this once."""
        if self.running:
            raise RedisControlError(f"redis-server on port {self.port} is already running")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        self._proc = subprocess.Popen(
            self._args(appendonly),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
        )
        self._frozen = False
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until PING answers and INFO says the dataset is loaded (a big RDB or AOF
        answers LOADING for a while after the port opens)."""
        deadline = time.monotonic() + timeout
        with self.client(socket_timeout=1.0, socket_connect_timeout=0.5) as c:
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    code = self._proc.returncode if self._proc is not None else None
                    raise RedisControlError(
                        f"redis-server on port {self.port} exited with code {code}\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                    if c.ping() and not int(c.info("persistence").get("loading", 0)):
                        return
                if time.monotonic() > deadline:
                    raise RedisControlError(
                        f"redis-server on port {self.port} not ready after {timeout} s\n"
                        + self.log_tail()
                    )
                time.sleep(0.02)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._frozen = False

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill: nothing is flushed that was not already
        written (what was written survives in the page cache, fsynced or not). A no-op when
        the server is not running."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self, *, save: bool = False) -> None:
        """Shut the server down: SHUTDOWN NOSAVE (or SAVE), falling back to SIGTERM and then
        SIGKILL. A frozen server is thawed first so that it can hear the request. An AOF
        is flushed either way; `save=True` also writes the RDB, for a clean stop of an
        "rdb" node. A no-op when the server is not running."""
        if not self.running:
            self._reap()
            return
        assert self._proc is not None
        if self._frozen:
            self.thaw()
        with contextlib.suppress(redis.RedisError), self.client(socket_timeout=5.0) as c:
            c.shutdown(save=save, nosave=not save)
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap()

    def freeze(self) -> None:
        """SIGSTOP: the port stays open and the kernel still accepts connections, but
        nothing answers - a stalled server, a long GC-like pause or a fork gone wrong."""
        if not self.running or self._proc is None:
            raise RedisControlError(f"redis-server on port {self.port} is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT: the server resumes and answers whatever queued up meanwhile."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self._frozen = False

    # -- data on disk -------------------------------------------------------------------

    @property
    def aof_dir(self) -> Path:
        return self.dir / AOF_DIR

    def _wipe(self) -> None:
        (self.dir / DBFILENAME).unlink(missing_ok=True)
        shutil.rmtree(self.aof_dir, ignore_errors=True)
        for temp in self.dir.glob("temp-*.rdb"):
            temp.unlink(missing_ok=True)

    def snapshot(self) -> Snapshot:
        """`SAVE` now (blocking, so the file is the dataset of this moment) and copy the
        RDB aside. In "rdb" mode this is also what a later `restart()` finds on disk."""
        with self.client(socket_timeout=60.0) as c:
            c.save()
        self._snapshots += 1
        target = self.dir / "snapshots" / f"snapshot-{self._snapshots}.rdb"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(self.dir / DBFILENAME, target)
        return Snapshot(target, time.time())

    def restart(self) -> None:
        """SIGKILL and start again with whatever is on disk (nothing in "none" mode)."""
        self.kill()
        self.start()

    def restart_empty(self) -> None:
        """SIGKILL, delete every data file, start empty: a node replaced by a blank one."""
        self.kill()
        self._wipe()
        self.start()

    def restart_from_snapshot(self, snapshot: Snapshot) -> None:
        """SIGKILL and come back with exactly the dataset of `snapshot`, every later write
        lost: a restart from an older RDB, or a replica promoted after asynchronous
        replication. The RDB is loaded with AOF off (an AOF would win over it); an AOF node
        then turns AOF back on at runtime, which rewrites the AOF from the loaded data, so
        later restarts keep it."""
        self.kill()
        self._wipe()
        shutil.copyfile(snapshot.path, self.dir / DBFILENAME)
        self._start(appendonly=False)
        if self.persistence.startswith("aof"):
            with self.client() as c:
                c.config_set("appendonly", "yes")
            self._wait_aof_rewritten()

    def _wait_aof_rewritten(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            p = self.info("persistence")
            done = (
                not int(p.get("aof_rewrite_in_progress", 0))
                and not int(p.get("aof_rewrite_scheduled", 0))
                and self._manifest_path().exists()
            )
            if done:
                if p.get("aof_last_bgrewrite_status") != "ok":
                    raise RedisControlError(f"AOF rewrite failed\n{self.log_tail()}")
                return
            if time.monotonic() > deadline:
                raise RedisControlError(f"AOF rewrite not done after {timeout} s")
            time.sleep(0.02)

    def _manifest_path(self) -> Path:
        return self.aof_dir / "appendonly.aof.manifest"

    def aof_incr_file(self) -> Path:
        """The INCR file that receives new writes: the last `type i` entry of the manifest
        (earlier INCR files, if any, end at an AOF rewrite that has not finished)."""
        incr: Path | None = None
        for line in self._manifest_path().read_text().splitlines():
            fields = line.split()
            entry = dict(zip(fields[::2], fields[1::2], strict=False))
            if entry.get("type") == "i":
                incr = self.aof_dir / entry["file"]
        if incr is None:
            raise RedisControlError(f"no INCR file in {self._manifest_path()}")
        return incr

    def restart_losing_aof_tail(
        self, amount: float | int | None = None, *, commands: int | None = None
    ) -> AofCut:
        """SIGKILL, cut the end off the AOF, restart: the writes of the last moments before
        a crash that never reached the disk. The server comes back with a consistent prefix
        of the writes.

        `amount` is a fraction (a float in (0, 1]) or a number of bytes (an int) of the
        newest INCR file to lose; `commands` instead names how many trailing commands to
        lose. The cut lands on the command boundary at or before that point (never inside a
        MULTI…EXEC), so Redis loads the file without the aof-load-truncated repair. The base
        RDB and older INCR files are kept: at most the newest INCR file is emptied.

        The cut is measured on the file as SIGKILL left it; under "aof-everysec" that may
        already lack the last acknowledged writes (see the class docstring), and the
        server then holds exactly the `commands_after` entries kept."""
        if not self.persistence.startswith("aof"):
            raise RedisControlError(f"node has persistence {self.persistence!r}, not AOF")
        if (amount is None) == (commands is None):
            raise ValueError("give either amount or commands")
        self.kill()
        incr = self.aof_incr_file()
        data = incr.read_bytes()
        ends, valid = _parse_aof(data)
        bounds = [0, *ends]
        if commands is not None:
            if commands < 0:
                raise ValueError("commands must be >= 0")
            cut = bounds[max(0, len(ends) - commands)]
        else:
            assert amount is not None
            if isinstance(amount, float):
                if not 0 < amount <= 1:
                    raise ValueError("a fractional amount must be in (0, 1]")
                lose = int(len(data) * amount + 0.5)
            else:
                if amount < 0:
                    raise ValueError("amount must be >= 0")
                lose = amount
            limit = min(valid, len(data) - lose)
            cut = max(b for b in bounds if b <= limit) if limit >= 0 else 0
        with incr.open("r+b") as f:
            f.truncate(cut)
            os.fsync(f.fileno())
        self.start()
        return AofCut(
            file=incr,
            bytes_before=len(data),
            bytes_after=cut,
            commands_before=len(ends),
            commands_after=bounds.index(cut),
        )

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "running" if self.running else "stopped"
        return f"RedisNode({self.url}, {self.persistence}, {state})"


# ---------------------------------------------------------------------------------------
# Cluster


@dataclass(frozen=True)
class SlotMove:
    """The outcome of `RedisCluster.move_slot`."""

    slot: int
    source: Address
    target: Address
    keys_moved: int
    batches: int
    seconds: float


def _parse_slots(fields: list[str]) -> tuple[set[int], list[str]]:
    """Slots a CLUSTER NODES line assigns (ranges and singles) and the open-slot marks
    (`[slot->-id]` migrating, `[slot-<-id]` importing)."""
    owned: set[int] = set()
    open_marks: list[str] = []
    for f in fields:
        if f.startswith("["):
            open_marks.append(f)
        elif "-" in f:
            a, b = f.split("-")
            owned.update(range(int(a), int(b) + 1))
        else:
            owned.add(int(f))
    return owned, open_marks


class RedisCluster:
    """A real Redis Cluster of `masters` masters without replicas, each a `RedisNode` on a
    fixed port (its cluster bus on another free port, via `cluster-port`), formed with
    `redis-cli --cluster create`.

    Cluster nodes keep no data on disk ("none"), but `nodes.conf` survives their restarts,
    so a restarted node rejoins with its identity and slots and comes back empty."""

    def __init__(
        self,
        workdir: Path,
        *,
        masters: int = 3,
        node_timeout_ms: int = 5000,
        cli: str | None = None,
    ) -> None:
        self.dir = Path(workdir)
        self.cli = cli or shutil.which("redis-cli") or "redis-cli"
        self.node_timeout_ms = node_timeout_ms
        self.masters: list[RedisNode] = []
        for i in range(masters):
            port = stable_port()
            bus = stable_port()
            self.masters.append(
                RedisNode(
                    self.dir / f"node-{i}-{port}",
                    persistence="none",
                    port=port,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        str(node_timeout_ms),
                        "--cluster-port",
                        str(bus),
                    ],
                )
            )
        self._ids: dict[Address, str] = {}

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Start the servers, join them, assign the slots evenly, and wait until every node
        reports cluster_state:ok with the same slot map."""
        try:
            for node in self.masters:
                node.start()
            self._run_cli(
                "--cluster",
                "create",
                *(f"{h}:{p}" for h, p in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            )
            self.wait_consistent()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.masters:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RedisControlError(
                f"redis-cli {' '.join(args[:2])} failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
            )
        return done.stdout

    # -- addresses and clients ----------------------------------------------------------

    @property
    def nodes(self) -> list[Address]:
        return [n.address for n in self.masters]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.nodes)

    def node(self, address: Address) -> RedisNode:
        """The `RedisNode` at `address`, to kill, freeze or restart one master."""
        for n in self.masters:
            if n.address == tuple(address):
                return n
        raise KeyError(address)

    def client(self, **overrides: Any) -> redis.cluster.RedisCluster:
        """A cluster client that follows MOVED and ASK itself (redis-py retries TRYAGAIN a
        few times, then raises). Short timeouts; keyword arguments override them."""
        kwargs: dict[str, Any] = {
            "startup_nodes": [redis.cluster.ClusterNode(h, p) for h, p in self.nodes],
            "socket_timeout": 2.0,
            "socket_connect_timeout": 1.0,
        }
        kwargs.update(overrides)
        return redis.cluster.RedisCluster(**kwargs)

    def node_client(self, address: Address, **overrides: Any) -> redis.Redis:
        """A plain client of one master: no redirections followed, so it shows exactly
        which keys that node holds."""
        return self.node(address).client(**overrides)

    def node_id(self, address: Address) -> str:
        address = (address[0], int(address[1]))
        if address not in self._ids:
            with self.node_client(address) as c:
                self._ids[address] = _text(c.execute_command("CLUSTER", "MYID"))
        return self._ids[address]

    # -- slots --------------------------------------------------------------------------

    def _view(self, address: Address) -> list[tuple[str, Address, bool, set[int], list[str]]]:
        """One node's CLUSTER NODES: (id, address, is-myself, slots, open marks) per node."""
        with self.node_client(address) as c:
            text = _text(c.execute_command("CLUSTER", "NODES"))
        rows = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 8:
                continue
            host, _, rest = fields[1].partition(":")
            port = int(rest.split("@")[0])
            slots, marks = _parse_slots(fields[8:])
            rows.append((fields[0], (host, port), "myself" in fields[2], slots, marks))
        return rows

    def slots_of(self, address: Address) -> set[int]:
        """The slots `address` itself says it serves."""
        for _, _, me, slots, _ in self._view(address):
            if me:
                return slots
        raise RedisControlError(f"{address} does not list itself in CLUSTER NODES")

    def slot_of(self, key: str | bytes) -> int:
        with self.node_client(self.nodes[0]) as c:
            return int(c.execute_command("CLUSTER", "KEYSLOT", key))

    def owner_of_slot(self, slot: int) -> Address:
        """The master that serves `slot`, by the masters' own accounts of their slots."""
        for address in self.nodes:
            if slot in self.slots_of(address):
                return address
        raise RedisControlError(f"no master serves slot {slot}")

    def node_of_key(self, key: str | bytes) -> Address:
        return self.owner_of_slot(self.slot_of(key))

    def hash_tag_on(self, address: Address, prefix: str = "t") -> str:
        """A hash tag (`{…}` content) whose slot `address` serves: keys sharing it land on
        that master, for tests that need data on a chosen node."""
        return self.hash_tag_for_slots(self.slots_of(address), prefix)

    @staticmethod
    def hash_tag_for_slots(slots: set[int] | int, prefix: str = "t") -> str:
        """A hash tag whose slot is `slots` (or one of them), found by CRC16 locally."""
        wanted = {slots} if isinstance(slots, int) else slots
        for i in range(1_000_000):
            tag = f"{prefix}{i}"
            if key_slot(tag.encode()) in wanted:
                return tag
        raise RedisControlError(f"no hash tag with prefix {prefix!r} found for {slots}")

    def wait_consistent(self, timeout: float = 30.0) -> None:
        """Wait until every master says cluster_state:ok, no slot is open (migrating or
        importing), and all masters agree on which master serves every one of the 16384
        slots."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            last = self._inconsistency()
            if not last:
                return
            if time.monotonic() > deadline:
                raise RedisControlError(f"cluster not consistent after {timeout} s: {last}")
            time.sleep(0.05)

    def _inconsistency(self) -> str:
        maps: list[dict[int, Address]] = []
        for address in self.nodes:
            try:
                with self.node_client(address) as c:
                    state = _text(c.execute_command("CLUSTER", "INFO"))
                view = self._view(address)
            except redis.RedisError as e:
                return f"{address}: {e}"
            if "cluster_state:ok" not in state:
                return f"{address}: cluster_state not ok"
            slot_map: dict[int, Address] = {}
            for _, owner, me, slots, marks in view:
                if me and marks:
                    return f"{address}: open slots {marks}"
                for s in slots:
                    slot_map[s] = owner
            if len(slot_map) != CLUSTER_SLOTS:
                return f"{address}: sees {len(slot_map)} slots served"
            maps.append(slot_map)
        if any(m != maps[0] for m in maps[1:]):
            return "masters disagree on the slot map"
        return ""

    def move_slot(
        self,
        slot: int,
        to_node: Address,
        *,
        batch: int = 100,
        pause: float = 0.0,
        migrate_timeout_ms: int = 5000,
    ) -> SlotMove:
        """Move exactly one slot to `to_node` with the documented live procedure, while
        clients may keep reading and writing it:

        1. target: CLUSTER SETSLOT slot IMPORTING source-id
        2. source: CLUSTER SETSLOT slot MIGRATING target-id
        3. source: CLUSTER GETKEYSINSLOT + MIGRATE host port "" 0 timeout KEYS … per batch,
           until the slot is empty on the source (MIGRATE moves a batch atomically; the
           source answers ASK for keys it no longer has, multi-key commands over a split
           batch get TRYAGAIN)
        4. CLUSTER SETSLOT slot NODE target-id on the target, the source, then the others.

        `pause` sleeps between batches, holding the slot half-migrated for longer."""
        to_node = (to_node[0], int(to_node[1]))
        source = self.owner_of_slot(slot)
        started = time.monotonic()
        if source == to_node:
            return SlotMove(slot, source, to_node, 0, 0, 0.0)
        src_id, dst_id = self.node_id(source), self.node_id(to_node)
        moved = batches = 0
        with (
            self.node_client(source, socket_timeout=30.0) as src,
            self.node_client(to_node) as dst,
        ):
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while True:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                src.execute_command(
                    "MIGRATE", to_node[0], to_node[1], "", 0, migrate_timeout_ms, "KEYS", *keys
                )
                moved += len(keys)
                batches += 1
                if pause:
                    time.sleep(pause)
            dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        for other in self.nodes:
            if other not in (source, to_node):
                with self.node_client(other) as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        self.wait_consistent()
        return SlotMove(slot, source, to_node, moved, batches, time.monotonic() - started)

    def reshard(self, n_slots: int, from_node: Address, to_node: Address) -> list[int]:
        """Move `n_slots` slots with `redis-cli --cluster reshard` (the tool an operator
        would use); returns the slots that moved."""
        from_node = (from_node[0], int(from_node[1]))
        to_node = (to_node[0], int(to_node[1]))
        before = self.slots_of(from_node)
        self._run_cli(
            "--cluster",
            "reshard",
            f"{from_node[0]}:{from_node[1]}",
            "--cluster-from",
            self.node_id(from_node),
            "--cluster-to",
            self.node_id(to_node),
            "--cluster-slots",
            str(n_slots),
            "--cluster-yes",
        )
        self.wait_consistent()
        return sorted(before - self.slots_of(from_node))

    def check(self) -> str:
        """`redis-cli --cluster check`: raises unless it finds every slot covered and no
        open slot; returns its report."""
        h, p = self.nodes[0]
        out = self._run_cli("--cluster", "check", f"{h}:{p}")
        if "[OK] All 16384 slots covered" not in out or "[WARNING]" in out or "[ERR]" in out:
            raise RedisControlError(f"redis-cli --cluster check:\n{out}")
        return out

    def flushall(self) -> None:
        """Empty every master, for tests sharing one session cluster."""
        for address in self.nodes:
            with self.node_client(address) as c:
                c.flushall()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
