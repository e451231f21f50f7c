"""What the sweep tests share: an experiment dict with changes, a plan's stages of one kind, and the check
that a bad experiment is refused naming its key."""

from __future__ import annotations

import copy
from typing import Any, Iterable

import pytest

from plbench.errors import InputError
from plbench.sweep import StageKind, parse_spec


def changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of the experiment ``base`` with its top-level tables replaced by ``changes``."""
    data = copy.deepcopy(base)
    data.update(changes)
    return data


def stages_of(plan: Any, kind: StageKind) -> list[Any]:
    """The plan's stages of ``kind``, in plan order."""
    return [s for s in plan.stages if s.kind is kind]


def assert_refused(data: dict[str, Any], where: str, words: Iterable[str], source: str = "e.toml") -> InputError:
    """``parse_spec(data, source)`` raises an InputError whose field is ``where`` and whose message names
    ``source`` and holds every one of ``words``; returns it."""
    with pytest.raises(InputError) as info:
        parse_spec(data, source)
    message = info.value.message
    assert info.value.field == where, message
    assert source in message, message
    for w in words:
        assert w in message, message
    return info.value
