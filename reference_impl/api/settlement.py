"""GET /v1/settlements and GET /v1/reconciliation: the tenant's settlement batches and breaks.

The load runtime exports these after a run for the audit, so they page like the journal: by id
(`after` = the last id of the previous page), with an empty page ending the listing.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at definition time,
# and they close over the app's Gateway, which a string annotation could not resolve.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from reference_impl.api.gateway import Gateway
from reference_impl.api.models import NUL_RULE
from reference_impl.api.problems import invalid, responses
from reference_impl.service.ports import UnitOfWork
from reference_impl.service.settlement import list_breaks, list_settlements

MAX_PAGE = 1000

Lister = Callable[[UnitOfWork, str, str, int], list[dict[str, Any]]]


def settlement_router(gw: Gateway) -> APIRouter:
    router = APIRouter()

    async def page(
        tenant: str, name: str, lister: Lister, after: str, limit: int
    ) -> dict[str, Any]:
        if "\x00" in after:  # PostgreSQL text cannot hold it: a 422, not a store error
            raise invalid([{"field": "after", "in": "query", "rule": NUL_RULE}])

        def read(uow: UnitOfWork) -> list[dict[str, Any]]:
            return lister(uow, tenant, after, limit)

        items = await gw.in_store(read)
        return {name: items, "next": items[-1]["id"] if items else after}

    @router.get(
        "/v1/settlements",
        responses=responses(401, 422, 429, 503),
        summary="The tenant's settlement batches by id; an empty page ends the listing",
    )
    async def read_settlements(
        tenant: Annotated[str, Depends(gw.tenant)],
        after: Annotated[str, Query(max_length=512)] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        return await page(tenant, "settlements", list_settlements, after, limit)

    @router.get(
        "/v1/reconciliation",
        responses=responses(401, 422, 429, 503),
        summary="The tenant's reconciliation breaks by id; an empty page ends the listing",
    )
    async def read_breaks(
        tenant: Annotated[str, Depends(gw.tenant)],
        after: Annotated[str, Query(max_length=512)] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        return await page(tenant, "breaks", list_breaks, after, limit)

    return router
