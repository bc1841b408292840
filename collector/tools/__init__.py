"""What reads a ledger after the fact: audit, proof files, export and statistics."""
