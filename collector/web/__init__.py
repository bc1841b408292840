"""The read-only public view of a ledger: server-rendered pages and a JSON API
(``ledger-collector serve``).

It opens the ledger read-only (SQLite ``mode=ro``), never loads the collector's signing key and
writes nothing but its own cache of plot series (:mod:`.series`), which holds no evidence.
"""
