"""One error base for every package, each keeping its own family, all with diagnostics()."""

from __future__ import annotations

import pytest

from agent.errors import AgentError, ConfigError, SpoolLockedError
from collector.errors import CollectorError, VerificationFailed
from collector.errors import ConfigError as CollectorConfigError
from hardware.errors import ChecksumError, HardwareConfigError, HardwareError
from provenance.configfile import ConfigFileError, Problem
from provenance.errors import MalformedError, ProvenanceError, SensorLedgerError


@pytest.mark.parametrize("family", [ProvenanceError, AgentError, CollectorError, HardwareError])
def test_every_family_stands_on_the_one_base(family: type[Exception]) -> None:
    assert issubclass(family, SensorLedgerError)
    assert family is not SensorLedgerError


@pytest.mark.parametrize(("error", "diagnostics", "code"), [
    (MalformedError("3 bytes after the CBOR item", code="not_cbor"),
     "3 bytes after the CBOR item", "not_cbor"),
    (SpoolLockedError(), SpoolLockedError.__doc__, "spool_locked"),
    (VerificationFailed("block 3: root mismatch"), "block 3: root mismatch",
     "verification_failed"),
    (ChecksumError("bad CRC", expected=1, received=2),
     "bad CRC: expected 0x0001, received 0x0002", "protocol"),
    (HardwareConfigError.listing("jbd-bms", [Problem("port", "setting 'port' is required")]),
     "jbd-bms: setting 'port' is required", "hardware_config"),
])
def test_diagnostics_is_a_sentence_a_person_can_act_on(
    error: SensorLedgerError, diagnostics: str, code: str
) -> None:
    assert error.diagnostics() == diagnostics
    assert error.code == code


def test_config_errors_of_every_family_carry_their_problems() -> None:
    problems = [Problem("blocks.size", "must be at least 1, got 0", 3)]
    for error in (ConfigError("c.toml", problems), ConfigFileError("c.toml", problems),
                  CollectorConfigError("bad", problems=problems),
                  HardwareConfigError("bad", problems=problems)):
        assert error.problems == problems
    assert ConfigError("c.toml", problems).diagnostics() == (
        "c.toml:3: blocks.size: must be at least 1, got 0\n1 problem in c.toml")
