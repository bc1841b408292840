"""The agent's TOML configuration: parsed once, checked completely, frozen.

``load_config`` reads the whole file and reports *every* problem it finds (each with its line)
in one :class:`~agent.errors.ConfigError`, so a person fixes the file in one pass instead of
one restart per typo. What the file names on disk (key file, TLS files, serial ports) is
checked separately by :mod:`agent.preflight`, because ``keygen`` must load a config whose key
file does not exist yet. Relative paths are taken relative to the config file's folder.

See docs/agent.md for the reference of every key.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from provenance.errors import MalformedError
from provenance.reading import check_device_id

from .errors import ConfigError, Problem
from .toml_lines import KeyPath, TomlLines

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_STATE_DIR",
    "AgentConfig",
    "BrokerConfig",
    "ClockMode",
    "ConfigDraft",
    "Located",
    "SensorConfig",
    "SpoolConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
    "read_config",
]

DEFAULT_CONFIG = Path("/etc/sensorledger/agent.toml")
DEFAULT_STATE_DIR = Path("/var/lib/sensor-agent")
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
#: Keys of a ``[[sensors]]`` table that the agent reads; the rest is the driver's settings.
SENSOR_AGENT_KEYS = frozenset({"driver", "name", "interval_s", "poll_interval_s", "enabled"})
_SENSOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Environment overrides for the two private-key paths. The systemd unit points them at the
#: owner-only copies systemd makes with LoadCredential=, while the config keeps naming the
#: files in /etc (which ``pubkey`` and ``check`` read when run by an administrator).
KEY_FILE_ENV = "SENSOR_AGENT_KEY_FILE"
TLS_KEY_FILE_ENV = "SENSOR_AGENT_TLS_KEY_FILE"

ClockMode = Literal["auto", "synced", "unsynced"]


class Located(Protocol):
    """Anything that can say where a key sits in a config file (for error messages)."""

    @property
    def path(self) -> Path: ...

    def line_of(self, path: KeyPath) -> int | None: ...


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS towards the broker; ``ca_file`` None means the system trust store."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


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
    lines: TomlLines | None = field(default=None, compare=False, repr=False)

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
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts the position into the message: "... (at line 3, column 7)".
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(str(path), [Problem("", f"malformed TOML: {message}", line)]) from None
    lines = TomlLines(text)
    return _read_agent(_Reader(doc, (), lines), path, lines)


class _Reader:
    """Typed, located access to one table; problems accumulate instead of raising."""

    def __init__(
        self, table: Mapping[str, Any], prefix: KeyPath, lines: TomlLines,
        problems: list[Problem] | None = None,
    ) -> None:
        self.table = table
        self.prefix = prefix
        self.lines = lines
        self.problems: list[Problem] = [] if problems is None else problems
        self.used: set[str] = set()

    def child(self, table: Mapping[str, Any], *keys: str | int) -> _Reader:
        return _Reader(table, (*self.prefix, *keys), self.lines, self.problems)

    def name(self, key: str | int | None = None) -> str:
        parts = [*self.prefix, *(() if key is None else (key,))]
        out = ""
        for part in parts:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    def problem(self, key: str | None, message: str) -> None:
        path = self.prefix if key is None else (*self.prefix, key)
        self.problems.append(Problem(self.name(key), message, self.lines.line_of(path)))

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.table.get(key)

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return default
        if not isinstance(value, str) or not value:
            self.problem(key, f"must be non-empty text, got {value!r}")
            return default
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ):
            self.problem(key, f"must be a number, got {value!r}")
            return default
        if not low <= value <= high:
            self.problem(key, f"must be between {low:g} and {high:g}, got {value!r}")
            return default
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be an integer, got {value!r}")
            return default
        if not low <= value <= high:
            self.problem(key, f"must be between {low} and {high}, got {value}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {value!r}")
            return default
        return value

    def path(self, key: str, base: Path, *, required: bool = False) -> Path | None:
        value = self.text(key, required=required)
        return None if value is None else (base / Path(value).expanduser())

    def table_at(self, key: str) -> Mapping[str, Any] | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problem(key, f"must be a table ([{self.name(key)}]), got {value!r}")
            return None
        return value

    def finish(self, known: frozenset[str] | None = None) -> None:
        """Report keys nobody read: a misspelt key must not be silently ignored."""
        allowed = self.used if known is None else self.used | known
        for key in self.table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                suffix = f"; did you mean {hint[0]!r}?" if hint else ""
                self.problem(key, f"unknown key{suffix}")


def _read_agent(r: _Reader, path: Path, lines: TomlLines) -> ConfigDraft:
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
    r.finish()
    config = None
    if device_id is not None and key_file is not None and broker is not None and not r.problems:
        config = AgentConfig(
            path=path, device_id=device_id, key_file=key_file, state_dir=state_dir,
            broker=broker, spool=spool, sensors=sensors, heartbeat_s=heartbeat_s, clock=clock,
            shutdown_timeout_s=shutdown_timeout_s, status_interval_s=status_interval_s,
            lines=lines,
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


def _read_clock(r: _Reader) -> ClockMode:
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
    r: _Reader, base: Path, device_id: str
) -> tuple[BrokerConfig | None, TlsConfig | None, Path | None]:
    url = r.text("url", required=True)
    scheme, host, port = "mqtt", "", 0
    if url is not None:
        parsed = _parse_url(r, url)
        if parsed is not None:
            scheme, host, port = parsed
    tls_table = r.table_at("tls")
    tls: TlsConfig | None = None
    if scheme == "mqtts":
        tls = _read_tls(r.child(tls_table or {}, "tls"), base)
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


def _parse_url(r: _Reader, url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        r.problem("url", f"{url!r} is not a valid broker URL: {exc}")
        return None
    if parts.scheme not in DEFAULT_PORTS:
        r.problem("url", f"{url!r} must start with mqtt:// or mqtts://")
        return None
    if not parts.hostname:
        r.problem("url", f"{url!r} names no host; expected mqtt://host:port")
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        r.problem("url", f"{url!r} must be just scheme://host:port, without a path or query")
        return None
    if parts.username or parts.password:
        r.problem("url", "put credentials in username / password_file, not in the URL")
        return None
    if port == 0:
        r.problem("url", f"port 0 in {url!r} is not a valid port (1..65535)")
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _read_tls(r: _Reader, base: Path) -> TlsConfig:
    ca_file = r.path("ca_file", base)
    cert_file = r.path("cert_file", base)
    key_file = _override(TLS_KEY_FILE_ENV, r.path("key_file", base))
    if (cert_file is None) != (key_file is None):
        r.problem("cert_file" if cert_file is None else "key_file",
                  "cert_file and key_file go together (the client certificate and its key)")
    r.finish()
    return TlsConfig(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


def _read_spool(r: _Reader, base: Path, state_dir: Path) -> SpoolConfig:
    path = r.path("path", base) or state_dir / "spool.sqlite"
    max_readings = r.integer("max_readings", 100_000, low=1, high=100_000_000)
    r.finish()
    return SpoolConfig(path=path, max_readings=max_readings)


def _read_sensors(r: _Reader) -> tuple[SensorConfig, ...]:
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


def _read_sensor(s: _Reader, index: int) -> SensorConfig | None:
    driver = s.text("driver", required=True)
    name = s.text("name", driver)
    if name is not None and not _SENSOR_NAME.fullmatch(name):
        s.problem("name", f"{name!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    if "interval_s" in s.table and "poll_interval_s" in s.table:
        s.problem("poll_interval_s", "give interval_s or poll_interval_s, not both")
    key = "poll_interval_s" if "poll_interval_s" in s.table else "interval_s"
    interval_s = s.number(key, 1.0, low=0, high=86_400)
    enabled = s.boolean("enabled", True)
    s.used |= SENSOR_AGENT_KEYS
    settings = {k: v for k, v in s.table.items() if k not in SENSOR_AGENT_KEYS}
    if driver is None or name is None:
        return None
    return SensorConfig(
        name=name, driver=driver, interval_s=interval_s,
        settings=MappingProxyType(settings), enabled=enabled, index=index,
        line=s.lines.line_of(s.prefix),
    )
