"""Forgetting idempotency keys once they expire: the sweep that keeps their records bounded.

An idempotency record is kept for `PaymentsConfig.idempotency_retention` (24 h by default), after
which its key counts as unused (service/accept.py). Expired records are useless but would pile
up forever; `purge_expired` deletes them a page at a time, each page in the caller's unit of
work, and returns a cursor so a periodic sweep can resume where it stopped instead of rescanning.
"""

from __future__ import annotations

import json

from reference_impl.core.serial import Memo
from reference_impl.service.accept import IDEMPOTENCY
from reference_impl.service.ports import UnitOfWork

PAGE = 1000


def purge_expired(
    uow: UnitOfWork, tenant: str, after_key: str, now: float, limit: int = PAGE
) -> tuple[str, int]:
    """Delete the expired records among the tenant's next `limit` keys after `after_key`.

    Returns (where the next call resumes, how many expired records were found); the cursor is
    "" once the last key was reached. A record rewritten after it was read here (its key used
    again) is not deleted. The caller commits.
    """
    page = uow.list_records(IDEMPOTENCY, tenant, after_key, limit)
    expired = {key: text for key, text in page if _expires_at(text) <= now}
    if expired:
        uow.delete_records_if_unchanged(IDEMPOTENCY, tenant, expired)
    return (page[-1][0] if len(page) == limit else ""), len(expired)


_EXPIRES_AT: Memo[str, float] = Memo(1 << 15)
"""Expiry by record text: every sweep reads every live key again, and a record is never changed
but replaced."""


def _expires_at(text: str) -> float:
    return _EXPIRES_AT.decoded(text, lambda t: json.loads(t)["expires_at"])
