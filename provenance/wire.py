"""The wire contract in one place: MQTT topics, format versions and CBOR labels.

Everything a device, the collector, a proof verifier or a test spells on the wire comes from
here (docs/wire-format.md is the prose and CDDL of the same). Changing a value here changes
the wire format.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALG_ES256",
    "BLOCK_FORMAT_VERSION",
    "COSE_SIGN1_TAG",
    "FORMAT_VERSION",
    "HDR_ALG",
    "HDR_CONTENT_TYPE",
    "HDR_KID",
    "PRIVATE_FILTER",
    "PROOF_FORMAT_VERSION",
    "READING_FILTER",
    "RECEIPT_CONTENT_TYPE",
    "RECEIPT_FILTER",
    "RECEIPT_FORMAT_VERSION",
    "TOPIC_ROOT",
    "BlockLabel",
    "OpeningLabel",
    "PayloadLabel",
    "PrivateLabel",
    "ProofLabel",
    "ReceiptLabel",
    "device_filter",
    "private_filter",
    "private_topic",
    "private_topic_device",
    "reading_topic",
    "reading_topic_device",
    "receipt_topic",
    "receipt_topic_device",
    "status_topic",
]

# --- MQTT topics --------------------------------------------------------------------------

#: Every topic of wire format v1 lies under this root.
TOPIC_ROOT: Final = "sensorledger/v1"
_READING: Final = "reading"
_STATUS: Final = "status"
_RECEIPT: Final = "receipt"
_PRIVATE: Final = "private"
_PREFIX: Final = TOPIC_ROOT + "/"
_READING_SUFFIX: Final = "/" + _READING
_PRIVATE_SUFFIX: Final = "/" + _PRIVATE
_RECEIPT_SUFFIX: Final = "/" + _RECEIPT

#: The collector's subscription: every device's readings.
READING_FILTER: Final = f"{TOPIC_ROOT}/+/{_READING}"
#: The collector's second subscription: private readings with their sealed values.
PRIVATE_FILTER: Final = f"{TOPIC_ROOT}/+/{_PRIVATE}"


def reading_topic(device_id: str) -> str:
    """Where a device publishes its signed readings (QoS 1, not retained)."""
    return f"{_PREFIX}{device_id}{_READING_SUFFIX}"


def private_topic(device_id: str) -> str:
    """Where a device publishes its private readings: a private message (the signed envelope
    beside its sealed values, :class:`PrivateLabel`), QoS 1, not retained."""
    return f"{_PREFIX}{device_id}{_PRIVATE_SUFFIX}"


def status_topic(device_id: str) -> str:
    """Where an agent publishes its retained status (birth, Last Will, heartbeats)."""
    return f"{_PREFIX}{device_id}/{_STATUS}"


#: Every device's receipts: what the collector publishes to (its broker ACL grants it).
RECEIPT_FILTER: Final = f"{TOPIC_ROOT}/+/{_RECEIPT}"


def receipt_topic(device_id: str) -> str:
    """Where the collector publishes a device's signed receipts (QoS 1, retained); the
    device's agent subscribes to it (docs/wire-format.md, "Receipts")."""
    return f"{_PREFIX}{device_id}{_RECEIPT_SUFFIX}"


def receipt_topic_device(topic: str) -> str | None:
    """The ``<device_id>`` part of a receipt topic, unchecked; None for any other topic."""
    if not (topic.startswith(_PREFIX) and topic.endswith(_RECEIPT_SUFFIX)):
        return None
    return topic[len(_PREFIX):-len(_RECEIPT_SUFFIX)]


def device_filter(device_id: str) -> str:
    """Every topic of one device: what a broker ACL lets that device publish to."""
    return f"{_PREFIX}{device_id}/#"


def reading_topic_device(topic: str) -> str | None:
    """The ``<device_id>`` part of a reading topic, unchecked; None when ``topic`` is not
    ``sensorledger/v1/<something>/reading``. Whether it is a valid device id is
    :func:`provenance.reading.check_device_id`'s business."""
    if not (topic.startswith(_PREFIX) and topic.endswith(_READING_SUFFIX)):
        return None
    return topic[len(_PREFIX):-len(_READING_SUFFIX)]


def private_filter(reading_filter: str) -> list[str]:
    """The private-topic subscription that goes with a reading subscription (none for a filter
    that does not end in ``/reading``)."""
    if not reading_filter.endswith(_READING_SUFFIX):
        return []
    return [reading_filter[:-len(_READING_SUFFIX)] + _PRIVATE_SUFFIX]


