"""What the programs (``sensor-agent``, ``ledger-collector``, ``ledger-witness``) share beyond
the pure core: small pieces that do I/O, so they live neither in :mod:`provenance` (no I/O) nor
in one program's package that the others would then import.

* :mod:`common.systemd`: the systemd notification protocol (readiness, watchdog, status).
* :mod:`common.exposition`: ``/metrics`` and ``/health`` over HTTP on the event loop (the agent
  and the collector).
* :mod:`common.misbehaviour_cli`: the ``verify-misbehaviour`` command both the collector's and
  the witness's command lines register.
"""
