"""Where a label meets its prediction: the join records' transitions and the sums each
labelled pair adds to its prediction's window, computed by the worker.

The apply script used to do this pair by pair in Lua, 25–35 µs of Redis time per
pairing prediction, while Redis served no one else. Now the worker holds the records of
the ids it meets (replayed from their journals, `store.records`), works out here what
each id's record becomes and what every pair adds, column by column, and the apply
script only checks that each shard's journal is still at the head the worker replayed
to (else the share is worked out again after the worker reads what it lacks, like a
fence that moved) before it appends the new records and writes the sums.

The transitions are those of the record format in `store.records`:

    (none) + prediction       -> the prediction's record, waiting for its label
    (none) + label            -> "L<time>|<bin>|<label>", waiting for its prediction
    "L..." + prediction       -> joined: the pair meets
    record + label            -> joined: the pair (one per version of shadow traffic) meets
    record + the same version -> a repeated prediction (counted in its window's meta)
    joined + a new version    -> that version's pair meets too (shadow traffic scored late)
    joined or "L..." + label  -> a repeated label

A pair's sums are `PerformanceSketch`'s fields (`store.window_fields`), for the model
and for each slice it belongs to ("[v=2.0]", "[region=eu]"), plus the sequential
scan's sums per part of the window, per-segment counts, the joined label's own column,
and the champion-against-challenger fields of shadow traffic (`streamdrift.champion`).
"""

from __future__ import annotations

import math
import operator
from abc import abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np

from streamdrift.champion import JOINT_BINS
from streamdrift.decode import MAX_MAGNITUDE, MIN_MAGNITUDE
from streamdrift.performance import LOG_LOSS_EPS, calibration_bin, score_bin
from streamdrift.profile import ReferenceProfile

try:  # compiled beside the scanner; optional, as it is
    from streamdrift._pairing import meet as _compiled
except ImportError:  # pragma: no cover - the tests run where it is built
    _compiled = None  # type: ignore[assignment]

#: computed sums beyond this are refused, as every float the apply script writes
BOUND = 1e250

#: an id's place: (journal shard, prediction id)
Place = tuple[int, str]


class PairRefused(Exception):
    """A record or label no pair may be counted from (the apply is refused, nothing is
    written): a value the worker's checks should have stopped."""


@dataclass(frozen=True, slots=True)
class PairRules:
    """What the meeting needs of the model's profile."""

    width: int
    task: str
    positive: str | None
    label_kind: str | None
    score_edges: tuple[float, ...] | None
    #: parts of a window for the sequential scan's sums, or None
    parts: int | None
    #: pairs count in their version's slice too
    versions: bool
    #: segment keys that are slices
    slice_keys: frozenset[str]
    champion: str | None
    shift: float

    @classmethod
    def of(cls, profile: ReferenceProfile, champion: str | None = None) -> PairRules:
        cfg = profile.config
        seq = cfg.performance.sequential
        edges = profile.score_edges
        return cls(
            width=cfg.window_seconds,
            task=profile.task,
            positive=profile.positive_class,
            label_kind=profile.label.kind if profile.label is not None else None,
            score_edges=tuple(edges) if edges is not None else None,
            parts=seq.sub_windows if seq.enabled else None,
            versions=cfg.slices.max_versions > 0,
            slice_keys=frozenset(profile.segments),
            champion=champion,
            shift=profile.label_shift(),
        )


def _finite(v: float) -> bool:
    return -BOUND < v < BOUND  # False for NaN too


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# ---- records ----------------------------------------------------------------------------
def _parse(rec: str) -> tuple[int, str, str, str, str] | None:
    """(time, version, class, score, segments) of a prediction record, or None."""
    parts = rec.split("|", 4)
    if len(parts) < 4 or not parts[0].isascii() or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else ""


def _version_of(line: str) -> str:
    """A record's version, or a version kept as such in a joined record."""
    if "|" not in line:
        return line
    parts = line.split("|", 2)
    return parts[1] if len(parts) == 3 and parts[0].isdigit() else ""


