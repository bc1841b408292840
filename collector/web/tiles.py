"""The log as C2SP tlog-tiles over HTTP, under ``/log/``: ``/log/checkpoint`` and
``/log/tile/...``, read from the store by :func:`collector.publish.tiles.read_resource` (the
same resources ``ledger-collector tiles export`` writes as files). Monitors, witnesses and
mirrors can follow the log from the view itself.

Full tiles never change, so they are served as immutable; the checkpoint and partial tiles
change with every block. A path that is not exactly a tlog-tiles path is a 404 (the parser
admits nothing else, and no file system is touched).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector.errors import NotFoundError
from collector.publish.tiles import read_resource
from collector.web.app import view_of
from provenance.tiles import TilePathError

__all__ = ["ROUTES"]

_IMMUTABLE = "public, max-age=31536000, immutable"
_CHANGING = "no-cache"


async def resource(request: Request) -> Response:
    path = request.path_params["path"]
    try:
        async with view_of(request).store() as store:
            found = await read_resource(store, path)
    except TilePathError:
        raise NotFoundError("no such log resource") from None
    if found is None:
        raise NotFoundError("no such log resource (yet)")
    data, media_type = found
    fixed = path.startswith("tile/") and ".p/" not in path
    return Response(data, media_type=media_type, headers={
        "cache-control": _IMMUTABLE if fixed else _CHANGING,
        "access-control-allow-origin": "*"})


ROUTES = [Route("/log/{path:path}", resource)]
