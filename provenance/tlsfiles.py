"""Loading the TLS files a config names into an SSL context, naming the file at fault.

Beside :mod:`provenance.keyfile`, the other place in provenance that reads files: agent and
collector both build their broker TLS context here, so a missing CA file or a certificate that
does not match its key reads the same on both sides and names the key and file at fault.
"""

from __future__ import annotations

import ssl

from .brokerconfig import TlsConfig
from .configfile import ConfigFileError, KeyPath, Located, Problem, key_name

__all__ = ["tls_context"]


def tls_context(tls: TlsConfig, where: Located, at: KeyPath) -> ssl.SSLContext:
    """An SSL context that verifies the broker and, when configured, presents our certificate.

    ``at`` is the TLS table's place in the config (``("broker", "tls")``); ConfigFileError
    lists every file that could not be used, each at its key's line.
    """
    problems: list[Problem] = []

    def problem(key: str, message: str) -> None:
        problems.append(Problem(key_name((*at, key)), message, where.line_of((*at, key))))

    ctx: ssl.SSLContext | None = None
    try:
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    except FileNotFoundError:
        problem("ca_file", f"{tls.ca_file} does not exist")
    except (ssl.SSLError, OSError) as exc:
        problem("ca_file", f"cannot load CA certificates from {tls.ca_file}: {exc}")
    if tls.cert_file is not None and tls.key_file is not None:
        missing = False
        for key, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
            if not path.exists():
                problem(key, f"{path} does not exist")
                missing = True
        if not missing and ctx is not None:
            try:
                ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            except ssl.SSLError as exc:
                reason = ("the client key does not match the client certificate"
                          if "KEY_VALUES_MISMATCH" in str(exc) else str(exc))
                problem("cert_file", f"cannot load client certificate {tls.cert_file} with "
                                     f"key {tls.key_file}: {reason}")
            except OSError as exc:
                problem("cert_file", f"cannot read client certificate {tls.cert_file} or key "
                                     f"{tls.key_file}: {exc.strerror or exc}")
    if problems or ctx is None:
        raise ConfigFileError(str(where.path), problems)
    if tls.insecure:
        ctx.check_hostname = False
    return ctx
