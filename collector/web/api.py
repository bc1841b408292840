"""The JSON API under ``/api/v1/``, described by :mod:`.openapi` (served at
``/api/v1/openapi.json``).

Lists are bounded: a readings page holds at most ``MAX_PAGE`` readings of one device over at
most ``MAX_RANGE_MS``, and the next page is asked for with the opaque ``cursor`` the previous
one returned (keyset pagination on the ``readings(device_id, time_ms, seq)`` index, so page
1,000 costs what page 1 costs). Anything over a limit is a 400 naming the limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.errors import NotFoundError
from collector.tools.proofs import build_proof
from collector.web import facts
from collector.web.app import view_of
from collector.web.openapi import openapi_document
from collector.web.params import (
    DEFAULT_PAGE,
    MAX_LIST,
    MAX_PAGE,
    MAX_RANGE_MS,
    BadParameter,
    decode_cursor,
    device_id_param,
    encode_cursor,
    int_param,
    time_param,
)
from provenance.logproof import LogProof
from provenance.reading import MAX_SEQ

__all__ = ["ROUTES"]


class SafeJSONResponse(JSONResponse):
    """JSON with ``<``, ``>`` and ``&`` written as escapes: text from devices stays text even
    where a client pastes the JSON into HTML."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                              ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            text = text.replace(char, escaped)
        return text.encode("utf-8")


def _json(data: Any) -> JSONResponse:
    return SafeJSONResponse(data)


def _seq(request: Request) -> int:
    seq = int(request.path_params["seq"])
    if seq > MAX_SEQ:
        raise NotFoundError("no such reading")
    return seq


async def openapi(request: Request) -> Response:
    return _json(openapi_document())


async def overview(request: Request) -> Response:
    state = view_of(request)
    async with state.store() as store:
        data = await facts.overview(store)
    # How far the plot cache has caught up (long-range plots show readings up to there).
    data["plot_cache"] = {"upto_reading_id": state.cache.upto,
                          "ledger_reading_id": state.ledger_max_id}
    return _json(data)


async def devices(request: Request) -> Response:
    state = view_of(request)
    async with state.store() as store:
        return _json({"devices": await facts.device_list(store, state.database)})


async def device(request: Request) -> Response:
    state = view_of(request)
    device_id = device_id_param(request.path_params["device_id"])
    async with state.store() as store:
        rows = [r for r in await facts.device_list(store, state.database)
                if r["device_id"] == device_id]
    if not rows:
        raise NotFoundError(f"no device {device_id} in this ledger")
    return _json(rows[0])


async def readings(request: Request) -> Response:
    device_id = device_id_param(request.path_params["device_id"])
    q = request.query_params
    limit = int_param(q, "limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE) or DEFAULT_PAGE
    after = decode_cursor(q.get("cursor"))
    since = time_param(q, "since")
    until = time_param(q, "until")
    async with view_of(request).store() as store:
        if since is None or until is None:
            span = await store.device_time_span(device_id)
            if span is None:
                raise NotFoundError(f"no device {device_id} in this ledger")
            if until is None:
                until = span[1] + 1 if since is None else since + MAX_RANGE_MS
            if since is None:
                since = max(0, until - 86_400_000)
        if until <= since:
            raise BadParameter("until must be after since")
        if until - since > MAX_RANGE_MS:
            raise BadParameter(f"a time range spans at most {MAX_RANGE_MS // 86_400_000} days; "
                               "ask for several ranges")
        rows = await store.device_readings(device_id, since, until, after=after, limit=limit)
    cursor = encode_cursor(rows[-1].time_ms, rows[-1].seq) if len(rows) == limit else None
    return _json({"device_id": device_id, "since_ms": since, "until_ms": until,
                  "since": facts.iso(since), "until": facts.iso(until), "limit": limit,
                  "readings": [facts.reading_row(r) for r in rows], "next_cursor": cursor})


async def reading(request: Request) -> Response:
    device_id = device_id_param(request.path_params["device_id"])
    seq = _seq(request)
    async with view_of(request).store() as store:
        return _json(await facts.reading_facts(store, device_id, seq))


async def proof(request: Request) -> Response:
    device_id = device_id_param(request.path_params["device_id"])
    seq = _seq(request)
    form = request.query_params.get("format", "cbor")
    if form not in ("cbor", "json", "tlog-proof"):
        raise BadParameter("format is cbor, json or tlog-proof")
    async with view_of(request).store() as store:
        pf = await build_proof(store, device_id, seq)
    if form == "json":
        return _json(pf.to_json())
    if form == "tlog-proof":
        if not isinstance(pf, LogProof):
            raise BadParameter("this ledger has no log tree yet: only the CBOR proof exists")
        return Response(pf.to_tlog_proof(), media_type="text/plain; charset=utf-8")
    return Response(pf.encode(), media_type="application/cbor", headers={
        "content-disposition": f'attachment; filename="{device_id}-{seq}.proof"'})


async def blocks(request: Request) -> Response:
    q = request.query_params
    limit = int_param(q, "limit", 50, minimum=1, maximum=MAX_LIST) or 50
    start = int_param(q, "from", None)
    async with view_of(request).store() as store:
        return _json({"blocks": await facts.block_facts(store, start, limit)})


async def block(request: Request) -> Response:
    height = int(request.path_params["height"])
    if height > MAX_SEQ:
        raise NotFoundError("no such block")
    async with view_of(request).store() as store:
        return _json((await facts.block_facts(store, None, 1, height))[0])


async def latest_checkpoint(request: Request) -> Response:
    async with view_of(request).store() as store:
        cp = await store.checkpoint()
        names = {v.split("+", 1)[0] for v in await store.log_vkeys()}
        cosigs = await store.cosignature_times(cp.size) if cp is not None else []
    if cp is None:
        raise NotFoundError("the ledger has no checkpoint yet")
    if request.query_params.get("format") == "note":
        return Response(cp.note, media_type="text/plain; charset=utf-8")
    return _json(facts.checkpoint_facts(cp, names, cosigs))


async def checkpoint(request: Request) -> Response:
    size = int(request.path_params["size"])
    if size > MAX_SEQ:
        raise NotFoundError("no such checkpoint")
    async with view_of(request).store() as store:
        cp = await store.checkpoint(size)
        names = {v.split("+", 1)[0] for v in await store.log_vkeys()}
        cosigs = await store.cosignature_times(size)
    if cp is None:
        raise NotFoundError(f"no checkpoint of tree size {size}")
    return _json(facts.checkpoint_facts(cp, names, cosigs))


async def quarantine(request: Request) -> Response:
    q = request.query_params
    limit = int_param(q, "limit", 100, minimum=1, maximum=MAX_LIST) or 100
    async with view_of(request).store() as store:
        return _json(await facts.quarantine_facts(store, q.get("reason") or None,
                                                  q.get("device") or None, limit))


ROUTES = [
    Route("/openapi.json", openapi),
    Route("/overview", overview),
    Route("/devices", devices),
    Route("/devices/{device_id}", device),
    Route("/devices/{device_id}/readings", readings),
    Route("/devices/{device_id}/readings/{seq:int}", reading),
    Route("/devices/{device_id}/readings/{seq:int}/proof", proof),
    Route("/blocks", blocks),
    Route("/blocks/{height:int}", block),
    Route("/checkpoint", latest_checkpoint),
    Route("/checkpoints/{size:int}", checkpoint),
    Route("/quarantine", quarantine),
]
