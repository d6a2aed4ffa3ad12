"""`testbed groups`: each group's members, the partitions each holds at which epoch, and the
lag per partition, read from a store that real members of the payments group wrote (driven by
the real runtime's `drain`, as tests/unit/test_consumer_engine.py drives them).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reference_impl.adapters import open_store
from reference_impl.core.ledger import Account, Transfer
from reference_impl.core.screening import ScreeningRules
from reference_impl.runtime.consumer import drain
from reference_impl.service.accept import PaymentRequest, accept_payment
from reference_impl.service.groups import Identity
from reference_impl.service.ledger import create_accounts, submit_transfers
from reference_impl.service.members import GroupSettings, payments_member
from reference_impl.service.payments import PaymentsConfig
from reference_impl.service.ports import Store, partition_for
from testbed.cli import app
from testbed.commands import register

register(app)

PARTITIONS = 8
CONFIG = PaymentsConfig(partitions=PARTITIONS)
SETTINGS = GroupSettings(partitions=PARTITIONS, session_timeout=3600.0)


class WallClock:
    def now(self) -> float:
        return time.time()


def accept(store: Store, i: int) -> int:
    """Payment p{i} from a{i % 6}; returns the partition its events go to."""
    debtor = f"a{i % 6}"
    req = PaymentRequest(debtor, f"a{(i + 1) % 6}", 100, "EUR")
    with store.unit_of_work() as uow:
        accept_payment(uow, "acme", f"k{i}", req, f"h{i}", f"p{i}", time.time(), CONFIG)
        uow.commit()
    return partition_for(f"acme/{debtor}", PARTITIONS)


def table(output: str, title: str) -> list[list[str]]:
    """The rows of the rich table titled `title`, as lists of cells."""
    lines = output.splitlines()
    start = lines.index(title)
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("group "):
            break
        cells = [c.strip() for c in line.strip().strip("│┃").split("│" if "│" in line else "┃")]
        if len(cells) > 1 and not set(line.strip()) <= set("┏┓┗┛┡┩└┘━─┳╇┴┼┃│ "):
            rows.append(cells)
    return rows[1:]  # without the header


def test_groups_shows_each_member_its_partitions_epochs_and_lag(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'groups.db'}"
    store = open_store(url)
    try:
        accounts = [Account("funding", "EUR", overdraft=True)]
        accounts += [Account(f"a{i}", "EUR") for i in range(6)]
        create_accounts(store, "acme", accounts)
        funding = [Transfer(f"f{i}", "funding", f"a{i}", 1_000, "EUR") for i in range(6)]
        submit_transfers(store, "acme", funding, time.time())
        clock = WallClock()
        a = payments_member(Identity("m-a", 101, "host-a"), clock, SETTINGS, CONFIG,
                            ScreeningRules())  # fmt: skip
        b = payments_member(Identity("m-b", 202, "host-b"), clock, SETTINGS, CONFIG,
                            ScreeningRules())  # fmt: skip
        drain(store, [a])  # a joins alone: every partition, at epoch 1
        for i in range(3):
            accept(store, i)
        drain(store, [a, b])  # b joins: the upper half moves to it, at epoch 2; all posted
        waiting = Counter(accept(store, i) for i in range(3, 9))  # not consumed: the lag
    finally:
        store.close()
    assert sorted(a.assignment) == [0, 1, 2, 3] and sorted(b.assignment) == [4, 5, 6, 7]

    done = CliRunner().invoke(app, ["groups", "--store", url])
    assert done.exit_code == 0, done.output
    members = table(done.output, "group payments: members")
    assert [(m[0], m[1], m[2]) for m in members] == [("m-a", "101", "host-a"),
                                                      ("m-b", "202", "host-b")]  # fmt: skip
    assert all(m[3].endswith("s ago") and m[4].endswith("s left") for m in members), members
    partitions = table(done.output, "group payments: partitions")
    expected = [
        [str(p), "m-a" if p < 4 else "m-b", "1" if p < 4 else "2", str(waiting[p]), "0"]
        for p in range(PARTITIONS)
    ]
    assert partitions == expected, done.output
    assert "payments: 2 members, lag 6 events" in done.output
    # A group with no members yet is listed too, its partitions held by nobody; what the
    # payments members posted waits for it (one outcome per posted payment).
    assert table(done.output, "group settlement: members") == []
    settlement = table(done.output, "group settlement: partitions")
    assert [row[:3] for row in settlement] == [[str(p), "-", "0"] for p in range(PARTITIONS)]
    assert "settlement: 0 members, lag 3 events" in done.output


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("mysql://x", "error: --store: invalid store URL"),
        ("postgresql://nobody@127.0.0.1:1/none", "error: --store: cannot connect"),
        ("sqlite:///{tmp}/no-such-dir/testbed.db", "error: --store: cannot open"),
    ],
)
def test_a_bad_store_is_one_line_and_exit_2(store: str, message: str, tmp_path: Path) -> None:
    store = store.format(tmp=tmp_path)
    done = CliRunner().invoke(app, ["groups", "--store", store])
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.output
