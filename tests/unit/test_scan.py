"""The compiled scanner (`streamdrift._scan`) reads each value exactly as orjson reads it,
or refuses the batch.

orjson is the reference: for events written with every form a JSON number, string and
object can take, the scanner's columns must equal orjson's values to the bit (a float's
sign of zero included) and to the type (1 and 1.0 differ). For values mutated byte by
byte, whatever the scanner accepts orjson must read the same way: the scanner may give
back a batch it could have read, never read one differently.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import numpy as np
import orjson
import pytest

from streamdrift import _scan

scan = _scan.scan

NUMERIC = ("f0", "f1", "f2", "amount", "ünits")
CATEGORICAL = ("country", "device")
BIG = 1 << 20

#: number literals of every form the grammar allows, the awkward ones spelled out
LITERALS = [
    "0", "-0", "0.0", "-0.0", "1", "-1", "7.5", "1e5", "1E5", "1e+5", "1e-5", "-2.5E-3",
    "0.1", "0.3", "123456789012345678", "9223372036854775807", "-9223372036854775807",
    "9007199254740993", "9007199254740993.0", "0.000000000000000000000123",
    "123456789.123456789123", "1.7976931348623157e308", "5e-324", "2.2250738585072014e-308",
    "4.9406564584124654e-324", "1e-400", "1e22", "1e23", "8.98846567431158e307",
    "3.141592653589793238462643383279", "100000000000000000000000e-10", "1e100", "-1e100",
    "0e0", "0E-0", "1796096032.8591022", "1796096032859102200", "17960960328591.022",
]  # fmt: skip


def _number(rng: np.random.Generator) -> str:
    kind = rng.integers(0, 6)
    if kind == 0:
        return str(LITERALS[rng.integers(0, len(LITERALS))])
    if kind == 1:
        return repr(float(rng.normal() * 10.0 ** rng.integers(-30, 30)))
    if kind == 2:
        return str(int(rng.integers(-(10**12), 10**12)))
    if kind == 3:  # a fixed decimal of up to 25 digits
        digits = "".join(map(str, rng.integers(0, 10, rng.integers(1, 26))))
        cut = int(rng.integers(0, len(digits)))
        text = (digits[:cut].lstrip("0") or "0") + ("." + digits[cut:] if cut < len(digits) else "")
        return ("-" if rng.uniform() < 0.5 else "") + text
    if kind == 4:  # mantissa and exponent apart
        m = f"{rng.integers(1, 10)}.{rng.integers(0, 10**6)}"
        sign = ["", "+", "-"][rng.integers(0, 3)]
        return f"{m}{'eE'[rng.integers(0, 2)]}{sign}{rng.integers(0, 60)}"
    return repr(float(rng.uniform(-1e6, 1e6)))


def _string(rng: np.random.Generator) -> str:
    pool = ["DE", "FR", "mobile", "tablette-été", "日本", "a b", "", "x" * 40, "Info", "ŝ"]
    return str(pool[rng.integers(0, len(pool))])


def _space(rng: np.random.Generator) -> str:
    return str(["", "", "", " ", "\n  ", "\t", "\r\n"][rng.integers(0, 7)])


def _dump(value: Any, rng: np.random.Generator) -> str:
    """JSON text of `value`, numbers given as literal strings in ("num", text) pairs,
    with white space of every kind between tokens."""
    w = _space(rng)
    if isinstance(value, tuple) and value[0] == "num":
        return w + value[1] + w
    if isinstance(value, dict):
        items = [
            f"{w}{orjson.dumps(k).decode()}{_space(rng)}:{_dump(v, rng)}" for k, v in value.items()
        ]
        return w + "{" + ",".join(items) + _space(rng) + "}" + w
    if isinstance(value, list):
        return w + "[" + ",".join(_dump(v, rng) for v in value) + "]" + w
    return w + orjson.dumps(value).decode() + w


def _event(rng: np.random.Generator, i: int) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for name in NUMERIC:
        r = rng.uniform()
        if r < 0.85:
            text = _number(rng)
            if abs(float(text)) <= 1e100:
                features[name] = ("num", text)
        elif r < 0.93:
            features[name] = None
    for name in CATEGORICAL:
        r = rng.uniform()
        if r < 0.7:
            features[name] = _string(rng) or "empty"
        elif r < 0.8:
            features[name] = int(rng.integers(-5, 5))
        elif r < 0.85:
            features[name] = bool(rng.integers(0, 2))
        elif r < 0.9:
            features[name] = ("num", repr(float(rng.uniform())))
        elif r < 0.95:
            features[name] = None
    keys = list(features)
    rng.shuffle(keys)
    event: dict[str, Any] = {
        "prediction_id": f"p-{i}-{_string(rng)}" if rng.uniform() < 0.9 else "é" * 256,
        "model_id": ["fraud", "loan", "ünïcode"][rng.integers(0, 3)],
        "features": {k: features[k] for k in keys},
    }
    r = rng.uniform()
    if r < 0.5:
        pred: Any = {"score": ("num", _number(rng)), "label": int(rng.integers(0, 2))}
        if rng.uniform() < 0.1:
            pred = {"label": "cat"} if rng.uniform() < 0.5 else {"score": None, "extra": [1, {}]}
    elif r < 0.7:
        pred = ("num", _number(rng))
    elif r < 0.85:
        pred = _string(rng)
    else:
        pred = bool(rng.integers(0, 2))
    event["prediction"] = pred
    if rng.uniform() < 0.7:
        event["timestamp"] = ("num", _number(rng)) if rng.uniform() < 0.8 else "2026-12-01T10:00Z"
    if rng.uniform() < 0.5:
        event["model_version"] = ["1.0.0", "2", "v-ü"][rng.integers(0, 3)]
    elif rng.uniform() < 0.2:
        event["model_version"] = None
    if rng.uniform() < 0.3:
        event["segments"] = (
            None if rng.uniform() < 0.2 else {"region": _string(rng), "tier": 3, "vip": True}
        )
    if rng.uniform() < 0.2:
        event["trace"] = {"id": "abc", "n": [("num", "1"), ("num", "-2.5e3"), None, True, []]}
    order = list(event)
    rng.shuffle(order)
    return {k: event[k] for k in order}


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _same(got: Any, want: Any) -> bool:
    """Equal values of equal types; floats to the bit."""
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        return _bits(got) == _bits(want)
    if isinstance(want, dict):
        return list(got) == list(want) and all(_same(got[k], want[k]) for k in want)
    return bool(got == want)


def _check(raws: list[bytes], got: tuple[Any, ...]) -> None:
    """The scanner's columns against orjson's reading of each value."""
    models, pids, versions, stamps, numbers, cats, preds, scores, labels, segments, flags = got
    x = np.frombuffer(numbers, dtype=np.float64).reshape(len(raws), len(NUMERIC))
    kinds = 0
    for i, raw in enumerate(raws):
        e = orjson.loads(raw)  # a value the scanner took must be JSON
        assert type(e) is dict
        assert _same(models[i], e["model_id"]) and _same(pids[i], e["prediction_id"])
        assert _same(versions[i], e.get("model_version"))
        assert _same(stamps[i], e.get("timestamp"))
        assert _same(segments[i], e.get("segments"))
        f = e["features"]
        assert set(f) <= set(NUMERIC) | set(CATEGORICAL)
        for j, name in enumerate(NUMERIC):
            v = f.get(name)
            if v is None:
                assert math.isnan(x[i, j])
            else:
                assert type(v) in (int, float) and _bits(x[i, j]) == _bits(float(v)), (name, v)
        for j, name in enumerate(CATEGORICAL):
            assert _same(cats[j][i], f.get(name)), (name, cats[j][i], f.get(name))
        p = e["prediction"]
        if type(p) is dict:
            kinds |= 2
            assert preds[i] is None
            assert _same(scores[i], p.get("score")) and _same(labels[i], p.get("label"))
        else:
            kinds |= 1
            assert _same(preds[i], p)
    assert flags == kinds


@pytest.mark.parametrize("seed", range(6))
def test_every_form_of_a_valid_event_reads_as_orjson_reads_it(seed):
    rng = np.random.default_rng(seed)
    raws = [_dump(_event(rng, i), rng).encode() for i in range(600)]
    got = scan(raws, NUMERIC, CATEGORICAL, BIG)
    assert got is not None
    _check(raws, got)


@pytest.mark.parametrize("literal", LITERALS)
def test_each_number_literal_reads_to_the_same_double(literal):
    if abs(float(literal)) > 1e100:  # a feature beyond MAX_MAGNITUDE: the exact path names it
        raw = b'{"model_id":"m","prediction_id":"p","features":{"f0":%s},"prediction":1}'
        assert scan([raw % literal.encode()], NUMERIC, CATEGORICAL, BIG) is None
        return
    raw = b'{"model_id":"m","prediction_id":"p","features":{"f0":%s},"prediction":%s}' % (
        literal.encode(),
        literal.encode(),
    )
    got = scan([raw], NUMERIC, CATEGORICAL, BIG)
    assert got is not None
    _check([raw], got)


REFUSED = {
    "a feature beyond MAX_MAGNITUDE": b'"features":{"f0":1e101}',
    "a number orjson refuses (overflow)": b'"features":{"f0":1},"x":1e400',
    "an integer beyond int64": b'"features":{"f0":9223372036854775808}',
    "NaN": b'"features":{"f0":NaN}',
    "Infinity elsewhere": b'"features":{},"x":-Infinity',
    "a leading zero": b'"features":{"f0":01}',
    "a bare dot": b'"features":{"f0":1.}',
    "an escape in a value": b'"features":{"country":"D\\u0045"}',
    "an escape in a key": b'"features":{"f\\u0030":1}',
    "an unknown feature": b'"features":{"brand_new":1}',
    "a bool as a number": b'"features":{"f0":true}',
    "a string as a number": b'"features":{"f0":"1"}',
    "a duplicate feature": b'"features":{"f0":1,"f0":2}',
    "a duplicate field": b'"features":{},"model_id":"m"',
    "a nested category": b'"features":{"country":{"a":1}}',
    "a float label": b'"features":{},"x":0',  # (the prediction below is replaced)
    "a null segment value": b'"features":{},"segments":{"a":null}',
    "a float segment value": b'"features":{},"segments":{"a":0.5}',
    "a number as version": b'"features":{},"model_version":2',
    "a bool as time": b'"features":{},"timestamp":true',
    "not UTF-8": b'"features":{"country":"\xff"}',
    "non-ASCII in a field not read": b'"features":{},"x":"\xc3\xa9"',
    "a control character": b'"features":{"country":"a\x01"}',
    "an unterminated object": b'"features":{"f0":1',
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_scanner_cannot_read_as_orjson_would_gives_the_batch_back(case):
    tail = REFUSED[case]
    pred = b'{"label":1.0}' if case == "a float label" else b"0.5"
    bad = b'{"model_id":"m","prediction_id":"p","prediction":%s,%s}' % (pred, tail)
    good = b'{"model_id":"m","prediction_id":"q","prediction":0.5,"features":{"f0":1}}'
    assert scan([good], NUMERIC, CATEGORICAL, BIG) is not None
    assert scan([good, bad, good], NUMERIC, CATEGORICAL, BIG) is None


@pytest.mark.parametrize(
    "value",
    [
        b'{"model_id":"m","prediction_id":"","features":{},"prediction":1}',
        b'{"model_id":"m","prediction_id":"' + b"x" * 257 + b'","features":{},"prediction":1}',
        b'{"model_id":"m","prediction_id":"p","features":{}}',
        b'{"model_id":"m","prediction_id":"p","features":{},"prediction":null}',
        b'{"model_id":"m","prediction_id":"p","features":null,"prediction":1}',
        b'{"prediction_id":"p","features":{},"prediction":1}',
        b'{"model_id":"m","prediction_id":"p","features":{},"prediction":1} {}',
        b'{"model_id":"m","prediction_id":"p","features":{},"prediction":[1]}',
        b"[]",
        b"",
        b"null",
    ],
)
def test_a_value_the_exact_path_must_name_is_refused(value):
    """Ids empty or over 256 characters, a field missing or null, two documents: the exact
    path names these events' problems, so the scanner takes none of them."""
    assert scan([value], NUMERIC, CATEGORICAL, BIG) is None


