"""The PostgreSQL store's device registry, collector key and witness cosignatures (the tables
:mod:`collector.ledger.sqlite_registry` and :mod:`collector.ledger.sqlite_witness` hold on
SQLite); the rule of a revocation is :func:`collector.admission.registry.revocation`."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from collector.admission.registry import DeviceKey, enrolled_again, revocation
from collector.ledger.key_records import stored_collector_key
from collector.ledger.pg_keys import PgKeyTables
from provenance.keys import PublicKey

__all__ = ["PgRegistryTables"]

_KEY_SELECT = ("SELECT kid, device_id, public_key, enrolled_ms, revoked_ms, revoke_reason "
               "FROM device_keys")


class PgRegistryTables(PgKeyTables):
    """Device keys, the registry version, the collector key and witness cosignatures."""

    # collector identity and registry ---------------------------------------------------------

    async def collector_public_key(self) -> PublicKey | None:
        pem = await self._meta("collector_public_key")
        return None if pem is None else stored_collector_key(pem)

    async def set_collector_public_key(self, key: PublicKey) -> None:
        async with self._write() as conn:
            await self._set_meta(conn, [("collector_public_key", key.to_pem())])

    async def registry_version(self) -> int:
        value = await self._meta("registry_version")
        return int(value) if value else 0

    async def device_keys(self) -> list[DeviceKey]:
        rows = await self._all(f"{_KEY_SELECT} ORDER BY device_id, enrolled_ms")
        return [DeviceKey(*row) for row in rows]

    async def device_key(self, kid: bytes) -> DeviceKey | None:
        row = await self._one(f"{_KEY_SELECT} WHERE kid = %s", (kid,))
        return DeviceKey(*row) if row else None

    async def enrol(self, device_id: str, key: PublicKey, now_ms: int) -> DeviceKey:
        async with self._write() as conn:
            await conn.execute("SELECT value FROM meta WHERE key = 'registry_version' "
                               "FOR UPDATE")
            row = await self._one(f"{_KEY_SELECT} WHERE kid = %s", (key.kid,))
            if row is not None:
                return enrolled_again(DeviceKey(*row), device_id)
            await conn.execute(
                "INSERT INTO device_keys(kid, device_id, public_key, enrolled_ms) "
                "VALUES (%s, %s, %s, %s)", (key.kid, device_id, key.der, now_ms))
            await self._bump_registry(conn)
        return DeviceKey(key.kid, device_id, key.der, now_ms)

    async def revoke(self, device_id: str, kid: bytes | None, at_ms: int,
                     reason: str | None) -> list[DeviceKey]:
        async with self._write() as conn:
            await conn.execute("SELECT value FROM meta WHERE key = 'registry_version' "
                               "FOR UPDATE")
            sql = f"{_KEY_SELECT} WHERE device_id = %s"
            params: tuple[Any, ...] = (device_id,)
            if kid is not None:
                sql += " AND kid = %s"
                params += (kid,)
            revoked = revocation(device_id, kid, [DeviceKey(*r) for r in await self._all(
                sql, params)], at_ms, reason)
            async with conn.cursor() as cur:
                await cur.executemany(
                    "UPDATE device_keys SET revoked_ms = %s, revoke_reason = %s WHERE kid = %s",
                    [(k.revoked_ms, k.revoke_reason, k.kid) for k in revoked])
            await self._bump_registry(conn)
        return revoked

    async def _bump_registry(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("UPDATE meta SET value = (value::bigint + 1)::text "
                           "WHERE key = 'registry_version'")

    # witness cosignatures --------------------------------------------------------------------

    async def add_cosignature(self, size: int, witness: str, line: str, cosigned_s: int) -> None:
        async with self._write("storing a cosignature in") as conn:
            await conn.execute(
                "INSERT INTO cosignatures(size, witness, line, cosigned_s, received_ms) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (size, witness) DO UPDATE SET "
                "line = excluded.line, cosigned_s = excluded.cosigned_s, "
                "received_ms = excluded.received_ms",
                (size, witness, line, cosigned_s, time.time_ns() // 1_000_000))

    async def cosignatures(self, size: int) -> list[tuple[str, str]]:
        rows = await self._all("SELECT witness, line FROM cosignatures WHERE size = %s "
                               "ORDER BY witness", (size,))
        return [(str(w), str(line)) for w, line in rows]

    async def witness_size(self, witness: str) -> int | None:
        row = await self._one("SELECT MAX(size) FROM cosignatures WHERE witness = %s",
                              (witness,))
        return int(row[0]) if row and row[0] is not None else None

    async def freshest_cosigned(self, quorum: int, at_least: int = 0) -> int | None:
        row = await self._one(
            "SELECT size FROM cosignatures WHERE size >= %s GROUP BY size "
            "HAVING COUNT(*) >= %s ORDER BY size DESC LIMIT 1", (at_least, max(quorum, 1)))
        return int(row[0]) if row else None
