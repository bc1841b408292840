"""The private Mosquitto used by the tests (the demo and the benchmarks use the same one)."""

from demo.broker import Broker, free_port, mosquitto_binary, wait_for_port

__all__ = ["Broker", "free_port", "mosquitto_binary", "wait_for_port"]
