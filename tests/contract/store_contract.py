"""The store contract, written once: every store (memory, sqlite, postgres) must pass it.

Subclasses provide a `store` fixture (see test_store_contract.py). The tests go through the
service handlers where the service would, and through the port directly elsewhere, so they pin
down what the rest of the system relies on: results, balances, the hash-chained journal,
isolation of a unit of work, rollback, records, the event log and consumer offsets.
"""

from __future__ import annotations

import pytest

from reference_impl.core.journal import GENESIS_HASH, JournalEntry, JournalHead, first_broken_link
from reference_impl.core.ledger import (
    Account,
    AccountResult,
    PendingState,
    Transfer,
    TransferKind,
    TransferResult,
)
from reference_impl.service import groups
from reference_impl.service.groups import Identity
from reference_impl.service.ledger import (
    create_accounts,
    create_accounts_in,
    read_balances,
    read_journal,
    submit_transfers,
    submit_transfers_in,
)
from reference_impl.service.ports import NewEvent, Store, UnitOfWork, partition_for

TENANT = "acme"
OTHER = "globex"
OK = TransferResult.OK
PENDING, POST_PENDING, VOID = TransferKind.PENDING, TransferKind.POST_PENDING, TransferKind.VOID


def fund(store: Store, tenant: str = TENANT, **balances: int) -> None:
    """Create `mint` (overdraft) and one account per keyword, funded from mint if positive."""
    specs = [Account("mint", "EUR", overdraft=True)]
    specs += [Account(name, "EUR") for name in balances]
    assert set(create_accounts(store, tenant, specs)) == {AccountResult.OK}
    batch = [Transfer(f"fund-{n}", "mint", n, v, "EUR") for n, v in balances.items() if v > 0]
    assert submit_transfers(store, tenant, batch, 1.0) == [OK] * len(batch)


def whole_journal(store: Store, tenant: str = TENANT) -> list[JournalEntry]:
    return read_journal(store, tenant, 0, 10_000)


def balances(store: Store, *ids: str) -> dict[str, tuple[int, int, int, int]]:
    found = read_balances(store, TENANT, ids)
    return {
        i: (a.debits_posted, a.debits_pending, a.credits_posted, a.credits_pending)
        for i, a in found.items()
    }


def write_everything(uow: UnitOfWork) -> None:
    """One of each kind of write, for the isolation and rollback tests."""
    create_accounts_in(uow, TENANT, [Account("m", "EUR", overdraft=True), Account("x", "EUR")])
    changes = submit_transfers_in(uow, TENANT, [Transfer("t1", "m", "x", 5, "EUR")], 2.0)
    assert changes.results == [OK]
    uow.put_record("payment", TENANT, "p1", '{"status":"received"}')
    assert uow.insert_record_if_absent("idem", TENANT, "k1", '"first"') is None
    uow.append_events([NewEvent("payments", "PaymentReceived", "p1", "{}")], 4, 2.0)
    uow.set_offset("payments", "payments", 1, 7)


