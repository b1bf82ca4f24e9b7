"""The Redis key layout: the one place that spells a key.

Every key of a model carries the hash tag `{model}`, so one model's keys live in one
Redis Cluster slot and one model's apply is one atomic script on one node. The few keys
that are no model's (the registry, the state marker, topic incarnations, dead letters
without a model) share the tag `{#}`: `#` is not allowed in a model id, so no model's
keys can ever share a name with them.

    sd:{#}:epoch                       STRING the state marker: a random id written at the
                                              first start or register; gone or changed =
                                              Redis lost its state
    sd:{#}:models                      SET    registered model ids
    sd:{#}:topics                      HASH   topic -> incarnation (Kafka topic id, or an
                                              id of our own where the broker has none)
    sd:{#}:progress                    HASH   "<topic>@<incarnation>:<partition>" ->
                                              offset up to which every event was applied
    sd:{#}:dlq                         HASH   reason -> count, bad events of no known model
    sd:{#}:replays                     HASH   dead letter "<dlq topic>:<partition>:<offset>"
                                              -> "pending:<time>" | "done:<topic>:<p>:<o>"
    sd:{m}:profile                     STRING reference profile, JSON
    sd:{m}:revision                    STRING profile revision
    sd:{m}:offsets                     HASH   "<topic>@<incarnation>:<partition>" -> last
                                              applied offset (the fence); "__versions__"
                                              and "__version__:<v>": the version registry
    sd:{m}:dlq                         HASH   reason -> count of this model's bad events
    sd:{m}:windows:<rev>               ZSET   window start (score and member)
    sd:{m}:dirty                       ZSET   "<rev>:<start>" -> time of last apply
    sd:{m}:w:<rev>:<start>:meta        HASH   see store.windows
    sd:{m}:w:<rev>:<start>:num:<f>     HASH   see store.windows (windows written before
                                              the deltas lists: numeric columns)
    sd:{m}:w:<rev>:<start>:nd          LIST   the numeric columns' deltas, one blob per
                                              apply, see store.window_deltas (a slice's
                                              too, under its own base)
    sd:{m}:w:<rev>:<start>:pd          LIST   the labelled pairs' sums, those the perf
                                              hash does not cap, as deltas
    sd:{m}:w:<rev>:<start>:cd          LIST   the correlation sums, as deltas
    sd:{m}:w:<rev>:<start>:md          LIST   the meta hash's score bins, as deltas (a
                                              slice's too)
    sd:{m}:w:<rev>:<start>:cat:<f>     HASH   category -> count (user values only)
    sd:{m}:w:<rev>:<start>:ids         SET    a model without labels: the window's ids
    sd:{m}:w:<rev>:<start>:outliers    LIST   the window's first outliers, JSON
    sd:{m}:w:<rev>:<start>:perf        HASH   labelled pairs, see store.windows; each
                                              slice's as fields "[<slice>]<field>"
    sd:{m}:w:<rev>:<start>|<slice>:... one slice of the window ("v=2.0", "region=eu",
                                              see streamdrift.slices): its meta and cat:<f>
                                              hashes, and all its numeric columns in one
                                              hash, num (fields "<f>\x1f<field>")
    sd:{m}:w:<rev>:<start>:corr        HASH   correlation sums per feature pair, see
                                              store.depth_fields
    sd:{m}:w:<rev>:<start>:hll:<f>     STRING HyperLogLog of a categorical feature's
                                              distinct values (PFADD / PFCOUNT)
    sd:{m}:jr                          HASH   shard -> token of its journal's last blob
    sd:{m}:jr:<shard>                  LIST   the join's journal of one shard of the ids:
                                              blobs of prediction_id -> record, see
                                              store.records
    sd:{m}:sweep                       HASH   the id janitor's cursor and clock
    sd:{m}:join                        HASH   join counters
    sd:{m}:champion                    STRING the champion version (streamdrift champion)
    sd:{m}:episodes                    HASH   condition key -> its latest episode, JSON;
                                              "__meta__" -> windows awaiting completion
                                              and the time of the last apply seen
    sd:{m}:watermarks                  ZSET   fence field -> latest event time applied
    sd:{m}:watermarks_seen             ZSET   fence field -> when it last moved (wall)
    sd:{m}:alerts                      HASH   alert_id -> alert JSON
    sd:{m}:alert_state                 HASH   alert_id -> claimed:<t> | published:<t>
    sd:{m}:eval_lock                   STRING evaluator lease (SET NX PX)
"""

from __future__ import annotations

from dataclasses import dataclass

#: hash tag of the keys that belong to no model
GLOBAL_TAG = "sd:{#}"