def test_a_value_over_the_size_limit_is_refused():
    raw = b'{"model_id":"m","prediction_id":"p","features":{},"prediction":1}'
    assert scan([raw], NUMERIC, CATEGORICAL, len(raw)) is not None
    assert scan([raw], NUMERIC, CATEGORICAL, len(raw) - 1) is None


@pytest.mark.parametrize("seed", range(4))
def test_values_mutated_byte_by_byte_are_refused_or_read_as_orjson_reads_them(seed):
    """Random edits of valid events (a byte dropped, doubled, changed, or a token's
    character inserted): whatever the scanner accepts, orjson reads the same way."""
    rng = np.random.default_rng(100 + seed)
    alphabet = b'{}[]:,"\\-+.eE0123456789 \ntrufalsn\xc3\xa9\xff'
    accepted = refused = 0
    for i in range(1500):
        raw = bytearray(_dump(_event(rng, i), rng).encode())
        for _ in range(int(rng.integers(1, 3))):
            at = int(rng.integers(0, len(raw)))
            op = rng.integers(0, 4)
            if op == 0:
                del raw[at]
            elif op == 1:
                raw.insert(at, raw[at])
            elif op == 2:
                raw[at] = alphabet[rng.integers(0, len(alphabet))]
            else:
                raw.insert(at, alphabet[rng.integers(0, len(alphabet))])
        value = bytes(raw)
        got = scan([value], NUMERIC, CATEGORICAL, BIG)
        if got is None:
            refused += 1
            continue
        accepted += 1
        _check([value], got)
    assert accepted > 100 and refused > 100  # both sides of the line were exercised


