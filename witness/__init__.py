"""``ledger-witness``: a C2SP tlog-witness that another party runs beside a SensorLedger log.

:mod:`.cosigning` decides (pure of HTTP), :mod:`.state` keeps the latest cosigned checkpoint of
each log durably, :mod:`.http` serves the tlog-witness endpoints, :mod:`.cli` the commands.
"""