class StoreContract:
    """Abstract: a subclass supplies the `store` fixture."""

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("a store contract subclass must provide the store fixture")

    # -- accounts -------------------------------------------------------------------------
    def test_create_accounts_ok_then_exists_or_conflict(self, store: Store) -> None:
        first = [Account("a", "EUR"), Account("b", "USD", overdraft=True, holder_name="Bob")]
        assert create_accounts(store, TENANT, first) == [AccountResult.OK] * 2
        again = [
            Account("a", "EUR"),
            Account("b", "EUR", overdraft=True, holder_name="Bob"),
            Account("b", "USD", holder_name="Bob"),
            Account("b", "USD", overdraft=True, holder_name="Rob"),
            Account("c", "XXX"),
        ]
        assert create_accounts(store, TENANT, again) == [
            AccountResult.EXISTS,
            AccountResult.EXISTS_WITH_DIFFERENT_CURRENCY,
            AccountResult.EXISTS_WITH_DIFFERENT_OVERDRAFT,
            AccountResult.EXISTS_WITH_DIFFERENT_HOLDER_NAME,
            AccountResult.CURRENCY_UNKNOWN,
        ]
        with store.unit_of_work() as uow:
            stored = uow.get_accounts(TENANT, ["a", "b", "c"])
        assert stored == {
            "a": Account("a", "EUR"),
            "b": Account("b", "USD", overdraft=True, holder_name="Bob"),
        }

    def test_accounts_are_per_tenant_and_listed_by_id(self, store: Store) -> None:
        ids = ["b", "a10", "é", "B", "a", "a2"]
        create_accounts(store, TENANT, [Account(i, "EUR") for i in ids])
        create_accounts(store, OTHER, [Account("zz", "EUR")])
        with store.unit_of_work() as uow:
            assert [a.id for a in uow.list_accounts(TENANT)] == sorted(ids)
            assert [a.id for a in uow.list_accounts(OTHER)] == ["zz"]
            assert uow.list_accounts("nobody") == []
            assert set(uow.get_accounts(OTHER, [*ids, "zz"])) == {"zz"}
            assert uow.get_accounts(TENANT, []) == {}

    # -- transfers ------------------------------------------------------------------------
    def test_transfer_moves_balances_and_round_trips_values(self, store: Store) -> None:
        big = 2**63 - 1
        create_accounts(
            store,
            TENANT,
            [Account("m", "EUR", overdraft=True, holder_name="Zoë ünïcode ✓"), Account("x", "EUR")],
        )
        at = 1_712_345_678.123_456_7
        batch = [Transfer("t1", "m", "x", big, "EUR", payment_id="pay-1")]
        assert submit_transfers(store, TENANT, batch, at) == [OK]
        assert balances(store, "m", "x") == {"m": (big, 0, 0, 0), "x": (0, 0, big, 0)}
        with store.unit_of_work() as uow:
            assert uow.get_accounts(TENANT, ["m"])["m"].holder_name == "Zoë ünïcode ✓"
            t = uow.get_transfers(TENANT, ["t1", "nope"])
        assert list(t) == ["t1"]
        assert (t["t1"].amount, t["t1"].at, t["t1"].payment_id) == (big, at, "pay-1")
        assert (t["t1"].kind, t["t1"].pending_state) == (TransferKind.POST, None)
        [entry] = whole_journal(store)
        assert (entry.amount, entry.at, entry.payment_id) == (big, at, "pay-1")
        assert first_broken_link([entry]) == 0

    def test_resubmission_is_exists_and_writes_nothing(self, store: Store) -> None:
        fund(store, a=100, b=0)
        t = Transfer("t1", "a", "b", 30, "EUR")
        assert submit_transfers(store, TENANT, [t], 2.0) == [OK]
        again = [t, Transfer("t1", "a", "b", 31, "EUR"), Transfer("t1", "b", "a", 30, "EUR")]
        assert submit_transfers(store, TENANT, again, 3.0) == [
            TransferResult.EXISTS,
            TransferResult.EXISTS_WITH_DIFFERENT_AMOUNT,
            TransferResult.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT,
        ]
        assert balances(store, "a", "b") == {"a": (30, 0, 100, 0), "b": (0, 0, 30, 0)}
        assert [e.transfer_id for e in whole_journal(store)] == ["fund-a", "t1"]

    def test_insufficient_funds_writes_nothing(self, store: Store) -> None:
        fund(store, a=50, b=0)
        batch = [Transfer("t1", "a", "b", 51, "EUR"), Transfer("t2", "b", "a", 1, "EUR")]
        assert submit_transfers(store, TENANT, batch, 2.0) == [
            TransferResult.INSUFFICIENT_FUNDS,
            TransferResult.INSUFFICIENT_FUNDS,
        ]
        assert balances(store, "a", "b") == {"a": (0, 0, 50, 0), "b": (0, 0, 0, 0)}
        assert len(whole_journal(store)) == 1
        with store.unit_of_work() as uow:
            assert uow.get_transfers(TENANT, ["t1", "t2"]) == {}

    def test_two_phase_partial_post_then_no_second_phase(self, store: Store) -> None:
        fund(store, a=100, b=0)
        assert submit_transfers(
            store, TENANT, [Transfer("p", "a", "b", 60, "EUR", PENDING)], 2
        ) == [OK]
        assert balances(store, "a", "b") == {"a": (0, 60, 100, 0), "b": (0, 0, 0, 60)}
        assert submit_transfers(store, TENANT, [Transfer("x", "a", "b", 41, "EUR")], 3) == [
            TransferResult.INSUFFICIENT_FUNDS
        ]
        post = Transfer("q", amount=45, kind=POST_PENDING, pending_id="p")
        assert submit_transfers(store, TENANT, [post], 4.0) == [OK]
        assert balances(store, "a", "b") == {"a": (45, 0, 100, 0), "b": (0, 0, 45, 0)}
        late = [
            Transfer("q2", kind=POST_PENDING, pending_id="p"),
            Transfer("v", kind=VOID, pending_id="p"),
        ]
        assert submit_transfers(store, TENANT, late, 5.0) == [
            TransferResult.PENDING_ALREADY_POSTED,
            TransferResult.PENDING_ALREADY_POSTED,
        ]
        with store.unit_of_work() as uow:
            assert uow.get_transfers(TENANT, ["p"])["p"].pending_state is PendingState.POSTED
        kinds = [(e.transfer_id, e.kind, e.amount) for e in whole_journal(store)[1:]]
        assert kinds == [("p", "pending", 60), ("q", "post_pending", 45)]

    def test_two_phase_void_releases_the_reservation(self, store: Store) -> None:
        fund(store, a=100, b=0)
        batch = [
            Transfer("p", "a", "b", 70, "EUR", PENDING),
            Transfer("v", kind=VOID, pending_id="p"),
            Transfer("q", kind=POST_PENDING, pending_id="p"),
        ]
        assert submit_transfers(store, TENANT, batch, 2.0) == [
            OK,
            OK,
            TransferResult.PENDING_ALREADY_VOIDED,
        ]
        assert balances(store, "a", "b") == {"a": (0, 0, 100, 0), "b": (0, 0, 0, 0)}
        with store.unit_of_work() as uow:
            stored = uow.get_transfers(TENANT, ["p", "v", "q"])
        assert set(stored) == {"p", "v"}
        assert stored["p"].pending_state is PendingState.VOIDED
        assert (stored["v"].debit_account, stored["v"].amount) == ("a", 70)

    def test_linked_chain_is_all_or_nothing(self, store: Store) -> None:
        fund(store, a=100, b=0, c=0)
        failing = [
            Transfer("l1", "a", "b", 60, "EUR", linked=True),
            Transfer("l2", "a", "c", 60, "EUR"),
            Transfer("solo", "a", "c", 10, "EUR"),
        ]
        assert submit_transfers(store, TENANT, failing, 2.0) == [
            TransferResult.LINKED_EVENT_FAILED,
            TransferResult.INSUFFICIENT_FUNDS,
            OK,
        ]
        chain = [
            Transfer("l3", "a", "b", 40, "EUR", linked=True),
            Transfer("l4", "b", "c", 40, "EUR"),
            Transfer("open", "a", "b", 1, "EUR", linked=True),
        ]
        assert submit_transfers(store, TENANT, chain, 3.0) == [
            OK,
            OK,
            TransferResult.LINKED_EVENT_CHAIN_OPEN,
        ]
        assert balances(store, "a", "b", "c") == {
            "a": (50, 0, 100, 0),
            "b": (40, 0, 40, 0),
            "c": (0, 0, 50, 0),
        }
        ids = [e.transfer_id for e in whole_journal(store)]
        assert ids == ["fund-a", "solo", "l3", "l4"]

    def test_large_batches_settle_many_pending_transfers(self, store: Store) -> None:
        names = [f"c{i}" for i in range(8)]
        fund(store, **dict.fromkeys(names, 100))
        pendings = [
            Transfer(f"p{i}", n, names[(i + 1) % 8], 10 + i, "EUR", PENDING)
            for i, n in enumerate(names)
        ]
        assert submit_transfers(store, TENANT, pendings, 2.0) == [OK] * 8
        second = [
            Transfer(f"s{i}", kind=POST_PENDING if i % 2 else VOID, pending_id=f"p{i}")
            for i in range(8)
        ]
        assert submit_transfers(store, TENANT, second, 3.0) == [OK] * 8
        with store.unit_of_work() as uow:
            stored = uow.get_transfers(TENANT, [f"p{i}" for i in range(8)])
            accounts = uow.get_accounts(TENANT, names)
        assert [stored[f"p{i}"].pending_state for i in range(8)] == [
            PendingState.POSTED if i % 2 else PendingState.VOIDED for i in range(8)
        ]
        posted_out = {n: 10 + i if i % 2 else 0 for i, n in enumerate(names)}
        posted_in = {names[(i + 1) % 8]: 10 + i if i % 2 else 0 for i in range(8)}
        for n in names:
            a = accounts[n]
            assert (a.debits_pending, a.credits_pending) == (0, 0)
            assert (a.debits_posted, a.credits_posted) == (posted_out[n], 100 + posted_in[n])
        assert first_broken_link(whole_journal(store)) == 0

    # -- journal --------------------------------------------------------------------------
    def test_journal_is_ordered_paged_and_hash_chained_per_tenant(self, store: Store) -> None:
        fund(store, a=1000, b=0)
        fund(store, OTHER, z=5)
        for i in range(7):
            batch = [Transfer(f"t{i}-{j}", "a", "b", i + j + 1, "EUR") for j in range(3)]
            assert submit_transfers(store, TENANT, batch, 10.0 + i) == [OK] * 3
        entries = whole_journal(store)
        assert [e.seq for e in entries] == list(range(1, 23))
        assert entries[0].prev_hash == GENESIS_HASH
        assert first_broken_link(entries) == 0
        pages = [read_journal(store, TENANT, after, 5) for after in range(0, 25, 5)]
        assert [len(p) for p in pages] == [5, 5, 5, 5, 2]
        assert [e for p in pages for e in p] == entries
        assert read_journal(store, TENANT, 22, 5) == []
        assert read_journal(store, TENANT, 7, 2) == entries[7:9]
        other = whole_journal(store, OTHER)
        assert [e.seq for e in other] == [1]
        assert first_broken_link(other) == 0
        with store.unit_of_work() as uow:
            assert uow.journal_head(TENANT) == JournalHead(22, entries[-1].hash)
            assert uow.journal_head("nobody") == JournalHead(0, GENESIS_HASH)

    def test_lock_and_load_reads_what_the_separate_reads_read(self, store: Store) -> None:
        fund(store, a=100, b=0)
        assert submit_transfers(store, TENANT, [Transfer("t1", "a", "b", 7, "EUR")], 2.0) == [OK]
        with store.unit_of_work() as uow:
            head, accounts, transfers = uow.lock_and_load(TENANT, ["a", "b", "nope"], ["t1", "t2"])
            assert head == uow.journal_head(TENANT)
            assert accounts == uow.get_accounts(TENANT, ["a", "b"])
            assert transfers == uow.get_transfers(TENANT, ["t1"])
            assert set(accounts) == {"a", "b"} and set(transfers) == {"t1"}
        with store.unit_of_work() as uow:  # a tenant with no head yet gets one
            assert uow.lock_and_load("nobody", ["a"], ["t1"]) == (JournalHead(), {}, {})

    def test_pending_posted_in_its_own_batch_is_stored_in_its_final_state(
        self, store: Store
    ) -> None:
        fund(store, a=100, b=0)
        batch = [
            Transfer("p", "a", "b", 10, "EUR", PENDING),
            Transfer("q", kind=POST_PENDING, pending_id="p"),
        ]
        assert submit_transfers(store, TENANT, batch, 2.0) == [OK, OK]
        with store.unit_of_work() as uow:
            assert uow.get_transfers(TENANT, ["p"])["p"].pending_state is PendingState.POSTED
        assert balances(store, "a") == {"a": (10, 0, 100, 0)}

    # -- unit of work ---------------------------------------------------------------------
    def test_a_unit_of_work_reads_its_own_writes(self, store: Store) -> None:
        with store.unit_of_work() as uow:
            write_everything(uow)
            assert [a.id for a in uow.list_accounts(TENANT)] == ["m", "x"]
            assert uow.get_accounts(TENANT, ["x"])["x"].credits_posted == 5
            assert set(uow.get_transfers(TENANT, ["t1"])) == {"t1"}
            assert [e.transfer_id for e in uow.read_journal(TENANT, 0, 10)] == ["t1"]
            assert uow.journal_head(TENANT).seq == 1
            assert uow.get_record("payment", TENANT, "p1") == '{"status":"received"}'
            assert uow.insert_record_if_absent("idem", TENANT, "k1", '"second"') == '"first"'
            assert uow.list_records("idem", TENANT) == [("k1", '"first"')]
            [event] = uow.read_events("payments", partition_for("p1", 4), 0, 10)
            assert (event.offset, event.type, event.key) == (1, "PaymentReceived", "p1")
            assert uow.get_offset("payments", "payments", 1) == 7
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.journal_head(TENANT).seq == 1
            assert uow.get_offset("payments", "payments", 1) == 7

    @pytest.mark.parametrize("how", ["rollback", "exit-without-commit", "exception"])
    def test_leaving_without_commit_discards_everything(self, store: Store, how: str) -> None:
        def abandon() -> None:
            with store.unit_of_work() as uow:
                write_everything(uow)
                if how == "rollback":
                    uow.rollback()
                elif how == "exception":
                    raise KeyError("boom")

        if how == "exception":
            with pytest.raises(KeyError):
                abandon()
        else:
            abandon()
        with store.unit_of_work() as uow:
            assert uow.list_accounts(TENANT) == []
            assert uow.get_transfers(TENANT, ["t1"]) == {}
            assert uow.read_journal(TENANT, 0, 10) == []
            assert uow.journal_head(TENANT) == JournalHead()
            assert uow.get_record("payment", TENANT, "p1") is None
            assert uow.list_records("idem", TENANT) == []
            assert uow.read_events("payments", partition_for("p1", 4), 0, 10) == []
            assert uow.get_offset("payments", "payments", 1) == 0
        # The store still works after a rollback, and numbering starts afresh.
        with store.unit_of_work() as uow:
            write_everything(uow)
            uow.commit()
        assert [e.seq for e in whole_journal(store)] == [1]

    def test_commit_twice_raises_and_rollback_after_commit_keeps_it(self, store: Store) -> None:
        uow = store.unit_of_work()
        uow.put_record("k", TENANT, "a", "1")
        uow.commit()
        uow.rollback()
        with pytest.raises(RuntimeError):
            uow.commit()
        with store.unit_of_work() as check:
            assert check.get_record("k", TENANT, "a") == "1"

    # -- records --------------------------------------------------------------------------
    def test_records_get_put_insert_if_absent(self, store: Store) -> None:
        with store.unit_of_work() as uow:
            assert uow.get_record("payment", TENANT, "p1") is None
            uow.put_record("payment", TENANT, "p1", "v1")
            uow.put_record("payment", TENANT, "p1", "v2")
            uow.put_record("payment", OTHER, "p1", "other")
            uow.put_record("saga", TENANT, "p1", "saga")
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.get_record("payment", TENANT, "p1") == "v2"
            assert uow.get_record("payment", OTHER, "p1") == "other"
            assert uow.get_record("saga", TENANT, "p1") == "saga"
            assert uow.insert_record_if_absent("payment", TENANT, "p1", "v3") == "v2"
            assert uow.insert_record_if_absent("payment", TENANT, "p2", "new") is None
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.get_record("payment", TENANT, "p1") == "v2"
            assert uow.get_record("payment", TENANT, "p2") == "new"

    def test_list_records_pages_by_key_within_kind_and_tenant(self, store: Store) -> None:
        keys = [f"k{i:02d}" for i in range(12)]
        with store.unit_of_work() as uow:
            for k in reversed(keys):
                uow.put_record("batch", TENANT, k, f"v-{k}")
            uow.put_record("batch", OTHER, "k00", "other tenant")
            uow.put_record("other-kind", TENANT, "k00", "other kind")
            uow.commit()
        with store.unit_of_work() as uow:
            first = uow.list_records("batch", TENANT, limit=5)
            second = uow.list_records("batch", TENANT, first[-1][0], 5)
            rest = uow.list_records("batch", TENANT, second[-1][0])
            assert uow.list_records("batch", TENANT, keys[-1]) == []
        assert [k for k, _ in first + second + rest] == keys
        assert first[0] == ("k00", "v-k00")

    # -- event log ------------------------------------------------------------------------
    def test_events_go_to_their_topic_partition_in_order_with_gapless_offsets(
        self, store: Store
    ) -> None:
        keys = [f"pay-{i}" for i in range(20)]
        with store.unit_of_work() as uow:
            uow.append_events(
                [NewEvent("t1", "A", k, f'{{"n":{i}}}') for i, k in enumerate(keys)], 3, 5.5
            )
            uow.commit()
        with store.unit_of_work() as uow:
            # interleaved topics in one append: each topic partition numbers its own offsets
            events = [NewEvent(t, "B", k, "{}") for k in keys for t in ("t1", "t2")]
            uow.append_events(events, 3, 6.5)
            uow.commit()
        with store.unit_of_work() as uow:
            per_partition = {p: uow.read_events("t1", p, 0, 1000) for p in range(3)}
            other = {p: uow.read_events("t2", p, 0, 1000) for p in range(3)}
            paged = uow.read_events("t1", 0, 2, 3)
            heads = (uow.log_heads("t1"), uow.log_heads("t2"), uow.log_heads("none"))
        for p, events in per_partition.items():
            mine = [k for k in keys if partition_for(k, 3) == p]
            assert [e.key for e in events] == mine + mine
            assert [e.offset for e in events] == list(range(1, 2 * len(mine) + 1))
            assert {(e.topic, e.partition) for e in events} == {("t1", p)}
            assert [e.type for e in events] == ["A"] * len(mine) + ["B"] * len(mine)
            assert [e.at for e in events] == [5.5] * len(mine) + [6.5] * len(mine)
            assert [e.key for e in other[p]] == mine
            assert [e.offset for e in other[p]] == list(range(1, len(mine) + 1))
        assert sum(len(v) for v in per_partition.values()) == 40
        assert paged == per_partition[0][2:5]
        first = per_partition[partition_for("pay-0", 3)][0]
        assert first.payload == '{"n":0}'
        assert heads[0] == {p: len(v) for p, v in per_partition.items() if v}
        assert heads[1] == {p: len(v) for p, v in other.items() if v}
        assert heads[2] == {}

    def test_consumer_offsets_default_to_zero_and_are_per_group_and_topic(
        self, store: Store
    ) -> None:
        with store.unit_of_work() as uow:
            assert uow.get_offset("payments", "t", 0) == 0
            uow.set_offset("payments", "t", 0, 3)
            uow.set_offset("payments", "t", 0, 4)
            uow.set_offset("reporting", "t", 0, 9)
            uow.set_offset("reporting", "u", 0, 2)
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.get_offset("payments", "t", 0) == 4
            assert uow.get_offset("reporting", "t", 0) == 9
            assert uow.get_offset("reporting", "u", 0) == 2
            assert uow.get_offset("payments", "u", 0) == 0
            assert uow.get_offset("payments", "t", 1) == 0
            assert uow.list_groups() == ["payments", "reporting"]

    # -- consumer groups: membership, claims, fencing -------------------------------------
    def test_two_members_split_the_partitions_and_the_second_join_moves_half(
        self, store: Store
    ) -> None:
        a, b = Identity("a", 11, "h1"), Identity("b", 12, "h2")
        assert beat(store, a, 0.0) == dict.fromkeys(range(4), 1)
        assert beat(store, b, 1.0) == {2: 2, 3: 2}
        assert beat(store, a, 2.0) == {0: 1, 1: 1}
        with store.unit_of_work() as uow:
            members = uow.list_members("g")
            claims = uow.list_claims("g")
        assert [(m.member, m.pid, m.host, m.joined_at) for m in members] == [
            ("a", 11, "h1", 0.0),
            ("b", 12, "h2", 1.0),
        ]
        assert [(m.heartbeat_at, m.lease_expires) for m in members] == [(2.0, 12.0), (1.0, 11.0)]
        assert [(c.partition, c.member, c.epoch) for c in claims] == [
            (0, "a", 1),
            (1, "a", 1),
            (2, "b", 2),
            (3, "b", 2),
        ]

    def test_an_expired_lease_moves_the_partitions_and_a_leave_moves_them_at_once(
        self, store: Store
    ) -> None:
        a, b, c = Identity("a"), Identity("b"), Identity("c")
        beat(store, a, 0.0)
        beat(store, b, 0.0)
        assert beat(store, b, 9.9) == {2: 2, 3: 2}  # a's lease (until 10.0) still holds
        assert beat(store, b, 10.0) == {0: 2, 1: 2, 2: 2, 3: 2}
        with store.unit_of_work() as uow:
            assert [m.member for m in uow.list_members("g")] == ["b"]
        beat(store, c, 11.0)
        with store.unit_of_work() as uow:
            groups.leave(uow, "g", 4, "b", 12.0)
            uow.commit()
        assert beat(store, c, 12.5) == dict.fromkeys(range(4), 3)

    def test_a_zombie_commits_nothing_once_its_claim_moved(self, store: Store) -> None:
        a, b = Identity("a"), Identity("b")
        held = beat(store, a, 0.0)
        beat(store, b, 11.0)  # a paused past its lease: everything moves to b
        with store.unit_of_work() as uow:
            uow.set_offset("g", "t", 0, 5)
            with pytest.raises(groups.Fenced) as fenced:
                groups.check_fence(uow, "g", "a", held)
        assert fenced.value.partitions == [0, 1, 2, 3]
        with store.unit_of_work() as uow:
            assert uow.get_offset("g", "t", 0) == 0  # rolled back
            groups.check_fence(uow, "g", "b", {0: 2, 1: 2})  # the new owner passes

    def test_an_exclusive_group_gives_everything_to_its_oldest_member(self, store: Store) -> None:
        a, b = Identity("z-old"), Identity("a-new")
        assert beat(store, a, 0.0, exclusive=True) == dict.fromkeys(range(4), 1)
        assert beat(store, b, 1.0, exclusive=True) == {}
        assert beat(store, b, 10.5, exclusive=True) == dict.fromkeys(range(4), 2)
        with store.unit_of_work() as uow:
            assert groups.revoke_all(uow, "g") == 4
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.list_members("g") == []
            assert {(c.member, c.epoch) for c in uow.list_claims("g")} == {("", 3)}


def beat(store: Store, me: Identity, now: float, exclusive: bool = False) -> dict[int, int]:
    """One heartbeat of `me` in group "g" (4 partitions, 10 s leases), committed."""
    with store.unit_of_work() as uow:
        held = groups.heartbeat(uow, "g", 4, me, now, 10.0, exclusive)
        uow.commit()
    return held
