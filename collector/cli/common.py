"""What every command shares: the error-to-exit-code mapping, the ledger options, times, and
the one way a command opens the ledger (:func:`open_ledger`, :func:`on_ledger`)."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from collector.config import CollectorConfig, load_config
from collector.errors import CollectorError, UsageError, VerificationFailed
from collector.ledger.opening import Ledger, open_store
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey

__all__ = [
    "config",
    "handle_errors",
    "iso",
    "ledger_options",
    "load_public_key",
    "now_ms",
    "on_ledger",
    "open_ledger",
    "parse_time",
    "run",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def iso(ms: int | None) -> str:
    """UTC ISO 8601 to the second (``2026-05-01T12:00:00+00:00``); empty for no time."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> int:
    """``now``, milliseconds since the epoch, or an ISO 8601 time (UTC unless it says)."""
    text = text.strip()
    if text == "now":
        return now_ms()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not 'now', epoch milliseconds or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def handle_errors(fn: F) -> F:
    """Map collector errors to a one-line message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VerificationFailed as exc:
            click.echo(exc.diagnostics(), err=True)
            sys.exit(1)
        except UsageError as exc:
            click.echo(f"error: {exc.diagnostics()}", err=True)
            sys.exit(2)
        except (CollectorError, ProvenanceError) as exc:
            click.echo(f"error: {exc.diagnostics()}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def ledger_options(fn: F) -> F:
    fn = click.option("--db", "db", metavar="PATH|URL", envvar="SENSORLEDGER_DB",
                      help="Ledger database: a SQLite file or a postgresql:// URL "
                           "(overrides the config's `database`).")(fn)
    fn = click.option("-c", "--config", "config_path", metavar="TOML",
                      envvar="SENSORLEDGER_COLLECTOR_CONFIG",
                      help="Collector configuration file (see deploy/collector.toml.example).")(fn)
    return fn


def config(config_path: str | None, **overrides: Any) -> CollectorConfig:
    """The configuration, with command-line values (``a__b`` for ``a.b``) over the file's."""
    return load_config(config_path, {k.replace("__", "."): v for k, v in overrides.items()})


@asynccontextmanager
async def open_ledger(cfg: CollectorConfig, *, create: bool = False) -> AsyncIterator[Ledger]:
    """The ledger of ``cfg``, open for one command and closed whatever happens."""
    store = await open_store(cfg.database, create=create)
    try:
        yield store
    finally:
        await store.close()


def on_ledger(cfg: CollectorConfig, action: Callable[[Ledger], Awaitable[T]]) -> T:
    """Run ``action(store)`` on the opened ledger and return its result."""

    async def go() -> T:
        async with open_ledger(cfg) as store:
            return await action(store)

    return run(go())


def load_public_key(path: str) -> PublicKey:
    """The collector public key at ``path``; a plain message for a private key, a certificate
    or anything else that is not one."""
    from collector.tools.proof_check import KeyFileError, load_collector_key

    try:
        return load_collector_key(path)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
