"""Categorical depth: how spread out a categorical feature's values are (Shannon
entropy) and how many distinct values it takes (cardinality), per window, against the
reference.

Entropy comes from the counts a window already keeps: its categories (the first
`max_categories` of them) and the values of the others counted together, as the
reference keeps its most frequent categories and the rest together. The rest is taken
as spread evenly over the distinct values it holds (the reference's cardinality, the
window's HyperLogLog count, less the categories kept): splitting a share q evenly into m
values adds q·log2(m), the most entropy the counts allow, and exactly the entropy when
nothing is beyond the cap. Counted as one value instead, an identifier leaking into a
feature would *lower* its entropy once the cap is reached. In bits (base 2): a fair coin
has 1, eight equally likely values 3. A feature losing values (a source going quiet, a
default filling in) loses entropy; one gaining many gains it.

Distinct counts come from a Redis HyperLogLog per window and feature, fed with each
batch's distinct values (`PFADD`, in the atomic apply) and read with `PFCOUNT` (over
several windows' keys together when pooled: a HyperLogLog union, not a sum). Its
standard error is 0.81 %, and small sets are counted nearly exactly.

A *cardinality explosion* is a window whose feature takes far more distinct values than
the whole reference did: an identifier leaking into a category (an order id, a
timestamp, free text), which ruins the feature for the model and bloats every downstream
table keyed by it. It is a data-quality finding (kind `cardinality`) when the window's
distinct count reaches `quality.cardinality_factor` times the reference's cardinality and
exceeds it by at least `quality.cardinality_min_excess` values (so a feature of three
values showing a fourth is the unseen-category check's news, not this one's). A window
holding fewer events than the reference has rows cannot see more of the reference's
values than the reference did, so a healthy window stays below the reference's
cardinality; a window far larger than a small reference of a long-tailed feature (city,
browser string) can legitimately exceed it, so the factor is generous (5) and can be raised,
or the check turned off (`null`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from streamdrift.profile import CategoricalProfile, ReferenceProfile
from streamdrift.sketch import CategoricalSketch, WindowSketch

_NAN = float("nan")


def entropy(counts: ArrayLike) -> float:
    """Shannon entropy in bits of the distribution the counts describe, −Σ p log2 p over
    the non-zero counts; NaN for no count at all."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        return _NAN
    p = c[c > 0] / total
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no -0.0


def entropy_with_rest(kept: list[int], rest: int, rest_values: int) -> float:
    """The entropy of the `kept` counts and `rest` more values spread evenly over
    `rest_values` distinct values (at least one)."""
    h = entropy([*kept, rest])
    total = sum(kept) + rest
    if rest and rest_values > 1 and total:
        h += rest / total * float(np.log2(rest_values))
    return h


def reference_entropy(reference: CategoricalProfile) -> float:
    """The reference's entropy: its kept categories, and the others spread over the
    rest of its cardinality."""
    kept = list(reference.categories.values())
    return entropy_with_rest(kept, reference.other, reference.cardinality - len(kept))


def window_entropy(sketch: CategoricalSketch, distinct: int | None = None) -> float:
    """A window's entropy: its kept categories, and the values beyond the cap spread
    over the rest of its `distinct` values (as one value when unknown)."""
    kept = list(sketch.counts.values())
    rest_values = distinct - len(kept) if distinct is not None else 1
    return entropy_with_rest(kept, sketch.other, rest_values)


@dataclass(slots=True)
class CategoricalDepth:
    """One categorical feature in one window: entropy and distinct count, against the
    reference. `distinct` is None when the window keeps no HyperLogLog for it."""

    feature: str
    sample_size: int
    entropy: float
    reference_entropy: float
    entropy_change: float
    distinct: int | None
    reference_cardinality: int


def categorical_depth(
    profile: ReferenceProfile, window: WindowSketch
) -> dict[str, CategoricalDepth]:
    """Every categorical feature with values in the window."""
    out = {}
    for name, ref in profile.features.items():
        sk = window.categorical.get(name)
        if not isinstance(ref, CategoricalProfile) or sk is None or sk.n == 0:
            continue
        distinct = window.distinct.get(name)
        h, h_ref = window_entropy(sk, distinct), reference_entropy(ref)
        out[name] = CategoricalDepth(
            feature=name,
            sample_size=sk.n,
            entropy=h,
            reference_entropy=h_ref,
            entropy_change=h - h_ref,
            distinct=distinct,
            reference_cardinality=ref.cardinality,
        )
    return out


@dataclass(slots=True)
class CardinalityExcess:
    """A window's distinct count far above the reference's cardinality."""

    feature: str
    distinct: int
    reference_cardinality: int
    ratio: float
    #: a value of the window that is not among the reference's kept categories
    example: str | None


def cardinality_excess(profile: ReferenceProfile, window: WindowSketch) -> list[CardinalityExcess]:
    """The categorical features whose distinct count in the window reaches
    `cardinality_factor` times the reference's cardinality, by at least
    `cardinality_min_excess` values."""
    policy = profile.config.quality
    factor = policy.cardinality_factor
    if factor is None:
        return []
    out = []
    for name, ref in profile.features.items():
        distinct = window.distinct.get(name)
        if not isinstance(ref, CategoricalProfile) or distinct is None:
            continue
        known = max(ref.cardinality, 1)
        if distinct >= factor * known and distinct - known >= policy.cardinality_min_excess:
            sk = window.categorical.get(name)
            counts = sk.counts if sk is not None else {}
            example = next((k for k in counts if k not in ref.categories), None)
            out.append(
                CardinalityExcess(name, distinct, ref.cardinality, distinct / known, example)
            )
    return out
