"""The fault-injection harness does what it says against real redis-server processes.

Later tests conclude "streamdrift survives losing X" from these operations; that is only
sound if each operation provably loses exactly X. So every operation is checked here
against the server's own answers: which keys exist after a restore, that an AOF cut leaves
a prefix, that a frozen server really stops answering, that a slot really moves while a
client writes to it."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
import redis
from redis.exceptions import OutOfMemoryError

from .redis_control import RedisCluster, RedisNode, _parse_aof

pytestmark = pytest.mark.integration


def keys_present(node: RedisNode) -> set[int]:
    """The numbers i of the `k:i` keys on the node, each checked to hold its own number."""
    with node.client(decode_responses=True) as c:
        found = {}
        for key in c.scan_iter("k:*", count=1000):
            found[int(key[2:])] = c.get(key)
    assert all(v == str(i) for i, v in found.items()), "a key holds a foreign value"
    return set(found)


def write_range(node: RedisNode, first: int, last: int) -> None:
    """SET k:i i for i in first..last, one command each (pipelined, not a transaction), so
    each write is one AOF entry in order."""
    with node.client() as c:
        pipe = c.pipeline(transaction=False)
        for i in range(first, last + 1):
            pipe.set(f"k:{i}", i)
        pipe.execute()


# -- standalone: persistence faults ------------------------------------------------------


def resp(*args: str) -> bytes:
    return f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)


def test_aof_cut_points_fall_between_whole_commands_never_inside_a_transaction():
    """The AOF tail cut relies on this parser for its boundaries: a cut inside a command
    would leave Redis to repair the file, a cut inside MULTI…EXEC would keep half a
    transaction."""
    entries = [
        resp("SELECT", "0"),
        resp("SET", "a", "1"),
        resp("MULTI") + resp("INCR", "a") + resp("INCR", "b") + resp("EXEC"),
        b"#TS:1790000000\r\n",
        resp("SET", "c", "x" * 300),
    ]
    data = b"".join(entries)
    ends = [sum(len(e) for e in entries[: i + 1]) for i in range(len(entries))]
    assert _parse_aof(data) == (ends, len(data))
    # a torn last write and an unterminated transaction are not boundaries
    assert _parse_aof(data[:-7]) == (ends[:-1], ends[-2])
    open_multi = data[: ends[1]] + resp("MULTI") + resp("INCR", "a")
    assert _parse_aof(open_multi) == (ends[:2], ends[1])


def test_restart_from_snapshot_forgets_every_later_write(redis_node):
    node = redis_node(persistence="aof-always")  # "always": the write after the restore stays
    url = node.url
    write_range(node, 1, 1000)
    snap = node.snapshot()
    write_range(node, 1001, 2000)

    node.restart_from_snapshot(snap)

    assert node.url == url
    assert keys_present(node) == set(range(1, 1001))
    # AOF is back on after the RDB load: a write now survives a crash, the restore too
    with node.client() as c:
        assert c.config_get("appendonly") == {"appendonly": "yes"}
        c.set("k:5000", 5000)
    node.restart()
    assert keys_present(node) == {*range(1, 1001), 5000}


@pytest.mark.parametrize("persistence", ["aof-always", "aof-everysec"])
def test_aof_tail_loss_leaves_a_strict_prefix_of_the_writes(redis_node, persistence):
    node = redis_node(persistence=persistence)
    write_range(node, 1, 2000)

    cut = node.restart_losing_aof_tail(0.25)

    survivors = keys_present(node)
    m = max(survivors)
    assert survivors == set(range(1, m + 1))  # a prefix ...
    assert 0 < m < 2000  # ... and a strict one
    assert m == cut.commands_after - 1  # exactly the SETs kept after the file's SELECT
    if persistence == "aof-always":  # every acknowledged write had reached the file
        assert m == 2000 - cut.commands_lost
    assert cut.bytes_lost >= 0.25 * cut.bytes_before
    assert "Truncating the AOF" not in node.log_tail(50)  # cut on a command boundary

    cut = node.restart_losing_aof_tail(commands=10)  # same file, ten more SETs gone
    assert cut.commands_lost == 10
    assert keys_present(node) == set(range(1, m - 9))
    with node.client() as c:
        assert c.set("k:9999", 9999)  # up and writable


def test_restart_keeps_what_each_persistence_mode_promises(redis_node):
    nodes = {p: redis_node(persistence=p) for p in ("none", "rdb", "aof-everysec", "aof-always")}
    for node in nodes.values():
        write_range(node, 1, 100)
        node.snapshot()  # in "rdb" mode the last save, in the others beside the point
        write_range(node, 101, 200)
        node.restart()
    assert keys_present(nodes["none"]) == set()
    assert keys_present(nodes["rdb"]) == set(range(1, 101))
    assert keys_present(nodes["aof-always"]) == set(range(1, 201))
    # everysec may lose acknowledged writes even to SIGKILL: while a background fsync
    # runs, Redis holds the AOF write back for up to 2 s. What survives is a prefix.
    survivors = keys_present(nodes["aof-everysec"])
    assert survivors == set(range(1, len(survivors) + 1))


def test_restart_empty_comes_back_on_the_same_port_without_data(redis_node):
    node = redis_node(persistence="aof-always")
    write_range(node, 1, 500)
    before = node.snapshot()  # data files on disk of every kind: RDB and AOF

    node.restart_empty()

    assert before.path.exists()  # snapshots are kept aside
    with redis.Redis.from_url(node.url) as c:
        assert c.dbsize() == 0
    node.restart()  # nothing left behind on disk either
    with node.client() as c:
        assert c.dbsize() == 0


def test_kill_refuses_connections_until_restart(redis_node):
    node = redis_node(persistence="aof-always")
    write_range(node, 1, 10)
    node.kill()
    assert not node.running
    with pytest.raises(redis.ConnectionError), node.client() as c:
        c.ping()
    node.restart()
    assert keys_present(node) == set(range(1, 11))


def test_stop_ends_a_frozen_server_and_a_clean_rdb_stop_keeps_everything(redis_node):
    node = redis_node(persistence="rdb")
    write_range(node, 1, 50)
    node.freeze()
    started = time.monotonic()
    node.stop(save=True)
    assert not node.running and time.monotonic() - started < 5
    node.start()
    assert keys_present(node) == set(range(1, 51))


# -- standalone: stalls and memory -------------------------------------------------------


def test_freeze_times_out_clients_and_thaw_answers_them(redis_node):
    node = redis_node(persistence="none")
    with node.client(socket_timeout=0.5) as c:
        c.set("x", 1)  # a pooled connection opened before the stall
        node.freeze()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            c.get("x")
        assert 0.4 < time.monotonic() - started < 2.0
        with pytest.raises(redis.TimeoutError), node.client(socket_timeout=0.5) as fresh:
            fresh.ping()  # the kernel still accepts connections; nothing answers
        node.thaw()
        assert c.get("x") == b"1"


def test_volatile_lru_evicts_keys_with_ttl_and_keeps_the_others(redis_node):
    node = redis_node(persistence="none", maxmemory=4 << 20, policy="volatile-lru")
    blob = b"x" * 1024
    with node.client() as c:
        pipe = c.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"keep:{i}", blob)
        pipe.execute()
        for i in range(6000):  # ~6 MB with TTL into a 4 MB server
            pipe.set(f"ttl:{i}", blob, ex=3600)
        pipe.execute()
        assert int(c.info("stats")["evicted_keys"]) > 0
        assert c.exists(*(f"keep:{i}" for i in range(500))) == 500
        assert c.exists(*(f"ttl:{i}" for i in range(6000))) < 6000


def test_noeviction_answers_oom_and_still_serves_reads_and_deletes(redis_node):
    node = redis_node(persistence="none", maxmemory=2 << 20, policy="noeviction")
    blob = b"x" * 1024
    with node.client() as c:
        written = 0
        with pytest.raises(OutOfMemoryError):
            for i in range(10_000):
                c.set(f"k:{i}", blob)
                written += 1
        assert 0 < written < 10_000
        assert c.get("k:0") == blob
        assert c.delete(*(f"k:{i}" for i in range(written))) == written
        assert c.set("k:0", blob)  # memory freed, writes accepted again


# -- cluster -----------------------------------------------------------------------------


def test_hash_tags_land_on_the_masters_that_serve_their_slots(redis_cluster: RedisCluster):
    tags = {node: redis_cluster.hash_tag_on(node, prefix="land") for node in redis_cluster.nodes}
    assert len(redis_cluster.nodes) == 3
    with redis_cluster.client() as rc:
        for tag in tags.values():
            for i in range(20):
                rc.set(f"{{{tag}}}:{i}", i)
    for node, tag in tags.items():
        assert redis_cluster.node_of_key(f"{{{tag}}}:0") == node
        slot = redis_cluster.slot_of(f"{{{tag}}}")
        for other in redis_cluster.nodes:  # plain clients: what each node itself holds
            with redis_cluster.node_client(other) as c:
                held = int(c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
            assert held == (20 if other == node else 0)
        with redis_cluster.node_client(node) as c:  # served there without a redirection
            assert c.get(f"{{{tag}}}:7") == b"7"


def test_move_slot_while_a_client_increments_its_keys(redis_cluster: RedisCluster):
    """5,000 hashes in one slot, moved in batches of 50 while a thread HINCRBYs them (and
    creates new ones) through redis-py's cluster client: every increment whose call
    returned is in the counters at the end, none twice, and the source really answered
    ASK to the writer during the move."""
    source = redis_cluster.nodes[0]
    target = redis_cluster.nodes[1]
    tag = redis_cluster.hash_tag_on(source, prefix="move")
    slot = redis_cluster.slot_of(f"{{{tag}}}")
    keys = [f"{{{tag}}}:{i}" for i in range(5000)]
    new_keys = [f"{{{tag}}}:new:{i}" for i in range(200)]
    with redis_cluster.node_client(source) as c:
        pipe = c.pipeline(transaction=False)
        for key in keys:
            pipe.hset(key, "n", 0)
        pipe.execute()
        c.config_resetstat()

    done: Counter[str] = Counter()  # written by the writer only; read after join
    total = [0]  # increments so far, readable while the writer runs
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(7)
        with redis_cluster.client() as rc:
            while not stop.is_set():
                key = rng.choice(new_keys) if rng.random() < 0.1 else rng.choice(keys)
                try:
                    rc.hincrby(key, "n", 1)
                except redis.RedisError as e:  # not counted: it may or may not have applied
                    errors.append(e)
                else:
                    done[key] += 1
                    total[0] += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.2)
    before_move = total[0]
    created_at_start = {k for k in new_keys if done[k]}  # live on the source, moved too
    move = redis_cluster.move_slot(slot, target, batch=50, pause=0.005)
    during_move = total[0] - before_move
    time.sleep(0.3)  # the writer meets MOVED with its stale slot map
    stop.set()
    thread.join(10)

    assert not thread.is_alive()
    assert errors == []
    assert move.keys_moved >= 5000 + len(created_at_start)
    assert (move.source, move.target) == (source, target)
    assert during_move > 100
    assert redis_cluster.owner_of_slot(slot) == target
    with redis_cluster.node_client(target) as c:
        created = sum(1 for k in new_keys if done[k])
        assert int(c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == 5000 + created
    with redis_cluster.node_client(source) as c:
        assert int(c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == 0
        assert int(c.info("errorstats").get("errorstat_ASK", {}).get("count", 0)) > 0
    with redis_cluster.client() as rc:
        pipe = rc.pipeline()
        for key in keys + new_keys:
            pipe.hget(key, "n")
        values = dict(zip(keys + new_keys, pipe.execute(), strict=True))
    for key in keys:
        assert int(values[key]) == done[key], key
    for key in new_keys:
        assert (int(values[key]) if values[key] is not None else 0) == done[key], key
    redis_cluster.check()


def test_reshard_with_redis_cli_moves_slots_and_their_keys(redis_cluster: RedisCluster):
    source, target = redis_cluster.nodes[2], redis_cluster.nodes[0]
    before_target = redis_cluster.slots_of(target)
    lowest = min(redis_cluster.slots_of(source))
    tag = redis_cluster.hash_tag_for_slots(lowest, prefix="r")  # redis-cli moves low slots
    with redis_cluster.client() as rc:
        rc.set(f"{{{tag}}}:v", "kept")

    moved = redis_cluster.reshard(20, source, target)

    assert len(moved) == 20 and lowest in moved
    assert redis_cluster.slots_of(target) == before_target | set(moved)
    assert redis_cluster.node_of_key(f"{{{tag}}}:v") == target
    with redis_cluster.node_client(target) as c:
        assert c.get(f"{{{tag}}}:v") == b"kept"
    redis_cluster.check()