def _label_part(text: str) -> tuple[str, str, str]:
    """(label time, label bin, label) of a waiting label's or a joined id's
    "<time>|<bin>|<label>", or PairRefused."""
    parts = text.split("|", 2)
    if len(parts) == 3:
        t, b, label = parts  # both integers, perhaps negative (a bin of -1): ASCII digits
        if _integer_text(t) and _integer_text(b):
            return t, b, label
    raise PairRefused(f"join record {text}")


def _integer_text(text: str) -> bool:
    """ "-?digits" in ASCII, which `int` reads ("--1" passed a check by `lstrip` and then
    failed `int` with a ValueError, not a PairRefused)."""
    digits = text[1:] if text[:1] == "-" else text
    return digits.isascii() and digits.isdigit()


def _has_version(lines: str, version: str) -> bool:
    return any(_version_of(line) == version for line in lines.split("\n") if line)


class _Checks:
    def __init__(self, rules: PairRules) -> None:
        self.rules = rules

    def parsed(self, rec: str) -> tuple[int, str, str, str, str]:
        """The record's parts (`_parse`), or PairRefused."""
        r = self.rules
        parsed = _parse(rec)
        if parsed is None:
            raise PairRefused(f"prediction record {rec}")
        score = parsed[3]
        if r.task == "regression":
            yhat = _number(score)
            if yhat is not None and not (_finite(yhat) and abs(yhat) <= MAX_MAGNITUDE):
                raise PairRefused(f"prediction {score}")
        elif score != "" and r.positive is not None:
            sc = _number(score)
            if sc is None or not _finite(sc):
                raise PairRefused(f"score {score}")
        return parsed

    def heads(self, recs: list[str]) -> tuple[list[int], list[str]]:
        """Each record's time and version, checked as `parsed` checks one, but a whole
        batch at once (per record, the calls cost more than the checks). A batch the
        quick check doubts goes record by record, which names the first bad one."""
        split = [r.split("|", 4) for r in recs]
        if not split:
            return [], []
        if min(map(len, split)) >= 4:
            stamps = [p[0] for p in split]
            digits = "".join(stamps)
            if all(stamps) and digits.isascii() and digits.isdigit() and self._scores(split):
                return list(map(int, stamps)), [p[1] for p in split]
        parsed = [self.parsed(r) for r in recs]
        return [p[0] for p in parsed], [p[1] for p in parsed]

    def _scores(self, split: list[list[str]]) -> bool:
        """Every score passes `parsed`'s check (False: not sure, look record by record)."""
        r = self.rules
        if r.task != "regression" and r.positive is None:
            return True
        try:
            values = np.array([float(p[3]) for p in split if p[3]], dtype=np.float64)
        except ValueError:
            return False  # text that is no number: refused, or for a regressor let be
        size = np.abs(values)  # NaN fails both tests
        if r.task == "regression":
            return bool(np.all(size <= MAX_MAGNITUDE))
        return bool(np.all(size < BOUND))

    def label(self, label: str) -> str | None:
        if self.rules.task != "regression":
            return None
        y = _number(label)
        if y is None or not (
            _finite(y) and abs(y) <= MAX_MAGNITUDE and (y == 0 or abs(y) >= MIN_MAGNITUDE)
        ):
            return f"regression label {label}"
        return None


@dataclass(slots=True)
class Pair:
    """A labelled prediction: its record and its label."""

    record: str
    label: str
    label_time: int
    label_bin: int


@dataclass(slots=True)
class Pairs:
    """A batch's labelled predictions, column by column (as `window_sums` reads them)."""

    records: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    label_times: list[int] = field(default_factory=list)
    label_bins: list[int] = field(default_factory=list)

    def append(self, record: str, label: str, label_time: int, label_bin: int) -> None:
        self.records.append(record)
        self.labels.append(label)
        self.label_times.append(label_time)
        self.label_bins.append(label_bin)

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def of(cls, rows: Iterable[Pair]) -> Pairs:
        out = cls()
        for p in rows:
            out.append(p.record, p.label, p.label_time, p.label_bin)
        return out

    def rows(self) -> list[Pair]:
        return list(map(Pair, self.records, self.labels, self.label_times, self.label_bins))


