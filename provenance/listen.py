"""A listen address as configs and flags give it: ``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT``."""

from __future__ import annotations

import ipaddress

__all__ = ["parse_listen"]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all interfaces) -> (host, port).

    Port 0 picks a free port (the server reports the one it got). ValueError with a short
    reason otherwise.
    """
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: [{host}] is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    return host or "0.0.0.0", port
