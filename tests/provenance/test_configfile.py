"""The one config reader: typed reads that collect every problem, located at its line."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from provenance.brokerconfig import BrokerUrlError, TlsConfig, parse_broker_url, read_tls
from provenance.configfile import ConfigFileError, Problem, Source, Table, describe, parse_toml
from provenance.tlsfiles import tls_context

TEXT = """\
name = "pump"
count = "three"

[limits]
low = -5
hihg = 9
"""


def read(text: str) -> Table:
    doc, lines = parse_toml(text, "x.toml")
    return Table(doc, Source(lines))


def test_every_problem_is_collected_with_its_line_and_defaults_are_returned() -> None:
    r = read(TEXT)
    assert r.text("name", required=True) == "pump"
    assert r.integer("count", 1, low=0) == 1  # the default: the value is wrong
    limits = r.child(r.table_at("limits") or {}, "limits")
    assert limits.number("low", 0.0, low=0, high=10) == 0.0
    assert limits.number("high", 10.0) == 10.0
    limits.finish()
    assert r.text("owner", required=True) is None
    r.finish()
    assert r.problems == [
        Problem("count", "must be an integer, got 'three'", 2),
        Problem("limits.low", "must be between 0 and 10, got -5", 5),
        Problem("limits.hihg", "unknown config key 'limits.hihg'; did you mean 'high'?", 6),
        Problem("owner", "is required", None),
    ]
    assert describe("x.toml", r.problems).splitlines()[-2:] == [
        "x.toml: owner: is required", "4 problems in x.toml"]


def test_malformed_toml_is_one_problem_at_its_line() -> None:
    with pytest.raises(ConfigFileError) as caught:
        parse_toml('a = 1\nb = = 2\n', "x.toml")
    (problem,) = caught.value.problems
    assert problem.line == 2 and problem.message.startswith("malformed TOML")
    assert caught.value.diagnostics().endswith("1 problem in x.toml")


def test_values_given_elsewhere_say_so_and_have_no_line() -> None:
    doc, lines = parse_toml("size = 3\n", "x.toml")
    doc["size"] = 0
    r = Table(doc, Source(lines, elsewhere={("size",): "given on the command line"}))
    r.integer("size", 1, low=1)
    assert r.problems == [Problem("size", "must be at least 1, got 0 (given on the command line)")]


def test_paths_in_the_file_are_relative_to_it_and_flags_to_the_working_directory() -> None:
    doc, lines = parse_toml('a = "k.pem"\nb = "k.pem"\n', "x.toml")
    r = Table(doc, Source(lines, elsewhere={("b",): "a flag"}))
    assert r.path("a", Path("/etc/x")) == Path("/etc/x/k.pem")
    assert r.path("b", Path("/etc/x")) == Path("k.pem")


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://h", ("mqtt", "h", 1883, None, None)),
    ("mqtts://h", ("mqtts", "h", 8883, None, None)),
    ("ssl://h:9", ("mqtts", "h", 9, None, None)),
    ("tcp://u:p%40ss@h:1", ("mqtt", "h", 1, "u", "p@ss")),
])
def test_broker_urls(url: str, expected: tuple[object, ...]) -> None:
    b = parse_broker_url(url)
    assert (b.scheme, b.host, b.port, b.username, b.password) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("http://h", "must start with mqtt:// or mqtts://"),
    ("mqtt://", "names no host"),
    ("mqtt://h:0", "port 0"),
    ("mqtt://h:70000", "Port out of range"),
    ("mqtt://h/path", "without a path"),
])
def test_bad_broker_urls(url: str, message: str) -> None:
    with pytest.raises(BrokerUrlError, match=message):
        parse_broker_url(url)


def test_credentials_in_the_url_can_be_refused() -> None:
    with pytest.raises(BrokerUrlError, match="not in the URL"):
        parse_broker_url("mqtt://u:p@h", credentials=False)


def test_tls_table_pairs_cert_and_key_and_refuses_insecure_unless_asked() -> None:
    r = read('[tls]\ncert_file = "c.crt"\ninsecure = true\n')
    tls = read_tls(r.child(r.table_at("tls") or {}, "tls"), Path("/base"))
    assert tls == TlsConfig(cert_file=Path("/base/c.crt"))
    assert [(p.key, p.line) for p in r.problems] == [("tls.key_file", 1), ("tls.insecure", 3)]
    r = read('[tls]\ninsecure = true\n')
    assert read_tls(r.child(r.table_at("tls") or {}, "tls"), Path(), insecure=True).insecure
    assert r.problems == []


class _Where:
    path = Path("c.toml")

    def line_of(self, key: tuple[str | int, ...]) -> int | None:
        return {("tls", "ca_file"): 7, ("tls", "cert_file"): 8}.get(key)


def test_tls_context_names_each_file_it_could_not_use(tmp_path: Path) -> None:
    bad_ca = tmp_path / "ca.crt"
    bad_ca.write_text("no certificate here\n")
    tls = TlsConfig(ca_file=bad_ca, cert_file=tmp_path / "c.crt", key_file=tmp_path / "c.key")
    with pytest.raises(ConfigFileError) as caught:
        tls_context(tls, _Where(), ("tls",))
    rendered = caught.value.diagnostics().splitlines()
    assert rendered[0].startswith(
        f"c.toml:7: tls.ca_file: cannot load CA certificates from {bad_ca}")
    assert rendered[1] == f"c.toml:8: tls.cert_file: {tmp_path / 'c.crt'} does not exist"
    assert rendered[2] == f"c.toml: tls.key_file: {tmp_path / 'c.key'} does not exist"
    assert isinstance(tls_context(TlsConfig(), _Where(), ("tls",)), ssl.SSLContext)
