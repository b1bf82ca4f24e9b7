"""All or nothing: an apply the script refuses writes nothing at all. Redis does not undo
the writes of a script that fails half-way, so apply.lua checks everything before its
first write; here each poisoned call also carries valid window deltas and valid join
records and sums ahead of the poison, so a script that wrote before checking would leave
a trace. A record or label no pair may be counted from is refused before the call, by
the meeting (`streamdrift.pairing`), with nothing written either. Every key of the model
is compared, value and expiry, before and after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from streamdrift.join import join_delta, label_entries
from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import prediction_outputs, sketch_events
from streamdrift.store import (
    ApplyRejected,
    ApplyRequest,
    Fence,
    FenceMoved,
    JoinStats,
    ModelChanged,
    Store,
    shards,
)
from streamdrift.store.keys import ModelKeys

from .store_support import (
    FENCE_FIELD,
    LABEL_TOPIC,
    apply,
    apply_events,
    binary_profile,
    current_window,
    events,
    labels,
    register,
    regression_profile,
    request,
    snapshot,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReferenceProfile]:
    directory = tmp_path_factory.mktemp("poison")
    return {
        "binary": binary_profile(directory),
        "regression": regression_profile(directory),
        "unlabelled": binary_profile(directory, label=False),
    }


def _prediction(profile: ReferenceProfile, i: int) -> Any:
    return 50.0 + i if profile.task == "regression" else {"score": 0.3 + 0.1 * i, "label": 1}


def _label(profile: ReferenceProfile) -> Any:
    return 51.0 if profile.task == "regression" else 1


def _time(profile: ReferenceProfile) -> int:
    """A prediction time inside the previous window."""
    return current_window(profile) - profile.config.window_seconds + 100


def _seed(store: Store, profile: ReferenceProfile) -> None:
    """State for the poison to meet: a window with features, outputs and one joined pair,
    four predictions waiting for labels (p1..p4) and one label waiting for its prediction."""
    t = _time(profile)
    ids = [f"p{i}" for i in range(5)]
    ev = events(profile, ids, [t] * 5, [_prediction(profile, i) for i in range(5)])
    lb = labels(["p0", "w0"], [t + 10] * 2, [_label(profile)] * 2)
    assert apply_events(store, profile, ev, lb).joined == 1


def _valid(store: Store, profile: ReferenceProfile) -> ApplyRequest:
    """A valid apply: window deltas for the seeded window and a new one, a new prediction,
    and a label that joins p1."""
    t, width = _time(profile), profile.config.window_seconds
    ev = events(profile, ["p5", "p6"], [t, t + width], [_prediction(profile, i) for i in (5, 6)])
    lb = labels(["p1"], [t + 20], [_label(profile)])
    delta, dead = join_delta(profile, ev, prediction_outputs(ev, profile), lb, LABEL_TOPIC)
    assert delta is not None and dead == []
    return request(store, profile, sketch_events(ev, profile), delta)


@pytest.fixture
def binary(store: Store, model_id: str, profiles: dict[str, ReferenceProfile]) -> ReferenceProfile:
    profile = register(store, profiles["binary"], model_id)
    _seed(store, profile)
    return profile


@pytest.fixture
def regression(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile]
) -> ReferenceProfile:
    profile = register(store, profiles["regression"], model_id)
    _seed(store, profile)
    return profile


def test_the_valid_part_alone_changes_the_state(store: Store, binary: ReferenceProfile) -> None:
    """The control: without its poison, each poisoned call below would have created keys
    and changed others, so an unchanged snapshot means the script wrote nothing."""
    before = snapshot(store, binary.model_id)
    valid = _valid(store, binary)
    assert apply(store, binary, valid.windows, valid.join).joined == 1
    after = snapshot(store, binary.model_id)
    assert before.keys() < after.keys()
    changed = [k for k in before if before[k] != after[k]]
    assert len(changed) >= 5, changed


# ---- poisoned payloads: edited after Applies.request -------------------------------------
#: a JSON token the encoder cannot write (orjson refuses NaN): put in as a string, then
#: unquoted in the payload's text
BARE = "__bare__:"


class Keys:
    """Positions (Lua's 1-based KEYS index) of the keys an edit needs."""

    def __init__(self, keys: list[str], profile: ReferenceProfile) -> None:
        width = profile.config.window_seconds
        start = _time(profile) // width * width
        wk = ModelKeys(profile.model_id).window(profile.revision, start)
        self.meta = keys.index(wk.meta) + 1
        self.deltas = keys.index(wk.deltas) + 1
        self.cat = keys.index(wk.cat("country")) + 1
        self.hll = keys.index(wk.hll("country")) + 1
        self.perf = keys.index(wk.perf) + 1
        self.windows = keys.index(ModelKeys(profile.model_id).windows(profile.revision)) + 1
        self.count = len(keys)


Mutation = Callable[[dict[str, Any], Keys], None]


def _append(op: Callable[[Keys], list[Any]]) -> Mutation:
    """A poisoned operation after all the valid ones."""

    def mutate(payload: dict[str, Any], k: Keys) -> None:
        payload["ops"].append(op(k))

    return mutate


POISONED_PAYLOADS: dict[str, tuple[Mutation, str]] = {
    "incrf nan": (_append(lambda k: [k.meta, "incrf", ["extra_sum:x", "nan"], 0]), "finite"),
    "incrf inf": (_append(lambda k: [k.meta, "incrf", ["sum", "inf"], 0]), "finite"),
    "incrf -inf": (_append(lambda k: [k.meta, "incrf", ["sumsq", "-inf"], 0]), "finite"),
    "incrf 1e400": (_append(lambda k: [k.meta, "incrf", ["sum", "1e400"], 0]), "finite"),
    "incrf bare 1e400": (
        _append(lambda k: [k.meta, "incrf", ["sum", BARE + "1e400"], 0]),
        "finite",
    ),
    "incrf bare NaN": (_append(lambda k: [k.meta, "incrf", ["sum", BARE + "NaN"], 0]), "finite"),
    "min nan": (_append(lambda k: [k.meta, "min", ["min", "nan"], 0]), "finite"),
    "max 1e400": (_append(lambda k: [k.meta, "max", ["max", "1e400"], 0]), "finite"),
    "incr 1.5": (_append(lambda k: [k.meta, "incr", ["count", 1.5], 0]), "count"),
    "incr string count": (_append(lambda k: [k.meta, "incr", ["count", "3"], 0]), "count"),
    "incr 2**60": (_append(lambda k: [k.meta, "incr", ["count", 2**60], 0]), "count"),
    "cap count 0.5": (
        _append(lambda k: [k.cat, "cap", [50, k.meta, "cat_other:country", "DE", 0.5], 0]),
        "count of DE",
    ),
    "key past the end": (_append(lambda k: [k.count + 1, "incr", ["count", 1], 0]), "op key"),
    "key 0": (_append(lambda k: [0, "incr", ["count", 1], 0]), "op key"),
    "key 1.5": (_append(lambda k: [1.5, "incr", ["count", 1], 0]), "op key"),
    "cap's other key past the end": (
        _append(lambda k: [k.cat, "cap", [50, k.count + 1, "cat_other:country", "DE", 1], 0]),
        "cap",
    ),
    "expiry 1.5": (_append(lambda k: [k.meta, "incr", ["count", 1], 1.5]), "expiry"),
    "unknown op": (_append(lambda k: [k.meta, "hdel", ["count"], 0]), "unknown op hdel"),
    "push of no blob": (_append(lambda k: [k.deltas, "push", [999], 0]), "push"),
    "push of the payload": (_append(lambda k: [k.deltas, "push", [1], 0]), "push"),
    "push of two blobs": (_append(lambda k: [k.deltas, "push", [2, 2], 0]), "push"),
    "push of a blob 1.5": (_append(lambda k: [k.deltas, "push", [1.5], 0]), "push"),
    "push onto a hash": (_append(lambda k: [k.meta, "push", [2], 0]), "holds no list"),
    # data of the wrong shape: the writes would fail on it after the valid ops' writes
    "odd-length data": (
        _append(lambda k: [k.meta, "incr", ["count", 1, "outliers"], 0]),
        "fields of incr",
    ),
    "field name not a string": (
        _append(lambda k: [k.meta, "incr", [["count"], 1], 0]),
        "fields of incr",
    ),
    "field name null": (_append(lambda k: [k.meta, "max", [None, "1.0"], 0]), "fields of max"),
    "zadd without a member": (_append(lambda k: [k.windows, "zadd", [5], 0]), "zadd"),
    "capped_list entry not a string": (
        _append(lambda k: [k.meta, "capped_list", [3, {}], 0]),
        "capped_list",
    ),
    "cap category not a string": (
        _append(lambda k: [k.cat, "cap", [50, k.meta, "cat_other:country", ["DE"], 1], 0]),
        "cap",
    ),
    "pfadd value not a string": (_append(lambda k: [k.hll, "pfadd", ["DE", 3], 0]), "pfadd"),
    "pfadd without values": (_append(lambda k: [k.hll, "pfadd", [], 0]), "pfadd"),
    "pfadd on a hash": (
        _append(lambda k: [k.meta, "pfadd", ["DE"], 0]),
        "pfadd: the key holds no HyperLogLog",
    ),
    # the pairs' sums into fields that labels and segments name (capped per hash)
    "capincr on an uncapped field": (
        _append(lambda k: [k.perf, "capincr", [2000, "n", 1], 0]),
        "capincr field n",
    ),
    "capincr 1.5": (_append(lambda k: [k.perf, "capincr", [2000, "s:a=b:n", 1.5], 0]), "value"),
    "capincrf nan": (
        _append(lambda k: [k.perf, "capincrf", [2000, "s:a=b:ae", "nan"], 0]),
        "value",
    ),
    "capincr cap missing": (_append(lambda k: [k.perf, "capincr", ["cm:1|1", 1], 0]), "capincr"),
}


def _run_edited(store: Store, r: ApplyRequest, mutate: Mutation) -> tuple[list[str], list[Any]]:
    keys, args, _ = store.applies.request(r)
    data = orjson.loads(args[0])
    mutate(data, Keys(keys, r.profile))
    text = orjson.dumps(data)
    while (i := text.find(b'"' + BARE.encode())) >= 0:  # unquote the bare tokens
        end = text.index(b'"', i + 1)
        text = text[:i] + text[i + 1 + len(BARE) : end] + text[end + 1 :]
    return keys, [text, *args[1:]]


@pytest.mark.parametrize("case", list(POISONED_PAYLOADS))
def test_a_poisoned_payload_writes_nothing(
    store: Store, binary: ReferenceProfile, case: str
) -> None:
    """The payload Applies.request builds for a valid call, with one thing wrong after
    all the valid operations: refused, for the right reason, and nothing written."""
    mutate, reason = POISONED_PAYLOADS[case]
    r = _valid(store, binary)
    keys, args = _run_edited(store, r, mutate)
    before = snapshot(store, binary.model_id)
    with pytest.raises(ApplyRejected, match=reason):
        store.applies._result(r, store.applies._script(keys=keys, args=args), JoinStats())
    assert snapshot(store, binary.model_id) == before


def _shard_entry(value: Any, at: int = 0) -> Callable[[dict[str, Any], int], None]:
    """Set field `at` of the first shard entry (shard, head, list position, blob's ARGV
    index, token) to `value`."""

    def mutate(journal: dict[str, Any], n: int) -> None:
        journal["shards"][0][at] = value(n) if callable(value) else value

    return mutate


#: the join's journal in the payload: the heads key, and per shard (shard, head
#: expected, list position, blob's ARGV index or 0, token)
POISONED_JOURNAL: dict[str, tuple[Callable[[dict[str, Any], int], None], str]] = {
    "journal not a table": (lambda j, n: j.clear() or j.update(heads="x"), "journal"),
    "heads key past the end": (lambda j, n: j.update(heads=n + 1), "journal"),
    "heads key 0": (lambda j, n: j.update(heads=0), "journal"),
    "shards missing": (lambda j, n: j.pop("shards"), "journal"),
    "shard not a string": (_shard_entry(5), "journal shard"),
    "head not a string": (_shard_entry(None, 1), "journal shard"),
    "list key past the end": (_shard_entry(lambda n: n + 1, 2), "journal shard"),
    "blob index 1 (the payload)": (_shard_entry(1, 3), "journal shard"),
    "blob index past ARGV": (_shard_entry(99, 3), "journal shard"),
    "blob index negative": (_shard_entry(-2, 3), "journal shard"),
    "token not a string": (_shard_entry(7, 4), "journal shard"),
}


@pytest.mark.parametrize("case", list(POISONED_JOURNAL))
def test_a_poisoned_journal_writes_nothing(
    store: Store, binary: ReferenceProfile, case: str
) -> None:
    """The join's journal entries of a valid call, one of them malformed: refused for that
    reason, and nothing written (the window deltas before it included)."""
    mutate, reason = POISONED_JOURNAL[case]
    r = _valid(store, binary)
    keys, args, _ = store.applies.request(r)
    payload = orjson.loads(args[0])
    assert payload["journal"]["shards"]  # p1's record and the new predictions'
    mutate(payload["journal"], len(keys))
    before = snapshot(store, binary.model_id)
    with pytest.raises(ApplyRejected, match=reason):
        store.applies._result(
            r,
            store.applies._script(keys=keys, args=[orjson.dumps(payload), *args[1:]]),
            JoinStats(),
        )
    assert snapshot(store, binary.model_id) == before


def _dedupe(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(join: dict[str, Any]) -> None:
        if value is _DROP:
            del join[name]
        elif name == "first id":
            join["dedupe"][0][2][0] = value
        else:
            join[name] = value

    return mutate


_DROP = object()

#: the repeated-id check of a model without labels: its settings, used by its writes
POISONED_DEDUPE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "width 0": (_dedupe("width", 0), "join settings"),
    "rev null": (_dedupe("rev", None), "join settings"),
    "keep 1.5": (_dedupe("keep", 1.5), "join settings"),
    "window keys missing": (_dedupe("wkeys", _DROP), "join settings"),
    "dirty key past the end": (_dedupe("dirty", 10_000), "join key"),
    "an id not a string": (_dedupe("first id", 7), "dedupe"),
}


@pytest.mark.parametrize("case", list(POISONED_DEDUPE))
def test_a_poisoned_repeated_id_check_writes_nothing(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile], case: str
) -> None:
    """A model without labels keeps its ids per window to count repeats: a payload whose
    check is malformed, after valid window deltas, is refused with nothing written."""
    profile = register(store, profiles["unlabelled"], model_id)
    t = _time(profile)
    first = events(profile, ["a", "b"], [t, t], [_prediction(profile, i) for i in range(2)])
    apply_events(store, profile, first)
    ev = events(profile, ["a", "c"], [t, t], [_prediction(profile, i) for i in range(2)])
    delta, _ = join_delta(profile, ev, prediction_outputs(ev, profile), None, LABEL_TOPIC)
    r = request(store, profile, sketch_events(ev, profile), delta)
    keys, args, _ = store.applies.request(r)
    payload = orjson.loads(args[0])
    mutate, reason = POISONED_DEDUPE[case]
    mutate(payload["join"])
    before = snapshot(store, profile.model_id)
    with pytest.raises(ApplyRejected, match=reason):
        store.applies._result(
            r,
            store.applies._script(keys=keys, args=[orjson.dumps(payload), *args[1:]]),
            JoinStats(),
        )
    assert snapshot(store, profile.model_id) == before


