"""``ledger-mirror``: another party's verified copy of a log published as C2SP tlog-tiles."""
