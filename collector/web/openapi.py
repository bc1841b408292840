"""The OpenAPI 3.1 document of the JSON API (``/api/v1/openapi.json``), written by hand so it
says what each limit is and what each error means."""

from __future__ import annotations

from typing import Any

from collector.web.params import DEFAULT_PAGE, MAX_LIST, MAX_PAGE, MAX_RANGE_MS

__all__ = ["openapi_document"]


def _param(name: str, where: str, schema: dict[str, Any], description: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


_DEVICE = _param("device_id", "path", {"type": "string",
                                       "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                 "Device id, as in the wire format.")
_SEQ = _param("seq", "path", {"type": "integer", "minimum": 0}, "The reading's sequence number.")
_TIME = {"type": "string", "description": "Epoch milliseconds or ISO 8601 (UTC unless it says)"}
_ERR = {"description": "Error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict[str, Any] | None = None,
        media: str = "application/json") -> dict[str, Any]:
    return {"description": description,
            "content": {media: {"schema": schema or {"type": "object"}}}}


def _get(summary: str, ok: dict[str, Any], params: list[dict[str, Any]] | None = None,
         errors: tuple[str, ...] = ("404",)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params or [],
                          "responses": {"200": ok, **{code: _ERR for code in errors}}}
    return {"get": op}


def openapi_document() -> dict[str, Any]:
    limit = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIST},
                   f"At most {MAX_LIST}; more is a 400.")
    return {
        "openapi": "3.1.0",
        "info": {"title": "SensorLedger public view", "version": "1",
                 "description": "Read-only JSON view of a SensorLedger ledger. Proofs served "
                                "here are checked offline with `ledger-collector verify-proof` "
                                "or in the browser at /verify: nothing here needs trusting."},
        "paths": {
            "/api/v1/overview": _get("Ledger size, latest checkpoint, blocks per minute, "
                                     "backlog and quarantine counts", _ok("Overview"), []),
            "/api/v1/devices": _get("Every device with the health `stats` reports",
                                    _ok("Devices"), []),
            "/api/v1/devices/{device_id}": _get("One device", _ok("Device"), [_DEVICE]),
            "/api/v1/devices/{device_id}/readings": _get(
                "A device's readings in a time range, by (time, seq), paginated",
                _ok("A page of readings; `next_cursor` is null on the last page", {
                    "$ref": "#/components/schemas/ReadingsPage"}),
                [_DEVICE,
                 _param("since", "query", _TIME, "Device time at or after (default: a day "
                                                 "before `until`)."),
                 _param("until", "query", _TIME, "Device time before (default: just after "
                                                 "the latest reading)."),
                 _param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                        f"Readings per page, at most {MAX_PAGE}; more is a 400."),
                 _param("cursor", "query", {"type": "string"},
                        "`next_cursor` of the previous page.")],
                ("400", "404")),
            "/api/v1/devices/{device_id}/readings/{seq}": _get(
                "One reading, decoded, with its block and checkpoint", _ok("Reading"),
                [_DEVICE, _SEQ]),
            "/api/v1/devices/{device_id}/readings/{seq}/proof": _get(
                "The reading's proof file (CBOR, proof format 2; format 1 on a ledger "
                "without the log tree)",
                {"description": "Proof", "content": {
                    "application/cbor": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                    "text/plain": {"schema": {"type": "string"}}}},
                [_DEVICE, _SEQ, _param("format", "query",
                                       {"enum": ["cbor", "json", "tlog-proof"]},
                                       "CBOR file (default), its JSON rendering, or the "
                                       "C2SP tlog-proof text.")], ("400", "404")),
            "/api/v1/blocks": _get("Blocks from a height (default: the latest)", _ok("Blocks"),
                                   [_param("from", "query", {"type": "integer", "minimum": 0},
                                           "First height."), limit], ("400",)),
            "/api/v1/blocks/{height}": _get("One block's signed header, decoded", _ok("Block"),
                                            [_param("height", "path", {"type": "integer"},
                                                    "Block height.")]),
            "/api/v1/checkpoint": _get(
                "The latest signed checkpoint, with its signature lines",
                {"description": "Checkpoint", "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/plain": {"schema": {"type": "string"}}}},
                [_param("format", "query", {"enum": ["json", "note"]},
                        "JSON (default) or the signed note itself.")]),
            "/api/v1/checkpoints/{size}": _get("The checkpoint of a tree size", _ok("Checkpoint"),
                                               [_param("size", "path", {"type": "integer"},
                                                       "Tree size.")]),
            "/api/v1/quarantine": _get(
                "Quarantined messages with their reason codes, newest first", _ok("Quarantine"),
                [_param("reason", "query", {"type": "string"}, "Only this reason code."),
                 _param("device", "query", {"type": "string"}, "Only this device."), limit],
                ("400",)),
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error", "status"],
                      "properties": {"error": {"type": "string"},
                                     "status": {"type": "integer"}}},
            "ReadingsPage": {"type": "object", "properties": {
                "device_id": {"type": "string"}, "since_ms": {"type": "integer"},
                "until_ms": {"type": "integer"}, "limit": {"type": "integer"},
                "readings": {"type": "array", "items": {"type": "object"}},
                "next_cursor": {"type": ["string", "null"]}},
                "description": f"A range spans at most {MAX_RANGE_MS // 86_400_000} days."},
        }},
    }