def test_an_id_set_of_another_type_writes_nothing(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile]
) -> None:
    """The ids are counted among the writes (SADD says how many were new), so a key of the
    window's ids that holds something else must fail the call before its first write."""
    profile = register(store, profiles["unlabelled"], model_id)
    t = _time(profile)
    ev = events(profile, ["a", "b"], [t, t], [_prediction(profile, i) for i in range(2)])
    start = t - t % profile.config.window_seconds
    store.redis.set(ModelKeys(model_id).window(profile.revision, start).ids, "not a set")
    before = snapshot(store, profile.model_id)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        apply_events(store, profile, ev)
    assert snapshot(store, profile.model_id) == before


# ---- poisoned join entries ------------------------------------------------------------------
def _label_entry(profile: ReferenceProfile, pid: str, label: str, t: int) -> list[Any]:
    """A label entry as `label_entries` builds it, but with any label text."""
    (b,) = shards([pid])
    return [pid, label, t, 0 if profile.task == "regression" else -1, b]


def _rejected_with_nothing_written(
    store: Store, profile: ReferenceProfile, r: ApplyRequest, reason: str
) -> None:
    before = snapshot(store, profile.model_id)
    with pytest.raises(ApplyRejected, match=reason):
        store.applies.apply(r)
    assert snapshot(store, profile.model_id) == before