def test_long_decimals_and_near_midpoints_read_to_the_correctly_rounded_double():
    """17 to 19 digits (epoch times with their fraction) take the scanner's 64-bit
    mantissa path; decimals a hair off the midpoint between two doubles are where a
    rounding twice goes wrong. Each must read to orjson's double."""
    from decimal import ROUND_DOWN, ROUND_UP, Context, Decimal

    rng = np.random.default_rng(17)
    texts = []
    for _ in range(3000):
        digits = str(int(rng.integers(10**16, 10**18))) + str(int(rng.integers(0, 10)))
        cut = int(rng.integers(1, len(digits)))
        texts.append(f"{digits[:cut]}.{digits[cut:]}")
        texts.append(f"{digits[0]}.{digits[1:]}e{int(rng.integers(-20, 21))}")
    for _ in range(3000):  # the midpoint of two neighbouring doubles, cut to 19 digits
        d = float(rng.uniform(1.0, 1e12))
        mid = (Decimal(d) + Decimal(float(np.nextafter(d, np.inf)))) / 2
        for rounding in (ROUND_DOWN, ROUND_UP):
            texts.append(format(Context(prec=19, rounding=rounding).plus(mid), "f"))
    raws = [
        b'{"model_id":"m","prediction_id":"p","features":{"f0":%s},"prediction":1}' % t.encode()
        for t in texts
    ]
    got = scan(raws, NUMERIC, CATEGORICAL, BIG)
    assert got is not None
    _check(raws, got)


