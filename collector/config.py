"""Collector configuration: a TOML file, then command-line flags on top.

Read by the project's one config reader (:mod:`provenance.configfile`), like the agent's: every
problem in the file is reported at once, each at its ``file:line``, and an unknown key gets a
"did you mean". Every key has a default, so a config file is optional; without ``--config`` the
collector reads ``/etc/sensorledger/collector.toml`` when it exists (the folder can be moved
with ``SENSORLEDGER_CONFIG_DIR``). Flags are checked like keys of the file. See
``deploy/collector.toml.example`` for every key.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.errors import ConfigError
from provenance.brokerconfig import (
    BrokerUrl,
    BrokerUrlError,
    TlsConfig,
    read_broker_url,
    read_tls,
)
from provenance.brokerconfig import parse_broker_url as _parse_url
from provenance.configfile import (
    ConfigFileError,
    KeyPath,
    Problem,
    Source,
    Table,
    describe,
    parse_toml,
)
from provenance.errors import ProvenanceError
from provenance.keyfile import load_private_key
from provenance.listen import parse_listen
from provenance.tlsfiles import tls_context
from provenance.wire import READING_FILTER

__all__ = [
    "CONFIG_DIR_ENV",
    "BlockConfig",
    "BrokerAddress",
    "CheckReport",
    "CollectorConfig",
    "IngestConfig",
    "LogConfig",
    "MetricsConfig",
    "MqttConfig",
    "TlsConfig",
    "WitnessEndpoint",
    "WitnessingConfig",
    "broker_tls_context",
    "check_config",
    "default_config_path",
    "load_config",
    "parse_broker_url",
    "read_config",
]

DEFAULT_TOPIC = READING_FILTER
DEFAULT_CONFIG_DIR = Path("/etc/sensorledger")
#: Moves the folder of the default config file (tests, packaging into another prefix).
CONFIG_DIR_ENV = "SENSORLEDGER_CONFIG_DIR"
#: A ``database`` that starts so is a PostgreSQL URL, not a file path.
_PG_SCHEMES = ("postgresql://", "postgres://")
#: Where a value given by a flag comes from, in a problem's message.
_FLAG = "given on the command line"

#: The broker URL as the collector uses it (credentials in the URL are allowed).
BrokerAddress = BrokerUrl


def default_config_path() -> Path:
    """``/etc/sensorledger/collector.toml``, or the same name in ``$SENSORLEDGER_CONFIG_DIR``."""
    return Path(os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR) / "collector.toml"


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
    # Several collectors on one PostgreSQL ledger: the MQTT 5 shared subscription group
    # (``$share/<group>/<topic>``); the broker gives each reading to one member.
    share_group: str | None = None
    username: str | None = None
    password_file: str | None = None
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Signed receipts to the agents on sensorledger/v1/<device>/receipt after every sealed
    # block and for refusals (docs/wire-format.md, "Receipts").
    receipts: bool = True


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
class WitnessEndpoint:
    """A witness the log submits its checkpoints to: its submission prefix and verifier key."""

    url: str
    vkey: str


@dataclass(frozen=True, slots=True)
class WitnessingConfig:
    witnesses: tuple[WitnessEndpoint, ...] = ()
    quorum: int = 0  # cosignatures a checkpoint needs to count as cosigned
    timeout: float = 10.0  # seconds for one add-checkpoint request
    backoff_max: float = 30.0  # longest wait between retries to a witness that is down
    # seconds between looks at the log for a checkpoint not yet sent (one another collector
    # sealed; this collector's own blocks go at once)
    poll: float = 1.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    # HOST:PORT serving /metrics and /health; None: no metrics listener (the default).
    listen: str | None = None


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    database: str = "ledger.db"
    key_file: str = "collector-key.pem"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    blocks: BlockConfig = field(default_factory=BlockConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    log: LogConfig = field(default_factory=LogConfig)
    witnessing: WitnessingConfig = field(default_factory=WitnessingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    #: The file the values came from (None: defaults and flags only), and its key lines.
    path: Path | None = field(default=None, compare=False)
    source: Source = field(default_factory=Source, compare=False, repr=False)

    @property
    def worker_count(self) -> int:
        """Verification processes to run; 1 means verify inside the collector process."""
        return self.ingest.verify_workers or (os.cpu_count() or 1)

    @property
    def where(self) -> str:
        """How problems name this configuration: its file, or the command line."""
        return str(self.path) if self.path is not None else "command line"

    def line_of(self, path: KeyPath) -> int | None:
        return self.source.line_of(path)


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (TLS, default port 8883)."""
    try:
        return _parse_url(url)
    except BrokerUrlError as exc:
        raise ConfigError(f"broker URL {exc}") from None


