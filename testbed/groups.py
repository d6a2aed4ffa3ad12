"""`testbed groups`: the consumer groups of a running (or stopped) system, read from its store.

Like `kafka-consumer-groups --describe`: per group, its members (id, pid, host, last
heartbeat, lease) and per partition who holds it, at which claim epoch, and how many events of
each of the group's topics wait after its committed offset (lag).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

DEFAULT_STORE = "sqlite:///data/testbed.db"
"""Where `testbed serve` keeps its data when given no --store."""


def groups(
    store: Annotated[
        str, typer.Option(help="Store URL of the system (default: testbed serve's SQLite).")
    ] = DEFAULT_STORE,
    partitions: Annotated[
        int, typer.Option(min=1, max=1024, help="Event-log partitions (testbed serve: 8).")
    ] = 8,
) -> None:
    """Describe each consumer group: members, partition claims and epochs, lag per partition."""
    from reference_impl.adapters import open_store
    from reference_impl.service.groups import describe
    from reference_impl.service.members import GROUP_TOPICS
    from reference_impl.service.ports import InvalidStoreURL, StoreError

    try:
        opened = open_store(store)
    except (InvalidStoreURL, StoreError) as e:
        typer.echo(f"error: --store: {e}", err=True)
        raise typer.Exit(2) from None
    console = Console(soft_wrap=True)
    now = time.time()
    try:
        with opened.unit_of_work() as uow:
            names = sorted(set(GROUP_TOPICS) | set(uow.list_groups()))
            states = [describe(uow, g, GROUP_TOPICS.get(g, ()), partitions) for g in names]
    except StoreError as e:
        typer.echo(f"error: --store: {e}", err=True)
        raise typer.Exit(2) from None
    finally:
        opened.close()
    for state in states:
        topics = GROUP_TOPICS.get(state.group, ())
        members = Table(title=f"group {state.group}: members", title_justify="left")
        for column in ("member", "pid", "host", "last heartbeat", "lease"):
            members.add_column(column)
        for m in state.members:
            lease = m.lease_expires - now
            members.add_row(
                m.member,
                str(m.pid),
                m.host,
                f"{now - m.heartbeat_at:.1f}s ago",
                f"{lease:.1f}s left" if lease > 0 else f"expired {-lease:.1f}s ago",
            )
        claims = Table(title=f"group {state.group}: partitions", title_justify="left")
        for column in ("partition", "member", "epoch", *(f"lag {t}" for t in topics)):
            claims.add_column(column, justify="right" if column != "member" else "left")
        for p in state.partitions:
            claims.add_row(
                str(p.partition),
                p.member or "-",
                str(p.epoch),
                *(str(p.lag[t]) for t in topics),
            )
        console.print(members)
        console.print(claims)
        total = sum(sum(p.lag.values()) for p in state.partitions)
        console.print(f"{state.group}: {len(state.members)} members, lag {total} events\n")


def register(app: typer.Typer) -> None:
    app.command("groups")(groups)
