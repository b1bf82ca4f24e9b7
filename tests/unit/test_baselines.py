"""Baselines: which earlier windows each one pools, the all-agree verdict, and drift
statistics against a pooled baseline checked against scipy on the raw counts."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ncx2

from streamdrift.alerts import drift_alerts
from streamdrift.baselines import (
    baseline_starts,
    pool,
    pooled_baselines,
    read_baselines,
    rolling_starts,
    seasonal_starts,
)
from streamdrift.config import DriftPolicy, MonitorConfig
from streamdrift.decode import ModelEvents
from streamdrift.episodes import Observation, advance
from streamdrift.evaluator import Evaluator
from streamdrift.monitors import window_drift
from streamdrift.reference import build_profile
from streamdrift.sketch import WindowSketch, sketch_events
from streamdrift.store.episodes import EpisodeState

W = 60  # window seconds
DAY = 24 * W  # a short "season", as in the integration test
CHANNELS = ["web", "app", "store"]


# ---- which windows ---------------------------------------------------------------------------


def test_rolling_takes_the_last_windows_before_skipping_excluded_ones():
    existing = [0, 60, 120, 180, 300, 360, 420]  # 240 never existed (no traffic)
    assert rolling_starts(420, existing, set(), 3) == [180, 300, 360]
    # excluded windows (an open drift episode) are skipped: the baseline reaches back
    assert rolling_starts(420, existing, {300, 360}, 3) == [60, 120, 180]
    # only windows before the window itself; never the window or later ones
    assert rolling_starts(180, existing, set(), 10) == [0, 60, 120]
    assert rolling_starts(0, existing, set(), 10) == []
    assert rolling_starts(420, [], set(), 3) == []


def test_seasonal_takes_the_same_place_in_earlier_periods_that_exist():
    start = 4 * DAY + 5 * W
    existing = [k * DAY + 5 * W for k in range(4)] + [k * DAY + 6 * W for k in range(4)]
    assert seasonal_starts(start, existing, set(), DAY, 4) == [
        5 * W,
        DAY + 5 * W,
        2 * DAY + 5 * W,
        3 * DAY + 5 * W,
    ]
    assert seasonal_starts(start, existing, set(), DAY, 2) == [2 * DAY + 5 * W, 3 * DAY + 5 * W]
    # a missing day and an excluded one are not replaced by older ones
    missing = [s for s in existing if s != 2 * DAY + 5 * W]
    assert seasonal_starts(start, missing, {3 * DAY + 5 * W}, DAY, 2) == []
    assert seasonal_starts(start, missing, set(), DAY, 3) == [DAY + 5 * W, 3 * DAY + 5 * W]
    assert seasonal_starts(5 * W, existing, set(), DAY, 4) == []  # the first day: none


def test_baseline_starts_names_only_the_chosen_window_baselines():
    existing = list(range(0, 3 * DAY, W))
    start = 2 * DAY + 3 * W
    config = MonitorConfig(
        window_seconds=W,
        drift=DriftPolicy(
            baselines=["reference", "seasonal", "rolling"],
            season_seconds=DAY,
            seasons=4,
            rolling_windows=2,
        ),
    )
    assert baseline_starts(config, start, existing, {start - W}) == {
        "rolling": [start - 3 * W, start - 2 * W],
        "seasonal": [3 * W, DAY + 3 * W],
    }
    assert baseline_starts(MonitorConfig(), start, existing) == {}  # the reference alone


def test_a_seasonal_period_must_be_whole_windows():
    with pytest.raises(ValueError, match="multiple of window_seconds"):
        MonitorConfig(window_seconds=7000, drift=DriftPolicy(baselines=["seasonal"]))
    MonitorConfig(window_seconds=7000)  # not chosen: not checked
    with pytest.raises(ValueError, match="twice"):
        DriftPolicy(baselines=["rolling", "rolling"])
    with pytest.raises(ValueError):
        DriftPolicy(baselines=[])


def test_read_baselines_reads_every_needed_window_once():
    config = MonitorConfig(
        window_seconds=W,
        drift=DriftPolicy(baselines=["rolling", "seasonal"], rolling_windows=2, season_seconds=DAY),
    )
    existing = [W, 2 * W, DAY - W, DAY, DAY + W, DAY + 2 * W]
    calls: list[list[int]] = []

    def read(starts: list[int]) -> list[WindowSketch]:
        calls.append(starts)
        # the window at DAY - W expired between the zset and the read
        return [WindowSketch(start=s, count=s + 1) for s in starts if s != DAY - W]

    known = [WindowSketch(start=DAY + W, count=7)]
    pooled = read_baselines(read, config, [DAY + W, DAY + 2 * W], existing, known=known)
    assert calls == [[W, 2 * W, DAY - W, DAY]]  # one read of the union; known not again
    assert pooled[DAY + W]["rolling"].count == DAY + 1  # DAY - W expired: DAY alone
    assert pooled[DAY + W]["seasonal"].count == W + 1
    assert pooled[DAY + 2 * W]["rolling"].count == (DAY + 1) + 7
    assert pooled[DAY + 2 * W]["seasonal"].count == 2 * W + 1
    # nothing to read for the reference alone
    assert read_baselines(read, MonitorConfig(), [DAY], existing) == {DAY: {}}
    assert len(calls) == 1


# ---- a small model whose windows are sketched by the real code ------------------------------


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    rng = np.random.default_rng(3)
    n = 20_000
    path = tmp_path_factory.mktemp("ref") / "ref.csv"
    table = pa.table(
        {
            "load": rng.normal(10.0, 2.0, n),
            "amount": rng.normal(50.0, 10.0, n),
            "channel": rng.choice(CHANNELS, size=n, p=[0.6, 0.3, 0.1]),
        }
    )
    pcsv.write_csv(table, path)
    return build_profile("m", path, config=MonitorConfig(window_seconds=W))


def events(rng, start: int, n: int, load_mean: float = 10.0, channel_p=(0.6, 0.3, 0.1)):
    e = ModelEvents()
    load = rng.normal(load_mean, 2.0, n)
    amount = rng.normal(50.0, 10.0, n)
    channel = rng.choice(CHANNELS, size=n, p=list(channel_p))
    for i in range(n):
        e.partitions.append(0)
        e.offsets.append(i)
        e.timestamps.append(start + i * W / n)
        e.features.append(
            {"load": float(load[i]), "amount": float(amount[i]), "channel": str(channel[i])}
        )
        e.versions.append("1")
        e.predictions.append(0.5)
        e.prediction_ids.append(f"{start}-{i}")
        e.raws.append(b"")
    return e


def sketch(profile, e: ModelEvents) -> WindowSketch:
    (w,) = sketch_events(e, profile).values()
    return w


def with_policy(profile, **drift):
    cfg = profile.config.model_copy(update={"drift": DriftPolicy(**drift)})
    return profile.model_copy(update={"config": cfg})


def test_pooled_statistics_equal_scipy_on_the_raw_counts(profile):
    """Three earlier windows pooled, against a current one: Cohen's w and the p-value of
    the window against the pool (the minimum-effect test of w <= 0.15 on the chi-square
    statistic), computed independently from the events' raw values (binned once over
    all three windows, counted with Counter)."""
    rng = np.random.default_rng(11)
    earlier = [events(rng, k * W, 400, load_mean=11.0) for k in range(3)]
    current = events(rng, 3 * W, 500, load_mean=12.0, channel_p=(0.4, 0.4, 0.2))
    pooled = pool(sketch(profile, e) for e in earlier)
    assert pooled is not None and pooled.count == 1200
    rolling = with_policy(profile, baselines=["rolling"])
    drift = window_drift(rolling, sketch(profile, current), {"rolling": pooled})

    edges = np.asarray(profile.features["load"].edges)

    def binned(values: list[float]) -> np.ndarray:
        x = np.asarray(values)
        idx = np.digitize(x, edges)  # 0 below the minimum, len(edges) above the maximum
        idx[x == edges[-1]] = len(edges) - 1  # the maximum is in the last inner bin
        return np.bincount(idx, minlength=len(edges) + 1)

    base_load = binned([f["load"] for e in earlier for f in e.features])
    cur_load = binned([f["load"] for f in current.features])
    base_ch = Counter(f["channel"] for e in earlier for f in e.features)
    cur_ch = Counter(f["channel"] for f in current.features)
    # the reference's categories, then values beyond the Redis cap (none here)
    base_channel = np.array([*(base_ch[c] for c in CHANNELS), 0])
    cur_channel = np.array([*(cur_ch[c] for c in CHANNELS), 0])

    for name, base, cur in (
        ("load", base_load, cur_load),
        ("channel", base_channel, cur_channel),
    ):
        d = drift[name]
        assert d.judged_by == ["rolling"]
        result = d.baselines["rolling"]
        assert result["sample_size"] == base.sum()
        keep = (base + cur) > 0
        test = chi2_contingency(np.vstack([base, cur])[:, keep], correction=False)
        n_eff = base.sum() * cur.sum() / (base.sum() + cur.sum())
        expected_p = ncx2.sf(test.statistic, test.dof, n_eff * 0.15**2)
        assert result["p_value"] == pytest.approx(expected_p, rel=1e-9, abs=1e-300)
        assert result["p_value"] >= test.pvalue
        # the default statistic, Cohen's w less its noise, from its definition
        p, q = base[keep] / base.sum(), cur[keep] / cur.sum()
        noise = (keep.sum() - 1) * (1 / base.sum() + 1 / cur.sum())
        w = np.sqrt(max(0.0, np.sum((q - p) ** 2 / ((p + q) / 2)) - noise))
        assert result["value"] == pytest.approx(w, rel=1e-12)
        assert d.value == result["value"] and d.p_value == result["p_value"]

    js = with_policy(profile, baselines=["rolling"], statistic="jensen_shannon")
    d = window_drift(js, sketch(profile, current), {"rolling": pooled})["load"]
    assert d.baselines["rolling"]["value"] == pytest.approx(
        jensenshannon(base_load, cur_load, base=2), rel=1e-9
    )


def test_categories_only_the_window_or_the_pool_has_are_compared(profile):
    rng = np.random.default_rng(12)
    before, now = events(rng, 0, 300), events(rng, W, 300)
    for i, f in enumerate(before.features):
        if i % 3 == 0:
            f["channel"] = "kiosk"  # only the baseline has it
    for i, f in enumerate(now.features):
        if i % 4 == 0:
            f["channel"] = "phone"  # only the window has it
    base, cur = sketch(profile, before), sketch(profile, now)
    reference = profile.features["channel"]
    b, c = cur.categorical["channel"].aligned_with(base.categorical["channel"], reference)
    bc = Counter(f["channel"] for f in before.features)
    cc = Counter(f["channel"] for f in now.features)
    order = [*CHANNELS, "kiosk", "phone"]  # the reference's, then the others sorted
    assert b.tolist() == [bc[k] for k in order] + [0]  # and "other" (beyond the cap)
    assert c.tolist() == [cc[k] for k in order] + [0]


# ---- the verdict ----------------------------------------------------------------------------


def test_every_available_baseline_must_agree(profile):
    """A window whose load sits 2 sd above the reference, as it did at the same time on
    earlier days: the reference says drift, the seasonal baseline does not."""
    rng = np.random.default_rng(13)
    days = [sketch(profile, events(rng, k * DAY, 500, load_mean=14.0)) for k in range(3)]
    window = sketch(profile, events(rng, 3 * DAY, 500, load_mean=14.0))
    seasonal = {"seasonal": pool(days)}

    ref_only = window_drift(profile, window, seasonal)["load"]
    assert ref_only.drifted and ref_only.judged_by == ["reference"]
    assert set(ref_only.baselines) == {"reference"}

    both = window_drift(with_policy(profile, baselines=["reference", "seasonal"]), window, seasonal)
    d = both["load"]
    assert d.baselines["reference"]["drifted"] and not d.baselines["seasonal"]["drifted"]
    assert not d.drifted and d.judged_by == ["reference", "seasonal"]
    # the verdict's figures: the smallest effect, the largest p-value
    assert d.value == d.baselines["seasonal"]["value"] < d.threshold
    assert d.p_value == max(d.baselines["reference"]["p_value"], d.baselines["seasonal"]["p_value"])
    assert not both["amount"].drifted and not both["channel"].drifted

    # a real change on the day (load 2 sd higher still): both agree
    moved = sketch(profile, events(rng, 3 * DAY, 500, load_mean=18.0))
    d = window_drift(with_policy(profile, baselines=["reference", "seasonal"]), moved, seasonal)[
        "load"
    ]
    assert d.drifted and d.baselines["seasonal"]["drifted"]


def test_an_unavailable_baseline_is_reported_and_the_reference_steps_in(profile):
    rng = np.random.default_rng(14)
    window = sketch(profile, events(rng, 0, 500, load_mean=14.0))
    seasonal = with_policy(profile, baselines=["seasonal"])

    # no history at all: seasonal unavailable, the reference judges
    d = window_drift(seasonal, window)["load"]
    assert d.baselines["seasonal"] == {
        "available": False,
        "value": pytest.approx(float("nan"), nan_ok=True),
        "p_value": pytest.approx(float("nan"), nan_ok=True),
        "drifted": False,
        "sample_size": 0,
    }
    assert d.judged_by == ["reference"] and d.baselines["reference"]["available"]
    assert d.drifted  # as the reference alone says

    # a baseline with fewer values than min_samples is unavailable too
    thin = {"seasonal": sketch(profile, events(rng, -DAY, 150, load_mean=14.0))}
    d = window_drift(seasonal, window, thin)["load"]
    assert not d.baselines["seasonal"]["available"]
    assert d.baselines["seasonal"]["sample_size"] == 150
    assert d.judged_by == ["reference"]

    # with the reference chosen beside it, the reference alone judges; nothing is added
    both = with_policy(profile, baselines=["seasonal", "reference"])
    d = window_drift(both, window, thin)["load"]
    assert d.judged_by == ["reference"] and list(d.baselines) == ["seasonal", "reference"]

    # enough history: seasonal alone judges, and finds nothing
    enough = {"seasonal": sketch(profile, events(rng, -DAY, 600, load_mean=14.0))}
    d = window_drift(seasonal, window, enough)["load"]
    assert d.judged_by == ["seasonal"] and "reference" not in d.baselines
    assert not d.drifted


def test_pooled_baselines_skip_windows_not_read():
    plan = {"rolling": [0, 60, 120], "seasonal": [-1440]}
    windows = {0: WindowSketch(start=0, count=2), 120: WindowSketch(start=120, count=3)}
    out = pooled_baselines(plan, windows)
    assert list(out) == ["rolling"] and out["rolling"].count == 5
    assert pool([]) is None


# ---- the evaluator's wiring -------------------------------------------------------------------


class _Windows:
    """The store's window reader over sketches in memory, counting its reads."""

    def __init__(self, windows: dict[int, WindowSketch]) -> None:
        self.windows = windows
        self.reads: list[list[int]] = []

    def read(self, profile, starts: list[int], slices: bool = False) -> list[WindowSketch]:
        self.reads.append(list(starts))
        return [self.windows[s] for s in starts if s in self.windows]

    def read_performance(self, profile, starts: list[int], columns=()) -> list[WindowSketch]:
        return [WindowSketch(start=s, count=self.windows[s].count) for s in starts]


