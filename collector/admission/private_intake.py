"""Private messages on the way in: split into the envelope to verify and the sealed part to keep.

A private message (``sensorledger/v1/<device>/private``, docs/privacy.md) is checked for its
structure only (nothing is decrypted); its envelope is then verified exactly as if it had come
on ``sensorledger/v1/<device>/reading``, and, once admitted, its sealed values and grants are
stored beside the reading in the same transaction. Ingest and the replay of ``unknown_key``
rows use the same two functions.
"""

from __future__ import annotations

from collector.admission.reasons import Reason
from collector.admission.verify import Rejected
from collector.ledger.records import PrivateRecord
from provenance.errors import ProvenanceError
from provenance.private_message import PrivateMessage
from provenance.reading import check_device_id
from provenance.wire import private_topic_device, reading_topic

__all__ = ["open_private", "private_record"]


def open_private(topic: str, payload: bytes) -> tuple[str, PrivateMessage] | Rejected | None:
    """For a message on a private topic: the reading topic its envelope is checked against and
    the private message (structure checked, nothing decrypted); None for any other topic."""
    device = private_topic_device(topic)
    if device is None:
        return None
    try:
        check_device_id(device)
        pm = PrivateMessage.decode(payload)
        pm.check_parts()
    except ProvenanceError as exc:
        return Rejected(Reason.BAD_PRIVATE, exc.diagnostics())
    except Exception as exc:  # hostile bytes must never stop ingest
        return Rejected(Reason.BAD_PRIVATE, f"decoder failed: {exc!r}")
    return reading_topic(device), pm


def private_record(reading_id: int, pm: PrivateMessage, device_id: str,
                   seq: int) -> PrivateRecord:
    """What is stored beside reading ``reading_id`` (``device_id`` ``seq``; its id is 0 until
    a cluster's sealer gives it): its sealed values and the grants of the data key that
    sealed them."""
    sealed, grants = pm.check_parts()
    return PrivateRecord(reading_id, pm.subject, sealed.kid, pm.sealed,
                         tuple((g.reader_kid, g.raw) for g in grants
                               if g.data_kid == sealed.kid), device_id, seq)