LABEL_BYTES = b'{}[]:,"\\-.e0 n\xff'


def _label_event(rng: np.random.Generator, i: int) -> dict[str, Any]:
    kinds: list[Any] = [
        ("num", _number(rng)),
        _string(rng) or "x",
        bool(rng.integers(0, 2)),
        int(rng.integers(0, 3)),
    ]
    event: dict[str, Any] = {
        "prediction_id": f"p-{i}",
        "model_id": ["fraud", "loan"][rng.integers(0, 2)],
        "label": kinds[rng.integers(0, len(kinds))],
    }
    if rng.uniform() < 0.7:
        event["timestamp"] = ("num", _number(rng)) if rng.uniform() < 0.8 else "2026-12-01T10:00Z"
    if rng.uniform() < 0.2:
        event["source"] = {"batch": [("num", "3"), "x"]}
    order = list(event)
    rng.shuffle(order)
    return {k: event[k] for k in order}


def _check_labels(raws: list[bytes], got: tuple[Any, ...]) -> None:
    models, pids, labels, stamps = got
    for i, raw in enumerate(raws):
        e = orjson.loads(raw)
        assert type(e) is dict
        assert _same(models[i], e["model_id"]) and _same(pids[i], e["prediction_id"])
        assert _same(labels[i], e["label"]) and _same(stamps[i], e.get("timestamp"))


@pytest.mark.parametrize("seed", range(3))
def test_label_events_read_as_orjson_reads_them_or_are_refused(seed):
    rng = np.random.default_rng(200 + seed)
    raws = [_dump(_label_event(rng, i), rng).encode() for i in range(500)]
    got = _scan.scan_labels(raws, BIG)
    assert got is not None
    _check_labels(raws, got)
    for bad in (
        b'{"model_id":"m","prediction_id":"p"}',  # no label
        b'{"model_id":"m","prediction_id":"p","label":null}',
        b'{"model_id":"m","prediction_id":"p","label":[1]}',
        b'{"model_id":"m","prediction_id":"","label":1}',
        b'{"model_id":"m","prediction_id":"p","label":1,"label":2}',
        b'{"model_id":"m","prediction_id":"p","label":1,"timestamp":false}',
    ):
        assert _scan.scan_labels([raws[0], bad], BIG) is None
    accepted = 0
    for i in range(1000):  # mutated byte by byte: refused, or read as orjson reads them
        raw = bytearray(_dump(_label_event(rng, i), rng).encode())
        at = int(rng.integers(0, len(raw)))
        raw[at : at + 1] = bytes([LABEL_BYTES[rng.integers(0, len(LABEL_BYTES))]])
        got = _scan.scan_labels([bytes(raw)], BIG)
        if got is not None:
            accepted += 1
            _check_labels([bytes(raw)], got)
    assert accepted > 50


