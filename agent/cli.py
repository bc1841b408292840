"""``sensor-agent``: the edge agent's command line.

Thin click commands over the library. Every AgentError becomes its own message on stderr and
its exit code: 0 ok, 1 runtime failure, 2 configuration or usage error (click's own usage
errors are 2 as well).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from provenance.configfile import KeyPath
from provenance.errors import ProvenanceError
from provenance.keyfile import save_private_key
from provenance.keys import PrivateKey
from provenance.listen import parse_listen

from .config import DEFAULT_CONFIG, AgentConfig, ConfigDraft, load_config, read_config
from .errors import EXIT_CONFIG, EXIT_RUNTIME, AgentError, ConfigError
from .logs import FORMATS, setup_logging
from .preflight import load_device_key, preflight
from .spool import read_report
from .status import read_status_file, render_status

__all__ = ["cli", "main"]

P = ParamSpec("P")
R = TypeVar("R")

_config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG, envvar="SENSOR_AGENT_CONFIG", show_default=True,
    help="Agent configuration file (TOML).",
)


def _errors_to_exit(func: Callable[P, R]) -> Callable[P, R]:
    """Print an AgentError's diagnostics (never a traceback) and exit with its code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(exc.diagnostics(), err=True)  # compiler style: path:line: key: problem
            sys.exit(exc.exit_code)
        except AgentError as exc:
            click.echo(f"sensor-agent: {exc.diagnostics()}", err=True)
            sys.exit(exc.exit_code)
        except ProvenanceError as exc:
            click.echo(f"sensor-agent: {exc.diagnostics()}", err=True)
            sys.exit(EXIT_CONFIG)
        except OSError as exc:  # e.g. keygen into a folder this user may not write
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(f"sensor-agent: cannot access{where}: {exc.strerror or exc}", err=True)
            sys.exit(EXIT_RUNTIME)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sensorledger", prog_name="sensor-agent",
                      message="%(prog)s %(version)s")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="Log verbosity of the agent's own events (logs go to stderr, i.e. the "
                   "journal under systemd); libraries log warnings only.")
@click.option("--log-format", default="text", show_default=True, type=click.Choice(FORMATS),
              help="One line per event: text with a UTC timestamp, or one JSON object.")
def cli(log_level: str, log_format: str) -> None:
    """Sign sensor readings, spool them durably and publish them over MQTT."""
    setup_logging(log_level, log_format)


def _key_path(config_path: Path, key: Path | None) -> tuple[Path, AgentConfig | None]:
    if key is not None:
        return key, None
    config = load_config(config_path)
    return config.key_file, config


@cli.command()
@_config_option
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the key here instead of the config's key_file.")
@_errors_to_exit
def keygen(config_path: Path, key: Path | None) -> None:
    """Create the device signing key (P-256), owner-only; never overwrites a key."""
    path, _ = _key_path(config_path, key)
    private = PrivateKey.generate()
    save_private_key(private, path)
    click.echo(f"wrote {path} (mode 0600)")
    click.echo(f"key id: {private.public.kid_hex}")
    click.echo("enrol it with the collector: sensor-agent pubkey | "
               "ledger-collector devices add DEVICE_ID -")


@cli.command()
@_config_option
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path),
              help="Read this key instead of the config's key_file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_errors_to_exit
def pubkey(config_path: Path, key: Path | None, as_json: bool) -> None:
    """Print the public key (PEM) and its key id, for `ledger-collector devices add`."""
    path, config = _key_path(config_path, key)
    private = load_device_key(path, config if config is not None else _Where(path))
    public = private.public
    if as_json:
        click.echo(json.dumps({
            "device_id": config.device_id if config else None,
            "kid": public.kid_hex, "pem": public.to_pem(),
        }, indent=2))
        return
    click.echo(public.to_pem(), nl=False)
    click.echo(f"key id: {public.kid_hex}")


@dataclass(frozen=True)
class _Where:
    """Stand-in for a config when a key file is given directly on the command line."""

    path: Path

    def line_of(self, _: KeyPath) -> int | None:
        return None


