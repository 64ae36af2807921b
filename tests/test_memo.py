"""pipeline.export.memo.per_object: one answer per live object and name, gone with the object."""

from __future__ import annotations

import gc

from pipeline.export import memo


class Thing:
    pass


def test_one_answer_per_object_and_name_computed_once():
    calls = []

    def compute(key):
        return lambda obj: calls.append((id(obj), key)) or f"answer {key}"

    a, b = Thing(), Thing()
    assert memo.per_object(a, ("x", 1), compute(1)) == "answer 1"
    assert memo.per_object(a, ("x", 1), compute(1)) == "answer 1"      # remembered
    assert memo.per_object(a, ("x", 2), compute(2)) == "answer 2"      # another key of the same name
    assert memo.per_object(b, ("x", 1), compute(1)) == "answer 1"      # another object
    assert calls == [(id(a), 1), (id(a), 2), (id(b), 1)]


def test_the_answers_go_with_their_object():
    a = Thing()
    memo.per_object(a, "x", lambda _o: [1, 2, 3])
    key = id(a)
    assert key in memo._ANSWERS
    del a
    gc.collect()
    assert key not in memo._ANSWERS
