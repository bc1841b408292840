"""A PostgreSQL ledger for the cluster tests: collectors, CLI and direct SQL on one URL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from agent.clock import Clock
from agent.data_keys import DataKeys, ValueSealer
from agent.signer import ChainHead, ChainSigner, Draft
from provenance.keyfile import save_private_key
from provenance.keys import PrivateKey
from provenance.private_message import PrivateMessage
from provenance.senml import Measurement
from provenance.wire import private_topic
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger, now_ms, run_cli

__all__ = ["PgLedger", "cluster_collector", "private_stream"]


@dataclass
class PgLedger(Ledger):
    """A ledger in a PostgreSQL database; its keys in ``root``."""

    url: str = ""

    @property
    def db(self) -> str:
        return self.url

    def init(self) -> PgLedger:
        self.root.mkdir(parents=True, exist_ok=True)
        result = run_cli("init", "--db", self.url, "--key", self.key, "--log-name",
                         "sensorledger.example/cluster")
        assert result.exit_code == 0, result.output
        return self

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        with psycopg.connect(self.url, autocommit=True) as con:
            cur = con.execute(query.replace("?", "%s"), params)
            return list(cur.fetchall()) if cur.description else []

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.sql(statement, params)

    def stored(self) -> int:
        """Device readings stored, sealed or not (statements not counted)."""
        return int(self.sql("SELECT COUNT(*) FROM readings WHERE device_id != '@collector'")[0][0])

    def sealed(self) -> int:
        """Device readings sealed (the collectors' statements, in the tree too, not counted)."""
        return int(self.sql("SELECT COUNT(*) FROM readings WHERE id IS NOT NULL "
                            "AND device_id != '@collector'")[0][0])


def cluster_collector(ledger: PgLedger, broker: Broker, name: str, *extra: str,
                      group: str = "collectors") -> CollectorProcess:
    """A collector of the shared-subscription ``group``, with its own client id ``name``."""
    env = {"SENSORLEDGER_STATE_DIR": str(Path(ledger.root))}
    return CollectorProcess(ledger, broker, "--client-id", name, "--share-group", group,
                            "--workers", "1", *extra, env=env)


def private_stream(key: PrivateKey, root: Path, count: int,
                   readers: Sequence[str] = ("reader",)) -> list[tuple[str, bytes]]:
    """``count`` private readings of ``ward-1`` (patient-a at odd seqs, patient-b at even),
    sealed for a new reader key per name in ``readers``, saved as ``root/<name>.pem``."""
    keys = [PrivateKey.generate() for _ in readers]
    for name, reader in zip(readers, keys, strict=True):
        save_private_key(reader, root / f"{name}.pem")
    signer = ChainSigner("ward-1", key, 1, ChainHead(), Clock("synced"),
                         sealer=ValueSealer(DataKeys(root / "data-keys.json"),
                                            [k.public for k in keys]))
    out = []
    start = now_ms() - 60_000
    for i in range(count):
        draft = Draft("oximeter", "pulse-oximeter", start + i * 1000, True,
                      (Measurement(name="spo2", value=95, unit="%"),), {},
                      subject="patient-a" if i % 2 else "patient-b")
        entry, head = signer.sign(draft, signer.head)
        signer.advance(head)
        PrivateMessage.decode(entry.envelope).check_parts()
        out.append((private_topic("ward-1"), entry.envelope))
    return out
