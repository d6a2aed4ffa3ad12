"""The gateway's store thread: answers in order, off the event loop, errors to their caller,
and a cancelled caller still waits for its work to end."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

from reference_impl.api.store_thread import StoreThread


def test_runs_queued_work_in_order_on_one_thread_off_the_event_loop() -> None:
    ran: list[tuple[int, int]] = []

    def work(n: int) -> int:
        ran.append((n, threading.get_ident()))
        return n * n

    async def main() -> list[int]:
        store = StoreThread()
        return await asyncio.gather(*(store.run(lambda n=n: work(n)) for n in range(20)))

    loop_thread = threading.get_ident()
    assert asyncio.run(main()) == [n * n for n in range(20)]
    assert [n for n, _ in ran] == list(range(20))
    assert len({t for _, t in ran}) == 1
    assert loop_thread not in {t for _, t in ran}


def test_an_error_goes_to_its_own_caller_only() -> None:
    def fail() -> int:
        raise ValueError("no such account")

    async def main() -> tuple[BaseException | int, ...]:
        store = StoreThread()
        return tuple(
            await asyncio.gather(store.run(lambda: 1), store.run(fail), store.run(lambda: 3),
                                 return_exceptions=True)
        )  # fmt: skip

    first, failed, third = asyncio.run(main())
    assert (first, third) == (1, 3)
    assert isinstance(failed, ValueError) and str(failed) == "no such account"


def test_a_cancelled_caller_waits_until_its_work_has_run() -> None:
    """As with the threadpool's hop: a cancel scope's cancellation (how anyio and Starlette
    cancel) reaches the caller only once its unit of work has ended, which may have committed."""
    started = threading.Event()
    release = threading.Event()
    events: list[str] = []

    def commit() -> str:
        started.set()
        release.wait(10)
        events.append("committed")
        return "committed"

    async def main() -> None:
        store = StoreThread()
        scope = anyio.CancelScope()

        async def request() -> None:
            with scope:
                await store.run(commit)
            events.append("caller went on")

        async with anyio.create_task_group() as tg:
            tg.start_soon(request)
            await anyio.to_thread.run_sync(started.wait, 10)
            scope.cancel()
            await anyio.sleep(0.05)
            assert events == []  # the caller is still waiting for its work
            release.set()
        assert events == ["committed", "caller went on"]

    asyncio.run(main())


def test_a_new_thread_takes_over_after_the_idle_one_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("reference_impl.api.store_thread.IDLE_S", 0.0)

    async def main() -> list[int]:
        store = StoreThread("store-test")
        first = await store.run(lambda: 1)
        for _ in range(100):  # until the idle thread has ended
            if not any(t.name == "store-test" for t in threading.enumerate()):
                break
            await asyncio.sleep(0.01)
        return [first, await store.run(lambda: 2)]

    assert asyncio.run(main()) == [1, 2]
