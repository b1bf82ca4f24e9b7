"""Alert episodes in Redis: what each condition of a model is doing (open or resolved),
which windows wait to be complete, and when the model last sent anything.

Loaded at the start of an evaluation and committed at its end together with the alerts
the evaluation raised (`commit_episodes.lua`), so episodes and alerts never disagree,
whichever worker evaluates next and however the last one ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from streamdrift.episodes import Episode
from streamdrift.store.client import RedisClient, lua, text
from streamdrift.store.keys import ModelKeys

META = "__meta__"


class LeaseLost(Exception):
    """The evaluation lease expired and another evaluator may own the model now: this
    evaluation's results are dropped, the next one redoes them."""


@dataclass(slots=True)
class EpisodeState:
    episodes: dict[str, Episode] = field(default_factory=dict)
    #: windows evaluated before they were complete -> when they were last applied to:
    #: evaluated again until they are, so their absences count towards resolving
    pending: dict[int, float] = field(default_factory=dict)
    #: wall time of the latest apply seen in the dirty marks (the model's last traffic)
    last_apply: float | None = None

    def open(self) -> list[Episode]:
        return sorted((e for e in self.episodes.values() if e.open), key=lambda e: (e.since, e.key))


class Episodes:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._commit = client.register_script(lua("commit_episodes"))

    def load(self, model: str) -> EpisodeState:
        raw: dict[Any, Any] = self.redis.hgetall(ModelKeys(model).episodes)
        state = EpisodeState()
        for k, v in raw.items():
            key, doc = text(k), orjson.loads(v)
            if key == META:
                state.pending = {int(s): float(t) for s, t in doc.get("pending", [])}
                state.last_apply = doc.get("last_apply")
            else:
                state.episodes[key] = Episode.from_json(doc)
        return state

    def commit(
        self,
        model: str,
        owner: str,
        alerts: list[tuple[str, bytes]],
        state: EpisodeState,
        changed: set[str],
        forget: set[str],
        now: float,
    ) -> set[str]:
        """Claim `alerts` ((id, JSON)) and save the `changed` episodes and the meta
        record, deleting `forget`, atomically; returns the ids newly claimed."""
        k = ModelKeys(model)
        meta = {"pending": sorted(state.pending.items()), "last_apply": state.last_apply}
        saved = [(key, orjson.dumps(state.episodes[key].to_json())) for key in sorted(changed)]
        saved.append((META, orjson.dumps(meta)))
        args: list[Any] = [owner, f"claimed:{now!r}", len(alerts)]
        for aid, doc in alerts:
            args += [aid, doc]
        args.append(len(saved))
        for key, doc in saved:
            args += [key, doc]
        args += sorted(forget)
        result: Any = self._commit(
            keys=[k.eval_lock, k.alerts, k.alert_state, k.episodes], args=args
        )
        if result == -1:
            raise LeaseLost(model)
        return {text(a) for a in result}
