"""The view's ASGI application (Starlette): routes, the state it runs on, errors, headers.

Pages are in :mod:`.pages`, the JSON API in :mod:`.api`; both read through a
:class:`~collector.web.viewstore.StorePool` of read-only connections and share the facts of
:mod:`.facts`. A background task folds new readings into the plot cache
(:mod:`.series`) every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.errors import NotFoundError, StoreError
from collector.ledger.pg_base import is_postgres_url, redact
from collector.web.jsonresp import SafeJSONResponse
from collector.web.params import BadParameter, UnknownDevice
from collector.web.series import SeriesCache
from collector.web.viewstore import StorePool, ViewStore, open_view_store

__all__ = ["ViewState", "build_app", "default_cache_path"]

log = logging.getLogger("sensorledger.web")
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
_INDEX_EVERY_S = 2.0
_INDEX_CHUNK = 4096
_INDEX_PASS = 50_000  # readings per read snapshot, so the writer's WAL can be checkpointed


def default_cache_path(database: str | Path) -> Path:
    """The plot cache of the ledger at ``database`` (a SQLite path or a PostgreSQL URL, named
    without its password)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = (redact(str(database)) if is_postgres_url(str(database))
            else str(Path(database).resolve()))
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return base / "sensorledger" / f"view-{digest}.sqlite"


@dataclass
class ViewState:
    database: str | Path
    pool: StorePool
    cache: SeriesCache
    templates: Environment
    ledger_max_id: int = 0

    def store(self) -> contextlib.AbstractAsyncContextManager[ViewStore]:
        return self.pool.store()


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    # lists show 6 significant digits; the reading page shows the exact signed value
    env.filters["short"] = lambda v: f"{v:.6g}" if isinstance(v, float) else v
    return env


async def _index_forever(state: ViewState, store: ViewStore) -> None:
    """Fold new readings into the plot cache, a bounded pass at a time."""
    while True:
        try:
            upto = await asyncio.to_thread(lambda: state.cache.upto)
            last_id = await store.next_reading_id() - 1
            state.ledger_max_id = last_id
            while upto < last_id:
                end = min(last_id, upto + _INDEX_PASS) + 1
                async for chunk in store.iter_readings(upto + 1, end, chunk=_INDEX_CHUNK):
                    await asyncio.to_thread(state.cache.add, chunk)
                upto = end - 1
        except asyncio.CancelledError:
            raise
        except Exception:  # a cache problem never takes the view down; the ledger is intact
            log.exception("plot cache update failed")
        await asyncio.sleep(_INDEX_EVERY_S)


class SecurityHeaders:
    """No page runs script (the in-browser checker at /verify is the one exception, and is a
    page of its own); nothing is framed or sniffed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        verify = scope.get("path") == "/verify"

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                csp = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
                       "'unsafe-inline'; connect-src 'self'; img-src 'self' data:"
                       if verify else
                       "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
                headers += [(b"content-security-policy", csp.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"x-frame-options", b"DENY")]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, message: str) -> Response:
    if _is_api(request):
        return SafeJSONResponse({"error": message, "status": status}, status_code=status)
    state: ViewState = request.app.state.view
    html = state.templates.get_template("error.html").render(status=status, message=message,
                                                               request_path=request.url.path)
    return Response(html, status_code=status, media_type="text/html; charset=utf-8")


async def _on_not_found(request: Request, exc: Exception) -> Response:
    return _error(request, 404, str(exc) or "not found")


async def _on_bad(request: Request, exc: Exception) -> Response:
    return _error(request, getattr(exc, "status", 400), str(exc))


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "no such page" if exc.status_code == 404 else str(exc.detail)
    return _error(request, exc.status_code, message)


async def _on_store(request: Request, exc: Exception) -> Response:
    log.warning("store error: %s", exc)
    return _error(request, 503, "the ledger cannot be read right now")


def build_app(database: str | Path, *, cache_path: Path | None = None,
              pool_size: int = 4, index: bool = True) -> Starlette:
    """The view of the ledger at ``database``; opened when the app starts."""
    from collector.web import api, pages  # routes import the app's helpers

    db: str | Path = database if is_postgres_url(str(database)) else Path(database)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await StorePool.open(db, pool_size)
        indexer_store = await open_view_store(db)
        if not indexer_store.has_time_index:
            log.warning("the ledger %s lacks the readings_by_device_time index: open it once "
                        "with the collector (any ledger-collector command applies migrations); "
                        "device pages are slow until then",
                        redact(str(db)) if is_postgres_url(str(db)) else db)
        cache = SeriesCache(cache_path or default_cache_path(db))
        first = await indexer_store.reading_by_id(1)
        last_id = await indexer_store.next_reading_id() - 1
        await asyncio.to_thread(cache.bind, first.envelope if first else None, last_id)
        state = ViewState(db, pool, cache, _templates(), last_id)
        app.state.view = state
        task = asyncio.create_task(_index_forever(state, indexer_store)) if index else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await indexer_store.close()
            await pool.close()
            cache.close()

    from collector.publish.http import tiles_route

    routes: list[BaseRoute] = [
        *pages.ROUTES,
        Mount("/api/v1", routes=api.ROUTES),
        # The log as C2SP tlog-tiles, for mirrors (docs/mirror.md).
        Mount("/log", routes=[tiles_route(lambda request: request.app.state.view.pool.store())]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {NotFoundError: _on_not_found, UnknownDevice: _on_not_found,
                BadParameter: _on_bad, HTTPException: _on_http, StoreError: _on_store}
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers=handlers,
                     middleware=[Middleware(SecurityHeaders)])


def view_of(request: Request) -> ViewState:
    state: ViewState = request.app.state.view
    return state


# Routes use these; kept here so pages and api share one definition.
__all__ += ["Route", "view_of"]
