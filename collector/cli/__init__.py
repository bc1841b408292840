"""``ledger-collector``: the collector's command line.

Thin click commands over the library, one module per group: :mod:`.ledger` (init, run),
:mod:`.devices`, :mod:`.inspect` (blocks, readings, stats, quarantine), :mod:`.proofs`
(proof, verify-proof, checkpoint, consistency), :mod:`.migrate`, :mod:`.audit`; :mod:`.common`
holds what they share, among it the one way a command opens the ledger. Exit codes: 0 success;
1 verification failure (``audit``, ``verify-proof``) or a collector that stopped on an error
(``run``); 2 the command could not be carried out as asked (usage, configuration, missing
ledger, device or reading).
"""

from __future__ import annotations

import os
import sys

import click

from collector.cli.audit import audit
from collector.cli.copy import copy_cmd
from collector.cli.devices import devices
from collector.cli.inspect import blocks, quarantine, readings, stats
from collector.cli.keys import key_group
from collector.cli.ledger import check, init, run_command
from collector.cli.migrate import migrate
from collector.cli.mirror import mirror_command
from collector.cli.private import erase_cmd, erasures_cmd, readers, reveal_cmd
from collector.cli.proofs import (
    checkpoint_cmd,
    consistency_cmd,
    history_cmd,
    proof,
    verify_history_cmd,
    verify_proof_cmd,
)
from collector.cli.serve import serve
from collector.cli.tiles import tiles
from common.misbehaviour_cli import verify_misbehaviour_command

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sensorledger", prog_name="ledger-collector")
def cli() -> None:
    """SensorLedger collector: verify signed sensor readings arriving over MQTT, seal them into
    a Merkle-rooted, hash-chained ledger, and audit, export and prove what it holds.

    \b
    Typical first steps:
      ledger-collector init --db ledger.db --key collector-key.pem
      sensor-agent pubkey | ledger-collector devices add --db ledger.db water-01 -
      ledger-collector run --db ledger.db --key collector-key.pem --broker mqtt://localhost

    Exit codes: 0 ok, 1 verification failure, 2 usage or configuration error.
    """


for _command in (init, run_command, check, devices, blocks, readings, proof, verify_proof_cmd,
                 checkpoint_cmd, consistency_cmd, history_cmd, verify_history_cmd, migrate, audit,
                 stats, quarantine, tiles, serve, reveal_cmd, erase_cmd, erasures_cmd,
                 readers, copy_cmd, mirror_command, key_group):
    cli.add_command(_command)
# The same offline check as `ledger-witness verify-misbehaviour`, for whoever holds only the
# collector's tools (e.g. a mirror's proof of misbehaviour).
cli.add_command(verify_misbehaviour_command("ledger-collector"))


def main() -> None:
    try:
        cli(prog_name="ledger-collector")
    except BrokenPipeError:
        # `ledger-collector readings | head`: the reader left; that is not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