def private_topic_device(topic: str) -> str | None:
    """The ``<device_id>`` part of a private topic, unchecked; None for any other topic."""
    if not (topic.startswith(_PREFIX) and topic.endswith(_PRIVATE_SUFFIX)):
        return None
    return topic[len(_PREFIX):-len(_PRIVATE_SUFFIX)]


# --- Format versions ----------------------------------------------------------------------

#: Payload label 1 of every reading.
FORMAT_VERSION: Final = 1
#: Label 1 of every block header: 1 a per-block tree, 2 a batch of the one log tree.
BLOCK_FORMAT_VERSION: Final = 1
BLOCK_FORMAT_VERSION_2: Final = 2
#: Label 1 of every proof file: 1 against a block header, 2 against a checkpoint.
PROOF_FORMAT_VERSION: Final = 1
PROOF_FORMAT_VERSION_2: Final = 2

#: Label 1 of every receipt.
RECEIPT_FORMAT_VERSION: Final = 1

# --- COSE_Sign1 (RFC 9052 / RFC 9053) -----------------------------------------------------

COSE_SIGN1_TAG: Final = 18
#: ES256: ECDSA on P-256 with SHA-256.
ALG_ES256: Final = -7
#: Protected header labels; the header is exactly {alg, kid} in deterministic form.
HDR_ALG: Final = 1
HDR_KID: Final = 4
#: COSE header label 3, content type: set in a receipt's protected header (and in nothing a
#: device or block signs), so a receipt can never pass for a reading or a block header.
HDR_CONTENT_TYPE: Final = 3
RECEIPT_CONTENT_TYPE: Final = "application/vnd.sensorledger.receipt+cbor"


# --- CBOR map labels ----------------------------------------------------------------------


class PayloadLabel:
    """Keys of the reading payload map (the CDDL ``reading`` in docs/wire-format.md)."""

    VERSION: Final = 1
    DEVICE: Final = 2
    SEQ: Final = 3
    BOOT: Final = 4
    TIME: Final = 5
    SYNC: Final = 6
    PREV: Final = 7
    KIND: Final = 8
    MEASUREMENTS: Final = 9
    EVENT: Final = 10
    GAP: Final = 11
    #: Private readings only: SHA-256(salt || values), in place of measurements and event.
    COMMITMENT: Final = 12


class PrivateLabel:
    """Keys of the private message map (what travels on the private topic)."""

    ENVELOPE: Final = 1   # the COSE_Sign1 envelope, exactly as signed
    SUBJECT: Final = 2    # whose data it is (a patient's pseudonym or the device id)
    SEALED: Final = 3     # COSE_Encrypt0 (A256GCM) of the opening under the data key
    GRANTS: Final = 4     # COSE_Encrypt per reader: the data key, ECDH-ES + A256KW


class OpeningLabel:
    """Keys of the opening (the plaintext of the sealed values, and the proof's disclosure)
    and of the values map inside it."""

    SALT: Final = 1       # 32 random bytes, fresh for every reading
    VALUES: Final = 2     # bstr: deterministic CBOR {1: SenML records, ?2: event}
    MEASUREMENTS: Final = 1
    EVENT: Final = 2


class BlockLabel:
    """Keys of the block header map."""

    VERSION: Final = 1
    HEIGHT: Final = 2
    PREV: Final = 3
    ROOT: Final = 4
    COUNT: Final = 5
    FIRST: Final = 6
    LAST: Final = 7
    SEALED: Final = 8
    KID: Final = 9
    TREE_SIZE_BEFORE: Final = 10  # v2
    TREE_SIZE_AFTER: Final = 11  # v2


class ProofLabel:
    """Keys of the proof file map."""

    VERSION: Final = 1
    ENVELOPE: Final = 2
    DEVICE_KEY: Final = 3
    INDEX: Final = 4
    PATH: Final = 5
    BLOCK: Final = 6
    COLLECTOR_KID: Final = 7
    CHECKPOINT: Final = 8  # v2
    #: v2, optional: [enrolment statement, its leaf index, its audit path] under the same
    #: checkpoint, showing the device key was enrolled earlier in the log than the reading.
    ENROLMENT: Final = 9
    OPENING: Final = 10  # v2, optional: a private reading's disclosed salt and values
    #: v2, optional: [[key-rotate statement, its leaf index, its audit path], ...] under the
    #: same checkpoint, in log order: how a verifier trusting an earlier collector key reaches
    #: the key that signed the checkpoint.
    ROTATIONS: Final = 11


class ReceiptLabel:
    """Keys of the receipt payload map (the CDDL ``receipt`` in docs/wire-format.md)."""

    VERSION: Final = 1
    DEVICE: Final = 2
    TIME: Final = 3
    TREE_SIZE: Final = 4
    SEALED_THROUGH: Final = 5
    SEALED: Final = 6
    REFUSED: Final = 7