@pytest.mark.parametrize("label", ["1e-310", "nan", "1e101", "-inf", "high"])
def test_a_regression_label_out_of_bounds_meeting_its_prediction_writes_nothing(
    store: Store, regression: ReferenceProfile, label: str
) -> None:
    """Python refuses these labels (see the test below); built by hand past it, the
    meeting refuses them too: 1e-310 would make the percentage error overflow."""
    r = _valid(store, regression)
    assert r.join is not None
    r.join.labels.append(_label_entry(regression, "p2", label, _time(regression) + 30))
    _rejected_with_nothing_written(store, regression, r, "regression label")


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_stored_prediction_whose_score_is_nan_meeting_its_label_writes_nothing(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile], task: str
) -> None:
    """A record already in its journal (written by hand: as an older version, or another
    writer, might have left it) is checked when its label comes."""
    profile = register(store, profiles[task], model_id)
    _seed(store, profile)
    t = _time(profile)
    cls = "" if task == "regression" else "1"
    store.records.put(model_id, {"bad": f"{t}|1|{cls}|nan"})
    r = _valid(store, profile)
    assert r.join is not None
    r.join.labels.append(_label_entry(profile, "bad", str(_label(profile)), t + 30))
    _rejected_with_nothing_written(store, profile, r, "nan")


