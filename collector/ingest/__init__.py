"""Ingest: the MQTT client and its inbox, and the pipeline that verifies, admits and commits."""
