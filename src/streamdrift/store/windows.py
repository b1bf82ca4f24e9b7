"""Reading windows back: the stored hashes of a model's windows as `WindowSketch`es,
one pipelined round trip for any number of windows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from streamdrift.champion import decode_comparisons
from streamdrift.profile import LABEL, ReferenceProfile
from streamdrift.sketch import CategoricalSketch, NumericSketch, WindowSketch
from streamdrift.store.client import RedisClient
from streamdrift.store.depth_fields import decode_reads, distinct_features, pfcount, queue_reads
from streamdrift.store.keys import ModelKeys, WindowKeys
from streamdrift.store.window_deltas import Deltas, add_fields, add_to, fold
from streamdrift.store.window_fields import (
    decode_performance,
    decode_slice_performance,
    decode_window,
    unpack,
)

#: the fields of a numeric column's hash the cumulative checks read (store.window_fields)
MOMENTS = ["n", "missing", "sum", "sumsq"]
_NO_BINS = np.zeros(0, dtype=np.int64)


def _text(h: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in h.items()}


class Windows:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self.deltas = Deltas(client)

    def starts(self, model: str, revision: int) -> list[int]:
        starts: Any = self.redis.zrange(ModelKeys(model).windows(revision), 0, -1)
        return [int(s) for s in starts]

    def read(
        self, profile: ReferenceProfile, starts: list[int], slices: bool = False
    ) -> list[WindowSketch]:
        """Window sketches as stored (features, the model's outputs, performance);
        expired windows are left out. With `slices`, each window's slices too (a second
        round trip, for the slices the first one found). The deltas lists read (numeric
        columns, pair sums, correlation sums, score bins) are folded on the way
        (store.window_deltas)."""
        k = ModelKeys(profile.model_id)
        columns = {**profile.features, **profile.outputs()}
        pipe = self.redis.pipeline(transaction=False)
        for s in starts:
            wk = k.window(profile.revision, s)
            self._queue(pipe, wk, columns, whole=True)
            pipe.lrange(wk.deltas, 0, -1)
            pipe.lrange(wk.perf_deltas, 0, -1)
            pipe.lrange(wk.meta_deltas, 0, -1)
            queue_reads(pipe, wk, profile)
        res = iter(pipe.execute())
        out = []
        perfs: dict[int, dict[str, str]] = {}
        lists: dict[str, list[bytes]] = {}
        for s in starts:
            wk = k.window(profile.revision, s)
            meta = _text(next(res))
            hashes = {name: _text(next(res)) for name in columns}
            perf = _text(next(res))
            examples = [orjson.loads(e) for e in next(res)]
            blobs, perf_blobs, meta_blobs = next(res), next(res), next(res)
            add_fields(perf, perf_blobs)
            add_fields(meta, meta_blobs)
            window = decode_window(s, profile, meta, hashes, perf, examples)
            corr_blobs = decode_reads(window, profile, res)  # multivariate, distinct
            add_to(window.numeric, fold(blobs))  # derived columns' deltas too
            if meta or perf:
                window.comparisons = decode_comparisons(perf)
                out.append(window)
                perfs[s] = perf
                lists[wk.deltas], lists[wk.perf_deltas] = blobs, perf_blobs
                lists[wk.corr_deltas], lists[wk.meta_deltas] = corr_blobs, meta_blobs
        if slices:
            self._read_slices(profile, out, perfs, lists)
        self.deltas.fold(lists)
        return out

    def distinct(self, profile: ReferenceProfile, starts: list[int]) -> dict[str, int]:
        """Distinct values per categorical feature over the windows `starts` together:
        one PFCOUNT over their HyperLogLogs (their union), not a sum of counts."""
        names = distinct_features(profile)
        if not names or not starts:
            return {}
        k = ModelKeys(profile.model_id)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pfcount(pipe, [k.window(profile.revision, s).hll(name) for s in starts])
        return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True)}

    @staticmethod
    def _queue(pipe: Any, wk: WindowKeys, columns: dict[str, Any], whole: bool) -> None:
        """A window's hashes; a slice has no perf hash (its pairs are fields of the
        window's) and no outlier examples."""
        pipe.hgetall(wk.meta)
        for name, col in columns.items():
            pipe.hgetall(wk.column(name, col.kind))
        if whole:
            pipe.hgetall(wk.perf)
            pipe.lrange(wk.outliers, 0, -1)

    def _read_slices(
        self,
        profile: ReferenceProfile,
        windows: list[WindowSketch],
        perfs: dict[int, dict[str, str]],
        lists: dict[str, list[bytes]],
    ) -> None:
        k = ModelKeys(profile.model_id)
        # a slice's hashes: its meta, its numeric columns packed in one, its categorical
        # columns (the join counts labels in the window's, not in slices)
        columns = {n: c for n, c in {**profile.features, **profile.outputs()}.items() if n != LABEL}
        categorical = [n for n, c in columns.items() if c.kind != "numeric"]
        wanted = [(w, name) for w in windows for name in sorted(w.slice_counts)]
        if wanted:
            pipe = self.redis.pipeline(transaction=False)
            for w, name in wanted:
                wk = k.slice_window(profile.revision, w.start, name)
                pipe.hgetall(wk.meta)
                pipe.lrange(wk.meta_deltas, 0, -1)
                pipe.hgetall(wk.packed)
                pipe.lrange(wk.deltas, 0, -1)
                for c in categorical:
                    pipe.hgetall(wk.cat(c))
            res = iter(pipe.execute())
            for w, name in wanted:
                meta = _text(next(res))
                meta_blobs = next(res)
                add_fields(meta, meta_blobs)
                hashes = unpack(_text(next(res)))
                blobs = next(res)
                hashes.update({c: _text(next(res)) for c in categorical})
                part = decode_window(w.start, profile, meta, hashes, {}, [])
                add_to(part.numeric, fold(blobs))
                sw = k.slice_window(profile.revision, w.start, name)
                lists[sw.deltas], lists[sw.meta_deltas] = blobs, meta_blobs
                part.numeric.pop(LABEL, None)
                part.categorical.pop(LABEL, None)
                w.slices[name] = part
        for w in windows:
            for name, perf in decode_slice_performance(perfs.get(w.start, {})).items():
                sk = w.slices.get(name)
                if sk is None:
                    sk = w.slices[name] = WindowSketch(start=w.start)
                sk.performance = perf

    def read_performance(
        self, profile: ReferenceProfile, starts: list[int], columns: Sequence[str] = ()
    ) -> list[WindowSketch]:
        """Only the event counts and performance sums of windows (the recent baseline),
        and of each of `columns` its values and missing values (numeric columns: their
        sum and sum of squares too; no bins, no categories), for the cumulative checks."""
        k = ModelKeys(profile.model_id)
        known = {**profile.features, **profile.outputs()}
        numeric = [c for c in columns if c in known and known[c].kind == "numeric"]
        categorical = [c for c in columns if c in known and known[c].kind != "numeric"]
        pipe = self.redis.pipeline(transaction=False)
        for s in starts:
            wk = k.window(profile.revision, s)
            pipe.hmget(wk.meta, ["count", *(f"cat_missing:{c}" for c in categorical)])
            pipe.hgetall(wk.perf)
            pipe.lrange(wk.perf_deltas, 0, -1)
            for c in numeric:
                pipe.hmget(wk.column(c, "numeric"), MOMENTS)
            if numeric:
                pipe.lrange(wk.deltas, 0, -1)
        res = iter(pipe.execute())
        out = []
        for s in starts:
            count, *missing = next(res)
            perf = _text(next(res))
            add_fields(perf, next(res))
            w = WindowSketch(start=s, count=int(count or 0))
            if perf:
                w.performance = decode_performance(perf)
            stored: dict[str, NumericSketch] = {}
            for c in numeric:
                n, miss, total, total_sq = next(res)
                stored[c] = NumericSketch(
                    bins=_NO_BINS,
                    n=int(n or 0),
                    missing=int(miss or 0),
                    total=float(total or 0.0),
                    total_sq=float(total_sq or 0.0),
                )
            if numeric:
                for c, d in fold(next(res)).items():  # without bins: the moments alone
                    st = stored.get(c)
                    if st is not None:
                        st.n, st.missing = st.n + d.n, st.missing + d.missing
                        st.total, st.total_sq = st.total + d.total, st.total_sq + d.total_sq
            for c, sk in stored.items():
                if sk.n or sk.missing:
                    w.numeric[c] = sk
            for c, miss in zip(categorical, missing, strict=True):
                w.categorical[c] = CategoricalSketch(counts=Counter(), missing=int(miss or 0))
            out.append(w)
        return out