def test_columns_binned_in_one_pass_as_bin_index_bins_each():
    """`bin_columns` against `profile.bin_index` (numpy's searchsorted), column by column:
    NaN, infinities, signed zeros, values on an edge, repeated edges (a constant column's
    two equal edges), a single edge."""
    from streamdrift.profile import bin_index

    rng = np.random.default_rng(31)
    edges = [
        np.unique(np.quantile(rng.normal(size=500), np.linspace(0, 1, int(rng.integers(2, 60)))))
        for _ in range(12)
    ]
    edges += [np.array([3.0, 3.0]), np.array([0.0]), np.array([-0.0, 0.0, 1.0]), np.arange(200.0)]
    n, k = 4000, len(edges)
    x = rng.normal(scale=2.0, size=(n, k))
    for j, e in enumerate(edges):  # values on edges, and the specials
        on = rng.uniform(size=n) < 0.2
        x[on, j] = rng.choice(e, size=int(on.sum()))
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 3.0, 1e300, -1e300]
    x[: len(specials)] = np.array(specials)[:, None]
    x[rng.uniform(size=(n, k)) < 0.05] = np.nan
    got = np.full((n, k), -1, dtype=np.int64)
    _scan.bin_columns(x, edges, got)
    for j, e in enumerate(edges):
        np.testing.assert_array_equal(got[:, j], bin_index(e, x[:, j]), err_msg=f"column {j}")


def test_bin_columns_refuses_arrays_of_another_shape_or_type():
    x = np.zeros((3, 2))
    out = np.zeros((3, 2), dtype=np.int64)
    edges = [np.array([0.0, 1.0]), np.array([0.0, 1.0])]
    with pytest.raises(ValueError):
        _scan.bin_columns(x, edges[:1], out)
    with pytest.raises(ValueError):
        _scan.bin_columns(x.astype(np.float32), edges, out)
    with pytest.raises(ValueError):
        _scan.bin_columns(x, [edges[0], np.array([])], out)
    _scan.bin_columns(x, edges, out)
    assert out.tolist() == [[1, 1]] * 3


def test_a_batch_sketches_alike_counted_in_one_compiled_pass_or_with_numpy(tmp_path, monkeypatch):
    """Histograms and moments in one compiled pass, categories and versions counted from
    codes: the same sketches as numpy's passes and Python's Counters."""
    from streamdrift import sketch, synthetic
    from streamdrift.config import MonitorConfig
    from streamdrift.decode import decode_predictions
    from streamdrift.reference import build_profile
    from streamdrift.sketch import _layout, sketch_batch

    from .test_decode import FakeMessage

    profile = build_profile(
        "fraud",
        synthetic.write_reference(tmp_path / "r.csv", rows=3000),
        prediction_column="score",
        label_column="is_fraud",
        config=MonitorConfig(window_seconds=600),
    )
    values = [v for _, v in synthetic.prediction_events("fraud", 3000, 1.79e9, 7200, seed=3)]
    # some countries missing, some versions another or none
    values = [
        re.sub(rb'"country":"[^"]*"', b'"country":null', v) if i % 7 == 0 else v
        for i, v in enumerate(values)
    ]
    values = [
        v.replace(b'"1.0.0"', b'"2.0"' if i % 5 == 0 else b"null") if i % 3 == 0 else v
        for i, v in enumerate(values)
    ]
    events = decode_predictions([FakeMessage(v, offset=i) for i, v in enumerate(values)], BIG)
    fraud = events.by_model["fraud"]
    assert len(fraud) == 3000 and fraud.versions.count(None) == 800
    assert _layout(profile).one_pass
    one_pass = sketch_batch(fraud, profile)[0]
    _layout(profile).one_pass = False
    monkeypatch.setattr(sketch, "_codes", None)
    one_by_one = sketch_batch(fraud, profile)[0]
    assert len(one_pass) > 3
    assert one_pass.keys() == one_by_one.keys()
    for start, w in one_by_one.items():
        g = one_pass[start]
        assert (g.count, g.outliers, g.versions) == (w.count, w.outliers, w.versions)
        assert g.categorical == w.categorical and len(w.categorical) >= 2
        assert w.categorical["country"].missing > 0 and len(w.versions) == 2
        for name, sl in w.slices.items():
            assert g.slices[name].categorical == sl.categorical, name
        assert g.numeric.keys() == w.numeric.keys()
        for name, s in w.numeric.items():
            t = g.numeric[name]
            np.testing.assert_array_equal(t.bins, s.bins)
            assert (t.missing, t.n, t.out_of_range) == (s.missing, s.n, s.out_of_range), name
            assert (t.minimum, t.maximum) == (s.minimum, s.maximum), name
            # numpy's reduceat may add in blocks, the compiled pass adds in row order
            assert t.total == pytest.approx(s.total, rel=1e-12, abs=1e-9), name
            assert t.total_sq == pytest.approx(s.total_sq, rel=1e-12, abs=1e-9), name


