"""The edge agent: poll sensors, sign readings, spool them durably, publish over MQTT."""
