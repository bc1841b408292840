"""What the collector keeps and tells of a message it does not admit, and what it says of the
flags the per-device checks raise on one it admits.

A refused message becomes a quarantine row (its bytes, cut to ``quarantine_keep_bytes`` when it
was oversized) and a ``quarantined`` event; the device the broker let publish on its topic is
told the seq it claims, in its next receipt (:mod:`collector.ingest.receipts`)."""

from __future__ import annotations

import hashlib
import logging

from collector.admission.reasons import Reason
from collector.admission.verify import Verified, topic_device
from collector.ingest.mqtt import Message
from collector.ledger.store import QuarantineRecord
from collector.logs import event
from collector.metrics import Metrics
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from provenance.private_message import PrivateMessage
from provenance.reading import check_device_id
from provenance.wire import private_topic_device

__all__ = ["count_flags", "quarantine_record", "refused_reading"]

log = logging.getLogger("collector.ingest.refusals")


def quarantine_record(m: Message, reason: str, detail: str, device_id: str | None,
                      seq: int | None, keep_bytes: int) -> QuarantineRecord:
    """The quarantine row of ``m``, refused for ``reason``; logged as ``quarantined``."""
    keep = m.payload if reason != Reason.OVERSIZED else m.payload[:keep_bytes]
    event(log, "quarantined", logging.WARNING, reason=reason, topic=m.topic,
          device_id=device_id, seq=seq, size=len(m.payload), detail=detail[:300])
    return QuarantineRecord(
        raw_sha256=hashlib.sha256(m.payload).digest(),
        reason=reason,
        detail=detail,
        topic=m.topic,
        topic_device=topic_device(m.topic),
        device_id=device_id,
        seq=seq,
        size=len(m.payload),
        raw=keep,
        received_ms=m.received_ms,
    )


def refused_reading(m: Message, seq: int | None) -> tuple[str, int] | None:
    """The device to tell of refused ``m`` (the one the broker let publish on its topic) and
    the seq the message claims (before any signature held); None when either is unknown."""
    reading_device = topic_device(m.topic)
    private = reading_device is None
    try:
        device = (check_device_id(private_topic_device(m.topic)) if private
                  else str(reading_device))
    except ProvenanceError:
        return None
    if seq is None:
        try:
            envelope = PrivateMessage.decode(m.payload).envelope if private else m.payload
            seq = Envelope.decode(envelope).reading().seq
        except ProvenanceError:
            return None
    return device, seq


def count_flags(metrics: Metrics, v: Verified, flags: tuple[str, ...]) -> None:
    """Count (and log) the flags the per-device checks raised on admitted reading ``v``."""
    for flag in flags:
        if flag == "gap":
            metrics.gaps += 1
            event(log, "sequence_gap", logging.WARNING, device_id=v.device_id, seq=v.seq)
        elif flag == "chain_restart":
            metrics.chain_restarts += 1
            event(log, "chain_restart", logging.WARNING, device_id=v.device_id, seq=v.seq,
                  boot=v.boot)
        elif flag == "reboot":
            metrics.reboots += 1
        elif flag == "boot_reset":
            metrics.boot_resets += 1
            event(log, "boot_counter_reset", logging.WARNING, device_id=v.device_id,
                  seq=v.seq, boot=v.boot)
        elif flag == "late":
            metrics.late += 1
