"""Whether Redis still holds what this worker counted into.

Redis can lose its state whole (restarted empty, flushed; a cluster shard emptied) or in
part (acknowledged writes lost). The guard holds what the worker saw of it — the state
marker, the registered models and their profiles, the server's run id — and raises
`StateLost` when Redis no longer matches it, so the worker stops instead of counting
into a Redis that forgot what it counted. A lower fence (writes lost) is the
`FenceBook`'s to find; a new run id (a restart) is reported for the worker to re-read.
"""

from __future__ import annotations

import logging

import redis

from streamdrift.faults import EvictingRedis, StateLost, Waiting
from streamdrift.positions import FenceBook, StateRolledBack
from streamdrift.profile import ReferenceProfile
from streamdrift.store import ModelHead, Store
from streamdrift.store.client import SAFE_POLICY, Fault, eviction_policies

log = logging.getLogger("streamdrift.worker")


class StateGuard:
    def __init__(self, store: Store, book: FenceBook, allow_eviction: bool = False) -> None:
        self.store = store
        self.book = book
        self.allow_eviction = allow_eviction
        #: the state marker this worker counts under
        self.epoch: str | None = None
        #: the profiles this worker counted with: a model known here and gone from Redis
        #: is lost state, not an unregistered model
        self.profiles: dict[str, ReferenceProfile] = {}
        #: the model registry as last read
        self.registered: set[str] = set()
        self.run_id: str | None = None

    def start(self) -> None:
        """Take Redis's state as it is at start: its marker (written now for state from
        before markers existed), its registry, its run id. Nothing registered: wait."""
        self.store.check_eviction_policy(self.allow_eviction)
        models = self.store.profiles.models()
        epoch = self.store.profiles.epoch()
        if epoch is None:
            if not models:
                raise Waiting(
                    Fault(
                        "nothing_registered",
                        "no model is registered",
                        "run streamdrift register MODEL --reference FILE",
                    )
                )
            epoch = self.store.profiles.ensure_epoch()
        self.epoch = epoch
        self.registered = set(models)
        self.run_id = self.current_run_id()

    def check_policy(self) -> None:
        """An evicting maxmemory-policy set at run time is waited out until it is undone."""
        if self.allow_eviction:
            return
        policies = eviction_policies(self.store.redis).values()
        evicting = {p for p in policies if p != SAFE_POLICY}
        if evicting:
            raise EvictingRedis(f"maxmemory-policy {', '.join(sorted(evicting))}")

    def check_marker(self, adopt: bool = False) -> None:
        """The state marker is the one this worker started with, and every model it knew
        is registered with a profile. With `adopt` (a probe while paused), a new marker
        with every one of those models registered again is Redis's new state: the guard
        takes it, and the worker reads everything again."""
        epoch = self.store.profiles.epoch()
        self.registered = set(self.store.profiles.models())
        known = sorted(self.profiles)
        _, heads = self.store.fences.heads(known)
        missing = [m for m in known if m not in self.registered or heads[m].revision is None]
        if epoch is None:
            raise StateLost("its state marker is gone (restarted empty, or flushed)", missing)
        if epoch != self.epoch:
            if not adopt:
                raise StateLost("its state marker changed (emptied, then registered again)")
            if missing:
                raise StateLost(f"models {', '.join(missing)} are not registered again", missing)
            log.warning("redis holds new state (marker %s, was %s)", epoch, self.epoch)
            self.epoch = epoch
            self.book.clear()
            self.profiles.clear()
            return
        if missing:
            raise StateLost(f"models {', '.join(missing)} have no profile any more", missing)

    def check_heads(self, epoch: str | None, heads: dict[str, ModelHead]) -> None:
        """What a batch read: the same state marker, every model known still registered,
        no fence below what this worker saw."""
        if epoch != self.epoch:
            raise StateLost(
                "its state marker is gone" if epoch is None else "its state marker changed"
            )
        lost = sorted(
            m
            for m, h in heads.items()
            if h.revision is None and (m in self.profiles or m in self.registered)
        )
        if lost:
            raise StateLost(f"models {', '.join(lost)} have no profile any more", lost)
        regressions = [r for m, h in heads.items() for r in self.book.check(m, h.offsets)]
        if regressions:
            raise StateRolledBack(regressions)

    def profile(self, model: str, revision: int | None) -> ReferenceProfile | None:
        """The model's profile at `revision` (cached); None for a model never registered
        (no revision)."""
        if revision is None:
            return None
        cached = self.profiles.get(model)
        if cached is None or cached.revision != revision:
            loaded = self.store.profiles.load(model)
            if loaded is None:
                if cached is not None or model in self.registered:
                    raise StateLost(f"model {model} has no profile any more", [model])
                return None
            self.profiles[model] = cached = loaded
        return cached

    def current_run_id(self) -> str | None:
        """The Redis process's id: it changes with every restart or failover (one server;
        a cluster's nodes restart one by one, and the fences tell)."""
        if isinstance(self.store.redis, redis.Redis):
            return str(self.store.redis.info("server").get("run_id"))
        return None

    def restarted(self) -> bool:
        """Whether Redis restarted since the run id was last taken (and take it now)."""
        run_id = self.current_run_id()
        changed = run_id != self.run_id
        self.run_id = run_id
        return changed
