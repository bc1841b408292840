"""The witness's HTTP face (c2sp.org/tlog-witness): ``POST /add-checkpoint`` and the monitoring
view ``GET /<hex SHA-256 of the origin>/checkpoint``, on Starlette.

Requests are handled one at a time on the event loop (the decision takes about a millisecond
and must not interleave with another's check-and-update); :mod:`witness.cosigning` decides.
"""

from __future__ import annotations

import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from provenance.witnessproto import MAX_REQUEST_SIZE
from witness.cosigning import Witness

__all__ = ["make_app"]


def make_app(witness: Witness) -> Starlette:
    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_SIZE:
                return Response("request too large\n", 413, media_type="text/plain")
        reply = witness.add_checkpoint(body)
        return Response(reply.body, reply.status, media_type=reply.content_type)

    async def monitoring(request: Request) -> Response:
        wanted = request.path_params["origin_hash"]
        for origin in witness.logs:
            if hashlib.sha256(origin.encode()).hexdigest() == wanted:
                note = witness.latest_note(origin)
                if note is not None:
                    return Response(note, 200, media_type="text/plain; charset=utf-8")
        return Response("no checkpoint cosigned for that log\n", 404, media_type="text/plain")

    return Starlette(routes=[
        Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
        Route("/{origin_hash:str}/checkpoint", monitoring, methods=["GET"]),
    ])
