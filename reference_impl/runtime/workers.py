"""The consumer-group members a worker process (or thread) runs, built from the runtime config.

Groups and what they do are defined once, for both runtimes, in service/members.py; this module
gives them what only a real process has: a unique identity (host, pid, a random suffix), the
wall clock, the bank partner with its durable book in the store, and a wake-up of the other
consumers after every commit that appended events.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from reference_impl.adapters.bank_partner import BankPartnerSimulator, PartnerBehaviour, StoreBook
from reference_impl.core.screening import ScreeningRules
from reference_impl.service.checks import CHECKS, Checker, CheckerSettings
from reference_impl.service.consumer import Member
from reference_impl.service.groups import Identity
from reference_impl.service.members import (
    GroupSettings,
    check_member,
    payments_member,
    reporting_member,
    settlement_member,
)
from reference_impl.service.payments import PaymentsConfig
from reference_impl.service.ports import Clock, Store
from reference_impl.service.settlement import SettlementConfig

GROUPS = ("payments", "settlement", "reporting")
STATEMENT_POLL_S = 1.0


def identity(group: str) -> Identity:
    """A member id unique to this incarnation, with the pid and host `testbed groups` shows."""
    host = socket.gethostname()
    pid = os.getpid()
    return Identity(f"{group}-{host}-{pid}-{uuid.uuid4().hex[:6]}", pid, host)


def build_member(
    group: str,
    store: Store,
    clock: Clock,
    settings: GroupSettings,
    payments: PaymentsConfig,
    cutoff: float,
    partner_day: float,
    tenants: Sequence[str],
    on_commit: Callable[[Sequence[Any]], None],
    checkers: CheckerSettings | None = None,
) -> Member:
    """One member of `group` for this process (`checkers`: how the compliance checks are set,
    for the check groups and for the payments group when it runs them in sequence)."""
    me = identity(group)
    checks = payments.checks
    if checks.on:  # the watch list, rapidfuzz and the model only where checks run
        from reference_impl.compliance import build_checkers
    if group == "payments":
        inline: list[Checker] = []
        if checks.on and checks.mode == "sequential":
            inline = build_checkers(replace(checkers or CheckerSettings(), run=checks.checks))
        return payments_member(me, clock, settings, payments, ScreeningRules(), on_commit, inline)
    if group in CHECKS and checks.on and checks.mode == "parallel" and group in checks.checks:
        [checker] = build_checkers(replace(checkers or CheckerSettings(), run=(group,)))
        return check_member(me, clock, settings, checker, payments, on_commit)
    if group == "reporting":
        return reporting_member(me, clock, settings, on_commit, purge_tenants=tenants)
    if group == "settlement":
        config = SettlementConfig(partitions=settings.partitions)
        partners = [
            BankPartnerSimulator(
                name,
                PartnerBehaviour(),
                random.Random(name),
                day_length=partner_day,
                book=StoreBook(store, name),
            )
            for name in config.partners
        ]
        return settlement_member(
            me, clock, settings, config, partners, cutoff, STATEMENT_POLL_S, on_commit
        )
    raise ValueError(
        f"group: unknown consumer group {group!r} (one of {', '.join(GROUPS)}, and with"
        f" checks in parallel {', '.join(CHECKS)})"
    )
