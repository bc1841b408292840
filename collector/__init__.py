"""The collector: verify readings from MQTT and seal them into a Merkle-rooted, hash-chained ledger."""
