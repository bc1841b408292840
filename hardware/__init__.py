"""Device drivers: a pure protocol codec per device plus a thin serial / Modbus transport."""
