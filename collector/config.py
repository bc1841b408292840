"""Collector configuration: a TOML file, then command-line flags on top.

Every key has a default, so a config file is optional; unknown keys are refused (a typo must
not silently fall back to a default). See ``deploy/collector.toml.example`` for every key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from collector.errors import ConfigError
from provenance.wire import READING_FILTER

__all__ = [
    "BlockConfig",
    "BrokerAddress",
    "CollectorConfig",
    "IngestConfig",
    "LogConfig",
    "MqttConfig",
    "TlsConfig",
    "load_config",
    "parse_broker_url",
]

DEFAULT_TOPIC = READING_FILTER


@dataclass(frozen=True, slots=True)
class TlsConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # skip host name checks: for test brokers only


@dataclass(frozen=True, slots=True)
class MqttConfig:
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "sensorledger-collector"
    topic: str = DEFAULT_TOPIC
    # "3.1.1" (default) or "5". MQTT 5 lets the collector set its own in-flight window
    # (Receive Maximum) and session expiry, but paho spends ~10 µs more per message decoding
    # v5 properties; under 3.1.1 the broker's max_inflight_messages sets the window.
    protocol: str = "3.1.1"
    # MQTT 5 session expiry: how long the broker keeps our queue while we are down.
    session_expiry: int = 7 * 24 * 3600
    # Messages held between arrival and acknowledgement (MQTT 5: the Receive Maximum sent to
    # the broker; both protocols: the collector stops reading beyond it).
    receive_maximum: int = 4000
    keepalive: int = 30
    username: str | None = None
    password_file: str | None = None
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass(frozen=True, slots=True)
class BlockConfig:
    size: int = 1000
    age: float = 1.0  # seconds


@dataclass(frozen=True, slots=True)
class IngestConfig:
    max_message_bytes: int = 64 * 1024
    quarantine_keep_bytes: int = 4096
    max_clock_skew: float = 300.0  # seconds a device clock may run ahead of ours
    verify_workers: int = 0  # 0: one process per CPU core; 1: verify in the collector process
    verify_batch: int = 256
    commit_max: int = 4096
    registry_poll: float = 1.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = "json"  # "json" or "kv"
    level: str = "info"
    stats_interval: float = 10.0


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    database: str = "ledger.db"
    key_file: str = "collector-key.pem"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    blocks: BlockConfig = field(default_factory=BlockConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def validate(self) -> CollectorConfig:
        b, i, m, lg = self.blocks, self.ingest, self.mqtt, self.log
        _require(b.size >= 1, "blocks.size must be at least 1")
        _require(b.age > 0, "blocks.age must be a positive number of seconds")
        _require(i.max_message_bytes >= 256, "ingest.max_message_bytes must be at least 256")
        _require(i.quarantine_keep_bytes >= 0, "ingest.quarantine_keep_bytes must be >= 0")
        _require(i.max_clock_skew > 0, "ingest.max_clock_skew must be positive")
        _require(i.verify_workers >= 0, "ingest.verify_workers must be >= 0")
        _require(i.verify_batch >= 1, "ingest.verify_batch must be at least 1")
        _require(i.commit_max >= 1, "ingest.commit_max must be at least 1")
        _require(i.registry_poll > 0, "ingest.registry_poll must be positive")
        _require(m.protocol in ("5", "3.1.1"), "mqtt.protocol must be \"5\" or \"3.1.1\"")
        _require(1 <= m.receive_maximum <= 65535, "mqtt.receive_maximum must be 1..65535")
        _require(m.session_expiry >= 0, "mqtt.session_expiry must be >= 0")
        _require(5 <= m.keepalive <= 65535, "mqtt.keepalive must be 5..65535 seconds")
        _require("#" not in m.client_id and "+" not in m.client_id and m.client_id != "",
                 "mqtt.client_id must be a fixed, non-empty id (a persistent session needs it)")
        _require(lg.format in ("json", "kv"), "log.format must be \"json\" or \"kv\"")
        _require(lg.level in ("debug", "info", "warning", "error"),
                 "log.level must be debug, info, warning or error")
        _require(lg.stats_interval > 0, "log.stats_interval must be positive")
        parse_broker_url(m.url)
        return self

    @property
    def worker_count(self) -> int:
        """Verification processes to run; 1 means verify inside the collector process."""
        return self.ingest.verify_workers or (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (TLS, default port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"broker URL {url!r} has no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ConfigError(f"broker URL {url!r}: {exc}") from None
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def load_config(path: str | os.PathLike[str] | None,
                overrides: Mapping[str, Any] | None = None) -> CollectorConfig:
    """Read ``path`` (if given), apply dotted ``overrides`` (``"blocks.size": 500``), validate.

    Relative paths in a config file are taken relative to the file, so a config can sit next
    to its database and key.
    """
    config = CollectorConfig()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        config = _merge(config, data, prefix="", base=p.parent)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        config = _set_dotted(config, dotted.split("."), value)
    return config.validate()


# Relative paths in a config file are resolved against the file's folder.
_PATH_KEYS = frozenset({"database", "key_file", "mqtt.password_file", "mqtt.tls.ca_file",
                        "mqtt.tls.cert_file", "mqtt.tls.key_file"})


def _merge(obj: Any, data: Mapping[str, Any], *, prefix: str, base: Path) -> Any:
    kinds = {f.name: f.type for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in kinds:
            raise ConfigError(f"unknown config key {name!r}")
        current = getattr(obj, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {name!r} must be a table")
            changes[key] = _merge(current, value, prefix=f"{name}.", base=base)
            continue
        value = _coerce(name, value, str(kinds[key]))
        if name in _PATH_KEYS and isinstance(value, str) and not os.path.isabs(value):
            value = str(base / value)
        changes[key] = value
    return replace(obj, **changes)


def _set_dotted(obj: Any, path: list[str], value: Any) -> Any:
    head, rest = path[0], path[1:]
    kinds = {f.name: f.type for f in fields(obj)}
    if head not in kinds:
        raise ConfigError(f"unknown config key {'.'.join(path)!r}")
    if rest:
        return replace(obj, **{head: _set_dotted(getattr(obj, head), rest, value)})
    return replace(obj, **{head: _coerce(head, value, str(kinds[head]))})


def _coerce(name: str, value: Any, kind: str) -> Any:
    """Check ``value`` against the field's annotation (a string under postponed evaluation)."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"config key {name!r} must be true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {name!r} must be an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key {name!r} must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"config key {name!r} must be a string, got {value!r}")
    return value


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
