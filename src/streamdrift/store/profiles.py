"""Reference profiles, the model registry, and the state marker.

The registry (`sd:{#}:models`) is written after the profile and outside its script, so
no call ever spans two hash slots: on Redis Cluster the profile lives with the model's
other keys, the registry on whichever node holds `{#}`. A profile without a registry
entry (a register that died in between) is completed by running register again.

The state marker (`sd:{#}:epoch`) is a random id written once, by the first register or
the first worker start. Redis that restarted empty, or was emptied, has none (or, once
someone registered again, another one): workers compare it with the one they started
with, and stop loudly instead of counting into a Redis that forgot what it counted.

On a Redis Cluster one shard can lose its keys while the others keep theirs: a model in
the registry without a profile lost its state (windows, fences, join records), and the
surviving models' fences would have workers resume past the events it lost. Registering
it again therefore gives it the fence -1 on every partition known to the other models
or to the progress floors: workers read those again from the start of what Kafka
retains, and only the lost model counts them.
"""

from __future__ import annotations

import uuid
from typing import Any

from streamdrift.profile import ReferenceProfile
from streamdrift.store.client import RedisClient, lua, text
from streamdrift.store.keys import EPOCH, MODELS, PROGRESS, ModelKeys


class Profiles:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._save = client.register_script(lua("save_profile"))

    def champion(self, model: str) -> str | None:
        """The model's champion version (as its slices name it), if one is set."""
        value: Any = self.redis.get(ModelKeys(model).champion)
        return value.decode() if value is not None else None

    def set_champion(self, model: str, version: str | None) -> None:
        """Make `version` the champion every other version is compared with (None: no
        comparisons). Takes effect with the workers' next batch; pairs already joined
        keep the comparisons they were counted in."""
        key = ModelKeys(model).champion
        if version is None:
            self.redis.delete(key)
        else:
            self.redis.set(key, version)

    def save(self, profile: ReferenceProfile) -> tuple[ReferenceProfile, bool]:
        """Store a profile under the next revision; returns it and whether one was
        replaced. Also makes sure the state marker exists."""
        self.ensure_epoch()
        k = ModelKeys(profile.model_id)
        lost = self._lost_fences(profile.model_id)
        while True:
            current = int(self.redis.get(k.revision) or 0)
            profile = profile.model_copy(update={"revision": current + 1})
            args = [str(current), str(current + 1), profile.model_dump_json(indent=2), *lost]
            if self._save(keys=[k.revision, k.profile, k.offsets], args=args):
                break
        self.redis.sadd(MODELS, profile.model_id)
        return profile, current > 0

    def _lost_fences(self, model: str) -> list[str]:
        """The fence fields to reset for a registered model whose profile is gone (its
        state was lost), else none: every field of the progress floors and of the other
        models' fences."""
        if self.redis.get(ModelKeys(model).revision) is not None:
            return []
        registered = self.models()  # SMEMBERS: the least-privilege ACL user has no SISMEMBER
        if model not in registered:
            return []
        others = [m for m in registered if m != model]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(PROGRESS)
        for m in others:
            pipe.hgetall(ModelKeys(m).offsets)
        return sorted({f.decode() for fields in pipe.execute() for f in fields})

    def load(self, model: str) -> ReferenceProfile | None:
        raw = self.redis.get(ModelKeys(model).profile)
        return ReferenceProfile.model_validate_json(raw) if raw else None

    def models(self) -> list[str]:
        members: Any = self.redis.smembers(MODELS)
        return sorted(text(m) for m in members)

    def epoch(self) -> str | None:
        raw = self.redis.get(EPOCH)
        return text(raw) if raw is not None else None

    def ensure_epoch(self) -> str:
        """The state marker, written now if there is none."""
        self.redis.set(EPOCH, uuid.uuid4().hex, nx=True)
        return self.epoch() or ""
