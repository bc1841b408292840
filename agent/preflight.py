"""Checks of what a config names on disk and in the driver registry.

Separate from :mod:`agent.config` because these touch the filesystem and the drivers: the
key file (present and owner-only), the TLS files (loadable, key matching certificate), the
password file, and every sensor's driver settings (built once through the registry and
closed). ``sensor-agent check`` reports them all; ``sensor-agent run`` refuses to start on
any of them.
"""

from __future__ import annotations

import re
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

from hardware.base import Driver
from hardware.errors import HardwareConfigError
from provenance.configfile import ConfigFileError, KeyPath
from provenance.errors import ProvenanceError
from provenance.keyfile import load_private_key
from provenance.keys import PrivateKey
from provenance.tlsfiles import tls_context as load_tls_context

from .config import AgentConfig, ConfigDraft, Located, SensorConfig, TlsConfig
from .errors import ConfigError, Problem

__all__ = [
    "build_driver",
    "check_drivers",
    "check_ports",
    "check_privacy",
    "check_tls_identity",
    "driver_problems",
    "load_device_key",
    "preflight",
    "read_password",
    "sensor_problem",
    "tls_context",
]


def preflight(draft: ConfigDraft) -> list[Problem]:
    """Every problem with the files and drivers the config names (empty when all is well)."""
    problems: list[Problem] = []
    checks: list[Callable[[], object]] = []
    if draft.key_file is not None:
        key_file = draft.key_file
        checks.append(lambda: load_device_key(key_file, draft))
    if draft.tls is not None:
        tls = draft.tls
        checks.append(lambda: tls_context(tls, draft))
        device_id = draft.config.device_id if draft.config is not None else None
        problems += check_tls_identity(tls, device_id, draft)
    if draft.password_file is not None:
        password_file = draft.password_file
        checks.append(lambda: _read_password_file(password_file, draft))
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            problems += exc.problems
    problems += check_drivers(draft.sensors, draft)
    problems += check_ports(draft.sensors, draft)
    if draft.config is not None:
        problems += check_privacy(draft.config)
    return problems


def check_privacy(config: AgentConfig) -> list[Problem]:
    """Reader keys load; the data-key file, when present, is owner-only and readable."""
    from .data_keys import DataKeyError, DataKeys, load_readers

    problems: list[Problem] = []
    try:
        load_readers(config.privacy.readers)
    except DataKeyError as exc:
        problems.append(Problem("private.readers", str(exc),
                                config.line_of(("private", "readers"))))
    try:
        DataKeys(config.data_keys_file).subjects()
    except DataKeyError as exc:
        problems.append(Problem("private.keys_file", str(exc),
                                config.line_of(("private", "keys_file"))))
    return problems


