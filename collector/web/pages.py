"""The server-rendered pages: overview, devices, a device with its plots, a reading, blocks and
checkpoints, quarantine; and the downloads of a reading's proof and a device's history.

No page needs JavaScript. Templates autoescape everything; free text from devices is also
wrapped in ``<bdi>`` by the templates so direction marks cannot reorder the page around it.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from collector.errors import NotFoundError
from collector.tools.history import build_history
from collector.tools.proofs import build_proof
from collector.web import facts
from collector.web.app import STATIC, view_of
from collector.web.params import (
    DEFAULT_PAGE,
    MAX_HISTORY,
    MAX_LIST,
    MAX_PAGE,
    BadParameter,
    decode_cursor,
    device_id_param,
    encode_cursor,
    int_param,
    time_param,
)
from collector.web.plotdata import load_plot, panels_for
from collector.web.plots import render_panel
from provenance.reading import MAX_SEQ

__all__ = ["ROUTES"]

_RECENT = 20


def _page(request: Request, template: str, **context: Any) -> Response:
    html = view_of(request).templates.get_template(template).render(
        request_path=request.url.path, **context)
    return Response(html, media_type="text/html; charset=utf-8")


def _seq(request: Request) -> int:
    seq = int(request.path_params["seq"])
    if seq > MAX_SEQ:
        raise NotFoundError("no such reading")
    return seq


async def overview(request: Request) -> Response:
    async with view_of(request).store() as store:
        data = await facts.overview(store)
    return _page(request, "overview.html", o=data)


async def devices(request: Request) -> Response:
    state = view_of(request)
    async with state.store() as store:
        rows = await facts.device_list(store, state.database)
    return _page(request, "devices.html", devices=rows)


async def device(request: Request) -> Response:
    state = view_of(request)
    device_id = device_id_param(request.path_params["device_id"])
    q = request.query_params
    async with state.store() as store:
        rows = [r for r in await facts.device_list(store, state.database)
                if r["device_id"] == device_id]
        span = await store.device_time_span(device_id)
        if not rows and span is None:
            raise NotFoundError(f"no device {device_id} in this ledger")
        since = time_param(q, "from")
        until = time_param(q, "to")
        plots: list[dict[str, Any]] = []
        recent: list[dict[str, Any]] = []
        if span is not None:
            since = span[0] if since is None else since
            until = span[1] + 1 if until is None else until
            if until <= since:
                raise BadParameter("`to` must be after `from`")
            kind = await store.device_kind(device_id)
            series = state.cache.series_of(device_id)
            only = q.get("series") or None
            panels = panels_for(kind, series, only)
            names = [n for p in panels for n in p.names]
            data = await load_plot(store, state.cache, device_id, names, since, until)
            plots = [{"panel": p, "svg": render_panel(p, data)} for p in panels]
            last_seq = rows[0].get("last_seq") if rows else None
            if isinstance(last_seq, int):
                for s in range(last_seq, max(-1, last_seq - _RECENT), -1):
                    r = await store.find_reading(device_id, s)
                    if r is not None:
                        recent.append(facts.reading_row(r))
            plot_info = {"readings": data.readings, "source": data.source,
                         "bucket_s": data.width_ms / 1000, "marks_total": data.marks_total,
                         "marks_shown": len(data.marks), "cache_upto": state.cache.upto,
                         "ledger_max_id": state.ledger_max_id}
        else:
            plot_info = {}
    other = [n for n, _ in state.cache.series_of(device_id)]
    return _page(request, "device.html", device_id=device_id, d=rows[0] if rows else None,
                 plots=plots, info=plot_info, since=facts.iso(since), until=facts.iso(until),
                 span=span, recent=recent, series_names=other)


async def device_readings(request: Request) -> Response:
    device_id = device_id_param(request.path_params["device_id"])
    q = request.query_params
    limit = int_param(q, "limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE) or DEFAULT_PAGE
    after = decode_cursor(q.get("cursor"))
    async with view_of(request).store() as store:
        since = time_param(q, "from") or 0
        until = time_param(q, "to") or 2**53
        rows = await store.device_readings(device_id, since, until, after=after, limit=limit)
    cursor = encode_cursor(rows[-1].time_ms, rows[-1].seq) if len(rows) == limit else None
    next_url = None
    if cursor:
        params = {k: v for k, v in q.items() if k != "cursor"}
        next_url = request.url.path + "?" + urllib.parse.urlencode({**params, "cursor": cursor})
    return _page(request, "readings.html", device_id=device_id,
                 readings=[facts.reading_row(r) for r in rows], next_url=next_url)


async def reading(request: Request) -> Response:
    device_id = device_id_param(request.path_params["device_id"])
    seq = _seq(request)
    async with view_of(request).store() as store:
        data = await facts.reading_facts(store, device_id, seq)
        states = await store.device_states()
    st = states.get(device_id)
    first, last = (st.first_seq, st.last_seq) if st else (seq, seq)
    h_first, h_last = max(first, seq - MAX_HISTORY // 2 + 1), min(last, seq + MAX_HISTORY // 2)
    if last - first < MAX_HISTORY:
        h_first, h_last = first, last
    proof_url = f"{request.url.path}/proof"
    return _page(request, "reading.html", r=data, proof_url=proof_url,
                 verify_url="/verify?" + urllib.parse.urlencode({"proof": proof_url}),
                 history_url=f"/devices/{device_id}/history?first={h_first}&last={h_last}",
                 history_range=(h_first, h_last))


async def proof_download(request: Request) -> Response:
    device_id = device_id_param(request.path_params["device_id"])
    seq = _seq(request)
    async with view_of(request).store() as store:
        pf = await build_proof(store, device_id, seq)
    return Response(pf.encode(), media_type="application/cbor", headers={
        "content-disposition": f'attachment; filename="{device_id}-{seq}.proof"'})


async def history_download(request: Request) -> Response:
    device_id = device_id_param(request.path_params["device_id"])
    q = request.query_params
    first = int_param(q, "first", None)
    last = int_param(q, "last", None)
    if first is None or last is None:
        raise BadParameter("first and last (seqs) are required")
    if last < first or last - first + 1 > MAX_HISTORY:
        raise BadParameter(f"a history file covers 1..{MAX_HISTORY} seqs, first <= last")
    async with view_of(request).store() as store:
        hf = await build_history(store, device_id, first, last)
    return Response(hf.encode(), media_type="application/cbor", headers={
        "content-disposition":
            f'attachment; filename="{device_id}-{first}-{last}.history"'})


async def blocks(request: Request) -> Response:
    q = request.query_params
    limit = int_param(q, "limit", 50, minimum=1, maximum=MAX_LIST) or 50
    start = int_param(q, "from", None)
    async with view_of(request).store() as store:
        rows = await facts.block_facts(store, start, limit)
    older = max(0, rows[0]["height"] - limit) if rows and rows[0]["height"] > 0 else None
    return _page(request, "blocks.html", blocks=list(reversed(rows)), limit=limit, older=older)


async def block(request: Request) -> Response:
    height = int(request.path_params["height"])
    if height > MAX_SEQ:
        raise NotFoundError("no such block")
    async with view_of(request).store() as store:
        row = (await facts.block_facts(store, None, 1, height))[0]
        cp = await store.checkpoint(row["tree_size_after"]) if "tree_size_after" in row else None
        names = {v.split("+", 1)[0] for v in await store.log_vkeys()}
        cp_facts = None if cp is None else facts.checkpoint_facts(
            cp, names, await store.cosignature_times(cp.size))
    return _page(request, "block.html", b=row, cp=cp_facts)


async def checkpoints(request: Request) -> Response:
    q = request.query_params
    limit = int_param(q, "limit", 50, minimum=1, maximum=MAX_LIST) or 50
    async with view_of(request).store() as store:
        rows = await facts.block_facts(store, None, limit)
        names = {v.split("+", 1)[0] for v in await store.log_vkeys()}
        cps = []
        for b in reversed(rows):
            size = b.get("tree_size_after")
            cp = await store.checkpoint(size) if isinstance(size, int) else None
            if cp is not None:
                cosigs = await store.cosignature_times(cp.size)
                cps.append(facts.checkpoint_facts(cp, names, cosigs))
    return _page(request, "checkpoints.html", checkpoints=cps)


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
    return _page(request, "checkpoint.html", cp=facts.checkpoint_facts(cp, names, cosigs))


async def quarantine(request: Request) -> Response:
    q = request.query_params
    limit = int_param(q, "limit", 100, minimum=1, maximum=MAX_LIST) or 100
    reason = q.get("reason") or None
    dev = q.get("device") or None
    async with view_of(request).store() as store:
        data = await facts.quarantine_facts(store, reason, dev, limit)
    return _page(request, "quarantine.html", q=data, reason=reason, device=dev, limit=limit)


async def verify_page(request: Request) -> Response:
    page = STATIC / "verify.html"
    if not page.is_file():
        raise NotFoundError("the in-browser proof checker is not installed with this view")
    return FileResponse(page, media_type="text/html; charset=utf-8")


ROUTES = [
    Route("/", overview),
    Route("/devices", devices),
    Route("/devices/{device_id}", device),
    Route("/devices/{device_id}/readings", device_readings),
    Route("/devices/{device_id}/readings/{seq:int}", reading),
    Route("/devices/{device_id}/readings/{seq:int}/proof", proof_download),
    Route("/devices/{device_id}/history", history_download),
    Route("/blocks", blocks),
    Route("/blocks/{height:int}", block),
    Route("/checkpoints", checkpoints),
    Route("/checkpoints/{size:int}", checkpoint),
    Route("/quarantine", quarantine),
    Route("/verify", verify_page),
]
