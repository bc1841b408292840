"""``devices``: enrol, list and revoke device keys."""

from __future__ import annotations

import json
from typing import Any

import click

from collector.admission.registry import DeviceKey, check_enrolment_device_id, parse_enrolment_text
from collector.cli.common import (
    config,
    handle_errors,
    iso,
    ledger_options,
    now_ms,
    on_ledger,
    parse_time,
)
from collector.errors import NotFoundError, UsageError
from collector.ingest.presence import load_presence, presence_path
from collector.ledger.opening import Ledger
from provenance.keys import PublicKey

__all__ = ["devices"]


@click.group()
def devices() -> None:
    """Enrol, list and revoke device keys."""


def kid_prefix(text: str) -> str:
    """A key id or the start of one, as the docs and listings show it (``3f9a…`` included)."""
    digits = text.strip().removesuffix("…").removesuffix("...").lower()
    if len(digits) < 4 or len(digits) > 64 or any(c not in "0123456789abcdef" for c in digits):
        raise UsageError(f"--kid {text!r} must be a key id or its first 4 or more hex digits")
    return digits


@devices.command("add", epilog="""\b
Examples:
  sensor-agent pubkey | ledger-collector devices add water-01 -
  ledger-collector devices add bms-07 bms-07.pub.pem --kid 3f9a…""")
@ledger_options
@click.argument("device_id")
@click.argument("pem", type=click.File("r"), default="-")
@click.option("--kid", metavar="HEX",
              help="Refuse unless the key's id is, or starts with, this (4 or more hex digits).")
@handle_errors
def devices_add(config_path: str | None, db: str | None, device_id: str, pem: Any,
                kid: str | None) -> None:
    """Enrol PEM (a public key file, or - for stdin) as a key of DEVICE_ID.

    Accepts what `sensor-agent pubkey` prints: the PEM block, with or without a key id line
    beside it; a key id printed with the key must match the key. Safe to run again: a key
    already enrolled for DEVICE_ID is left as it is (exit 0).
    """
    check_enrolment_device_id(device_id)
    prefix = kid_prefix(kid) if kid else None
    enrolment = parse_enrolment_text(pem.read())
    if enrolment.device_id is not None and enrolment.device_id != device_id:
        raise UsageError(f"the key was printed for device {enrolment.device_id!r}, "
                         f"not {device_id!r}")
    key = enrolment.key
    if prefix is not None and not key.kid_hex.startswith(prefix):
        raise UsageError(f"the key's id is {key.kid_hex}, which does not start with --kid "
                         f"{prefix}; check that the key belongs to this device")
    cfg = config(config_path, database=db)

    async def enrol(store: Ledger) -> bool:
        known = await store.device_key(key.kid)
        await store.enrol(device_id, key, now_ms())
        return known is not None

    if on_ledger(cfg, enrol):
        click.echo(f"{device_id} key {key.kid_hex} is already enrolled; nothing to do")
    else:
        click.echo(f"enrolled {device_id} key {key.kid_hex}")


@devices.command("list", epilog="""\b
Example:
  ledger-collector devices list --json""")
@ledger_options
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@handle_errors
def devices_list(config_path: str | None, db: str | None, as_json: bool) -> None:
    """List enrolled device keys, their revocation state, and each device's link: online or
    offline as its agent last said on its status topic, and when the collector last saw it
    (a heartbeat or a reading), in UTC. The link is blank until a running collector hears it.
    """
    cfg = config(config_path, database=db)

    async def read(store: Ledger) -> tuple[list[DeviceKey], dict[str, int]]:
        states = await store.device_states()
        return await store.device_keys(), {d: s.last_received_ms for d, s in states.items()}

    keys, last_reading = on_ledger(cfg, read)
    presence = load_presence(presence_path(cfg.database))

    def link(device_id: str) -> tuple[str | None, int | None]:
        p = presence.get(device_id)
        seen = [t for t in (p.last_seen_ms if p else None, last_reading.get(device_id))
                if t is not None]
        return (None if p is None else "online" if p.online else "offline",
                max(seen) if seen else None)

    if as_json:
        rows = []
        for k in keys:
            state, seen = link(k.device_id)
            rows.append({
                "device_id": k.device_id, "kid": k.kid.hex(), "enrolled_ms": k.enrolled_ms,
                "enrolled": iso(k.enrolled_ms), "revoked_ms": k.revoked_ms,
                "revoked": iso(k.revoked_ms) or None, "revoke_reason": k.revoke_reason,
                "link": state, "last_seen": iso(seen) or None,
                "public_key_pem": PublicKey.from_der(k.public_key_der).to_pem(),
            })
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'device':<20} {'key id':<64} {'enrolled (UTC)':<25} {'link':<7} "
               f"{'last seen (UTC)':<25} status")
    for k in keys:
        state, seen = link(k.device_id)
        status = ("active" if k.revoked_ms is None
                  else f"revoked from {iso(k.revoked_ms)}"
                  + (f" ({k.revoke_reason})" if k.revoke_reason else ""))
        click.echo(f"{k.device_id:<20} {k.kid.hex():<64} {iso(k.enrolled_ms):<25} "
                   f"{state or '-':<7} {iso(seen) or '-':<25} {status}")


@devices.command("revoke", epilog="""\b
Examples:
  ledger-collector devices revoke water-01 --reason "probe replaced"
  ledger-collector devices revoke water-01 --kid 3f9a… --at 2026-03-01T00:00:00Z""")
@ledger_options
@click.argument("device_id")
@click.option("--kid", metavar="HEX",
              help="Revoke only this key: its id or a unique prefix (default: every key).")
@click.option("--at", "at", default="now", show_default=True, metavar="TIME",
              help="Effective time: readings signed at or after it are refused "
                   "(ISO 8601, epoch ms, or now).")
@click.option("--reason", metavar="TEXT", help="Why, for the record.")
@handle_errors
def devices_revoke(config_path: str | None, db: str | None, device_id: str, kid: str | None,
                   at: str, reason: str | None) -> None:
    """Revoke DEVICE_ID's key(s) from an effective time on."""
    at_ms = parse_time(at)
    prefix = kid_prefix(kid) if kid else None
    cfg = config(config_path, database=db)

    async def revoke(store: Ledger) -> list[DeviceKey]:
        kid_bytes = None
        if prefix is not None:
            mine = [k.kid for k in await store.device_keys() if k.device_id == device_id]
            matches = [k for k in mine if k.hex().startswith(prefix)]
            if not mine:
                raise NotFoundError(f"device {device_id!r} has no enrolled key")
            if not matches:
                raise NotFoundError(f"device {device_id!r} has no key whose id starts with "
                                    f"{prefix}")
            if len(matches) > 1:
                raise UsageError(f"--kid {prefix} matches {len(matches)} keys of {device_id!r}; "
                                 "give more digits")
            kid_bytes = matches[0]
        return await store.revoke(device_id, kid_bytes, at_ms, reason)

    revoked = on_ledger(cfg, revoke)
    for k in revoked:
        click.echo(f"revoked {device_id} key {k.kid.hex()} from {iso(at_ms)}")
    if not revoked:
        click.echo(f"{device_id}: every key was already revoked at or before {iso(at_ms)}")
