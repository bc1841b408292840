"""Test helpers shared by every test package: real brokers, keys, readings."""
