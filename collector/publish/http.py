"""Read-only HTTP serving of the log as C2SP tlog-tiles: a small Starlette app.

``GET <prefix>/checkpoint``, ``<prefix>/tile/<L>/<N>[.p/<W>]`` and
``<prefix>/tile/entries/<N>[.p/<W>]``, answered from the ledger by
:func:`collector.publish.tiles.read_resource`, which accepts nothing but the exact tile path
forms (no file system is touched, so no path can escape). Full tiles and bundles never change
and are served as immutable; the checkpoint and partial tiles change with every block and are
served ``no-cache``; any origin may read them (monitors, witnesses and mirrors, and the
browser's proof check). :func:`tiles_route` is the route over any way of getting a store for a
request (the web view mounts it at ``/log``, over its read-only connections); :func:`tiles_app`
is a whole app over one ledger (read-only too), and ``uvicorn --factory
collector.publish.http:app_from_env`` serves ``$SENSORLEDGER_DB`` alone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector.ledger.store import LedgerStore
from collector.publish.tiles import read_resource
from collector.web.viewstore import StorePool
from provenance.tiles import TilePathError

__all__ = ["app_from_env", "tiles_app", "tiles_route"]

_IMMUTABLE = "public, max-age=31536000, immutable"
_CHANGING = "no-cache"


StoreFor = Callable[[Request], AbstractAsyncContextManager[LedgerStore]]


def tiles_route(store_for: StoreFor) -> Route:
    """``GET /{path}``: the tlog-tiles resource at ``path``, read from ``store_for(request)``."""

    async def resource(request: Request) -> Response:
        path = request.path_params["path"]
        try:
            async with store_for(request) as store:
                found = await read_resource(store, path)
        except TilePathError:
            return Response("not a tlog-tiles path\n", status_code=404,
                            media_type="text/plain")
        if found is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        data, media_type = found
        fixed = path.startswith("tile/") and ".p/" not in path
        return Response(data, media_type=media_type, headers={
            "Cache-Control": _IMMUTABLE if fixed else _CHANGING,
            "Access-Control-Allow-Origin": "*"})

    return Route("/{path:path}", resource, methods=["GET", "HEAD"])


def tiles_app(database: str) -> Starlette:
    """The tlog-tiles resources of the ledger at ``database`` (a SQLite path or a PostgreSQL
    URL), over the web view's read-only connections: it never migrates or locks the ledger, and
    refuses one of another schema version than this program's."""
    state: dict[str, StorePool] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await StorePool.open(database)
        try:
            yield
        finally:
            await state["pool"].close()

    return Starlette(routes=[tiles_route(lambda request: state["pool"].store())],
                     lifespan=lifespan)


def app_from_env() -> Starlette:
    """For ``uvicorn --factory``: the ledger named by ``SENSORLEDGER_DB``."""
    return tiles_app(os.environ["SENSORLEDGER_DB"])
