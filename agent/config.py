"""The agent's TOML configuration: parsed once, checked completely, frozen.

``load_config`` reads the whole file and reports *every* problem it finds (each with its line)
in one :class:`~agent.errors.ConfigError`, so a person fixes the file in one pass instead of
one restart per typo. What the file names on disk (key file, TLS files, serial ports) is
checked separately by :mod:`agent.preflight`, because ``keygen`` must load a config whose key
file does not exist yet. Relative paths are taken relative to the config file's folder.

See docs/agent.md for the reference of every key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from provenance.brokerconfig import DEFAULT_PORTS, TlsConfig, read_broker_url, read_tls
from provenance.configfile import (
    ConfigFileError,
    KeyPath,
    Located,
    Problem,
    Source,
    Table,
    parse_toml,
)
from provenance.errors import MalformedError
from provenance.listen import parse_listen
from provenance.private_message import check_subject
from provenance.reading import check_device_id
from provenance.toml_lines import TomlLines

from .errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_PORTS",
    "DEFAULT_STATE_DIR",
    "PRIVATE_BY_DEFAULT",
    "AgentConfig",
    "BrokerConfig",
    "ClockMode",
    "ConfigDraft",
    "Located",
    "PrivacyConfig",
    "SensorConfig",
    "SpoolConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
    "read_config",
]

DEFAULT_CONFIG = Path("/etc/sensorledger/agent.toml")
DEFAULT_STATE_DIR = Path("/var/lib/sensor-agent")
#: Keys of a ``[[sensors]]`` table that the agent reads; the rest is the driver's settings.
SENSOR_AGENT_KEYS = frozenset({"driver", "name", "interval_s", "poll_interval_s", "enabled",
                               "private", "subject"})
#: Drivers whose readings are private unless a sensor says ``private = false``: vital signs.
PRIVATE_BY_DEFAULT = frozenset({"contec-oximeter"})
_SENSOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Environment overrides for the two private-key paths. The systemd unit points them at the
#: owner-only copies systemd makes with LoadCredential=, while the config keeps naming the
#: files in /etc (which ``pubkey`` and ``check`` read when run by an administrator).
KEY_FILE_ENV = "SENSOR_AGENT_KEY_FILE"
TLS_KEY_FILE_ENV = "SENSOR_AGENT_TLS_KEY_FILE"

ClockMode = Literal["auto", "synced", "unsynced"]


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    url: str
    host: str
    port: int
    tls: TlsConfig | None
    client_id: str
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    in_flight: int = 100


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    path: Path
    max_readings: int = 100_000


@dataclass(frozen=True, slots=True)
class SensorConfig:
    name: str
    driver: str
    interval_s: float
    settings: Mapping[str, Any]
    enabled: bool = True
    index: int = 0  # position among the [[sensors]] tables, to locate problems
    line: int | None = None
    private: bool = False
    subject: str | None = None  # whose data a private sensor's readings are (default device id)


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    """``[private]``: who may read private readings, and where the data keys are kept."""

    readers: tuple[Path, ...] = ()
    keys_file: Path | None = None  # default: <state_dir>/data-keys.json


@dataclass(frozen=True, slots=True)
class AgentConfig:
    path: Path
    device_id: str
    key_file: Path
    state_dir: Path
    broker: BrokerConfig
    spool: SpoolConfig
    sensors: tuple[SensorConfig, ...]
    heartbeat_s: float = 30.0
    status_interval_s: float = 5.0
    clock: ClockMode = "auto"
    shutdown_timeout_s: float = 5.0
    #: HOST:PORT serving Prometheus /metrics; None (the default): no listener.
    metrics_listen: str | None = None
    lines: TomlLines | None = field(default=None, compare=False, repr=False)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    @property
    def data_keys_file(self) -> Path:
        """The subjects' data keys (owner-only), ``[private] keys_file`` or in the state dir."""
        return self.privacy.keys_file or self.state_dir / "data-keys.json"

    @property
    def status_file(self) -> Path:
        """The runtime snapshot the running agent writes for ``sensor-agent status``."""
        return self.state_dir / "status.json"

    def line_of(self, path: KeyPath) -> int | None:
        return self.lines.line_of(path) if self.lines is not None else None


