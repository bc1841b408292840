"""Quarantine reason codes: why a message was kept out of the ledger.

Codes are stable strings (they are stored in the database and appear in logs and metrics). The
order of :data:`REASONS` is the order in which the checks run, so a message that breaks several
rules is quarantined under the first one.
"""

from __future__ import annotations

from provenance.wire import reading_topic

__all__ = ["REASONS", "Reason"]


class Reason:
    OVERSIZED = "oversized"
    BAD_TOPIC = "bad_topic"
    BAD_PRIVATE = "bad_private"
    NOT_CBOR = "not_cbor"
    NOT_COSE = "not_cose"
    BAD_KID = "bad_kid"
    WRONG_ALGORITHM = "wrong_algorithm"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    BAD_PAYLOAD = "bad_payload"
    BAD_VERSION = "bad_version"
    NOT_DETERMINISTIC = "not_deterministic"
    TOPIC_MISMATCH = "topic_mismatch"
    DEVICE_KEY_MISMATCH = "device_key_mismatch"
    HIGH_S = "high_s"
    REVOKED_KEY = "revoked_key"
    CLOCK_SKEW = "clock_skew"
    EQUIVOCATION = "equivocation"
    CHAIN_BREAK = "chain_break"
    SEQ_JUMP = "seq_jump"
    UNVERIFIABLE = "unverifiable"


REASONS: dict[str, str] = {
    Reason.OVERSIZED: "larger than ingest.max_message_bytes; stored truncated, never decoded",
    Reason.BAD_TOPIC: f"topic is not {reading_topic('<valid device id>')}",
    Reason.BAD_PRIVATE: "on a private topic, but not a private message of a private reading "
                        "(envelope, subject, sealed values, grants)",
    Reason.NOT_CBOR: "not one well-formed CBOR item",
    Reason.NOT_COSE: "CBOR, but not a tagged COSE_Sign1 in the SensorLedger profile",
    Reason.BAD_KID: "protected header lacks a 32-byte key id",
    Reason.WRONG_ALGORITHM: "signature algorithm is not ES256",
    Reason.UNKNOWN_KEY: "key id is not enrolled in the device registry",
    Reason.BAD_SIGNATURE: "ES256 signature does not verify under the enrolled key",
    Reason.BAD_PAYLOAD: "signed payload is not a valid wire-format v1 reading",
    Reason.BAD_VERSION: "signed payload has an unsupported format version",
    Reason.NOT_DETERMINISTIC: "signed payload is not deterministically encoded CBOR",
    Reason.TOPIC_MISMATCH: "device id in the topic differs from the signed device id",
    Reason.DEVICE_KEY_MISMATCH: "signing key is enrolled for another device",
    Reason.HIGH_S: "signature verifies but in its high-S form (s > n/2), which anyone can "
                   "make from a genuine one; every signer must emit low-S",
    Reason.REVOKED_KEY: "key was revoked at or before the reading's device time",
    Reason.CLOCK_SKEW: "device time is further ahead of the collector clock than allowed",
    Reason.EQUIVOCATION: "same device and seq as a stored reading, different bytes (evidence)",
    Reason.CHAIN_BREAK: "prev is not the hash of the device's stored previous reading",
    Reason.SEQ_JUMP: "seq runs more than 2^32 past the device's last one (would exhaust its seqs)",
    Reason.UNVERIFIABLE: "the verifier itself failed on the message (a collector bug); kept",
}