def test_a_regression_label_out_of_bounds_waiting_for_its_prediction_writes_nothing(
    store: Store, regression: ReferenceProfile
) -> None:
    """Refused when it comes, not when its prediction does: stored as a waiting label,
    it would make the prediction's (valid) batch be refused instead, for good."""
    r = _valid(store, regression)
    assert r.join is not None
    r.join.labels.append(_label_entry(regression, "nobody", "1e-310", _time(regression)))
    _rejected_with_nothing_written(store, regression, r, "regression label")


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_prediction_whose_score_is_nan_writes_nothing(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile], task: str
) -> None:
    """Refused when it comes, not only when its label does (which would refuse the
    label's valid batch instead)."""
    profile = register(store, profiles[task], model_id)
    _seed(store, profile)
    r = _valid(store, profile)
    assert r.join is not None
    cls = "" if task == "regression" else "1"
    (b,) = shards(["bad"])
    r.join.predictions.append(["bad", f"{_time(profile)}|1|{cls}|nan", b])
    _rejected_with_nothing_written(store, profile, r, "nan")


# ---- fences -----------------------------------------------------------------------------
def test_a_fence_that_moved_writes_nothing(store: Store, binary: ReferenceProfile) -> None:
    """Another worker applied these events first: the call answers where the fence is
    now and writes nothing, even when its other fences are where it expected them."""
    r = _valid(store, binary)
    (current,) = r.fences
    before = snapshot(store, binary.model_id)
    r.fences = [Fence(FENCE_FIELD, current.expected + 5, current.expected + 6)]
    assert store.applies.apply(r) == FenceMoved(FENCE_FIELD, current.expected)
    assert snapshot(store, binary.model_id) == before
    r.fences = [current, Fence("t@x:1", 3, 4)]
    assert store.applies.apply(r) == FenceMoved("t@x:1", -1)
    assert snapshot(store, binary.model_id) == before


