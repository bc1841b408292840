"""The ledger: the store protocol, the SQLite store and its schema, and the sealer."""