@dataclass(frozen=True, slots=True)
class ConfigDraft:
    """What could be read from a config file, problems included.

    ``check`` uses the parts that did parse (key file, TLS files, sensors) to go on checking
    files and drivers, so one run reports every problem in the file.
    """

    path: Path
    problems: tuple[Problem, ...]
    config: AgentConfig | None  # set exactly when there are no problems
    key_file: Path | None
    tls: TlsConfig | None
    password_file: Path | None
    sensors: tuple[SensorConfig, ...]
    lines: TomlLines = field(repr=False)

    def line_of(self, path: KeyPath) -> int | None:
        return self.lines.line_of(path)


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read and check the config file at ``path``; raise ConfigError listing every problem."""
    draft = read_config(path)
    if draft.config is None:
        raise ConfigError(str(draft.path), list(draft.problems))
    return draft.config


def read_config(path: str | os.PathLike[str]) -> ConfigDraft:
    """Read the config file; ConfigError only when it is unreadable or not TOML at all."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), [Problem("", "config file does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [Problem("", f"cannot read config file: {exc}")]) from None
    return parse_config(text, p)


def parse_config(text: str, path: Path) -> ConfigDraft:
    try:
        doc, lines = parse_toml(text, path)
    except ConfigFileError as exc:
        raise ConfigError(str(path), exc.problems) from None
    return _read_agent(Table(doc, Source(lines)), path, lines)


def _read_agent(r: Table, path: Path, lines: TomlLines) -> ConfigDraft:
    base = path.parent
    device_id = r.text("device_id", required=True)
    if device_id is not None:
        try:
            check_device_id(device_id)
        except MalformedError as exc:
            r.problem("device_id", str(exc))
            device_id = None
    key_file = _override(KEY_FILE_ENV, r.path("key_file", base, required=True))
    env_state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    state_dir = r.path("state_dir", base) or (Path(env_state) if env_state else DEFAULT_STATE_DIR)
    heartbeat_s = r.number("heartbeat_s", 30.0, low=0.1, high=86_400)
    status_interval_s = r.number("status_interval_s", 5.0, low=0.1, high=3_600)
    shutdown_timeout_s = r.number("shutdown_timeout_s", 5.0, low=0, high=600)
    clock = _read_clock(r)
    metrics_listen = r.text("metrics_listen")
    if metrics_listen is not None:
        try:
            parse_listen(metrics_listen)
        except ValueError as exc:
            r.problem("metrics_listen", str(exc))
            metrics_listen = None

    broker_table = r.table_at("broker")
    broker, tls, password_file = None, None, None
    if broker_table is None:
        r.problem("broker", "is required: a [broker] table with at least url = \"mqtt://host:port\"")
    else:
        broker, tls, password_file = _read_broker(
            r.child(broker_table, "broker"), base, device_id or "agent")

    spool_table = r.table_at("spool")
    spool = _read_spool(r.child(spool_table or {}, "spool"), base, state_dir)

    sensors = _read_sensors(r)
    privacy = _read_privacy(r.child(r.table_at("private") or {}, "private"), base)
    r.finish()
    config = None
    if device_id is not None and key_file is not None and broker is not None and not r.problems:
        config = AgentConfig(
            path=path, device_id=device_id, key_file=key_file, state_dir=state_dir,
            broker=broker, spool=spool, sensors=sensors, heartbeat_s=heartbeat_s, clock=clock,
            shutdown_timeout_s=shutdown_timeout_s, status_interval_s=status_interval_s,
            metrics_listen=metrics_listen, lines=lines, privacy=privacy,
        )
    return ConfigDraft(
        path=path, problems=tuple(sorted(r.problems, key=lambda q: q.line or 0)),
        config=config, key_file=key_file, tls=tls, password_file=password_file,
        sensors=sensors, lines=lines,
    )


def _override(variable: str, configured: Path | None) -> Path | None:
    """The path in ``variable`` when set (and the config names a file there at all)."""
    value = os.environ.get(variable)
    return Path(value) if value and configured is not None else configured


def _read_clock(r: Table) -> ClockMode:
    value = r.get("clock_synced")
    if value is None or value == "auto":
        return "auto"
    if value is True:
        return "synced"
    if value is False:
        return "unsynced"
    r.problem("clock_synced", f'must be "auto", true or false, got {value!r}')
    return "auto"


