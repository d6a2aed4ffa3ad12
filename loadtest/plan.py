"""The traffic plan: everything a generator process needs, as plain JSON.

`run_traffic` hands it to the Locust process it starts (on stdin: it holds the API keys, which
belong in no file); that process (as master) sends it to
each worker in a Locust message, so a worker started by hand on another machine needs nothing
but the master's address. JSON carries floats exactly (shortest repr), and the workload travels
as its field values rather than its YAML form, whose `1833.33/s` would round the rate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel

from scenarios.schema import Workload


def _plain(value: Any) -> Any:
    """A model's field values as JSON types, without the scenario's unit formatting."""
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class TrafficPlan:
    workload: dict[str, Any]
    """The scenario's workload section (`Workload` field values)."""
    base_url: str
    api_keys: dict[str, str]
    """tenant -> bearer key, one for each of the workload's tenants."""
    seed: int
    t0: float
    """The run's epoch (wall clock): every time in the rows is seconds since it."""
    duration: float
    """Arrivals are scheduled in [0, duration) from the traffic start."""
    grace: float
    """After the last arrival the generator finishes open requests (retries included) for at
    most this long; then it stops and records what never got an answer."""
    users: int
    """Locust users in all: the most attempts in flight at once."""
    workers: int
    """Locust worker processes in all (0: Locust's LocalRunner runs the users itself)."""
    local_workers: int
    """Of the workers, those the master starts on its own machine."""
    master_bind: str
    master_port: int
    key_prefix: str
    """Prefix of every idempotency key, unique per run: a system that keeps keys (24 h in the
    reference implementation) would otherwise replay an earlier run's answers."""
    late_after: float
    """A send that starts more than this after its intended time counts as missed."""

    @property
    def processes(self) -> int:
        """Processes that generate traffic, each running its share of the schedule."""
        return max(1, self.workers)

    @property
    def scenario_workload(self) -> Workload:
        return Workload.model_validate(self.workload)

    @staticmethod
    def workload_fields(workload: Workload) -> dict[str, Any]:
        fields: dict[str, Any] = _plain(workload)
        return fields

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficPlan:
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrafficPlan:
        return cls.from_dict(json.loads(text))