EPOCH = f"{GLOBAL_TAG}:epoch"
MODELS = f"{GLOBAL_TAG}:models"
TOPICS = f"{GLOBAL_TAG}:topics"
PROGRESS = f"{GLOBAL_TAG}:progress"
UNROUTED_DLQ = f"{GLOBAL_TAG}:dlq"
REPLAYS = f"{GLOBAL_TAG}:replays"


def fence_field(topic: str, incarnation: str, partition: int) -> str:
    """A fence belongs to one incarnation of a topic: a topic deleted and created again
    starts at offset 0 under a new id, and its events are new, not re-deliveries."""
    return f"{topic}@{incarnation}:{partition}"


def parse_fence_field(field: str) -> tuple[str, str, int] | None:
    """(topic, incarnation, partition) of a fence field; None for anything else."""
    head, _, partition = field.rpartition(":")
    topic, at, incarnation = head.partition("@")
    if not at or not partition.isdigit():
        return None
    return topic, incarnation, int(partition)


@dataclass(frozen=True, slots=True)
class WindowKeys:
    """The keys of one model's window under one profile revision."""

    base: str

    @property
    def meta(self) -> str:
        return f"{self.base}:meta"

    @property
    def perf(self) -> str:
        return f"{self.base}:perf"

    @property
    def ids(self) -> str:
        return f"{self.base}:ids"

    @property
    def outliers(self) -> str:
        return f"{self.base}:outliers"

    @property
    def corr(self) -> str:
        return f"{self.base}:corr"

    def hll(self, column: str) -> str:
        return f"{self.base}:hll:{column}"

    @property
    def deltas(self) -> str:
        """The numeric columns' deltas (store.window_deltas)."""
        return f"{self.base}:nd"

    @property
    def corr_deltas(self) -> str:
        """The correlation sums, as deltas (store.window_deltas)."""
        return f"{self.base}:cd"

    @property
    def meta_deltas(self) -> str:
        """The meta hash's score bins (`sc:<bin>`), as deltas (store.window_deltas)."""
        return f"{self.base}:md"

    @property
    def perf_deltas(self) -> str:
        """The labelled pairs' sums but those named by classes and segments, as deltas."""
        return f"{self.base}:pd"

    @property
    def packed(self) -> str:
        """A slice's numeric columns, all in one hash."""
        return f"{self.base}:num"

    def num(self, column: str) -> str:
        return f"{self.base}:num:{column}"

    def cat(self, column: str) -> str:
        return f"{self.base}:cat:{column}"

    def column(self, column: str, kind: str) -> str:
        return self.num(column) if kind == "numeric" else self.cat(column)


@dataclass(frozen=True, slots=True)
class ModelKeys:
    """The keys of one model."""

    model: str

    @property
    def tag(self) -> str:
        return f"sd:{{{self.model}}}"

    @property
    def profile(self) -> str:
        return f"{self.tag}:profile"

    @property
    def revision(self) -> str:
        return f"{self.tag}:revision"

    @property
    def offsets(self) -> str:
        return f"{self.tag}:offsets"

    @property
    def dlq(self) -> str:
        return f"{self.tag}:dlq"

    @property
    def dirty(self) -> str:
        return f"{self.tag}:dirty"

    @property
    def sweep(self) -> str:
        return f"{self.tag}:sweep"

    @property
    def join(self) -> str:
        return f"{self.tag}:join"

    @property
    def champion(self) -> str:
        return f"{self.tag}:champion"

    @property
    def episodes(self) -> str:
        return f"{self.tag}:episodes"

    @property
    def watermarks(self) -> str:
        return f"{self.tag}:watermarks"

    @property
    def watermarks_seen(self) -> str:
        return f"{self.tag}:watermarks_seen"

    @property
    def alerts(self) -> str:
        return f"{self.tag}:alerts"

    @property
    def alert_state(self) -> str:
        return f"{self.tag}:alert_state"

    @property
    def eval_lock(self) -> str:
        return f"{self.tag}:eval_lock"

    def windows(self, revision: int) -> str:
        return f"{self.tag}:windows:{revision}"

    def window(self, revision: int, start: int) -> WindowKeys:
        return WindowKeys(f"{self.tag}:w:{revision}:{start}")

    def slice_window(self, revision: int, start: int, name: str) -> WindowKeys:
        """A slice of a window ("v=2.0", "region=eu"): the same hashes as the window."""
        return WindowKeys(f"{self.tag}:w:{revision}:{start}|{name}")

    @property
    def journal_heads(self) -> str:
        return f"{self.tag}:jr"

    def journal(self, shard: int) -> str:
        return f"{self.tag}:jr:{shard}"

    def legacy_bucket(self, bucket: int) -> str:
        """The earlier layout's hash of records (moved into the journals once)."""
        return f"{self.tag}:ids:{bucket}"
