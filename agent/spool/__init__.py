"""The durable, bounded spool: its storage, its overflow plan, and the report ``status`` reads.

* :mod:`.store`: rows, acknowledgements, depth, the chain head and counters beside them, in
  one SQLite file; the publisher's outbox.
* :mod:`.overflow`: the pure plan of which readings a full spool pushes out and which gap
  records are signed for them.
* :mod:`.report`: the spool read without the agent, for ``sensor-agent status``.
"""

from .report import SpoolReport, read_report
from .schema import SpoolCounters
from .store import Spool

__all__ = ["Spool", "SpoolCounters", "SpoolReport", "read_report"]