def test_group_moments_count_and_sum_each_group_as_numpy_does_row_by_row():
    """Against plain numpy per group: histograms, values present and outside the range,
    minimum and maximum exactly; sums as a Python loop adds them in row order."""
    rng = np.random.default_rng(41)
    n, k, groups = 3000, 4, 5
    edges = [
        np.array([-1.0, 0.0, 1.0]),
        np.array([0.0, 2.0]),
        np.array([-5.0, 5.0]),
        np.array([0.5]),
    ]
    x = rng.normal(size=(n, k))
    x[rng.uniform(size=(n, k)) < 0.1] = np.nan
    x[:groups, 0] = -0.0
    inv = rng.integers(0, groups, n).astype(np.int64)
    bins = np.empty((n, k), dtype=np.int64)
    _scan.bin_columns(x, edges, bins)
    sizes = np.array([e.size + 1 for e in edges])
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    total = int(sizes.sum())
    low, high = np.full(k, -1.5), np.full(k, 1.5)
    hist = np.zeros((groups, total), dtype=np.int64)
    n_ok, n_out = np.zeros((groups, k), np.int64), np.zeros((groups, k), np.int64)
    sums, sums_sq = np.full((groups, k), -0.0), np.full((groups, k), -0.0)
    lows, highs = np.full((groups, k), np.inf), np.full((groups, k), -np.inf)
    _scan.group_moments(
        x, bins, inv, offsets, low, high, total, hist, n_ok, n_out, sums, sums_sq, lows, highs
    )
    for g in range(groups):
        rows = x[inv == g]
        for j in range(k):
            col = rows[:, j]
            ok = col[~np.isnan(col)]
            counts = np.bincount(bins[inv == g, j][~np.isnan(col)], minlength=sizes[j])
            np.testing.assert_array_equal(hist[g, offsets[j] : offsets[j] + sizes[j]], counts)
            assert n_ok[g, j] == ok.size and n_out[g, j] == int(((ok < -1.5) | (ok > 1.5)).sum())
            assert (lows[g, j], highs[g, j]) == (ok.min(), ok.max())
            total_in_order = total_sq_in_order = -0.0
            for v in col:
                total_in_order += 0.0 if np.isnan(v) else float(v)
                total_sq_in_order += 0.0 if np.isnan(v) else float(v) * float(v)
            assert _bits(sums[g, j]) == _bits(total_in_order)
            assert _bits(sums_sq[g, j]) == _bits(total_sq_in_order)
    with pytest.raises(ValueError):  # a group beyond the arrays given
        _scan.group_moments(
            x, bins, inv + 1, offsets, low, high, total, hist, n_ok, n_out, sums, sums_sq,
            lows, highs,
        )  # fmt: skip
    with pytest.raises(ValueError):  # arrays of another size than the batch's
        _scan.group_moments(
            x, bins[:10], inv, offsets, low, high, total, hist, n_ok, n_out, sums, sums_sq,
            lows, highs,
        )  # fmt: skip


def test_events_sending_the_same_segments_share_one_dict():
    """The join spells each segments object once per dict: events that send the same
    bytes get the same dict (equal to orjson's), other bytes their own."""
    values = [
        b'{"model_id":"m","prediction_id":"p%d","features":{},"prediction":1,'
        b'"segments":{"region":"eu","tier":%d}}' % (i, i % 3)
        for i in range(30)
    ]
    values.append(
        b'{"model_id":"m","prediction_id":"q","features":{},"prediction":1,'
        b'"segments":{"tier":0,"region":"eu"}}'
    )
    got = scan(values, NUMERIC, CATEGORICAL, BIG)
    assert got is not None
    _check(values, got)
    segments = got[9]
    assert len({id(s) for s in segments[:30]}) == 3
    assert all(segments[i] is segments[i % 3] for i in range(30))
    assert segments[30] == segments[0] and segments[30] is not segments[0]  # other bytes


