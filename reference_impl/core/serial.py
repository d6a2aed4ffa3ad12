"""Fast, shallow dataclass -> dict for JSON records.

`dataclasses.asdict` deep-copies every field and dominated the sim's profile; the records here
hold only JSON-ready values (str, int, float, None, str enums, tuples and flat dicts), so a
shallow copy of the fields is enough and several times cheaper.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


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
    return _encode(to_dict(obj))
