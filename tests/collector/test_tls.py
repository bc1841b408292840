"""The collector on a TLS listener with client certificates (as deploy/mosquitto ships)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.broker import Broker
from tests.support.collector import (
    CollectorProcess,
    Ledger,
    Publisher,
    make_devices,
)
from tests.support.polling import wait_until


def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    files = {"ca.crt": _cert("test-ca", ca_key, ca_name, ca_key, ca=True)}
    keys = {}
    for name, ip in (("broker", "127.0.0.1"), ("collector", None), ("agent", None)):
        keys[name] = ec.generate_private_key(ec.SECP256R1())
        files[f"{name}.crt"] = _cert(name, keys[name], ca_name, ca_key, ip=ip)
    out = {}
    for fname, cert in files.items():
        out[fname] = folder / fname
        out[fname].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for name, key in keys.items():
        path = folder / f"{name}.key"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        out[f"{name}.key"] = path
    return out


def test_ingest_over_tls_with_client_certificates(
    ledger: Ledger, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = Broker(workdir=tmp_path / "tls-broker")
    broker.listener_conf = "\n".join([
        f"listener {broker.port} 127.0.0.1",
        f"cafile {pki['ca.crt']}", f"certfile {pki['broker.crt']}",
        f"keyfile {pki['broker.key']}", "require_certificate true",
        "use_identity_as_username true",
    ])
    broker.start()
    col: CollectorProcess | None = None
    try:
        devices = make_devices(3, "tls")
        ledger.enrol(devices)
        col = CollectorProcess(
            ledger, broker, "--tls-ca", str(pki["ca.crt"]), "--tls-cert",
            str(pki["collector.crt"]), "--tls-key", str(pki["collector.key"]),
            "--block-age", "0.2")
        col.args[col.args.index("--broker") + 1] = f"mqtts://127.0.0.1:{broker.port}"
        col.start()
        tls = {"ca_certs": str(pki["ca.crt"]), "certfile": str(pki["agent.crt"]),
               "keyfile": str(pki["agent.key"])}
        with Publisher(broker, "tls-agent", tls=tls) as pub:
            pub.publish((d.topic, d.next()) for _ in range(20) for d in devices)
        wait_until(lambda: ledger.sealed() == 60, 30, 0.05, "readings over TLS sealed")
        assert col.stop() == 0
    finally:
        if col is not None:
            col.kill()
        broker.stop()


def test_a_collector_without_a_client_certificate_is_refused_and_keeps_retrying(
    ledger: Ledger, tmp_path: Path, collector: Callable[..., CollectorProcess],
    broker: Broker
) -> None:
    """Wrong settings never crash the collector: it logs and retries with backoff."""
    pki = make_pki(tmp_path / "pki")
    col = collector("--tls-ca", str(pki["ca.crt"]))  # TLS to a plain listener
    col.start(wait_connected=False)
    col.wait_event("broker_unreachable", 20)
    assert col.proc is not None and col.proc.poll() is None
    assert col.stop() == 0