@dataclass(frozen=True, slots=True)
class _Where:
    """A configuration as :func:`~provenance.tlsfiles.tls_context` locates problems in it."""

    path: Path
    source: Source

    def line_of(self, key: KeyPath) -> int | None:
        return self.source.line_of(key)


def broker_tls_context(tls: TlsConfig, config: CollectorConfig | None = None) -> ssl.SSLContext:
    """The SSL context for the broker; ConfigError naming each TLS file that is unusable
    (with its line in ``config``'s file when given)."""
    where = _Where(Path(config.where) if config is not None else Path("TLS settings"),
                   config.source if config is not None else Source())
    try:
        return tls_context(tls, where, ("mqtt", "tls"))
    except ConfigFileError as exc:
        if config is not None:
            raise ConfigError(describe(exc.path, exc.problems), problems=exc.problems) from None
        detail = "; ".join(f"{p.key}: {p.message}" for p in exc.problems)
        raise ConfigError(f"TLS settings are not usable: {detail}",
                          problems=exc.problems) from None


def load_config(path: str | os.PathLike[str] | None,
                overrides: Mapping[str, Any] | None = None) -> CollectorConfig:
    """Read ``path`` (if given, else the default file if it exists), apply dotted
    ``overrides`` (``"blocks.size": 500``, from flags); ConfigError listing every problem.

    Relative paths in a config file are taken relative to the file, so a config can sit next
    to its database and key.
    """
    config, problems, where = read_config(path, overrides)
    if config is None or problems:
        raise ConfigError(describe(where, problems), problems=problems)
    return config


def read_config(
    path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None,
) -> tuple[CollectorConfig | None, list[Problem], str]:
    """The configuration (as far as it could be read: wrong values left at their defaults),
    every problem with it, and how to name where it came from."""
    file: Path | None = Path(path) if path is not None else default_config_path()
    if path is None and file is not None and not file.exists():
        file = None  # no config file at all: defaults and flags
    text = ""
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, [Problem("", f"config file {file} does not exist")], str(file)
        except (OSError, UnicodeDecodeError) as exc:
            return None, [Problem("", f"cannot read config file {file}: {exc}")], str(file)
    config, problems = parse_config(text, file, overrides)
    return config, problems, str(file) if file is not None else "command line"


def parse_config(
    text: str, path: Path | None, overrides: Mapping[str, Any] | None = None,
) -> tuple[CollectorConfig | None, list[Problem]]:
    """Pure: the configuration in ``text`` with ``overrides`` applied, and every problem
    (None for the configuration when the text is not TOML)."""
    try:
        doc, lines = parse_toml(text, path or "command line")
    except ConfigFileError as exc:
        return None, exc.problems
    elsewhere: dict[KeyPath, str] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        keys = dotted.split(".")
        table = doc
        for key in keys[:-1]:
            table = table.setdefault(key, {}) if isinstance(table.get(key, {}), dict) else {}
        table[keys[-1]] = value
        elsewhere[tuple(keys)] = _FLAG
    source = Source(lines, elsewhere=elsewhere)
    r = Table(doc, source)
    config = _read(r, path.parent if path is not None else Path(), path, source)
    return config, sorted(r.problems, key=lambda q: q.line or 0)


def _positive(r: Table, key: str, default: float, what: str = "number") -> float:
    value = r.number(key, default, low=0)
    if value == 0:
        r.problem(key, f"must be a positive {what}")
        return default
    return value


