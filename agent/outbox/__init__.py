"""The way out: the outbox interface the publisher reads, the broker link, the MQTT publisher."""
