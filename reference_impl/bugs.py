"""The bug zoo: named, deliberately broken variants of the reference implementation.

The testbed claims its audit catches lost, duplicated and phantom payments and broken ledger
invariants. The zoo proves it: each name below switches on one classic mistake of payment
systems, and each is caught by the audit in the sim within a stated number of seeds
(docs/bug-zoo.md). Every bug is off unless a scenario (`bugs:`) or the command line
(`--bug NAME`) selects it.

The switches are values, never global state: the runtime passes a frozenset of enabled names
down (`PaymentsConfig.bugs`, `MemoryStore(bugs=...)`, the sim's gateway and ledger), and the
code at each switch tests `NAME in bugs`. `core` and `service` may import nothing outside the
standard library and themselves, so they spell the names as string literals; this registry is
the one list the scenario schema and the command line validate against.
"""

from __future__ import annotations

from collections.abc import Iterable

BUGS: dict[str, str] = {
    "skip-idempotency": "the gateway never looks up the idempotency key: a retry is a new payment",
    "idempotency-race": (
        "check-then-insert without a lock: the key lookup and the insert are separate units of"
        " work, so two concurrent requests with one key both pass the check"
    ),
    "publish-before-commit": (
        "the gateway publishes the payment and its PaymentReceived in one unit of work and"
        " records the idempotency key's answer in a later one; a concurrent or retried request"
        " with the key, arriving between, publishes a second payment"
    ),
    "ack-before-durable": (
        "the gateway replies 202 once the commit is in memory, before it is durable; a store"
        " crash loses acknowledged payments"
    ),
    "commit-offset-before-effect": (
        "the payments worker commits its consumer offset in one unit of work and applies the"
        " effect in a later one; a crash between loses the effect"
    ),
    "non-idempotent-consumer": (
        "the payments consumer commits its effects in one unit of work and its offset in a later"
        " one (at-least-once), and its effects are not keyed: transfer ids drawn per delivery,"
        " no look at the payment's status; a redelivered event reserves and posts again"
    ),
    "double-compensation": (
        "the compensation after retries ran out (fail_payment) is neither guarded nor keyed, and"
        " the payments consumer retries a compensation whose answer was lost until one is"
        " acknowledged; a retry of one that committed finds the reservation already voided and"
        " refunds the debtor with a reverse transfer"
    ),
    "async-replication-failover": (
        "acknowledge on the primary with asynchronous replication; a failover to a replica"
        " loses the acknowledged commits inside the lag"
    ),
    "lost-update": (
        "account balances are read-modify-written without a lock: two concurrent commits read"
        " the same balance and the second write discards the first"
    ),
    "float-money": (
        "the posted amount goes through float major units and is truncated, so some amounts"
        " post one minor unit short of what was accepted"
    ),
    "approve-on-timeout": (
        "the payments worker's sweep of payments whose compliance checks did not answer in time"
        " approves them whatever the configured policy (hold or reject) says, so a payment a"
        " check would have held or rejected posts while that check is down"
    ),
}
"""Every bug the zoo knows, name -> what goes wrong."""

IN_REAL_PROCESSES = frozenset(
    {
        "skip-idempotency",
        "float-money",
        "commit-offset-before-effect",
        "non-idempotent-consumer",
        "double-compensation",
        "approve-on-timeout",
    }
)
"""The bugs a load run can switch on: those in the service handlers and the consumer engine,
which real processes run. The others break what only the sim has: its gateway's split units of
work (idempotency-race, publish-before-commit) or its memory store's durability, replication
and reads (ack-before-durable, async-replication-failover, lost-update)."""


class UnknownBug(ValueError):
    """A bug name that is not in the zoo (a user's mistake: the message lists the valid names)."""


def valid_names() -> str:
    return ", ".join(sorted(BUGS))


def check_bug(name: str) -> str:
    if name not in BUGS:
        raise UnknownBug(f"unknown bug {name!r} (valid: {valid_names()})")
    return name


def enabled(names: Iterable[str]) -> frozenset[str]:
    """The switches to pass down: each name checked against the zoo."""
    return frozenset(check_bug(n) for n in names)