@dataclass(slots=True)
class Meeting:
    """What a batch's predictions and labels do to the join's records."""

    #: every record read, as read ("" for none): the apply checks each is unchanged
    read: dict[Place, str] = field(default_factory=dict)
    #: the records the batch changes, as they become
    writes: dict[Place, str] = field(default_factory=dict)
    pairs: Pairs = field(default_factory=Pairs)
    #: (champion record, challenger record, label) of shadow traffic's labelled ids
    comparisons: list[tuple[str, str, str]] = field(default_factory=list)
    #: window start -> [repeated predictions, the first one's id]
    repeats: dict[int, list[Any]] = field(default_factory=dict)
    duplicate_labels: int = 0
    labels_waiting: int = 0
    labels_without_record: int = 0


class ShardedRecords(Mapping[Place, "str | None"]):
    """Records kept by shard, which the compiled transitions read without a call per id."""

    @abstractmethod
    def by_shard(self) -> dict[int, dict[str, str]]:
        """{shard: {id: record}}: an id missing from its shard's dict has no record."""


def meet(
    predictions: Iterable[list[Any]],
    labels: Iterable[list[Any]],
    current: Mapping[Place, str | None],
    rules: PairRules,
) -> Meeting:
    """The records' transitions for `[id, record, shard]` predictions then `[id, label,
    label time, label bin, shard]` labels, from the `current` records (every place the
    batch names). Raises PairRefused.

    A plain model's batch (no champion, not a regressor) goes through the compiled
    transitions (`_pairing.meet`) when they take every id of it; `_meet`, id by id in
    Python, is their reference and takes any batch they give back."""
    if _compiled is not None and rules.champion is None and rules.task != "regression":
        preds = predictions if isinstance(predictions, list) else list(predictions)
        labs = labels if isinstance(labels, list) else list(labels)
        if isinstance(current, ShardedRecords):
            records, by_shard = current.by_shard(), True
        elif isinstance(current, dict):
            records, by_shard = current, False
        else:
            records = None
        if records is not None:
            got = _compiled(preds, labs, records, by_shard, rules.width, rules.positive is not None)
            if got is not None:
                return compiled_meeting(got)
        predictions, labels = preds, labs
    return _meet(predictions, labels, current, rules)


def compiled_meeting(got: tuple[Any, ...]) -> Meeting:
    """The Meeting `_pairing.meet` answered, as its tuple spells it."""
    read, writes, records, labels, times, bins, repeats, dup, waiting, without = got
    return Meeting(
        read=read,
        writes=writes,
        pairs=Pairs(records, labels, times, bins),
        repeats=repeats,
        duplicate_labels=dup,
        labels_waiting=waiting,
        labels_without_record=without,
    )