def test_the_evaluator_reads_the_baseline_once_and_leaves_excluded_windows_out(profile):
    """Three earlier windows as shifted as the current one: against them (rolling) the
    window is not drift; with them in an open drift episode (excluded) the rolling
    baseline has nothing, and the reference judges: drift."""
    rng = np.random.default_rng(15)
    shifted = {k * W: sketch(profile, events(rng, k * W, 400, load_mean=14.0)) for k in range(4)}
    rolling = with_policy(profile, baselines=["rolling"], rolling_windows=3)
    windows = _Windows(shifted)
    no_marks = SimpleNamespace(low=lambda *_: (None, False))
    no_champion = SimpleNamespace(champion=lambda _model: None)
    evaluator = Evaluator(
        SimpleNamespace(windows=windows, watermarks=no_marks, profiles=no_champion),
        None,
        "alerts",
        "test",
    )
    all_starts = list(shifted)

    state = EpisodeState()
    raised, _, _ = evaluator._advance(rolling, state, {3 * W: 0.0}, {3 * W}, all_starts, 1e9)
    # the window itself, then its baseline in one read
    assert windows.reads == [[3 * W], [0, W, 2 * W]]
    assert [a for a in raised if a.type == "data_drift"] == []

    # the three earlier windows are in an open drift episode of `load`
    state = EpisodeState()
    advance(
        state.episodes,
        [
            Observation("data_drift:load", k * W, _drift_alert(profile, k * W), True, 2.0)
            for k in range(3)
        ],
        model=profile.model_id,
        revision=profile.revision,
        width=W,
        resolve_after=2,
        now=1.0,
    )
    windows.reads.clear()
    raised, _, _ = evaluator._advance(rolling, state, {3 * W: 0.0}, {3 * W}, all_starts, 1e9)
    assert windows.reads == [[3 * W]]  # nothing left to read for the baseline
    assert state.episodes["data_drift:load"].last == 3 * W  # the drift goes on


def _drift_alert(profile, start: int):
    window = sketch(profile, events(np.random.default_rng(start), start, 400, load_mean=14.0))
    (alert,) = [
        a
        for a in drift_alerts(profile, window, window_drift(profile, window), 1.0)
        if a.feature == "load"
    ]
    return alert