def test_an_apply_for_another_revision_or_a_model_gone_writes_nothing(
    store: Store, binary: ReferenceProfile
) -> None:
    """Deltas computed with revision 1 meet the model registered again (revision 2): the
    call says so and writes nothing; the worker recomputes. Then the model's keys are
    gone (a Redis emptied, a cluster shard lost): nothing is written either, so no
    fence can hide what was lost."""
    r = _valid(store, binary)
    store.redis.set(f"sd:{{{binary.model_id}}}:revision", binary.revision + 1)
    before = snapshot(store, binary.model_id)
    assert store.applies.apply(r) == ModelChanged(binary.revision + 1)
    assert snapshot(store, binary.model_id) == before
    for key in store.redis.scan_iter(match=f"sd:{{{binary.model_id}}}:*"):
        store.redis.delete(key)
    assert store.applies.apply(r) == ModelChanged(None)
    assert list(store.redis.scan_iter(match=f"sd:{{{binary.model_id}}}:*")) == []


# ---- the Python side's guard ------------------------------------------------------------
def test_label_entries_refuse_a_regression_label_too_close_to_zero_or_too_large(
    profiles: dict[str, ReferenceProfile],
) -> None:
    """|y| below 1e-100 (zero aside) would overflow the percentage error |ŷ − y| / |y|,
    |y| above 1e100 its square: such labels are dead letters (out_of_bounds) before any
    apply; 0 and 5e-50 are ordinary labels."""
    values = [1e-310, 1e101, 0.0, 5e-50, 1e-150, -1e-310, -5e-50, -1e101]
    lb = labels([f"l{i}" for i in range(len(values))], [1000.0] * len(values), values)
    entries, dead = label_entries(lb, profiles["regression"], LABEL_TOPIC)
    assert [(e[0], float(e[1])) for e in entries] == [
        ("l2", 0.0),
        ("l3", 5e-50),
        ("l6", -5e-50),
    ]
    assert [(d.key, d.reason) for d in dead] == [
        (f"l{i}".encode(), "out_of_bounds") for i in (0, 1, 4, 5, 7)
    ]
