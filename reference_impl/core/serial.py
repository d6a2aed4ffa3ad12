"""Fast, shallow dataclass -> dict for JSON records, and a cheap `replace`.

`dataclasses.asdict` deep-copies every field and dominated the sim's profile; the records here
hold only JSON-ready values (str, int, float, None, str enums, tuples and flat dicts), so a
shallow copy of the fields is enough and several times cheaper. `dataclasses.replace` checks
every field's kind on each call; `evolve` does the same copy for the plain dataclasses here
(every field an init field, no InitVar) in a third of the time. Every record and event of a
payment goes through these several times, so their per-call cost is paid per payment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import fields
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _refuse(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _make_dumps() -> Callable[[Any], str]:
    """Compact JSON with sorted keys, ASCII only: JSONEncoder(separators=(",", ":"),
    sort_keys=True) byte for byte, without the C encoder that its `encode` builds on every call.
    No cycle check: records are flat values."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has the C encoder
        return json.JSONEncoder(separators=(",", ":"), sort_keys=True, check_circular=False).encode
    iterencode = make(
        None, _refuse, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
    )

    def dumps(data: Any) -> str:
        return "".join(iterencode(data, 0))

    return dumps


dumps = _make_dumps()


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def to_dict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in _names(type(obj))}


def to_json(obj: Any) -> str:
    """Compact JSON with sorted keys: the same object always gives the same text."""
    return dumps(to_dict(obj))


def evolve(obj: T, **changes: Any) -> T:
    """`dataclasses.replace` for a dataclass whose fields are all init fields (no InitVar)."""
    data = {name: getattr(obj, name) for name in _names(type(obj))}
    data.update(changes)
    return type(obj)(**data)


K = TypeVar("K", bound=Hashable)


class Memo(Generic[K, T]):
    """The values most recently decoded from (or encoded to) their text, so that text read
    again is not parsed again: the sim reads each event three times (one per consumer group)
    and each payment record several times, and the memory store hands back the very string it
    was given. Keyed by the text itself, so a hit is always right, whatever the store did since;
    the values must be immutable (they are shared). Two generations of at most `size` entries
    each: when the young one is full it becomes the old one, so memory stays bounded and a
    value read again survives the turnover."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._young: dict[K, T] = {}
        self._old: dict[K, T] = {}

    def get(self, key: K) -> T | None:
        value = self._young.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self.put(key, value)
        return value

    def decoded(self, key: K, decode: Callable[[K], T]) -> T:
        """The value kept for `key`, or `decode(key)`, kept from now on."""
        value = self.get(key)
        if value is None:
            value = decode(key)
            self.put(key, value)
        return value

    def put(self, key: K, value: T) -> None:
        if len(self._young) >= self.size:
            self._old, self._young = self._young, {}
        self._young[key] = value
