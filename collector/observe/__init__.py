"""What a running collector tells its operators: ``/metrics`` and ``/health``.

:mod:`.exporter` turns the pipeline's counters (:mod:`collector.metrics`) and live state into
Prometheus metric families at scrape time; :mod:`.health` is the pure health rule. Both are
served by :class:`common.exposition.MetricsServer`, which the agent uses too.
"""