def test_a_categorical_value_sent_again_is_the_same_str():
    """Counting categories hashes each value: a value already made for the same bytes of
    the same feature (of its last 16 distinct ones) is the same str, equal to orjson's;
    past 16 distinct values a value is made again, still equal."""
    name = CATEGORICAL[0]
    values = [
        b'{"model_id":"m","prediction_id":"p%d","features":{"%s":"c%d"},"prediction":1}'
        % (i, name.encode(), i % 5)
        for i in range(40)
    ]
    many = [
        b'{"model_id":"m","prediction_id":"q%d","features":{"%s":"k%d"},"prediction":1}'
        % (i, name.encode(), i % 20)
        for i in range(40)
    ]
    for batch, distinct in ((values, 5), (many, 20)):
        got = scan(batch, NUMERIC, CATEGORICAL, BIG)
        assert got is not None
        _check(batch, got)
        col = got[5][0]
        if distinct <= 16:
            assert len({id(v) for v in col}) == distinct
            assert all(col[i] is col[i % distinct] for i in range(len(col)))
        else:  # twenty values turning round a cache of 16: each made anew, equal
            assert len({id(v) for v in col}) > distinct
            assert col == [f"k{i % 20}" for i in range(40)]


def test_a_histogram_size_that_would_overflow_is_refused():
    """`total` times the groups times 8 bytes must not wrap around to a small size that a
    small array passes (it would let the counts land outside it)."""
    one = np.zeros((1, 1))
    ints = np.zeros((1, 1), dtype=np.int64)
    with pytest.raises(ValueError):
        _scan.group_moments(
            one, ints, np.zeros(1, np.int64), np.ones(1, np.int64), np.zeros(1), np.zeros(1),
            (1 << 61) + 1, np.zeros(1, np.int64), ints.copy(), ints.copy(),
            np.full((1, 1), -0.0), np.full((1, 1), -0.0), np.full((1, 1), np.inf),
            np.full((1, 1), -np.inf),
        )  # fmt: skip


def test_messages_survive_a_list_changed_by_the_methods_they_call():
    """`messages` calls each message's methods, which run Python: one that empties the
    list must not make it read freed memory."""
    held: list[Any] = []

    class Emptying:
        def __init__(self, offset: int) -> None:
            self._offset = offset

        def error(self) -> None:
            held.clear()

        def value(self) -> bytes:
            return b"{}"

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return self._offset

    held.extend(Emptying(i) for i in range(4))
    values, partitions, offsets, last = _scan.messages(held)
    assert (len(values), partitions, offsets, last) == (4, [0] * 4, [0, 1, 2, 3], {0: 3})


def test_confluent_messages_read_from_c_as_their_methods_answer():
    """confluent-kafka's messages (read through their C methods' functions) give what
    their methods answer, and a subclass overriding one is asked by name, also mixed in
    one poll with the plain type and with a Python class."""
    from confluent_kafka import KafkaError, Message

    from .test_decode import FakeMessage

    class Relabelled(Message):
        def value(self) -> bytes:
            return b'{"relabelled": true}'

        def topic(self) -> str:
            return "labels"

    def loop(msgs: list[Any]) -> tuple[list[Any], list[Any], list[Any], dict[Any, Any]]:
        values = [m.value() for m in msgs]
        partitions = [m.partition() for m in msgs]
        offsets = [m.offset() for m in msgs]
        last: dict[Any, Any] = {}
        for p, o in zip(partitions, offsets, strict=True):
            last[p] = max(last.get(p, o), o)
        return values, partitions, offsets, last

    plain = [
        Message(topic="predictions", partition=i % 3, offset=1000 - i, value=b"{%d}" % i)
        for i in range(30)
    ]
    mixed = [
        *plain[:10],
        Relabelled(topic="predictions", partition=7, offset=3, value=b"{}"),
        FakeMessage(b"{}", topic="labels", partition=8, offset=2**40),
        *plain[10:],
        Relabelled(topic="predictions", partition=0, offset=5000, value=b"{}"),
    ]
    for msgs in (plain, mixed, plain):
        values, partitions, offsets, last = _scan.messages(msgs)
        assert (values, partitions, offsets, last) == loop(msgs)
        ours, others = _scan.by_topic(msgs, "labels")
        assert ours == [m for m in msgs if m.topic() == "labels"]
        assert others == [m for m in msgs if m.topic() != "labels"]
    assert _scan.messages(mixed)[0][10] == b'{"relabelled": true}'
    assert _scan.by_topic(mixed, "labels")[0][0] is mixed[10]
    # a consumer's error, or a message without a value: the caller's own loop takes it
    eof = Message(
        topic="predictions", partition=0, offset=31, error=KafkaError(KafkaError._PARTITION_EOF)
    )
    assert _scan.messages([*plain, eof]) is None
    assert _scan.messages([*plain, Message(topic="p", partition=0, offset=32)]) is None


