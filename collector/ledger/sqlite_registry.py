"""The SQLite store's registry and quarantine tables: the collector key, device keys
(enrol, revoke, the registry version) and the quarantine listings (written once for both
stores in :mod:`collector.ledger.table_reads`)."""

from __future__ import annotations

from typing import Any

import aiosqlite

from collector.admission.registry import DeviceKey, enrolled_again, revocation
from collector.ledger.key_records import stored_collector_key
from collector.ledger.sqlite_base import SQLiteConnection
from collector.ledger.table_reads import QuarantineReads
from provenance.keys import PublicKey

__all__ = ["RegistryTables"]


class RegistryTables(QuarantineReads, SQLiteConnection):
    """Who may sign (device keys) and what was kept out (quarantine)."""

    # collector identity and registry ---------------------------------------------------------

    async def collector_public_key(self) -> PublicKey | None:
        row = await self._one("SELECT value FROM meta WHERE key = 'collector_public_key'")
        return None if row is None else stored_collector_key(str(row[0]))

    async def set_collector_public_key(self, key: PublicKey) -> None:
        async with self._write() as db:
            await db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('collector_public_key', ?)",
                (key.to_pem(),),
            )

    async def registry_version(self) -> int:
        row = await self._one("SELECT value FROM meta WHERE key = 'registry_version'")
        return int(row[0]) if row else 0

    async def device_keys(self) -> list[DeviceKey]:
        rows = await self._all(
            "SELECT kid, device_id, public_key, enrolled_ms, revoked_ms, revoke_reason "
            "FROM device_keys ORDER BY device_id, enrolled_ms"
        )
        return [DeviceKey(*row) for row in rows]

    async def device_key(self, kid: bytes) -> DeviceKey | None:
        row = await self._one(
            "SELECT kid, device_id, public_key, enrolled_ms, revoked_ms, revoke_reason "
            "FROM device_keys WHERE kid = ?", (kid,)
        )
        return DeviceKey(*row) if row else None

    async def enrol(self, device_id: str, key: PublicKey, now_ms: int) -> DeviceKey:
        async with self._write() as db:
            row = await self._one(
                "SELECT kid, device_id, public_key, enrolled_ms, revoked_ms, revoke_reason "
                "FROM device_keys WHERE kid = ?", (key.kid,))
            if row is not None:
                return enrolled_again(DeviceKey(*row), device_id)
            await db.execute(
                "INSERT INTO device_keys(kid, device_id, public_key, enrolled_ms) "
                "VALUES (?, ?, ?, ?)",
                (key.kid, device_id, key.der, now_ms),
            )
            await self._bump_registry(db)
        return DeviceKey(key.kid, device_id, key.der, now_ms)

    async def revoke(self, device_id: str, kid: bytes | None, at_ms: int,
                     reason: str | None) -> list[DeviceKey]:
        async with self._write() as db:
            sql = ("SELECT kid, device_id, public_key, enrolled_ms, revoked_ms, revoke_reason "
                   "FROM device_keys WHERE device_id = ?")
            params: tuple[Any, ...] = (device_id,)
            if kid is not None:
                sql += " AND kid = ?"
                params += (kid,)
            revoked = revocation(device_id, kid, [DeviceKey(*r) for r in await self._all(
                sql, params)], at_ms, reason)
            await db.executemany(
                "UPDATE device_keys SET revoked_ms = ?, revoke_reason = ? WHERE kid = ?",
                [(k.revoked_ms, k.revoke_reason, k.kid) for k in revoked])
            await self._bump_registry(db)
        return revoked

    async def _bump_registry(self, db: aiosqlite.Connection) -> None:
        await db.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'registry_version'"
        )
