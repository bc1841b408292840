"""The collector: verify readings from MQTT, seal them into a Merkle-rooted, hash-chained
ledger, and audit, export and prove what it holds."""
