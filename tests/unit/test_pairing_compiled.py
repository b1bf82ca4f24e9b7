"""The compiled transitions (`streamdrift._pairing.meet`) against `pairing._meet`, the
Python reference, over random batches: every batch the compiled path takes ends exactly
as the reference ends it (the records read, the writes and their order, the pairs, the
repeats and the counts), and every batch it gives back is one the reference refuses or
takes through a transition the compiled path leaves to it."""

from __future__ import annotations

import random
from typing import Any

import pytest

from streamdrift import pairing
from streamdrift.pairing import Meeting, PairRefused, PairRules, _meet, compiled_meeting, meet
from streamdrift.store.records import RecordView, Shard

compiled = pytest.importorskip("streamdrift._pairing").meet

WIDTH = 3600
T = 1_800_000_000 // WIDTH * WIDTH

#: odd records a journal might hold (another version's format, a hand edit, a bug)
ODD_RECORDS = [
    "",
    "L",
    "L12",
    "L12|3",
    "Lx|1|a",
    "L--5|1|a",
    "L5|--1|a",
    "L-5|-1|a|b",
    "L12345678901234567890|1|a",
    "J",
    "J12\t",
    "J12\t\t",
    "abc|d|e|f",
    f"{T}|v|1",
    f"{T}",
    f"{T}||1|nan",
    f"{T}||1| 0.5",
    f"{T}||1|1_0",
    f"{T}||1|1e300",
    f"{T}||1|inf",
    f"{T}||1|abc",
    f"{T}||1|.5",
    f"{T}||1|5.",
    f"{T}||1|-0.5e-3",
    f"{T}||1|+1E2",
    "١٢|v|1|0.5",
    f"{T}|ü|1|0.5",
    f"{T}|1.0|ä|0.5|seg=é",
    f"{T}|1.0|1|0.5\n{T}|2.0|1|0.5",
    f"{T}|1.0|1|0.5\n\n",
    f"0{T}||1|0.5",
    f"{T}|1.0|1|0.5|a|b|c",
    f"J{T}\t1.0\t{T + 9}|-1|1",
    f"J{T}\t1.0\n2.0\t{T + 9}|-1|1",
    f"J{T}\t{T}|1.0|1|0.5\t{T + 9}|-1|1",
    f"J{T}\tx|1.0\t{T + 9}|-1|1",
    f"J{T}\t١|1.0|z\t{T + 9}|-1|1",
]


def _record(rng: random.Random, plain: str | None = None) -> str:
    """A prediction record as `join.prediction_records` writes it (of version `plain`
    only, if given), or an odd one."""
    if plain is None and rng.random() < 0.08:
        return rng.choice(ODD_RECORDS)
    t = T + rng.randrange(-2 * WIDTH, 3 * WIDTH)
    version = plain if plain is not None else rng.choice(["", "", "1.0", "2.0", "ü"])
    cls = rng.choice(["0", "1", "", "ä"])
    score = rng.choice(["", f"{rng.random():.5f}", "0.25", "1e-3"])
    segs = rng.choice(["", "", "|region=eu", "|region=eu,tier=é"])
    return f"{t}|{version}|{cls}|{score}{segs}"


def _stored(rng: random.Random, plain: str | None) -> str | None:
    """What a journal may hold for an id before the batch."""
    k = rng.random()
    if k < 0.3:
        return None
    if k < 0.55:
        return _record(rng, plain)
    if k < 0.7:
        return f"L{T + rng.randrange(0, 9999)}|{rng.choice([-1, 0, 3])}|{rng.choice('01ä')}"
    if k < 0.85:
        v = plain if plain is not None else rng.choice(["", "1.0", "2.0"])
        t = T + rng.randrange(0, 9999)
        return f"J{t}" if not v else f"J{t}\t{v}\t{t + 5}|-1|1"
    if k < 0.9:
        return f"{T + rng.randrange(0, 9999)}"  # kept while the model had no label column
    return rng.choice(ODD_RECORDS) if plain is None else None


def _batch(rng: random.Random) -> tuple[list[Any], list[Any], dict[tuple[int, str], Any]]:
    """Ids met by predictions and labels; in half the batches one version and no odd
    record (a plain model's stream), in the others anything."""
    plain = rng.choice(["", "1.0", "ü"]) if rng.random() < 0.5 else None
    ids = [f"p{i}" for i in range(rng.randrange(1, 40))] + ["ü", "p\u2028"]
    shard = {pid: rng.randrange(4) for pid in ids}
    current = {(shard[p], p): _stored(rng, plain) for p in ids}
    preds = [
        [p, _record(rng, plain), shard[p]]
        for p in (rng.choice(ids) for _ in range(rng.randrange(60)))
    ]
    labels = [
        [
            p,
            rng.choice(["0", "1", "ä", "1"]),
            T + rng.randrange(0, 9999),
            rng.choice([-1, 0, 2]),
            shard[p],
        ]
        for p in (rng.choice(ids) for _ in range(rng.randrange(60)))
    ]
    return preds, labels, current