@cli.command()
@_config_option
@_errors_to_exit
def check(config_path: Path) -> None:
    """Check the config and everything it names, report every problem, start nothing."""
    draft = read_config(config_path)
    problems = [*draft.problems, *preflight(draft)]
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise ConfigError(str(config_path), problems)
    config = draft.config
    assert config is not None
    click.echo(_summary(config, draft))


def _summary(config: AgentConfig, draft: ConfigDraft) -> str:
    sensors = ", ".join(f"{s.name} ({s.driver}, every {s.interval_s:g} s"
                        + ("" if s.enabled else ", disabled") + ")" for s in draft.sensors)
    tls = ""
    if config.broker.tls is not None:
        tls = " with client certificate" if config.broker.tls.cert_file else " (TLS)"
    return "\n".join([
        f"{config.path}: OK",
        f"device   {config.device_id}, key {config.key_file}",
        f"broker   {config.broker.url}{tls}",
        f"spool    {config.spool.path} (at most {config.spool.max_readings} readings)",
        f"sensors  {sensors}",
    ])


@cli.command()
@_config_option
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Serve Prometheus /metrics here (config: metrics_listen; default: off).")
@_errors_to_exit
def run(config_path: Path, metrics_listen: str | None) -> None:
    """Run the agent (under systemd: Type=notify, watchdog, SIGTERM stops it cleanly)."""
    from .runtime import run_agent

    config = load_config(config_path)
    if metrics_listen is not None:
        try:
            parse_listen(metrics_listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics-listen") from None
        config = replace(config, metrics_listen=metrics_listen)
    code = asyncio.run(run_agent(config))
    sys.exit(code)


@cli.command("test")
@_config_option
@click.option("--once", is_flag=True,
              help="Poll each sensor once and exit (otherwise poll at each sensor's interval "
                   "until Ctrl-C).")
@_errors_to_exit
def test_sensors(config_path: Path, once: bool) -> None:
    """Poll the sensors and print decoded values and draft readings; publish nothing.

    Exit code 1 when a sensor gave no sample the wire format takes.
    """
    from .sensor_trial import trial

    config = load_config(config_path)
    sys.exit(trial(config, click.echo, once=once))


@cli.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_errors_to_exit
def status(config_path: Path, as_json: bool) -> None:
    """Show the spool and the last runtime snapshot, read from disk (agent may be stopped)."""
    config = load_config(config_path)
    report = read_report(config.spool.path)
    runtime = read_status_file(config.status_file)
    if as_json:
        click.echo(json.dumps({"spool": report.as_dict(), "runtime": runtime}, indent=2))
    else:
        click.echo(render_status(report, runtime))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - Ctrl-C outside `run`
        sys.exit(EXIT_RUNTIME)


if __name__ == "__main__":
    main()


@cli.group("data-key")
def data_key() -> None:
    """Private readings: the subjects' data keys (see docs/privacy.md)."""


@data_key.command("rotate")
@_config_option
@click.option("--subject", required=True, help="The subject whose data key to replace.")
@_errors_to_exit
def data_key_rotate(config_path: Path, subject: str) -> None:
    """Replace a subject's data key: new readings are sealed under the new key and granted to
    the readers configured now; older readings stay readable with the old grants only."""
    from .data_keys import DataKeys

    config = load_config(config_path)
    kid = DataKeys(config.data_keys_file).rotate(subject)
    click.echo(f"subject {subject}: new data key {kid.hex()} in {config.data_keys_file}")
    click.echo("the running agent uses it from its next private reading")


@cli.command("reader-keygen")
@click.argument("key", type=click.Path(dir_okay=False, path_type=Path))
@_errors_to_exit
def reader_keygen(key: Path) -> None:
    """Create a reader's key pair: KEY (private, owner-only) and KEY.pub (for [private]
    readers in the agent config)."""
    private = PrivateKey.generate()
    save_private_key(private, key)
    pub = key.with_name(key.name + ".pub")
    pub.write_text(private.public.to_pem(), encoding="ascii")
    click.echo(f"wrote {key} (mode 0600) and {pub}")
    click.echo(f"reader key id: {private.public.kid_hex}")