def check_tls_identity(tls: TlsConfig, device_id: str | None, where: Located) -> list[Problem]:
    """The TLS client key is owner-only, and the client certificate names this device.

    A broker that takes the certificate's CN as the user name (Mosquitto's
    ``use_identity_as_username``) applies the ACL of the CN: a certificate made for another
    device either fails to publish or, worse, publishes under that device's rights. Only
    ``check`` asks, when the config parsed (the device id is known).
    """
    # Imported here: only `check` reads certificates, and the running agent stays smaller.
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    problems: list[Problem] = []
    if tls.key_file is not None and tls.key_file.exists():
        mode = stat.S_IMODE(tls.key_file.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(Problem(
                "broker.tls.key_file",
                f"TLS client key {tls.key_file} has mode {mode:04o}; it must be readable by "
                f"its owner only: run `chmod 600 {tls.key_file}`",
                where.line_of(("broker", "tls", "key_file"))))
    if tls.cert_file is not None and device_id is not None:
        try:
            cert = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
        except (OSError, ValueError):
            return problems  # unreadable or not PEM: tls_context says so
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [device_id]:
            shown = ", ".join(repr(n) for n in names) or "missing"
            problems.append(Problem(
                "broker.tls.cert_file",
                f"client certificate {tls.cert_file} has CN {shown}, not the device_id "
                f"{device_id!r}: a broker that takes the CN as the user name applies that "
                "name's ACL; issue a certificate with CN = device_id",
                where.line_of(("broker", "tls", "cert_file"))))
    return problems


def check_ports(sensors: tuple[SensorConfig, ...], where: Located) -> list[Problem]:
    """Serial ports named in sensor settings that do not exist right now.

    Only ``check`` asks: a running agent starts anyway and counts the absent device as that
    sensor's errors until it is plugged in, but a person checking a config wants to know.
    """
    problems: list[Problem] = []
    for sensor in sensors:
        port = sensor.settings.get("port")
        absent = isinstance(port, str) and port.startswith("/") and not Path(port).exists()
        if sensor.enabled and absent:
            problems.append(Problem(
                f"sensors[{sensor.index}].port",
                f"serial port {port} does not exist (adapter unplugged? stable names: "
                "/dev/serial/by-id/ or deploy/99-sensorledger-serial.rules)",
                where.line_of(("sensors", sensor.index, "port")),
            ))
    return problems


def load_device_key(key_file: Path, where: Located) -> PrivateKey:
    """The device signing key; refuse a key file that group or others can read."""
    try:
        return load_private_key(key_file)
    except ProvenanceError as exc:
        hint = ""
        if not key_file.exists():
            hint = f"; create one with `sensor-agent keygen --config {where.path}`"
        raise ConfigError(str(where.path), [
            Problem("key_file", exc.diagnostics() + hint, where.line_of(("key_file",)))
        ]) from None


def tls_context(tls: TlsConfig, where: Located) -> ssl.SSLContext:
    """An SSL context that verifies the broker and, when configured, presents our cert."""
    try:
        return load_tls_context(tls, where, ("broker", "tls"))
    except ConfigFileError as exc:
        raise ConfigError(exc.path, exc.problems) from None


def read_password(config: AgentConfig) -> str | None:
    if config.broker.password_file is None:
        return config.broker.password
    return _read_password_file(config.broker.password_file, config)


def _read_password_file(path: Path, where: Located) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(str(where.path), [Problem(
            "broker.password_file", f"cannot read {path}: {exc.strerror}",
            where.line_of(("broker", "password_file")),
        )]) from None


def build_driver(sensor: SensorConfig) -> Driver:
    """Build one sensor's driver; HardwareConfigError for settings a person must fix."""
    from hardware import registry  # imported late: the registry loads every driver module

    return registry.create(sensor.driver, sensor.settings)


def check_drivers(
    sensors: tuple[SensorConfig, ...], where: Located
) -> list[Problem]:
    """Build every configured driver once (enabled or not) and close it again."""
    problems: list[Problem] = []
    for sensor in sensors:
        try:
            driver = build_driver(sensor)
        except HardwareConfigError as exc:
            problems += driver_problems(where, sensor, exc)
            continue
        except Exception as exc:  # a driver must not raise here, but check reports anyway
            problems.append(sensor_problem(
                where, sensor, f"driver {sensor.driver!r} failed to start: {exc!r}"))
            continue
        driver.close()
    return problems


def driver_problems(
    where: Located, sensor: SensorConfig, exc: HardwareConfigError
) -> list[Problem]:
    """Each of a driver's complaints about its settings, on the line of the setting at fault."""
    if not exc.problems:
        return [sensor_problem(where, sensor, str(exc))]
    out: list[Problem] = []
    for problem in exc.problems:
        path: KeyPath = ("sensors", sensor.index)
        key = f"sensors[{sensor.index}]"
        if problem.key in sensor.settings:
            path, key = (*path, problem.key), f"{key}.{problem.key}"
        out.append(Problem(key, f"{sensor.driver}: {problem.message}", where.line_of(path)))
    return out


def sensor_problem(
    where: Located, sensor: SensorConfig, message: str
) -> Problem:
    """A driver's complaint, placed on the line of the setting it names when it names one."""
    path: KeyPath = ("sensors", sensor.index)
    key = f"sensors[{sensor.index}]"
    if message.startswith("unknown driver"):
        path, key = (*path, "driver"), f"{key}.driver"
    else:
        named = re.search(r"setting(?:\(s\))? '([^']+)'", message)
        if named and named.group(1) in sensor.settings:
            path, key = (*path, named.group(1)), f"{key}.{named.group(1)}"
    return Problem(key, message, where.line_of(path))