def _view(current: dict[tuple[int, str], Any]) -> RecordView:
    shards: dict[int, Shard] = {}
    for (s, pid), rec in current.items():
        held = shards.setdefault(s, Shard())
        if rec is not None:
            held.records[pid] = rec
    return RecordView(shards)


def _outcome(m: Meeting) -> dict[str, Any]:
    return {
        "read": list(m.read.items()),
        "writes": list(m.writes.items()),
        "pairs": m.pairs.rows(),
        "comparisons": m.comparisons,
        "repeats": list(m.repeats.items()),
        "counts": (m.duplicate_labels, m.labels_waiting, m.labels_without_record),
    }


def _reference(preds: list[Any], labels: list[Any], current: Any, r: PairRules) -> Any:
    try:
        return _outcome(_meet(preds, labels, current, r))
    except PairRefused as e:
        return ("refused", str(e))


@pytest.mark.parametrize("positive", ["1", None])
def test_the_compiled_transitions_end_every_batch_as_the_reference_does(positive: Any) -> None:
    rng = random.Random(11 if positive else 12)
    r = PairRules(
        WIDTH,
        "binary" if positive else "multiclass",
        positive,
        "categorical",
        None,
        None,
        True,
        frozenset({"region"}),
        None,
        0.0,
    )
    taken = given_back = 0
    for _ in range(1500):
        preds, labels, current = _batch(rng)
        want = _reference(preds, labels, current, r)
        for records, by_shard in ((current, False), (_view(current).by_shard(), True)):
            got = compiled(preds, labels, records, by_shard, WIDTH, positive is not None)
            if got is None:
                given_back += 1
                continue
            taken += 1
            assert _outcome(compiled_meeting(got)) == want
        # and `meet`, whichever path it takes, ends as the reference
        for cur in (current, _view(current)):
            try:
                assert _outcome(meet(preds, labels, cur, r)) == want
            except PairRefused as e:
                assert want == ("refused", str(e))
    # both paths were exercised, the compiled one for most batches
    assert taken > 1000 and given_back > 300, (taken, given_back)


def test_a_batch_of_plain_records_takes_the_compiled_path() -> None:
    """The shapes a plain model's stream has (records with and without a version, labels
    first and last, repeats): all compiled, and the records read back as `_meet`'s."""
    preds = [
        ["a", f"{T + 5}|1.0|1|0.75", 1],
        ["b", f"{T + 6}||0|0.25|region=eu", 2],
        ["a", f"{T + 7}|1.0|1|0.5", 1],
        ["c", f"0{T + 8}|2.0|1|0.5", 3],
    ]
    labels = [
        ["b", "1", T + 60, -1, 2],
        ["d", "0", T + 61, -1, 0],
        ["c", "1", T + 62, -1, 3],
        ["b", "0", T + 63, -1, 2],
    ]
    current = {(1, "a"): None, (2, "b"): None, (3, "c"): f"L{T + 1}|-1|1", (0, "d"): None}
    r = PairRules(WIDTH, "binary", "1", "categorical", None, None, True, frozenset(), None, 0.0)
    got = compiled(preds, labels, current, False, WIDTH, True)
    assert got is not None
    _, writes, *_ = got
    assert writes == {
        (1, "a"): f"{T + 5}|1.0|1|0.75",
        (2, "b"): f"J{T + 6}",
        (3, "c"): f"J{T + 8}\t2.0\t{T + 1}|-1|1",
        (0, "d"): f"L{T + 61}|-1|0",
    }
    assert _outcome(meet(preds, labels, current, r)) == _outcome(_meet(preds, labels, current, r))
    assert got[6] == {T: [1, "a"]} and got[7:] == (2, 1, 0)


def test_a_champion_or_a_regressor_goes_through_python(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(pairing, "_compiled", lambda *a: calls.append(a))
    preds = [["a", f"{T + 5}|1.0|1|0.75", 1]]
    for r in (
        PairRules(WIDTH, "binary", "1", "categorical", None, None, True, frozenset(), "1.0", 0.0),
        PairRules(WIDTH, "regression", None, "numeric", None, None, True, frozenset(), None, 0.0),
    ):
        meet(preds, [], {(1, "a"): None}, r)
    assert calls == []
    meet(
        preds,
        [],
        {(1, "a"): None},
        PairRules(WIDTH, "binary", "1", "categorical", None, None, True, frozenset(), None, 0.0),
    )
    assert len(calls) == 1