def _read_broker(
    r: Table, base: Path, device_id: str
) -> tuple[BrokerConfig | None, TlsConfig | None, Path | None]:
    url, parsed = read_broker_url(r, credentials=False)
    scheme, host, port = ("mqtt", "", 0) if parsed is None else (
        parsed.scheme, parsed.host, parsed.port)
    tls_table = r.table_at("tls")
    tls: TlsConfig | None = None
    if scheme == "mqtts":
        tls = read_tls(r.child(tls_table or {}, "tls"), base)
        tls = replace(tls, key_file=_override(TLS_KEY_FILE_ENV, tls.key_file))
    elif tls_table is not None:
        r.problem("tls", "is set but the url uses mqtt://; use mqtts://host:port for TLS")
    username = r.text("username")
    password = r.text("password")
    password_file = r.path("password_file", base)
    if password is not None and password_file is not None:
        r.problem("password_file", "give either password or password_file, not both")
    if (password is not None or password_file is not None) and username is None:
        r.problem("username", "is required when a password is set")
    client_id = r.text("client_id", f"sensor-agent-{device_id}")
    keepalive_s = r.integer("keepalive_s", 30, low=5, high=65_535)
    connect_timeout_s = r.number("connect_timeout_s", 10.0, low=0.1, high=300)
    reconnect_min_s = r.number("reconnect_min_s", 0.5, low=0.01, high=3600)
    reconnect_max_s = r.number("reconnect_max_s", 30.0, low=0.01, high=3600)
    if reconnect_max_s < reconnect_min_s:
        r.problem("reconnect_max_s", f"must be at least reconnect_min_s ({reconnect_min_s:g})")
    in_flight = r.integer("in_flight", 100, low=1, high=65_535)
    r.finish()
    if not host or client_id is None:
        return None, tls, password_file
    return BrokerConfig(
        url=url or "", host=host, port=port, tls=tls, client_id=client_id, username=username,
        password=password, password_file=password_file, keepalive_s=keepalive_s,
        connect_timeout_s=connect_timeout_s, reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s, in_flight=in_flight,
    ), tls, password_file


def _read_privacy(r: Table, base: Path) -> PrivacyConfig:
    raw = r.get("readers", [])
    readers: list[Path] = []
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        r.problem("readers", "must be a list of reader public key files (PEM)")
    else:
        readers = [(base / x) if not Path(x).is_absolute() else Path(x) for x in raw]
    keys_file = r.path("keys_file", base)
    r.finish()
    return PrivacyConfig(readers=tuple(readers), keys_file=keys_file)


def _read_spool(r: Table, base: Path, state_dir: Path) -> SpoolConfig:
    path = r.path("path", base) or state_dir / "spool.sqlite"
    max_readings = r.integer("max_readings", 100_000, low=1, high=100_000_000)
    r.finish()
    return SpoolConfig(path=path, max_readings=max_readings)


def _read_sensors(r: Table) -> tuple[SensorConfig, ...]:
    raw = r.get("sensors")
    if raw is None:
        r.problem("sensors", "at least one [[sensors]] table is required")
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        r.problem("sensors", "must be an array of tables ([[sensors]])")
        return ()
    out: list[SensorConfig] = []
    names: set[str] = set()
    for index, table in enumerate(raw):
        s = r.child(table, "sensors", index)
        sensor = _read_sensor(s, index)
        if sensor is None:
            continue
        if sensor.name in names:
            s.problem("name", f"sensor name {sensor.name!r} is used twice; names must be unique")
        names.add(sensor.name)
        out.append(sensor)
    return tuple(out)


def _read_sensor(s: Table, index: int) -> SensorConfig | None:
    driver = s.text("driver", required=True)
    name = s.text("name", driver)
    if name is not None and not _SENSOR_NAME.fullmatch(name):
        s.problem("name", f"{name!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    if "interval_s" in s.table and "poll_interval_s" in s.table:
        s.problem("poll_interval_s", "give interval_s or poll_interval_s, not both")
    key = "poll_interval_s" if "poll_interval_s" in s.table else "interval_s"
    interval_s = s.number(key, 1.0, low=0, high=86_400)
    enabled = s.boolean("enabled", True)
    private = s.boolean("private", driver in PRIVATE_BY_DEFAULT)
    subject = s.text("subject")
    if subject is not None:
        try:
            check_subject(subject)
        except MalformedError as exc:
            s.problem("subject", str(exc))
    if subject is not None and not private:
        s.problem("subject", "is for private sensors only (set private = true)")
    s.used.update(SENSOR_AGENT_KEYS)
    settings = {k: v for k, v in s.table.items() if k not in SENSOR_AGENT_KEYS}
    if driver is None or name is None:
        return None
    return SensorConfig(
        name=name, driver=driver, interval_s=interval_s,
        settings=MappingProxyType(settings), enabled=enabled, index=index,
        line=s.line(), private=private, subject=subject,
    )
