"""The screening provider: the stub process's HTTP answers and controls, the remote screen the
sanctions check calls before its unit of work, and failing closed (review) when it is down."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reference_impl.compliance.provider import (
    Behaviour,
    ProviderUnavailable,
    RemoteScreen,
    make_server,
)
from reference_impl.compliance.sanctions import SanctionsScreen, parse_watchlist
from reference_impl.core.payments import Payment
from reference_impl.runtime.launcher import free_port
from reference_impl.service.checkers import SanctionsCheck
from scenarios.loader import ScenarioError, load_scenario

LIST = "id,schema,name,aliases,countries,program,dataset\nT-1,Person,Vladimir Sokolov,,ru,T,t\n"


@pytest.fixture
def provider() -> Iterator[str]:
    screen = SanctionsScreen(parse_watchlist(LIST, "test.csv"))
    server = make_server(free_port(), screen, Behaviour(0.0, 0.0, seed=1))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def payment(pid: str, creditor_name: str) -> Payment:
    return Payment(pid, "t", pid, "a", "b", 100, "EUR", 1.0, creditor_name=creditor_name)


def test_the_stub_screens_names_in_bulk(provider: str) -> None:
    found = RemoteScreen(provider).decide_many(["Vladimir Sokolov", "Jane Smith"])
    assert [d.verdict for d in found] == ["reject", "approve"]
    assert "T-1" in found[0].reason


def test_the_stub_fails_as_controlled_and_refuses_bad_input(provider: str) -> None:
    assert httpx.post(f"{provider}/control", json={"error_rate": 1.0}).status_code == 200
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        RemoteScreen(provider).decide("Jane Smith")
    assert httpx.post(f"{provider}/control", json={"error_rate": 2}).status_code == 422
    assert httpx.post(f"{provider}/screen", json={"names": "x"}).status_code == 422
    assert httpx.post(f"{provider}/control", json={"error_rate": 0.0}).status_code == 200
    assert RemoteScreen(provider).decide("Jane Smith").verdict == "approve"


def test_an_unreachable_provider_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable):
        RemoteScreen(f"http://127.0.0.1:{free_port()}", timeout=2.0).decide("x")


def test_the_check_screens_the_batch_in_one_call_and_fails_closed(provider: str) -> None:
    check = SanctionsCheck(RemoteScreen(provider))
    batch = [payment("p1", "Vladimir Sokolov"), payment("p2", "Jane Smith"), payment("p3", "")]
    call = check.prepare(batch)
    assert call is not None and call() == 1  # one bulk call for the batch's two names
    assert [check.decide(None, p, 1.0).verdict for p in batch] == ["reject", "approve", "approve"]  # type: ignore[arg-type]
    assert check.prepare(batch) is None  # the names' answers are known: no call
    httpx.post(f"{provider}/control", json={"error_rate": 1.0})
    later = [payment("p4", "John Doe")]
    call = check.prepare(later)
    assert call is not None and call() == 1
    held = check.decide(None, later[0], 1.0)  # type: ignore[arg-type]
    assert (held.verdict, held.reason.split(" ")[0]) == ("review", "sanctions:unavailable")
    httpx.post(f"{provider}/control", json={"error_rate": 0.0})
    call = check.prepare(later)  # a failed call's answer is not kept: asked again
    assert call is not None and call() == 1
    assert check.decide(None, later[0], 1.0).verdict == "approve"  # type: ignore[arg-type]


def test_a_provider_fault_needs_a_provider(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "description: x\nduration: 1s\nworkload: {rate: 1/s}\n"
        "checks: {mode: parallel}\n"
        "faults: {timed: [{kind: provider, at: 0s, duration: 1s, error_rate: 1}]}\n"
    )
    with pytest.raises(ScenarioError, match=r"a provider fault needs .* checks\.provider"):
        load_scenario(path)
