"""Publishing the log for others: C2SP tlog-tiles, as files (`tiles export`) or over HTTP."""