def _read(r: Table, base: Path, path: Path | None, source: Source) -> CollectorConfig:
    raw_database = r.get("database")
    database: Path | str | None
    if isinstance(raw_database, str) and raw_database.startswith(_PG_SCHEMES):
        database = r.text("database")  # a PostgreSQL URL: not a path
    else:
        database = r.path("database", base)
    if database is None:
        looked = "" if path is not None else (
            f" (no config file: {default_config_path()} does not exist)")
        r.problem("database", "is required: the ledger database file (or postgresql:// URL); "
                              f"give `database` in the config file or --db PATH{looked}")
    key_file = r.path("key_file", base)
    mqtt = _read_mqtt(r.child(r.table_at("mqtt") or {}, "mqtt"), base)
    b = r.child(r.table_at("blocks") or {}, "blocks")
    blocks = BlockConfig(size=b.integer("size", 1000, low=1),
                         age=_positive(b, "age", 1.0, "number of seconds"))
    b.finish()
    i = r.child(r.table_at("ingest") or {}, "ingest")
    ingest = IngestConfig(
        max_message_bytes=i.integer("max_message_bytes", 64 * 1024, low=256),
        quarantine_keep_bytes=i.integer("quarantine_keep_bytes", 4096, low=0),
        max_clock_skew=_positive(i, "max_clock_skew", 300.0),
        verify_workers=i.integer("verify_workers", 0, low=0),
        verify_batch=i.integer("verify_batch", 256, low=1),
        commit_max=i.integer("commit_max", 4096, low=1),
        registry_poll=_positive(i, "registry_poll", 1.0),
    )
    i.finish()
    lg = r.child(r.table_at("log") or {}, "log")
    log = LogConfig(
        format=lg.choice("format", ("json", "kv"), "json"),
        level=lg.choice("level", ("debug", "info", "warning", "error"), "info"),
        stats_interval=_positive(lg, "stats_interval", 10.0),
    )
    lg.finish()
    witnessing = _read_witnessing(r.child(r.table_at("witnessing") or {}, "witnessing"))
    mt = r.child(r.table_at("metrics") or {}, "metrics")
    listen = mt.text("listen")
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            mt.problem("listen", str(exc))
            listen = None
    mt.finish()
    r.finish()
    return CollectorConfig(
        database=str(database) if database is not None else "ledger.db",
        key_file=str(key_file) if key_file is not None else "collector-key.pem",
        mqtt=mqtt, blocks=blocks, ingest=ingest, log=log, witnessing=witnessing,
        metrics=MetricsConfig(listen), path=path, source=source,
    )


def _read_witnessing(w: Table) -> WitnessingConfig:
    """``[witnessing]`` quorum, timeout, backoff_max, poll and ``[[witnessing.witness]]`` url,
    vkey."""
    from provenance.cosignature import CosignatureVerifier, parse_any_verifier_key

    entries = w.get("witness", [])
    if not isinstance(entries, list):
        w.problem("witness", "must be an array of tables: [[witnessing.witness]]")
        entries = []
    witnesses: list[WitnessEndpoint] = []
    for n, entry in enumerate(entries):
        e = w.child(entry if isinstance(entry, dict) else {}, "witness", n)
        url = e.text("url", required=True) or ""
        if url and not url.startswith(("http://", "https://")):
            e.problem("url", f"must be an http:// or https:// submission prefix, got {url!r}")
        vkey = e.text("vkey", required=True) or ""
        if vkey:
            try:
                if not isinstance(parse_any_verifier_key(vkey), CosignatureVerifier):
                    e.problem("vkey", "must be a witness's cosignature/v1 key (type 0x04), as "
                                      "`ledger-witness init` prints it")
            except ProvenanceError as exc:
                e.problem("vkey", exc.diagnostics())
        if any(x.vkey == vkey for x in witnesses):
            e.problem("vkey", "the same witness is listed twice")
        witnesses.append(WitnessEndpoint(url.rstrip("/"), vkey))
        e.finish()
    quorum = w.integer("quorum", min(len(witnesses), 1), low=0)
    if quorum > len(witnesses):
        w.problem("quorum", f"is {quorum}, but only {len(witnesses)} witness(es) are listed")
    config = WitnessingConfig(tuple(witnesses), quorum,
                              timeout=_positive(w, "timeout", 10.0, "number of seconds"),
                              backoff_max=_positive(w, "backoff_max", 30.0,
                                                    "number of seconds"),
                              poll=_positive(w, "poll", 1.0, "number of seconds"))
    w.finish()
    return config