def test_by_topic_splits_a_poll_in_order_as_the_python_loop_does():
    """Labels and predictions polled together are split by topic, each in the polled
    order, the same lists as a loop over the messages gives."""
    from streamdrift import decode

    from .test_decode import FakeMessage

    msgs = [
        FakeMessage(b"{}", topic=("labels" if i % 3 == 0 else "predictions"), offset=i)
        for i in range(20)
    ]
    ours, others = _scan.by_topic(msgs, "labels")
    assert [m.offset() for m in ours] == [i for i in range(20) if i % 3 == 0]
    assert [m.offset() for m in others] == [i for i in range(20) if i % 3]
    assert all(
        a is b
        for a, b in zip(
            ours + others, [*msgs[::3], *[m for i, m in enumerate(msgs) if i % 3]], strict=True
        )
    )
    assert _scan.by_topic(msgs, "alerts") == ([], msgs)
    assert _scan.by_topic([], "labels") == ([], [])
    with pytest.raises(TypeError):
        _scan.by_topic(msgs, b"labels")  # type: ignore[arg-type]
    saved, decode._scan = decode._scan, None
    try:
        assert decode.by_topic(msgs, "labels") == (ours, others)
    finally:
        decode._scan = saved


def _codes_by_dict(values: list[Any]) -> tuple[list[int], list[Any]]:
    """The reference: positions in first-seen order keyed by (type, value), None -1."""
    index: dict[Any, int] = {}
    distinct: list[Any] = []
    out = []
    for v in values:
        if v is None:
            out.append(-1)
            continue
        key = (type(v), v)
        if key not in index:
            index[key] = len(distinct)
            distinct.append(v)
        out.append(index[key])
    return out, distinct


@pytest.mark.parametrize("seed", range(6))
def test_codes_number_the_distinct_values_as_a_dict_keyed_by_type_and_value_does(seed: int):
    """Categories are counted from codes: True, 1 and 1.0 stay apart, equal strs that are
    other objects share a code, None is -1; more distinct values than the identity cache
    holds go through the dict."""
    rng = np.random.default_rng(seed)
    pool: list[Any] = [None, True, False, 1, 0, 1.0, 0.0, "1", "a", "ü", ""]
    pool += [f"k{i}" for i in range(int(rng.integers(1, 40)))]
    picks = rng.integers(0, len(pool), 3000)
    values = [pool[i] if rng.random() < 0.5 else _copy(pool[i]) for i in picks]
    raw, distinct = _scan.codes(values)
    want_codes, want_distinct = _codes_by_dict(values)
    assert np.frombuffer(raw, dtype=np.int64).tolist() == want_codes
    assert [(type(v), v) for v in distinct] == [(type(v), v) for v in want_distinct]


def _copy(v: Any) -> Any:
    """An equal value that is another object (where Python makes one)."""
    return "".join(list(v)) if isinstance(v, str) and len(v) > 1 else v


def test_codes_refuse_what_is_no_list_or_cannot_be_hashed():
    assert _scan.codes([]) == (b"", [])
    with pytest.raises(TypeError):
        _scan.codes(("a", "b"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _scan.codes(["a", ["b"]])


def test_shards_are_zlibs_crc32_of_the_utf8_bytes() -> None:
    """The journal shard of each id (store.records.shards) as zlib computes it: ASCII,
    non-ASCII, empty and long ids, and a modulus up to 2**31 - 1."""
    import random
    import zlib

    from streamdrift._scan import shards

    rng = random.Random(5)
    alphabet = "abcXYZ019-_:|\x1f é€😀\u0301"
    ids = ["", "a", "x" * 5000] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 48))) for _ in range(5000)
    ]
    for n in (1, 64, 2**31 - 1):
        assert shards(ids, n) == [zlib.crc32(i.encode()) % n for i in ids]
    assert shards(tuple(ids[:5]), 64) == shards(ids[:5], 64)
    with pytest.raises(UnicodeEncodeError):  # as str.encode: a lone surrogate
        shards(["ok", "\ud800"], 64)
    with pytest.raises(TypeError):
        shards(["ok", b"bytes"], 64)  # type: ignore[list-item]
    for n in (0, 2**31):
        with pytest.raises(ValueError):
            shards(["ok"], n)
