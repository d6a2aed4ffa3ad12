"""The PostgreSQL store's batch lookups stay index probes however large the tenant grows.

`tenant = $1 AND id = ANY($2)` was planned as a scan of the whole tenant (a bitmap scan on the
key's tenant prefix filtered by id without statistics, a sequential scan with them), so a
batch's reads slowed down as the tenant's history grew. The lookups must probe the primary key
once per id, with and without statistics.
"""

from __future__ import annotations

import psycopg
import pytest

from reference_impl.adapters.postgres import _GET_ACCOUNTS, _GET_TRANSFERS, PostgresStore
from reference_impl.core.ledger import Account, Transfer, TransferResult
from reference_impl.service.ledger import create_accounts, submit_transfers

pytestmark = pytest.mark.postgres


def _plan(conn: psycopg.Connection[tuple[str]], query: str, params: tuple[object, ...]) -> str:
    rows = conn.execute(f"EXPLAIN {query}", params).fetchall()
    return "\n".join(r[0] for r in rows)


def test_batch_lookups_probe_the_primary_key_with_and_without_statistics(
    postgres_store: PostgresStore,
) -> None:
    accounts = [Account(f"a{i}", "EUR", overdraft=True) for i in range(200)]
    create_accounts(postgres_store, "t", accounts)
    for n in range(20):
        batch = [Transfer(f"x{n}-{j}", f"a{j % 200}", f"a{(j + 1) % 200}", 1, "EUR")
                 for j in range(1000)]  # fmt: skip
        assert set(submit_transfers(postgres_store, "t", batch, 1.0)) == {TransferResult.OK}
    ids = [f"y-{j}" for j in range(1000)]
    with psycopg.connect(postgres_store.conninfo, autocommit=True) as conn:
        for analysed in (False, True):
            if analysed:
                conn.execute("ANALYZE transfers")
                conn.execute("ANALYZE accounts")
            for query, key in ((_GET_TRANSFERS, "transfers_pkey"),
                               (_GET_ACCOUNTS, "accounts_pkey")):  # fmt: skip
                plan = _plan(conn, query, (ids, "t"))
                assert f"Index Scan using {key}" in plan, plan
                assert "(id = k.id)" in plan, plan
                assert "Seq Scan on" not in plan and "Bitmap" not in plan, plan