def _meet(
    predictions: Iterable[list[Any]],
    labels: Iterable[list[Any]],
    current: Mapping[Place, str | None],
    rules: PairRules,
) -> Meeting:
    """`meet`, id by id in Python."""
    out = Meeting()
    checks = _Checks(rules)
    records: dict[Place, str | None] = {}
    champion = rules.champion

    def put(place: Place, value: str) -> None:
        records[place] = value
        out.writes[place] = value

    def repeat(pts: int, pid: str) -> None:
        ws = pts // rules.width * rules.width
        r = out.repeats.setdefault(ws, [0, pid])
        r[0] += 1

    def joined(pts: str, recs: list[str], lts: str, lbin: str, label: str) -> str:
        versions = [_version_of(r) for r in recs]
        if not any(versions):
            return f"J{pts}"
        kept = recs if champion else versions
        return f"J{pts}\t" + "\n".join(kept) + f"\t{lts}|{lbin}|{label}"

    def compare_all(recs: list[str], label: str, new: str | None) -> None:
        if not champion:
            return
        champ = None
        for r in recs:
            if _version_of(r) == champion:
                champ = r
        if champ is None:
            return
        for r in recs:
            if r != champ and _version_of(r) != champion and (new is None or new in (r, champ)):
                out.comparisons.append((champ, r, label))

    preds = predictions if isinstance(predictions, list) else list(predictions)
    times, versions = checks.heads([e[1] for e in preds])
    read, writes, pairs = out.read, out.writes, out.pairs
    regression = rules.task == "regression"
    # The common transitions inline (a record met for the first time, a label waiting,
    # a plain record labelled): a function call per id costs as much as the rest.
    for (pid, rec, shard), pts, version in zip(preds, times, versions, strict=True):
        place = (shard, pid)
        if place in records:
            cur = records[place]
        else:
            cur = records[place] = current[place]
            read[place] = cur or ""
        if cur is None:
            records[place] = writes[place] = rec
        elif not cur:
            raise PairRefused(f"join record {cur!r} of {pid}")
        elif cur[0] == "L":  # its label came first
            lts, lbin, label = _label_part(cur[1:])
            err = checks.label(label) if regression else None
            if err:
                raise PairRefused(err)
            pairs.append(rec, label, int(lts), int(lbin))
            if not version:
                new = f"J{pts}"
            else:
                new = f"J{pts}\t{rec if champion else version}\t{lts}|{lbin}|{label}"
            records[place] = writes[place] = new
        elif cur[0] == "J":  # joined; another version scoring it later joins too
            head, _, rest = cur.partition("\t")
            kept, _, tail = rest.partition("\t")
            if rest and version and not _has_version(kept, version):
                lts, lbin, label = _label_part(tail)
                err = checks.label(label)
                if err:
                    raise PairRefused(err)
                pairs.append(rec, label, int(lts), int(lbin))
                recs = [line for line in kept.split("\n") if line] + [rec]
                compare_all(recs, label, rec)
                put(place, joined(head[1:], recs, lts, lbin, label))
            else:
                repeat(pts, pid)
        elif version and "|" in cur and not _has_version(cur, version):
            put(place, f"{cur}\n{rec}")  # shadow traffic: the same id, another version
        else:
            repeat(pts, pid)

    for pid, label, lts, lbin, shard in labels:
        if regression:
            err = checks.label(label)
            if err:
                raise PairRefused(err)
        place = (shard, pid)
        if place in records:
            cur = records[place]
        else:
            cur = records[place] = current[place]
            read[place] = cur or ""
        if cur is None:
            records[place] = writes[place] = f"L{lts}|{lbin}|{label}"
            out.labels_waiting += 1
        elif not cur:
            raise PairRefused(f"join record {cur!r} of {pid}")
        elif cur[0] in "JL":  # joined already, or the same label waiting
            out.duplicate_labels += 1
        elif "|" not in cur:
            # recorded while the model had no label column: nothing to join it with
            out.labels_without_record += 1
            put(place, f"J{cur}")
        elif "\n" not in cur:  # one version's record
            version = checks.parsed(cur)[1]
            pairs.append(cur, label, int(lts), int(lbin))
            at = cur[: cur.index("|")]
            if not version:
                new = f"J{at}"
            else:
                new = f"J{at}\t{cur if champion else version}\t{lts}|{lbin}|{label}"
            records[place] = writes[place] = new
        else:
            recs = [line for line in cur.split("\n") if line]
            lt, lb = int(lts), int(lbin)
            for r in recs:
                checks.parsed(r)
                pairs.append(r, label, lt, lb)
            if champion:
                compare_all(recs, label, None)
            put(place, joined(cur[: cur.index("|")], recs, str(lts), str(lbin), label))
    return out


# ---- what the pairs add ------------------------------------------------------------------
@dataclass(slots=True)
class WindowSums:
    """What a batch's pairs add to one window: its perf hash's fields (integer and float
    increments) and the joined labels' column (categorical counts, or a numeric label's
    bins and moments)."""

    ints: Counter[str] = field(default_factory=Counter)
    floats: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    label_counts: Counter[str] = field(default_factory=Counter)
    label_ints: Counter[str] = field(default_factory=Counter)
    label_floats: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


