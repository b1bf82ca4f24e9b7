"""One feature in one window against its reference, bin by bin: what the dashboard's
feature page and `inspect MODEL --feature F` show.

The bins are the reference's own (its quantile edges, below-minimum and above-maximum
bins; its frequent categories, their "other", and each category only the window has),
so the two histograms can be read against each other and the statistics beside them are
the ones computed from exactly these counts."""

from __future__ import annotations

import itertools
from typing import Any

from streamdrift.errors import UnknownModelError
from streamdrift.profile import CategoricalProfile, NumericProfile
from streamdrift.report import iso_time, load_profile, model_report
from streamdrift.sketch import CategoricalSketch, NumericSketch, WindowSketch
from streamdrift.store import Store

#: how the model's outputs are named in reports (`inspect --json` "outputs")
_OUTPUT_NAMES = {"prediction": "__prediction__", "label": "__label__"}


def _edge(x: float) -> str:
    return f"{x:.4g}"


def numeric_bins(ref: NumericProfile) -> list[str]:
    """A label per reference bin: below the minimum, each pair of edges (the last one
    closed, as the bins are), above the maximum."""
    e = ref.edges
    inner = [
        f"[{_edge(a)}, {_edge(b)}{']' if i == len(e) - 2 else ')'}"
        for i, (a, b) in enumerate(itertools.pairwise(e))
    ]
    return [f"< {_edge(e[0])}", *inner, f"> {_edge(e[-1])}"]


def _histogram(
    ref: NumericProfile | CategoricalProfile, sk: NumericSketch | CategoricalSketch | None
) -> dict[str, Any]:
    if isinstance(ref, NumericProfile):
        bins = numeric_bins(ref)
        current = [int(c) for c in sk.bins] if isinstance(sk, NumericSketch) else [0] * len(bins)
        reference = [int(c) for c in ref.counts]
        extra: dict[str, Any] = {"edges": list(ref.edges)}
    else:
        sk = sk if isinstance(sk, CategoricalSketch) else CategoricalSketch.zero()
        base, cur = sk.aligned(ref)
        unseen = sorted(k for k in sk.counts if k not in ref.categories)
        bins = [*ref.categories, "(other)", *unseen]
        reference, current = [int(c) for c in base], [int(c) for c in cur]
        extra = {"unseen": unseen}
    return {
        "bins": bins,
        "window_counts": current,
        "reference_counts": reference,
        "window_shares": _shares(current),
        "reference_shares": _shares(reference),
        **extra,
    }


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def feature_report(
    store: Store, model: str, feature: str, start: float | None = None
) -> dict[str, Any]:
    """The `inspect MODEL --feature F --json` document: the window's and the reference's
    counts on the same bins, and every statistic of the feature in that window (the
    same figures `inspect --json` has for it): the window holding `start`, or the
    latest."""
    profile = load_profile(store, model)
    column = _OUTPUT_NAMES.get(feature, feature)
    ref = {**profile.features, **profile.outputs()}.get(column)
    if ref is None:
        raise UnknownModelError(
            f"model '{model}' has no feature '{feature}'",
            f"its features are: {', '.join(profile.features)} (and its outputs: "
            f"{', '.join(n.strip('_') for n in profile.outputs()) or 'none'})",
        )
    starts = store.windows.starts(model, profile.revision)
    if start is None:
        if not starts:
            raise UnknownModelError(
                f"model '{model}' has no window yet", "send events and run a worker"
            )
        start = starts[-1]
    width = profile.config.window_seconds
    window_start = next((s for s in starts if s <= start < s + width), int(start))
    if window_start not in starts:
        shown = ", ".join(iso_time(s) for s in starts[-3:]) or "none"
        raise UnknownModelError(
            f"model '{model}' has no window starting at {iso_time(window_start)}",
            f"give a time inside a window kept (the latest start: {shown})",
        )
    doc = model_report(store, model, since=window_start, until=window_start + 1)
    window = doc["windows"][0]
    section = window["outputs"] if column in profile.outputs() else window["features"]
    statistics = section.get(column.strip("_"))
    sketch: WindowSketch = store.windows.read(profile, [window_start])[0]
    current = (sketch.numeric if isinstance(ref, NumericProfile) else sketch.categorical).get(
        column
    )
    return {
        "model_id": model,
        "feature": feature,
        "kind": ref.kind,
        "window": {"start": window["start"], "end": window["end"], "count": window["count"]},
        "missing": current.missing if current is not None else 0,
        "reference_missing": ref.missing,
        **_histogram(ref, current),
        "statistics": statistics,
        "windows": [iso_time(s) for s in starts],
    }
