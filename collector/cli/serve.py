"""``ledger-collector serve``: the read-only public view (pages and JSON API) of a ledger."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli.common import config, handle_errors, ledger_options
from collector.errors import UsageError

__all__ = ["serve"]


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen takes HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command(epilog="""\b
Examples:
  ledger-collector serve --db ledger.db                    # http://127.0.0.1:8080/
  ledger-collector serve --db ledger.db --listen 0.0.0.0:8080 --cache-dir /var/cache/view
  ledger-collector serve --db postgresql://view@db1/ledger   # a PostgreSQL ledger""")
@ledger_options
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Address to serve on (port 0: any free port, printed at start).")
@click.option("--cache-dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Where the plot cache lives [default: ~/.cache/sensorledger].")
@click.option("--connections", default=4, show_default=True, type=click.IntRange(1, 32),
              help="Read-only database connections (concurrent requests).")
@handle_errors
def serve(config_path: str | None, db: str | None, listen: str, cache_dir: str | None,
          connections: int) -> None:
    """Serve a read-only view of the ledger: overview, devices with plots of their readings,
    readings with their proofs, blocks, checkpoints and quarantine, as pages and as a JSON
    API under /api/v1/ (OpenAPI at /api/v1/openapi.json).

    The ledger (a SQLite file, or a postgresql:// URL) is opened read-only and the collector's
    signing key is never read: run it as a user that can read the ledger and nothing else (on
    PostgreSQL, a role with SELECT only; its connections are read-only besides)."""
    import asyncio

    import uvicorn

    from collector.ledger.pg_base import is_postgres_url, redact
    from collector.web.app import build_app, default_cache_path

    cfg = config(config_path, database=db)
    database: str | Path
    if is_postgres_url(str(cfg.database)):
        database = str(cfg.database)
        shown_db = redact(database)
    else:
        database = Path(cfg.database)
        shown_db = str(database)
        if not database.is_file():
            raise UsageError(f"ledger database {database} does not exist")
    host, port = _listen(listen)

    async def readable() -> None:  # a clear error (exit 2) before any server starts
        from collector.web.viewstore import open_view_store

        await (await open_view_store(database)).close()

    asyncio.run(readable())
    cache = (Path(cache_dir) / default_cache_path(database).name) if cache_dir else None
    app = build_app(database, cache_path=cache, pool_size=connections)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False, lifespan="on"))

    async def go() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                raise UsageError(f"could not serve on {host}:{port}")
            await asyncio.sleep(0.05)
        for s in server.servers:
            for sock in s.sockets:
                h, p = sock.getsockname()[:2]
                shown = f"[{h}]" if ":" in h else h
                click.echo(f"serving {shown_db} read-only on http://{shown}:{p}/", err=True)
        await task

    asyncio.run(go())