def _segments(text: str) -> list[tuple[str, str]]:
    """A record's "|k=v,k=v" as (key, value) pairs."""
    out = []
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if eq and key:
            out.append((key, value))
    return out


def window_sums(pairs: Pairs, rules: PairRules) -> dict[int, WindowSums]:
    """Each window's sums from the batch's pairs (the window of the prediction), column by
    column: the same fields `PerformanceSketch.from_pairs` fills, per group of (window,
    slice). Python loops run over distinct values (windows, slices, classes, bins), not
    over pairs."""
    n = len(pairs)
    if not n:
        return {}
    # column by column through map() and C-level getters: a Python expression per
    # pair and column costs more than the arithmetic that follows
    split = [r.split("|", 4) for r in pairs.records]
    pts = np.fromiter(map(int, map(_FIRST, split)), np.int64, n)
    versions = list(map(_SECOND, split))
    classes = list(map(_THIRD, split))
    score_texts = list(map(_FOURTH, split))
    seg_texts = [x[4] if len(x) == 5 else "" for x in split]
    labels = pairs.labels
    width = rules.width
    starts = pts // width * width
    wins, win = np.unique(starts, return_inverse=True)
    nw = len(wins)
    out = {int(ws): WindowSums() for ws in wins.tolist()}
    sums = _Groups(rules, versions, seg_texts, win, wins, out)
    emit, coded = sums.emit, sums.coded

    delay = np.maximum(np.fromiter(pairs.label_times, np.int64, n) - pts, 0)
    emit("i", "n", None, None)
    emit("f", "dsum", delay.astype(np.float64), None)
    buckets = np.where(delay >= 1, 1 + np.floor(np.log2(np.maximum(delay, 1))), 0)
    buckets = buckets.astype(np.int64)
    coded(_numbered("d:", int(buckets.max()) + 1), buckets, None)

    parts: np.ndarray | None = None
    if rules.parts:
        parts = np.minimum((pts - starts) * rules.parts // width, rules.parts - 1)
        part_names = range(rules.parts)

    def part(stat: str, values: np.ndarray, mask: np.ndarray) -> None:
        """The sequential scan's sums (the model's only, not the slices')."""
        assert parts is not None
        names = [f"q:{j}:{stat}" for j in part_names]
        coded(names, parts, mask, values, model_only=True)

    right = np.fromiter(map(operator.eq, labels, classes), bool, n)
    if rules.task == "regression":
        known = np.array([s != "" and _number(s) is not None for s in score_texts])
        yhat = np.zeros(n)
        if known.any():
            yhat[known] = np.array([s for s, k in zip(score_texts, known, strict=True) if k], float)
        y = np.array(labels, dtype=np.float64)
        e = yhat - y
        ae, se = np.abs(e), e * e
        centred = y - rules.shift
        emit("f", "ae", ae, known)
        emit("f", "se", se, known)
        emit("f", "err", e, known)
        emit("f", "y", centred, known)
        emit("f", "y2", centred * centred, known)
        nonzero = known & (y != 0)
        ape = np.divide(ae, np.abs(y), out=np.zeros(n), where=nonzero)
        emit("f", "ape", ape, nonzero)
        emit("i", "nape", None, nonzero)
        if parts is not None:
            part("an", np.ones(n), known)
            part("a", ae, known)
            part("a2", se, known)
        sums.segments(lambda idx: {"ae": ae[idx], "se": se[idx]}, known)
    else:
        has_class = np.fromiter(map(bool, classes), bool, n)
        cell, cells = _factorized(list(zip(labels, classes, strict=True)))
        coded([f"cm:{a}|{c}" for a, c in cells], cell, has_class)
        if parts is not None:
            part("en", np.ones(n), has_class)
            part("e", np.ones(n), has_class & ~right)
        if rules.positive is not None:
            scored = np.fromiter(map(bool, score_texts), bool, n)
            sc = np.zeros(n)
            if scored.any():
                sc[scored] = np.fromiter(map(float, filter(None, score_texts)), np.float64)
            positive = np.fromiter(map(rules.positive.__eq__, labels), bool, n)
            bins = score_bin(sc, rules.score_edges).astype(np.int64)
            top = int(bins.max()) + 1
            sided = bins * 2 + positive
            coded(_sided_names(top), sided, scored)
            if rules.score_edges is not None:
                cal = calibration_bin(sc).astype(np.int64)
                coded(_numbered("cs:", int(cal.max()) + 1), cal, scored, sc)
            pc = np.clip(sc, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
            loss = -np.where(positive, np.log(pc), np.log(1 - pc))
            brier = np.where(positive, (sc - 1) * (sc - 1), sc * sc)
            emit("f", "brier", brier, scored)
            emit("f", "ll", loss, scored)
            emit("f", "ll2", loss * loss, scored)
            emit("i", "nll2", None, scored)
            emit("i", "ns", None, scored)
            if parts is not None:
                part("ln", np.ones(n), scored)
                part("l", loss, scored)
                part("l2", loss * loss, scored)
        sums.segments(lambda idx: {"ok": right[idx]}, has_class)

    # the joined labels' own column
    if rules.label_kind == "categorical":
        code, names = _factorized(labels)
        key, counts = np.unique(win * len(names) + code, return_counts=True)
        for k, c in zip(key.tolist(), counts.tolist(), strict=True):
            w, j = divmod(k, len(names))
            out[int(wins[w])].label_counts[names[j]] += c
    else:
        lbin = np.fromiter(pairs.label_bins, np.int64, n)
        ok = lbin >= 0
        if ok.any():
            v = np.array(labels, dtype=np.float64)
            top = int(lbin.max()) + 1
            key, counts = np.unique(win[ok] * top + lbin[ok], return_counts=True)
            for k, c in zip(key.tolist(), counts.tolist(), strict=True):
                w, b = divmod(k, top)
                out[int(wins[w])].label_ints[f"bin:{b}"] += c
            n_w = np.bincount(win[ok], minlength=nw)
            s_w = np.bincount(win[ok], weights=v[ok], minlength=nw)
            q_w = np.bincount(win[ok], weights=(v * v)[ok], minlength=nw)
            for w in np.flatnonzero(n_w).tolist():
                target = out[int(wins[w])]
                target.label_ints["n"] += int(n_w[w])
                target.label_floats["sum"] += float(s_w[w])
                target.label_floats["sumsq"] += float(q_w[w])
    return out


_FIRST, _SECOND, _THIRD, _FOURTH = (itemgetter(i) for i in range(4))


@lru_cache(maxsize=64)
def _numbered(prefix: str, n: int) -> list[str]:
    """Field names `prefix0` .. `prefix<n-1>`, spelled once per size (a model's ~200
    score bins were spelled again for every batch)."""
    return [f"{prefix}{j}" for j in range(n)]


@lru_cache(maxsize=64)
def _sided_names(top: int) -> list[str]:
    """The score bins' fields by `bin * 2 + positive`: neg:0, pos:0, neg:1, ..."""
    return [f"{('neg:', 'pos:')[j % 2]}{j // 2}" for j in range(2 * top)]


def _factorized(values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """(each value's code, the distinct values in order of first sight)."""
    distinct = list(dict.fromkeys(values))
    code = {v: i for i, v in enumerate(distinct)}
    return np.fromiter(map(code.__getitem__, values), np.int64, len(values)), distinct


def _runs(codes: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(code, the positions holding it) per distinct code, by one stable sort."""
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(codes)].tolist(), strict=True):
        yield int(ordered[lo]), order[lo:hi]


class _Groups:
    """The rows of a batch's pairs: each pair once for the model, again for each slice it
    belongs to ("[v=2.0]", "[region=eu]"); a group is a (window, slice)."""

    def __init__(
        self,
        rules: PairRules,
        versions: list[str],
        seg_texts: list[str],
        win: np.ndarray,
        wins: np.ndarray,
        out: dict[int, WindowSums],
    ) -> None:
        n, nw = len(versions), len(wins)
        self.n, self.win, self.wins, self.out = n, win, wins, out
        kind, names = _factorized(list(zip(versions, seg_texts, strict=True)))
        self.seg_of = {s: _segments(s) for _, s in names if s}
        prefix_ids: dict[str, int] = {"": 0}
        row_pairs, row_prefixes = [np.arange(n)], [np.zeros(n, dtype=np.int64)]
        for k, idx in _runs(kind) if len(names) > 1 or names[0] != ("", "") else ():
            version, segs = names[k]
            prefixes = []
            if rules.versions and version:
                prefixes.append(f"[v={version}]")
            if rules.slice_keys and segs:
                prefixes += [f"[{a}={b}]" for a, b in self.seg_of[segs] if a in rules.slice_keys]
            for p in prefixes:
                row_pairs.append(idx)
                row_prefixes.append(np.full(len(idx), prefix_ids.setdefault(p, len(prefix_ids))))
        self.rp = np.concatenate(row_pairs)
        # each row's group, numbered in (prefix, window) order: a dense map over the
        # few (prefix, window) values rather than a sort of the rows
        row_keys = np.concatenate(row_prefixes) * nw + win[self.rp]
        present = np.zeros(len(prefix_ids) * nw, dtype=bool)
        present[row_keys] = True
        keys = np.flatnonzero(present)
        self.rg = (np.cumsum(present) - 1)[row_keys]
        prefix = list(prefix_ids)
        self.groups = [(int(wins[k % nw]), prefix[k // nw]) for k in keys.tolist()]
        self.kind_names, self.kind = names, kind
        #: (id of a mask, model only) -> (the mask, its rows): kept with the mask, whose id
        #: is unique while it lives
        self._masked: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _rows(self, mask: np.ndarray | None, model_only: bool) -> tuple[np.ndarray, np.ndarray]:
        rp, rg = (self.rp[: self.n], self.rg[: self.n]) if model_only else (self.rp, self.rg)
        if mask is None:
            return rp, rg
        # several sums share a mask (the scored pairs: five fields and three parts)
        memo = self._masked.get((id(mask), model_only))
        if memo is not None and memo[0] is mask:
            return memo[1], memo[2]
        keep = mask[rp]
        rp, rg = rp[keep], rg[keep]
        self._masked[(id(mask), model_only)] = (mask, rp, rg)
        return rp, rg

    def emit(
        self, kind: str, stat: str, values: np.ndarray | None, mask: np.ndarray | None
    ) -> None:
        """Per group: the sum of a per-pair value over its rows (where `mask`, a per-pair
        selection, holds); a field only for groups with at least one such row."""
        rp, rg = self._rows(mask, False)
        if not rg.size:
            return
        ng = len(self.groups)
        counts = np.bincount(rg, minlength=ng)
        sums = None if values is None else np.bincount(rg, weights=values[rp], minlength=ng)
        for g in np.flatnonzero(counts).tolist():
            ws, prefix = self.groups[g]
            w = self.out[ws]
            if sums is None:
                w.ints[prefix + stat] += int(counts[g])
            else:
                w.floats[prefix + stat] += float(sums[g])

    def coded(
        self,
        names: list[str],
        codes: np.ndarray,
        mask: np.ndarray | None,
        values: np.ndarray | None = None,
        model_only: bool = False,
    ) -> None:
        """Per group and per code: a count (field `names[code]`), or the sum of `values`."""
        rp, rg = self._rows(mask, model_only)
        if not rg.size:
            return
        k = len(names)
        key = rg * k + codes[rp]
        size = len(self.groups) * k
        if size <= 4 * key.size + 4096:  # a count per (group, code): no sort
            every = np.bincount(key, minlength=size)
            found = np.flatnonzero(every)
            counts = every[found]
        else:
            found, counts = np.unique(key, return_counts=True)
        totals = (
            None if values is None else np.bincount(key, weights=values[rp], minlength=size)[found]
        )
        for j, (c, cnt) in enumerate(zip(found.tolist(), counts.tolist(), strict=True)):
            g, code = divmod(c, k)
            ws, prefix = self.groups[g]
            w = self.out[ws]
            if totals is None:
                w.ints[prefix + names[code]] += cnt
            else:
                w.floats[prefix + names[code]] += float(totals[j])

    def segments(
        self, values: Callable[[np.ndarray], dict[str, np.ndarray]], mask: np.ndarray
    ) -> None:
        """Per segment (every key, the model's only): labelled pairs, and the sums of
        `values` (right classes, or errors) over the pairs where `mask` holds."""
        if not self.seg_of:
            return
        nw = len(self.wins)
        for k, idx in _runs(self.kind):
            segs = self.kind_names[k][1]
            if not segs:
                continue
            w = self.win[idx]
            n_w = np.bincount(w, minlength=nw)
            m = mask[idx]
            m_w = np.bincount(w[m], minlength=nw)
            vs = {s: np.bincount(w[m], weights=v[m], minlength=nw) for s, v in values(idx).items()}
            for wi in np.flatnonzero(n_w).tolist():
                target = self.out[int(self.wins[wi])]
                for a, b in self.seg_of[segs]:
                    sp = f"s:{a}={b}:"
                    target.ints[sp + "n"] += int(n_w[wi])
                    if m_w[wi]:
                        for stat, v in vs.items():
                            if stat == "ok":
                                target.ints[sp + stat] += int(v[wi])
                            else:
                                target.floats[sp + stat] += float(v[wi])


def comparison_sums(
    comparisons: list[tuple[str, str, str]], rules: PairRules, into: dict[int, WindowSums]
) -> None:
    """Champion against challenger on each labelled id both scored, in the champion
    prediction's window (fields "[cc=<challenger>]...", `streamdrift.champion`)."""
    for champ, chal, label in comparisons:
        c, x = _parse(champ), _parse(chal)
        if c is None or x is None:
            # a side kept as its version only (joined before a champion was set): no
            # class or score left to compare
            continue
        ws = c[0] // rules.width * rules.width
        w = into.setdefault(ws, WindowSums())
        pre = f"[cc={x[1]}]"
        w.ints[pre + "n"] += 1
        if rules.task == "regression":
            y, a, b = _number(label), _number(c[3]), _number(x[3])
            if y is not None and a is not None and b is not None:
                ea, eb = abs(a - y), abs(b - y)
                w.ints[pre + "nr"] += 1
                w.floats[pre + "aea"] += ea
                w.floats[pre + "aeb"] += eb
                w.floats[pre + "d2"] += (ea - eb) * (ea - eb)
            continue
        if c[2] != "" and x[2] != "":
            right = ("y" if c[2] == label else "n") + ("y" if x[2] == label else "n")
            w.ints[pre + "mc:" + right] += 1
        if c[3] != "" and x[3] != "" and rules.positive is not None:
            side = "jp:" if label == rules.positive else "jn:"
            w.ints[f"{pre}{side}{_joint_bin(c[3])},{_joint_bin(x[3])}"] += 1


def _joint_bin(score: str) -> int:
    b = math.floor(float(score) * JOINT_BINS)
    return min(max(b, 0), JOINT_BINS - 1)


def check_finite(sums: Mapping[int, WindowSums]) -> None:
    """Refuse sums the apply script could not write (a double overflowed)."""
    for w in sums.values():
        for h in (w.floats, w.label_floats):
            for f, v in h.items():
                if not _finite(v):
                    raise PairRefused(f"computed {f} is not a finite number")


__all__ = [
    "Meeting",
    "Pair",
    "PairRefused",
    "PairRules",
    "Pairs",
    "Place",
    "ShardedRecords",
    "WindowSums",
    "check_finite",
    "comparison_sums",
    "meet",
    "window_sums",
]
