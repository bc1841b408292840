"""Verification and admission: the reading verifier, the device registry, per-device checks,
sequence gaps and quarantine reasons."""
