"""The broker settings agent and collector share: the broker URL and the TLS files.

Defined once so both read ``mqtt://host:port`` and a ``[... .tls]`` table the same way, with the
same messages. Pure: :func:`tls_context` in :mod:`provenance.tlsfiles` loads the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .configfile import Table
from .errors import ProvenanceError

__all__ = [
    "DEFAULT_PORTS",
    "BrokerUrl",
    "BrokerUrlError",
    "TlsConfig",
    "parse_broker_url",
    "read_broker_url",
    "read_tls",
]

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
#: Other spellings of the two schemes (paho and mosquitto tools accept them).
_ALIASES = {"tcp": "mqtt", "ssl": "mqtts"}


class BrokerUrlError(ProvenanceError):
    """A broker URL that is not ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""

    code = "broker_url"


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A parsed broker URL; ``tls`` is true for ``mqtts://`` (default port 8883)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"


def parse_broker_url(url: str, *, credentials: bool = True) -> BrokerUrl:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``; BrokerUrlError otherwise.

    With ``credentials=False`` a user or password in the URL is refused (the agent keeps them
    in ``username`` / ``password_file``).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"{url!r} is not a valid broker URL: {exc}") from None
    scheme = _ALIASES.get(parts.scheme, parts.scheme)
    if scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(f"{url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerUrlError(f"{url!r} names no host; expected mqtt://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(f"{url!r} must be just scheme://host:port, without a path or query")
    if (parts.username or parts.password) and not credentials:
        raise BrokerUrlError("put credentials in username / password_file, not in the URL")
    if port == 0:
        raise BrokerUrlError(f"port 0 in {url!r} is not a valid port (1..65535)")
    return BrokerUrl(
        scheme=scheme,
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def read_broker_url(
    r: Table, key: str = "url", default: str | None = None, *, credentials: bool = True,
) -> tuple[str | None, BrokerUrl | None]:
    """The URL text and its parsed form; a problem at ``key`` when it does not parse."""
    url = r.text(key, default, required=default is None)
    if url is None:
        return None, None
    try:
        return url, parse_broker_url(url, credentials=credentials)
    except BrokerUrlError as exc:
        r.problem(key, str(exc))
        return url, None


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS towards the broker; ``ca_file`` None means the system trust store."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # skip host name checks: for test brokers only

    @property
    def configured(self) -> bool:
        """Whether any TLS file is named."""
        return self.ca_file is not None or self.cert_file is not None


def read_tls(r: Table, base: Path, *, insecure: bool = False) -> TlsConfig:
    """A ``tls`` table: ``ca_file``, ``cert_file`` and ``key_file`` (a pair), and with
    ``insecure=True`` the ``insecure`` switch too. Relative paths are taken from ``base``."""
    ca_file = r.path("ca_file", base)
    cert_file = r.path("cert_file", base)
    key_file = r.path("key_file", base)
    if (cert_file is None) != (key_file is None):
        r.problem("cert_file" if cert_file is None else "key_file",
                  "cert_file and key_file go together (the client certificate and its key)")
    skip_names = r.boolean("insecure", False) if insecure else False
    r.finish()
    return TlsConfig(ca_file=ca_file, cert_file=cert_file, key_file=key_file,
                     insecure=skip_names)