def _read_mqtt(m: Table, base: Path) -> MqttConfig:
    url, _ = read_broker_url(m, default="mqtt://127.0.0.1:1883")
    client_id = m.text("client_id", "sensorledger-collector") or ""
    if "#" in client_id or "+" in client_id:
        m.problem("client_id", "must be a fixed, non-empty id (a persistent session needs it)")
    share_group = m.text("share_group")
    if share_group is not None and (not share_group or any(c in share_group for c in "/+#")):
        m.problem("share_group", "must be a non-empty name without '/', '+' or '#'")
        share_group = None
    protocol = m.get("protocol", "5" if share_group else "3.1.1")
    if protocol not in ("5", "3.1.1"):
        m.problem("protocol", f'must be "5" or "3.1.1", got {protocol!r}')
        protocol = "3.1.1"
    password_file = m.path("password_file", base)
    config = MqttConfig(
        url=url or "mqtt://127.0.0.1:1883",
        client_id=client_id,
        topic=m.text("topic", DEFAULT_TOPIC) or DEFAULT_TOPIC,
        protocol=protocol,
        session_expiry=m.integer("session_expiry", 7 * 24 * 3600, low=0),
        receive_maximum=m.integer("receive_maximum", 4000, low=1, high=65535),
        keepalive=m.integer("keepalive", 30, low=5, high=65535),
        share_group=share_group,
        receipts=m.boolean("receipts", True),
        username=m.text("username"),
        password_file=str(password_file) if password_file is not None else None,
        tls=read_tls(m.child(m.table_at("tls") or {}, "tls"), base, insecure=True),
    )
    m.finish()
    return config


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``ledger-collector check`` found: every problem, or a summary of a good config."""

    where: str
    problems: list[Problem]
    summary: list[str]


def check_config(path: str | os.PathLike[str] | None) -> CheckReport:
    """Read the config file (``path``, else the default one) and check what it names: the
    collector key (present, owner-only, a key), the ledger database, the TLS files and the
    password file. Every problem is reported, each at its line."""
    file = Path(path) if path is not None else default_config_path()
    if not file.exists():
        hint = "" if path is not None else (
            f"; pass -c FILE, or write it (${CONFIG_DIR_ENV} moves its folder)")
        return CheckReport(str(file), [Problem("", f"config file does not exist{hint}")], [])
    config, problems, where = read_config(file)
    if config is None:
        return CheckReport(where, problems, [])
    problems = sorted([*problems, *_file_problems(config, {p.key for p in problems})],
                      key=lambda p: p.line or 0)
    if problems:
        return CheckReport(where, problems, [])
    tls = config.mqtt.tls
    secured = " with client certificate" if tls.cert_file else (
        " (TLS)" if parse_broker_url(config.mqtt.url).tls or tls.configured else "")
    return CheckReport(where, [], [
        f"{where}: OK",
        f"ledger   {config.database}",
        f"key      {config.key_file}",
        f"broker   {config.mqtt.url}{secured}, client id {config.mqtt.client_id}",
        f"blocks   sealed at {config.blocks.size} readings or {config.blocks.age:g} s",
    ])


def _file_problems(config: CollectorConfig, wrong: set[str]) -> list[Problem]:
    """Problems with the files the config names, except those whose key is ``wrong``."""
    problems: list[Problem] = []

    def problem(key: KeyPath, message: str) -> None:
        problems.append(Problem(".".join(map(str, key)), message, config.line_of(key)))

    try:
        if "key_file" not in wrong:
            load_private_key(config.key_file)
    except ProvenanceError as exc:
        message = exc.diagnostics()
        if config.key_file not in message:
            message = f"{config.key_file}: {message}"
        if not Path(config.key_file).exists():
            message += "; create it with `ledger-collector init -c FILE`"
        problem(("key_file",), message)
    except OSError as exc:
        problem(("key_file",), f"cannot read {config.key_file}: {exc.strerror or exc}")
    if ("database" not in wrong and not config.database.startswith(_PG_SCHEMES)
            and not Path(config.database).exists()):
        problem(("database",), f"{config.database} does not exist; create it with "
                               "`ledger-collector init -c FILE`")
    tls = config.mqtt.tls
    tls_wrong = any(key.startswith("mqtt.tls") or key == "mqtt.url" for key in wrong)
    if not tls_wrong and (tls.configured or parse_broker_url(config.mqtt.url).tls):
        try:
            broker_tls_context(tls, config)
        except ConfigError as exc:
            problems += exc.problems
    if config.mqtt.password_file is not None and "mqtt.password_file" not in wrong:
        try:
            Path(config.mqtt.password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problem(("mqtt", "password_file"),
                    f"cannot read {config.mqtt.password_file}: {getattr(exc, 'strerror', exc)}")
    return problems
