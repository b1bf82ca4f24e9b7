"""Where a partition is read from (`positions.resume_offset`, `FenceBook.position`):
after the lowest fence of the registered models, a model with no fence there counting
as fenced at the progress floor, or as nothing applied."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING

from streamdrift.positions import FenceBook, resume_offset
from streamdrift.store import Fence

P = "predictions:0"


def test_the_lowest_fence_of_the_models_on_the_partition() -> None:
    fences = {"a": {P: 499, "predictions:1": 9}, "b": {P: 120}}
    assert resume_offset(P, fences, {P: 50}) == 121


def test_a_model_with_no_fence_there_is_read_from_the_progress_floor() -> None:
    """Models a and b applied a batch up to 499; c's apply of the same batch never ran
    (its worker was killed between the two): c has no fence on the partition, and its
    events up to 499 are read again, from after the floor, not skipped."""
    fences = {"a": {P: 499}, "b": {P: 499}, "c": {"predictions:1": 300}}
    assert resume_offset(P, fences, {P: 199}) == 200
    assert resume_offset(P, fences, {}) == OFFSET_BEGINNING
    # a floor above a fence does not lift it
    assert resume_offset(P, {"a": {P: 99}, "c": {}}, {P: 199}) == 100


def test_no_model_or_no_fence_at_all() -> None:
    assert resume_offset(P, {}, {P: 41}) == 42
    assert resume_offset(P, {}, {}) == OFFSET_BEGINNING
    assert resume_offset(P, {"a": {}}, {}) == OFFSET_BEGINNING


def test_the_book_takes_the_partition_from_there() -> None:
    book = FenceBook()
    tp = ("predictions", 0)
    out = book.position({tp: P}, {"a": {P: 499}, "c": {}}, {P: 199})
    assert out == {tp: 200}
    assert book.applied[P] == 199  # everything up to the floor was applied
    assert book.seen[("a", P)] == 499 and book.seen[("c", P)] == -1
    # a quiet c is fenced up to the floor, not past it, until the worker applies more
    assert book.idle_moves(["a", "c"]) == {"c": [Fence(P, -1, 199)]}
    book.drained({P: 650})
    assert book.idle_moves(["a", "c"]) == {
        "a": [Fence(P, 499, 650)],
        "c": [Fence(P, -1, 650)],
    }
