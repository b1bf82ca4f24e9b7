"""Evaluation: turn touched windows into alert episodes, one evaluator per model.

Runs inside any worker, after its batch is committed. A Redis lease makes it one
evaluator at a time per model; dirty marks in Redis (set by every apply) say which
windows changed since the last evaluation, so a window touched by a worker that died is
still evaluated by whichever worker comes next. Each evaluation loads the model's
episodes, advances them with what the windows show (`conditions`, `episodes`), and
commits the new episodes together with the claims of the alerts raised, atomically;
only then are the alerts published.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import orjson
from confluent_kafka import Producer

from streamdrift.alerts import condition_key, encode, freshness_alert
from streamdrift.baselines import read_baselines
from streamdrift.conditions import History, WindowConditions, window_conditions
from streamdrift.cumulative_monitor import watched_columns
from streamdrift.episodes import Observation, advance, excluded_windows, retire
from streamdrift.events import Alert
from streamdrift.join import id_horizon
from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.store import EpisodeState, Store
from streamdrift.store.schedule import RENEW_SECONDS
from streamdrift.telemetry import WorkerMetrics

log = logging.getLogger("streamdrift.evaluator")

#: A claimed alert not marked published after this long lost its publisher.
REPUBLISH_AFTER_SECONDS = 300.0  # well past the evaluation lease and a slow flush

FRESHNESS = "freshness:events"
#: a partition whose mark has not moved for this many `complete_after_idle_seconds` no
#: longer holds windows back (no traffic of the model there, or a topic created again)
IDLE_PARTITION = 10
#: the episodes whose windows the rolling and seasonal drift baselines leave out
DRIFT_KINDS = ("data_drift:", "prediction_drift:", "label_drift:", "multivariate_drift:")


class Evaluator:
    def __init__(
        self,
        store: Store,
        producer: Producer,
        alerts_topic: str,
        owner: str,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store = store
        self.producer = producer
        self.topic = alerts_topic
        self.owner = owner
        self.published = 0
        #: when the lease was taken or last renewed; none held: never renewed
        self._leased_at = float("inf")
        self.health = metrics.model_health if metrics is not None else None

    def evaluate(self, profile: ReferenceProfile, now: float | None = None) -> list[Alert]:
        """Evaluate the model's dirty windows (and those that were incomplete at the
        last evaluation) and its silence; returns the alerts newly published."""
        model = profile.model_id
        if not self.store.schedule.try_lock(model, self.owner):
            return []
        self._leased_at = time.monotonic()
        try:
            now = time.time() if now is None else now
            self._republish(model, now)
            marks = self.store.schedule.dirty(model)
            state = self.store.episodes.load(model)
            rev = str(profile.revision)
            if marks:
                seen = max(t for _, t in marks)
                state.last_apply = max(state.last_apply or seen, seen)
            touched_at = dict(state.pending)
            dirty: set[int] = set()
            for mark, at in marks:
                rev_, _, start = mark.partition(":")
                if rev_ == rev:
                    dirty.add(int(start))
                    touched_at[int(start)] = max(touched_at.get(int(start), at), at)
            all_starts = self.store.windows.starts(model, profile.revision)
            before = {k: e.to_json() for k, e in state.episodes.items()}
            raised, events, windows = self._advance(
                profile, state, touched_at, dirty, all_starts, now
            )
            self._keep_lease(model)
            changed = {k for k, e in state.episodes.items() if before.get(k) != e.to_json()}
            forget = self._expired(profile, state, now)
            payloads = {a.alert_id: encode(a) for a in [*raised, *events]}
            fresh = self.store.episodes.commit(
                model, self.owner, list(payloads.items()), state, changed - forget, forget, now
            )
            new = [a for a in [*raised, *events] if a.alert_id in fresh]
            sent = self._publish(
                model, [payloads[a.alert_id] for a in new], [a.alert_id for a in new]
            )
            self.store.schedule.clear(model, marks)
            self.store.records.sweep(model, id_horizon(profile), now)
            cfg = profile.config
            self.store.alerts.prune(
                model, now - cfg.retention_seconds - 2 * cfg.window_seconds, now
            )
            if self.health is not None:  # the latest complete window, as gauges
                self.health.observe_latest(
                    self.store.windows, profile, all_starts, windows, now, len(state.open())
                )
            return [a for a in new if a.alert_id in sent]
        finally:
            self._leased_at = float("inf")
            self.store.schedule.unlock(model, self.owner)

    def _keep_lease(self, model: str) -> None:
        """Renew the evaluation lease every RENEW_SECONDS of work (`store.schedule`)."""
        if time.monotonic() - self._leased_at > RENEW_SECONDS:
            self.store.schedule.renew(model, self.owner)
            self._leased_at = time.monotonic()

    def _advance(
        self,
        profile: ReferenceProfile,
        state: EpisodeState,
        touched_at: dict[int, float],
        dirty: set[int],
        all_starts: list[int],
        now: float,
    ) -> tuple[list[Alert], list[Alert], list[WindowSketch]]:
        """The episodes' transitions from the windows touched (dirty, or waiting to be
        complete: `touched_at`, when each was last written to) and from the model's
        silence; the alerts outside episodes (single outlying events); the windows
        read."""
        cfg = profile.config
        width = cfg.window_seconds
        latest = all_starts[-1] if all_starts else None
        quiet = cfg.episodes.complete_after_idle_seconds
        low, moving = self.store.watermarks.low(profile.model_id, now, IDLE_PARTITION * quiet)

        def quiet_now(start: int) -> bool:
            return now - touched_at.get(start, now) >= quiet

        def complete(start: int) -> bool:
            """Every partition still moving has passed the window's end in event time
            (read unevenly, a window with a successor can still be filling from a
            partition that lags behind); or, with no partition moving (the stream
            stopped, or no marks yet), the window is over and not written to lately."""
            if low is not None and start + width <= low:
                return True
            over = (latest is not None and start < latest) or start + width <= now
            return not moving and over and quiet_now(start)

        def ready(start: int) -> bool:
            return complete(start) and quiet_now(start)

        raised = retire(state.episodes, profile.revision, width, now)
        champion = self.store.profiles.champion(profile.model_id)
        observations: list[Observation] = []
        events: list[Alert] = []
        # a window not written to since its last evaluation has nothing new to say until
        # it is complete and quiet (labels no longer joining): it waits without being read
        pending = {s: t for s, t in touched_at.items() if s not in dirty and not ready(s)}
        windows = self.store.windows.read(
            profile, sorted(set(touched_at) - set(pending)), slices=True
        )
        history = self._history_reader(profile, windows, all_starts, state)
        # a lasting drift must not become its own rolling or seasonal baseline
        excluded = set().union(
            *(excluded_windows(state.episodes, kind, width) for kind in DRIFT_KINDS)
        )
        baselines = read_baselines(
            partial(self.store.windows.read, profile),
            cfg,
            [w.start for w in windows],
            all_starts,
            excluded,
            known=windows,
        )
        for window in windows:
            self._keep_lease(profile.model_id)
            closed = complete(window.start)
            if not ready(window.start):
                pending[window.start] = touched_at[window.start]
            found = window_conditions(
                profile,
                window,
                history(window.start),
                now,
                closed=closed,
                followed=latest is not None and window.start < latest,
                baselines=baselines[window.start],
                quiet=quiet_now(window.start),
                champion=champion,
            )
            observations += self._observations(state, found, closed)
            events += found.events
        state.pending = pending
        observations += self._silence(profile, state, now)
        raised += advance(
            state.episodes,
            observations,
            model=profile.model_id,
            revision=profile.revision,
            width=width,
            resolve_after=cfg.episodes.resolve_after_windows,
            now=now,
        )
        return raised, events, windows

    @staticmethod
    def _observations(
        state: EpisodeState, found: WindowConditions, closed: bool
    ) -> list[Observation]:
        """Present conditions, and the open episodes' conditions checked and absent."""
        out = [
            Observation(condition_key(a), found.window, a, closed, magnitude)
            for a, magnitude in found.present
        ]
        present = {o.key for o in out}
        for ep in state.episodes.values():
            if ep.open and ep.key not in present and found.covers(ep.key):
                out.append(Observation(ep.key, found.window, None, closed))
        return out

    def _silence(
        self, profile: ReferenceProfile, state: EpisodeState, now: float
    ) -> list[Observation]:
        """The model has sent nothing for its silence allowance: a freshness condition,
        open until anything arrives again (then resolved at once)."""
        silence = profile.config.silence_after()
        if silence is None or state.last_apply is None:
            return []
        width = profile.config.window_seconds
        window = int(state.last_apply // width * width)
        if now - state.last_apply >= silence:
            alert = freshness_alert(profile, state.last_apply, silence, now)
            return [Observation(FRESHNESS, window, alert, True, now - state.last_apply)]
        ep = state.episodes.get(FRESHNESS)
        if ep is not None and ep.open:
            # traffic is back: the window it arrived in ends the silence at once
            return [Observation(FRESHNESS, max(window, ep.last + width), None, True, 0.0, 1)]
        return []

    def _history_reader(
        self,
        profile: ReferenceProfile,
        windows: list,
        all_starts: list[int],
        state: EpisodeState,
    ):
        """One read of the counts and performance of every earlier window the
        evaluated windows are judged against; then a `History` per window."""
        cfg = profile.config
        width = cfg.window_seconds
        if not windows:
            return lambda _start: History()
        first = min(w.start for w in windows)
        depth = (
            max(
                cfg.performance.detector_windows,
                cfg.volume.history_windows,
                cfg.drift.cumulative.windows,
            )
            * width
        )
        season = cfg.volume.season_seconds or 0
        seasonal = {
            w.start - k * season
            for w in windows
            for k in range(1, cfg.volume.seasons + 1)
            if season
        }
        known = set(all_starts)
        wanted = sorted(({s for s in all_starts if first - depth <= s} | seasonal) & known)
        columns = watched_columns(profile)
        read = {w.start: w for w in self.store.windows.read_performance(profile, wanted, columns)}
        excluded = excluded_windows(state.episodes, "volume:", width)
        earliest = all_starts[0] if all_starts else first

        def history(start: int) -> History:
            recent = [read[s] for s in sorted(read) if s < start and start - s <= depth]
            rolling = [
                read[s].count if s in read else 0
                for s in range(start - width, max(earliest, start - depth) - 1, -width)
                if s not in excluded
            ][: cfg.volume.history_windows]
            season_counts = [
                read[s].count
                for s in (start - k * season for k in range(1, cfg.volume.seasons + 1))
                if season and s in read and s not in excluded
            ]
            return History(recent=recent, rolling_counts=rolling, seasonal_counts=season_counts)

        return history

    @staticmethod
    def _expired(profile: ReferenceProfile, state: EpisodeState, now: float) -> set[str]:
        """Resolved episodes older than the windows' retention: nothing can reopen
        them any more, and the hash would otherwise grow with every episode."""
        horizon = now - profile.config.retention_seconds
        return {
            k
            for k, e in state.episodes.items()
            if not e.open and e.resolved_at is not None and e.resolved_at < horizon
        }

    def _republish(self, model: str, now: float) -> None:
        stale = self.store.alerts.unpublished(model, now - REPUBLISH_AFTER_SECONDS)
        if stale:
            ids = [orjson.loads(a)["alert_id"] for a in stale]
            log.warning(
                "re-sending %d alert(s) of %s claimed by a worker that died", len(ids), model
            )
            self._publish(model, stale, ids)

    def _publish(self, model: str, payloads: list[bytes], ids: list[str]) -> set[str]:
        """Produce and wait for the broker's acknowledgement; only acknowledged alerts are
        marked published, the others stay claimed and are re-sent later."""
        if not payloads:
            return set()
        delivered: set[str] = set()

        def on_delivery(aid: str, err: object, _msg: object) -> None:
            if err is None:
                delivered.add(aid)
            else:
                log.error("alert %s not delivered: %s", aid, err)

        for aid, payload in zip(ids, payloads, strict=True):
            self.producer.produce(
                self.topic,
                key=model.encode(),
                value=payload,
                headers=[("alert_id", aid.encode())],
                on_delivery=partial(on_delivery, aid),
            )
        self.producer.flush(30)
        self.store.alerts.mark_published(model, sorted(delivered), time.time())
        self.published += len(delivered)
        return delivered
