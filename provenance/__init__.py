"""The shared, pure core of SensorLedger: readings, envelopes, keys, Merkle trees, blocks, proofs.

Nothing in this package does network, serial, database or asyncio work.
"""
