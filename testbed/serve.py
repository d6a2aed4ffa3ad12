"""`testbed serve`: the reference implementation as a real service (gateway and workers).

By default one process runs uvicorn and the worker threads; `--workers N` runs N uvicorn gateway
processes and worker processes under a small supervisor (reference_impl/runtime/processes.py).
Flags are checked before anything starts or is printed (the demo tenant's key included): a
malformed flag, an unreachable database, or memory:// with --workers (a memory store cannot be
shared between processes) is one line naming the flag, exit code 2. SIGTERM/SIGINT stop it
gracefully: the gateway stops accepting and finishes in-flight requests, the workers finish and
commit their current batch.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:  # imported when the command runs, so `testbed --help` stays fast
    from reference_impl.runtime import Runtime
    from reference_impl.service.checks import CheckerSettings, ChecksConfig

DEFAULT_DATA_DIR = Path("data")


def _fail(flag: str, message: str) -> NoReturn:
    typer.echo(f"error: {flag}: {message}", err=True)
    raise typer.Exit(2)


def parse_api_keys(values: list[str]) -> dict[str, str]:
    """TENANT:KEY pairs -> {key: tenant}; raises ValueError naming the bad value."""
    keys: dict[str, str] = {}
    for value in values:
        tenant, sep, key = value.partition(":")
        if not sep or not tenant or not key or any(c.isspace() for c in value):
            raise ValueError(f"expected TENANT:KEY (both non-empty, no spaces), got {value!r}")
        if keys.get(key, tenant) != tenant:
            raise ValueError(f"key {key!r} is given to two tenants ({keys[key]!r}, {tenant!r})")
        keys[key] = tenant
    return keys


def _check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except (redis.RedisError, ValueError) as e:
        _fail("--redis", f"cannot reach {url}: {e}")
    finally:
        client.close()


def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    store: Annotated[
        str | None,
        typer.Option(
            help="Store URL (sqlite:///PATH, postgresql://..., memory:// without --workers); "
            "default SQLite in ./data."
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(help="TENANT:KEY, repeatable; default: a 'demo' tenant with a fresh key."),
    ] = None,
    redis: Annotated[
        str | None, typer.Option(help="Redis URL for a rate limit shared by gateway processes.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Run N gateway processes and worker processes (supervised)."),
    ] = None,
    session_timeout: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=3600,
            help="Seconds a consumer may go without a heartbeat before its partitions move.",
        ),
    ] = 10.0,
    checks: Annotated[
        str,
        typer.Option(
            help="Compliance checks (sanctions, AML, fraud): off, parallel (consumer groups of "
            "their own) or sequential (inside the payments worker)."
        ),
    ] = "off",
    check_timeout: Annotated[
        float,
        typer.Option(min=0.01, max=3600, help="Seconds a payment waits for parallel checks."),
    ] = 2.0,
    on_timeout: Annotated[
        str,
        typer.Option(
            help="What a check that did not answer in time counts as: hold, approve or reject."
        ),
    ] = "hold",
    fraud_model: Annotated[
        Path | None,
        typer.Option(help="A model directory from `testbed fraud train` (default: the rules)."),
    ] = None,
    watchlist: Annotated[
        Path | None,
        typer.Option(help="A sanctions watch-list CSV (default: the shipped synthetic list)."),
    ] = None,
    sanctions_provider: Annotated[
        str | None,
        typer.Option(
            help="Screen names at this provider's URL (python -m reference_impl.compliance."
            "provider) instead of in-process."
        ),
    ] = None,
    operator_key: Annotated[
        list[str] | None,
        typer.Option(help="A key that may review held payments (X-Operator-Key), repeatable."),
    ] = None,
) -> None:
    """Start the gateway and the workers (payments, settlement, reporting; and the checks'
    groups with --checks parallel)."""
    from reference_impl.adapters.memory import MemoryStore
    from reference_impl.runtime import Runtime, RuntimeConfig
    from reference_impl.service.ports import InvalidStoreURL, StoreError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        keys = parse_api_keys(api_key or [])
    except ValueError as e:
        _fail("--api-key", str(e))
    demo_key = None
    if not keys:
        demo_key = secrets.token_urlsafe(24)
        keys = {demo_key: "demo"}
    if store is None:
        DEFAULT_DATA_DIR.mkdir(parents=True, exist_ok=True)
        store = f"sqlite:///{DEFAULT_DATA_DIR / 'testbed.db'}"
    if redis is not None:
        _check_redis(redis)
    checks_config, checker_settings = _checks(
        checks, check_timeout, on_timeout, fraud_model, watchlist, sanctions_provider
    )
    sqlite = store.startswith("sqlite:")
    # Worker processes on SQLite get no cross-process wake-up signal, so they poll more often.
    config = RuntimeConfig(
        store,
        keys,
        redis,
        idle_wait=0.05 if sqlite and workers else 0.25,
        session_timeout=session_timeout,
        checks=checks_config,
        checkers=checker_settings,
        operator_keys=tuple(operator_key or ()),
    )
    try:
        runtime = Runtime.open(config)
    except (InvalidStoreURL, StoreError) as e:
        _fail("--store", str(e))
    if workers is not None and isinstance(runtime.store, MemoryStore):
        runtime.close()
        _fail(
            "--store",
            "memory:// lives in one process, so the gateway and worker processes of --workers "
            "would each get their own; use sqlite:///PATH or postgresql://...",
        )
    # Every flag is good: only now is there a server whose key is worth printing.
    if demo_key is not None:
        typer.echo(f"tenant demo, API key: {demo_key}")
    if workers is not None:
        runtime.close()
        from reference_impl.runtime.processes import Supervisor

        typer.echo(f"serving on http://{host}:{port} (store {store}, {workers} gateway processes)")
        raise typer.Exit(Supervisor(config, host, port, workers).run())
    raise typer.Exit(_serve_in_process(runtime, host, port))


def _checks(
    mode: str,
    timeout: float,
    on_timeout: str,
    model: Path | None,
    watchlist: Path | None,
    provider: str | None,
) -> tuple[ChecksConfig, CheckerSettings]:
    """The checks' flags, checked: a bad value, or a model or watch list that cannot be loaded,
    exits 2 naming the flag (before anything starts)."""
    from reference_impl.service.checks import CheckerSettings, ChecksConfig

    if mode not in ("off", "parallel", "sequential"):
        _fail("--checks", f"must be off, parallel or sequential, got {mode!r}")
    if on_timeout not in ("hold", "approve", "reject"):
        _fail("--on-timeout", f"must be hold, approve or reject, got {on_timeout!r}")
    if provider is not None and not provider.startswith(("http://", "https://")):
        _fail("--sanctions-provider", f"must be an http(s):// URL, got {provider!r}")
    settings = CheckerSettings(
        watchlist=str(watchlist) if watchlist else None,
        fraud_model=str(model) if model else None,
        sanctions_provider=provider,
    )
    if mode != "off":
        # A fraud model scores one payment at a time: one thread (docs/compliance.md); set
        # before scikit-learn is first imported, and inherited by --workers' processes.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        from reference_impl.adapters.fraud_model import FraudModelError
        from reference_impl.compliance import build_checkers
        from reference_impl.compliance.sanctions import WatchListError

        try:
            build_checkers(settings)
        except WatchListError as e:
            _fail("--watchlist", str(e))
        except FraudModelError as e:
            _fail("--fraud-model", str(e))
    config = ChecksConfig(mode, timeout=timeout, on_timeout=on_timeout)  # type: ignore[arg-type]
    return config, settings


def _serve_in_process(runtime: Runtime, host: str, port: int) -> int:
    import uvicorn

    from reference_impl.api import create_app
    from reference_impl.runtime.processes import set_title

    set_title("serve")  # gateway and workers in one process: ps shows `testbed: serve`
    signals: list[int] = []

    def on_signal(sig: int, frame: FrameType | None) -> None:
        signals.append(sig)

    # uvicorn restores these after its graceful shutdown and re-raises the signal into them;
    # recording it (instead of dying there) lets the workers finish their batch afterwards.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = create_app(runtime.gateway_deps())
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=30,
        )
    )
    runtime.start_workers()
    typer.echo(f"serving on http://{host}:{port} (store {runtime.store.url}, workers in-process)")
    sys.stdout.flush()
    try:
        server.run()
    finally:
        stopped = runtime.stop_workers()
        runtime.close()
    typer.echo("stopped" if stopped else "stopped (a worker did not finish in time)")
    return 0 if stopped and server.started else 1


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
