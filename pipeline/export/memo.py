"""Answers computed once per object (a loaded spec, a spec table, the DM frame of a study).

A :class:`~pipeline.spec.Spec` and its tables are not changed once loaded, and neither is a
dataset frame once built, so what is derived from one stays valid while it lives. The build
asks for the same derived things for every dataset and every study (codelist terms, value-level
groups, the aCRF layout): :func:`per_object` computes each once and keeps it beside a weak
reference to its object, so the answer goes when the object goes and is never handed to a new
object that happens to get the same ``id``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

#: id(object) -> (weak reference to it, {name: answer})
_ANSWERS: dict[int, tuple[weakref.ref, dict]] = {}


def per_object(obj, name: str, compute: Callable):
    """``compute(obj)``, evaluated once per live ``obj`` and remembered under ``name`` (a tuple
    such as ``("define_variables", dataset)`` keeps one answer per dataset, version, ...)."""
    entry = _ANSWERS.get(id(obj))
    if entry is None or entry[0]() is not obj:
        # the table is bound to the callback: at interpreter exit the module's globals may be gone
        # before the last objects are (otherwise an "Exception ignored" message on stderr)
        entry = (weakref.ref(obj, lambda _ref, key=id(obj), table=_ANSWERS: table.pop(key, None)), {})
        _ANSWERS[id(obj)] = entry
    answers = entry[1]
    if name not in answers:
        answers[name] = compute(obj)
    return answers[name]
