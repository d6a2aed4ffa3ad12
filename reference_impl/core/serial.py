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
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

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
