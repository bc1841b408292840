"""The proof check in the visitor's own browser (collector/web/static/verify.html), in a real
headless Chromium (Debian's, driven by Playwright), loaded from file:// as a saved page.

Proof files come from the real ``ledger-collector proof`` over a ledger a real collector
filled from a real broker. For the good file and each tampered variant, the page must show the
same checks, in the same order, with the same PASS / FAIL / SKIP as ``ledger-collector
verify-proof --json`` on the same bytes, and for the good one the same "proven" facts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_api

from provenance import cbor
from provenance.cbor import decode_key as cbor2_loads
from provenance.envelope import Envelope
from provenance.keys import P256_ORDER, PrivateKey, PublicKey
from provenance.logproof import LogProof, decode_log_proof
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner
from provenance.senml import Measurement
from tests.support.broker import Broker
from tests.support.collector import (
    BASE_TIME_MS,
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
)
from tests.support.collector import run_cli as _run_cli
from tests.support.polling import wait_until
from tests.support.rotation import rotated_log_proof

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "collector" / "web" / "static" / "verify.html"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]



def run_cli(*args: str) -> Any:
    """``ledger-collector`` in-process, on a thread of its own: Playwright's sync API keeps an
    event loop running on this one, and the commands start their own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_run_cli, *args).result()


HOSTILE_EVENT = "<script>alert('x')</script>\u202e\"'&amp;"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"


# The ledger and its proofs ---------------------------------------------------------------------

@dataclass
class Proofs:
    ledger: Ledger
    dir: Path
    cbor: bytes  # arc-07 seq 2, format 2
    tlog: bytes  # the same as a tlog-proof
    hostile: bytes  # evil-01 seq 0: markup in its event and SenML name and unit
    history: bytes  # arc-07's history file (ledger-collector history)
    gap_history: bytes  # gap-01's: seqs 0, 1, a signed gap record for 2..3, 5
    private: bytes  # oxi-09 seq 1: a private reading (a commitment, no values), not disclosed
    disclosed: bytes  # the same with its opening (proof --disclose --reader-key)
    other_opening: bytes  # oxi-09 seq 2's opening: real, but another reading's
    private_history: bytes  # oxi-09's history file: three private readings

    def policy(self) -> str:
        return Path(self.ledger.vkey).read_text()

    def pem(self) -> str:
        return Path(self.ledger.public_key).read_text()


def _make_proofs(root: Path, broker: Broker, collectors: list[CollectorProcess]) -> Proofs:
    ledger = Ledger(root / "ledger").init()
    water, arc, evil = Device("water-01"), Device("arc-07"), Device("evil-01")
    gappy, oxi = Device("gap-01"), Device("oxi-09")
    ledger.enrol([water, arc, evil, gappy, oxi])
    col = CollectorProcess(ledger, broker, "--block-size", "5", "--block-age", "0.2")
    collectors.append(col.start())
    with Publisher(broker) as pub:
        msgs = []
        for i in range(6):
            msgs.append((water.topic, water.next(time_ms=BASE_TIME_MS + 1000 * i)))
            event = {"type": "arc", "channel": 3} if i == 2 else None
            msgs.append((arc.topic, arc.next(time_ms=BASE_TIME_MS + 1000 * i + 500,
                                             clock_synced=i != 2, event=event)))
        msgs.append((evil.topic, evil.next(
            time_ms=BASE_TIME_MS, event={"note": HOSTILE_EVENT},
            measurements=(Measurement(name=HOSTILE_NAME, value=1, unit="<i>u</i>"),))))
        # gap-01: seqs 0, 1, then a signed gap record at seq 4 for the dropped 2..3, then 5.
        msgs += [(gappy.topic, gappy.next(time_ms=BASE_TIME_MS + i)) for i in range(2)]
        gappy.seq = 4
        msgs += [(gappy.topic, gappy.gap_record(2, 3)),
                 (gappy.topic, gappy.next(time_ms=BASE_TIME_MS + 5))]
        private, openings = _private_readings(root, oxi)
        pub.publish(msgs + private)
    wait_until(lambda: ledger.sealed() == 20, 30, message="20 readings sealed")
    assert col.stop() == 0
    out = root / "proofs"
    out.mkdir()
    made = {}
    for device, seq, form in (("arc-07", 2, "cbor"), ("arc-07", 2, "tlog-proof"),
                              ("evil-01", 0, "cbor")):
        path = out / f"{device}-{seq}.{form}"
        result = _run_cli("proof", "--db", ledger.db, device, str(seq), "--format", form,
                          "-o", str(path))
        assert result.exit_code == 0, result.output
        made[device, form] = path.read_bytes()
    reader = ["--reader-key", str(root / "clinic.pem")]
    for name, extra in (("private", []), ("disclosed", ["--disclose", *reader])):
        path = out / f"oxi-09-1.{name}.proof"
        result = _run_cli("proof", "--db", ledger.db, "oxi-09", "1", "-o", str(path), *extra)
        assert result.exit_code == 0, result.output
        made["oxi-09", name] = path.read_bytes()
    for device in ("arc-07", "gap-01", "oxi-09"):
        path = out / f"{device}.history"
        result = _run_cli("history", "--db", ledger.db, device, "-o", str(path))
        assert result.exit_code == 0, result.output
        made[device, "history"] = path.read_bytes()
    return Proofs(ledger, out, made["arc-07", "cbor"], made["arc-07", "tlog-proof"],
                  made["evil-01", "cbor"], made["arc-07", "history"], made["gap-01", "history"],
                  made["oxi-09", "private"], made["oxi-09", "disclosed"], openings[2].encode(),
                  made["oxi-09", "history"])


def _private_readings(root: Path, oxi: Device) -> tuple[list[tuple[str, bytes]], list[Any]]:
    """Three private readings of oxi-09 as its agent signs and seals them (a salted commitment
    in the signed payload, the values sealed for the reader key in clinic.pem), and each
    reading's opening, which only the test keeps."""
    from agent.clock import Clock
    from agent.data_keys import DataKeys, ValueSealer
    from agent.signer import ChainHead, ChainSigner, Draft
    from provenance.cose_encrypt import decrypt0
    from provenance.keyfile import save_private_key
    from provenance.private_message import PrivateMessage
    from provenance.sealed_values import Opening
    from provenance.wire import private_topic

    reader = PrivateKey.generate()
    save_private_key(reader, root / "clinic.pem")
    data_keys = DataKeys(root / "agent" / "data-keys.json")
    signer = ChainSigner("oxi-09", oxi.key, 1, ChainHead(), Clock("synced"),
                         sealer=ValueSealer(data_keys, [reader.public]))
    messages, openings = [], []
    for i in range(3):
        draft = Draft("oximeter", "pulse-oximeter", BASE_TIME_MS + 100 * i, True,
                      (Measurement(name="spo2", value=94 + i, unit="%"),
                       Measurement(name="pulse", value=61.5 + i, unit="1/min")),
                      {"finger_out": False}, subject="patient-a")
        entry, head = signer.sign(draft, signer.head)
        signer.advance(head)
        pm = PrivateMessage.decode(entry.envelope)
        openings.append(Opening.decode(decrypt0(data_keys.current("patient-a")[1], pm.sealed)))
        messages.append((private_topic("oxi-09"), entry.envelope))
    return messages, openings


@pytest.fixture(scope="module")
def proofs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proofs]:
    """A real ledger: a collector fed by a broker; its proofs written by the real CLI."""
    root = tmp_path_factory.mktemp("verify-page")
    broker = Broker(workdir=root / "broker").start()
    collectors: list[CollectorProcess] = []
    try:
        with ThreadPoolExecutor(1) as pool:  # away from Playwright's event loop
            yield pool.submit(_make_proofs, root, broker, collectors).result()
    finally:
        for col in collectors:
            if col.proc is not None and col.proc.poll() is None:
                col.kill()
        broker.stop()


# The browser -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is absent: run deploy/ensure-chromium.sh (make test does)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """The page as a visitor saves it: one file, opened from disk, with no network at all."""
    saved = tmp_path / "verify.html"
    shutil.copy(PAGE, saved)
    context = browser.new_context()
    context.set_offline(True)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(saved.as_uri())
    # Its script ran (a CSP hash that no longer matches the script would stop it silently).
    assert pg.evaluate("typeof window.SensorLedgerVerify") == "object"
    yield pg
    assert not errors, errors
    assert [u for u in requests if not u.startswith("file://")] == [], requests
    context.close()


def pin(page: Any, policy: str) -> None:
    page.fill("#policy", policy)
    page.click("#pin")


def reload_until(page: Any, shown: Callable[[], bool], timeout: float = 10) -> None:
    """Reload until ``shown()``: the browser writes localStorage to disk on its own schedule,
    so a reload right after pinning may still read the old value."""
    deadline = time.monotonic() + timeout
    while True:
        page.reload()
        if shown():
            return
        assert time.monotonic() < deadline, "the pinned keys were not remembered"
        page.wait_for_timeout(200)


def check_in_page(page: Any, data: bytes, name: str = "reading.proof") -> dict[str, Any]:
    """Drop ``data`` on the page as a file; what the page shows, read back from the DOM."""
    before = int(page.evaluate("Number(document.body.dataset.checked || 0)"))
    page.set_input_files("#file", files=[{"name": name, "mimeType": "application/octet-stream",
                                           "buffer": data}])
    page.wait_for_function("n => Number(document.body.dataset.checked || 0) > n", arg=before,
                           timeout=15_000)
    rows = page.eval_on_selector_all(
        "#checks tr", "rows => rows.map(r => [r.dataset.check, r.dataset.status, "
                      "r.querySelector('.detail').textContent])")
    verdict = page.eval_on_selector("#verdict", "v => v.textContent")
    report = page.evaluate("window.lastReport")
    return {"checks": [(n, s) for n, s, _ in rows], "details": {n: d for n, _, d in rows},
            "verdict": verdict, "proven": report["proven"], "ok": report["ok"]}


def check_with_cli(tmp: Path, data: bytes, *key_args: str) -> dict[str, Any]:
    path = tmp / "candidate.proof"
    path.write_bytes(data)
    result = run_cli("verify-proof", str(path), *key_args, "--json")
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.output)
    return {"checks": [(c["name"], c["status"]) for c in report["checks"]], "ok": report["ok"],
            "proven": report["proven"],
            "details": {c["name"]: c["detail"] for c in report["checks"]}}


def failing(checks: list[tuple[str, str]]) -> list[str]:
    return [name for name, status in checks if status == "FAIL"]


# Tampering -------------------------------------------------------------------------------------

def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def _with(pf: LogProof, **changes: Any) -> bytes:
    fields = {"envelope": pf.envelope, "device_public_key": pf.device_public_key,
              "leaf_index": pf.leaf_index, "audit_path": pf.audit_path,
              "checkpoint": pf.checkpoint, "enrolment": pf.enrolment, **changes}
    return LogProof(**fields).encode()


def _checkpoint_line(note: bytes, line: int, edit: Callable[[str], str]) -> bytes:
    lines = note.decode().split("\n")
    lines[line] = edit(lines[line])
    return "\n".join(lines).encode()


def _root_flipped(text: str) -> str:
    root = bytearray(base64.b64decode(text))
    root[5] ^= 0x01
    return base64.b64encode(bytes(root)).decode()


def _high_s(envelope: bytes) -> bytes:
    sig = envelope[-64:]
    s = int.from_bytes(sig[32:], "big")
    return envelope[:-64] + sig[:32] + (P256_ORDER - s).to_bytes(32, "big")


def variants(good: bytes) -> dict[str, tuple[bytes, str]]:
    """Tampered copies of a format 2 proof, each with the check it must fail."""
    pf = decode_log_proof(good)
    env = pf.envelope
    payload = Envelope.decode(env).payload
    at = env.index(payload) + len(payload) // 2
    return {
        "payload byte": (_with(pf, envelope=_flip(env, at)), "device signature"),
        "signature byte": (_with(pf, envelope=_flip(env, len(env) - 7)), "device signature"),
        "path hash byte": (_with(pf, audit_path=(_flip(pf.audit_path[0], 3),
                                                 *pf.audit_path[1:])), "inclusion in log"),
        "leaf index": (_with(pf, leaf_index=pf.leaf_index + 1), "inclusion in log"),
        "checkpoint root": (_with(pf, checkpoint=_checkpoint_line(pf.checkpoint, 2,
                                                                  _root_flipped)),
                            "checkpoint signature"),
        "checkpoint size": (_with(pf, checkpoint=_checkpoint_line(
            pf.checkpoint, 1, lambda s: str(int(s) + 1))), "checkpoint signature"),
        "high-S signature": (_with(pf, envelope=_high_s(env)), "inclusion in log"),
        "device key byte": (_with(pf, device_public_key=_flip(pf.device_public_key, 40)),
                            "device key binding"),
        "truncated CBOR": (good[:-9], "proof file format"),
        "trailing byte": (good + b"\x00", "proof file format"),
        "corrupt CBOR head": (b"\xbf" + good[1:], "proof file format"),
        "repeated map key": (bytes([good[0] + 1]) + b"\x01\x02" + good[1:], "proof file format"),
        "indefinite outer map": (b"\xbf" + good[1:] + b"\xff", ""),  # cbor2 reads it: verified
        **enrolment_variants(pf),
    }


def enrolment_variants(pf: LogProof) -> dict[str, tuple[bytes, str]]:
    """The device key's enrolment statement (key 9), tampered with."""
    from provenance.logproof import EnrolmentProof

    e = pf.enrolment
    assert e is not None, "the CLI's proof carries the key's enrolment statement"

    def enrol(**changes: Any) -> bytes:
        fields = {"statement": e.statement, "leaf_index": e.leaf_index,
                  "audit_path": e.audit_path, **changes}
        return _with(pf, enrolment=EnrolmentProof(**fields))

    return {
        "statement byte": (enrol(statement=_flip(e.statement, len(e.statement) - 5)),
                           "device key enrolment"),
        "statement payload byte": (enrol(statement=_flip(e.statement, 60)),
                                   "device key enrolment"),
        "enrolment leaf index": (enrol(leaf_index=e.leaf_index + 1), "device key enrolment"),
        "enrolment path hash": (enrol(audit_path=(_flip(e.audit_path[0], 1),
                                                  *e.audit_path[1:])), "device key enrolment"),
        "enrolment not a list": (cbor.encode({**cbor2_loads(_with(pf)), 9: {}}),
                                 "proof file format"),
        "no enrolment": (_with(pf, enrolment=None), ""),  # then that check is not made
    }


# The tests -------------------------------------------------------------------------------------

def test_the_page_passes_a_good_proof_and_shows_what_it_proves(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    pin(page, proofs.policy())
    shown = check_in_page(page, proofs.cbor, "arc-07-2.proof")
    cli = check_with_cli(tmp_path, proofs.cbor, "--policy", proofs.ledger.vkey)
    assert cli["ok"] and shown["ok"], shown
    assert shown["verdict"] == "proof VERIFIED"
    assert shown["checks"] == cli["checks"] == [
        ("proof file format", "PASS"), ("checkpoint signature", "PASS"),
        ("device key binding", "PASS"), ("device signature", "PASS"),
        ("inclusion in log", "PASS"), ("device key enrolment", "PASS")]
    # Both of the log's keys (Ed25519 and ECDSA) signed, and the page checked both.
    assert shown["details"]["checkpoint signature"].count("+") == 2
    proven = {k: v for k, v in shown["proven"].items() if not k.startswith("_")}
    assert proven == cli["proven"]
    assert shown["details"] == cli["details"]  # word for word, when every check passes
    assert proven["device_id"] == "arc-07" and proven["time_utc"] == "2026-01-01T00:00:02.500+00:00"
    assert proven["event"] == {"type": "arc", "channel": 3} and not proven["clock_synced"]
    text = page.inner_text("#proven-section")
    assert "arc-07" in text and "2026-01-01T00:00:02.500+00:00" in text and "NOT synced" in text
    assert '"channel":3' in text.replace(" ", "") and "ph" in text and "21.5" in text
    kid = PublicKey.from_der(decode_log_proof(proofs.cbor).device_public_key).kid_hex
    assert page.inner_text("[data-field='device key id']") == kid
    shots = os.environ.get("SENSORLEDGER_SCREENSHOT_DIR")  # docs/img/verify-page.png
    if shots:
        page.set_viewport_size({"width": 1100, "height": 900})
        page.screenshot(path=str(Path(shots) / "verify-page.png"), full_page=True)

    # The pinned keys are remembered: a reload still has them, and the tlog-proof form of the
    # same proof verifies too.
    reload_until(page, lambda: page.input_value("#policy") == proofs.policy())
    tlog = check_in_page(page, proofs.tlog, "arc-07-2.tlog-proof")
    assert tlog["ok"], tlog
    assert tlog["checks"] == check_with_cli(tmp_path, proofs.tlog, "--policy",
                                            proofs.ledger.vkey)["checks"]

    # With no key pinned, it cannot vouch for the checkpoint, and names the keys to look for.
    page.click("#forget")
    bare = check_in_page(page, proofs.cbor)
    assert failing(bare["checks"]) == ["checkpoint signature"] and not bare["ok"]
    origin = decode_log_proof(proofs.cbor).checkpoint.decode().split("\n")[0]
    assert f"signers as {origin}+" in bare["details"]["checkpoint signature"]
    reload_until(page, lambda: page.input_value("#policy") == "")

    # The collector's PEM alone: the checkpoint's ECDSA note signature (type 0x02) is checked.
    pin(page, proofs.pem())
    pem = check_in_page(page, proofs.cbor)
    assert pem["ok"] and pem["checks"] == check_with_cli(
        tmp_path, proofs.cbor, "--collector-key", proofs.ledger.public_key)["checks"]


def test_each_tampered_proof_fails_the_check_verify_proof_names(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    pin(page, proofs.policy())
    for name, (data, must_fail) in variants(proofs.cbor).items():
        shown = check_in_page(page, data)
        cli = check_with_cli(tmp_path, data, "--policy", proofs.ledger.vkey)
        assert shown["checks"] == cli["checks"], name
        if must_fail:
            assert not shown["ok"] and shown["verdict"] == "proof FAILED", name
            assert failing(shown["checks"])[0] == must_fail, (name, shown["checks"])
        else:
            assert shown["ok"] and cli["ok"], name

    # Another device's enrolment statement, a real one from the same log.
    other = decode_log_proof(proofs.hostile).enrolment
    data = _with(decode_log_proof(proofs.cbor), enrolment=other)
    shown = check_in_page(page, data)
    cli = check_with_cli(tmp_path, data, "--policy", proofs.ledger.vkey)
    assert shown["checks"] == cli["checks"]
    assert failing(shown["checks"]) == ["device key enrolment"]
    assert "not the proof's device key" in shown["details"]["device key enrolment"]


def test_the_wrong_pinned_key_or_log_fails_the_checkpoint_signature(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    other = tmp_path / "other.pub.pem"
    other.write_text(PrivateKey.generate().public.to_pem())
    pin(page, other.read_text())
    shown = check_in_page(page, proofs.cbor)
    cli = check_with_cli(tmp_path, proofs.cbor, "--collector-key", str(other))
    assert shown["checks"] == cli["checks"]
    assert failing(shown["checks"]) == ["checkpoint signature"]
    assert ("inclusion in log", "SKIP") in shown["checks"] and shown["proven"] is None

    policy = tmp_path / "other-log.policy"
    policy.write_text("log sensorledger.example/elsewhere\n" + proofs.policy())
    pin(page, policy.read_text())
    shown = check_in_page(page, proofs.cbor)
    assert shown["checks"] == check_with_cli(tmp_path, proofs.cbor, "--policy",
                                             str(policy))["checks"]
    assert failing(shown["checks"]) == ["checkpoint signature"]
    assert "elsewhere" in shown["details"]["checkpoint signature"]


@pytest.mark.slow
def test_single_byte_changes_get_the_verdicts_of_verify_proof(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    """Byte flips across the whole file, format 2 and tlog-proof: the page and the command line
    agree on every check of every one."""
    pin(page, proofs.policy())
    for good in (proofs.cbor, proofs.tlog):
        step = max(1, len(good) // 40)
        for at in range(0, len(good), step):
            data = _flip(good, at)
            shown = check_in_page(page, data)
            cli = check_with_cli(tmp_path, data, "--policy", proofs.ledger.vkey)
            assert shown["checks"] == cli["checks"], (at, shown["details"])
            assert not shown["ok"], at


def test_hostile_text_in_a_proof_is_shown_as_text(page: Any, proofs: Proofs) -> None:
    """A logged reading whose event and SenML name and unit are markup, and a file that is not
    a proof, full of markup: the page shows them as text and runs none of it."""
    pin(page, proofs.policy())
    shown = check_in_page(page, proofs.hostile)
    assert shown["ok"], shown["details"]
    assert shown["proven"]["event"] == {"note": HOSTILE_EVENT}
    assert page.inner_text("[data-field='event']") == json.dumps({"note": HOSTILE_EVENT},
                                                                 ensure_ascii=False,
                                                                 separators=(",", ":"))
    assert HOSTILE_NAME in page.inner_text("#values") and "<i>u</i>" in page.inner_text("#values")
    assert page.eval_on_selector_all("main script, main img, main i, main b",
                                     "els => els.length") == 0

    junk = cbor.encode({1: 2, 2: b"<script>alert(1)</script>", 3: b"\"'><img src=x>",
                        4: 0, 5: [], 8: "<b>x</b>\n\n\u2014 <i>y</i> AAAA\n".encode()})
    shown = check_in_page(page, junk)
    assert not shown["ok"]
    assert page.eval_on_selector_all("#checks script, #checks img, #checks b, #checks i",
                                     "els => els.length") == 0


# Readings a device key really signed, in odd encodings ---------------------------------------

@dataclass(frozen=True)
class Raw:
    """Bytes put into a hand-built CBOR item as they are."""

    data: bytes


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError(n)


def _enc(value: Any, *, canonical: bool = True) -> bytes:
    """CBOR written by hand, so a test can also write what no encoder would."""
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, float):
        return cbor.encode(value)  # the shortest exact form
    if isinstance(value, str):
        return _head(3, len(value.encode())) + value.encode()
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(_enc(v, canonical=canonical) for v in value)
    if isinstance(value, dict):
        items = [(_enc(k), _enc(v, canonical=canonical)) for k, v in value.items()]
        if canonical:
            items.sort(key=lambda kv: (len(kv[0]), kv[0]))
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    raise TypeError(type(value))


def _reading(**over: Any) -> dict[Any, Any]:
    body: dict[Any, Any] = {1: 1, 2: "odd-01", 3: 5, 4: 1, 5: BASE_TIME_MS, 6: True,
                            7: bytes(32), 8: "water",
                            9: [{0: "ph", 1: "pH", 2: 7.25}, {0: "temp", 2: 21.5}]}
    for key, value in over.items():
        label = int(key[1:])
        if value is None:
            body.pop(label, None)
        else:
            body[label] = value
    return body


def _m(**rec: Any) -> dict[int, Any]:
    return {int(k[1:]): v for k, v in rec.items()}


F32_7 = Raw(b"\xfa\x40\xe8\x00\x00")  # 7.25 as a float32: not the shortest form
F64_7 = Raw(b"\xfb\x40\x1d\x00\x00\x00\x00\x00\x00")
EMOJI = "\U0001f600"

PAYLOADS: dict[str, bytes] = {
    "valid": _enc(_reading()),
    "float version 1.0": _enc(_reading(k1=Raw(b"\xf9\x3c\x00"))),
    "bool version": _enc(_reading(k1=True)),
    "float seq": _enc(_reading(k3=5.0)),
    "float32 value": _enc(_reading(k9=[_m(k0="ph", k2=F32_7)])),
    "float64 value": _enc(_reading(k9=[_m(k0="ph", k2=F64_7)])),
    "double-only value": _enc(_reading(k9=[_m(k0="ph", k2=0.1)])),
    "float32-only value": _enc(_reading(k9=[_m(k0="ph", k2=1.100000023841858)])),
    "half subnormal": _enc(_reading(k9=[_m(k0="x", k2=Raw(b"\xf9\x00\x10"))])),
    # cbor2 (the ledger's encoder) writes 65504.0 as a float32, not as the half it is.
    "65504 as a half": _enc(_reading(k9=[_m(k0="x", k2=Raw(b"\xf9\x7b\xff"))])),
    "65504 as a float32": _enc(_reading(k9=[_m(k0="x", k2=Raw(b"\xfa\x47\x7f\xe0\x00"))])),
    "negative zero": _enc(_reading(k9=[_m(k0="x", k2=Raw(b"\xf9\x80\x00"))])),
    "NaN value": _enc(_reading(k9=[_m(k0="x", k2=Raw(b"\xf9\x7e\x00"))])),
    "int value, time offset": _enc(_reading(k9=[_m(k0="n", k2=-3, k6=1.5)])),
    "bignum offset": _enc(_reading(k9=[_m(k0="n", k2=1, k6=Raw(
        b"\xc2\x49\x01" + bytes(7) + b"\x01"))])),
    "small bignum": _enc(_reading(k3=Raw(b"\xc2\x41\x05"))),
    "text and bool values": _enc(_reading(k9=[_m(k0="s", k3="on"), _m(k0="b", k4=False)])),
    "two values": _enc(_reading(k9=[_m(k0="s", k2=1, k4=True)])),
    "null unit": _enc(_reading(k9=[_m(k0="s", k1=Raw(b"\xf6"), k2=1)])),
    "name of 64 emoji": _enc(_reading(k9=[_m(k0=EMOJI * 64, k2=1)])),
    "name of 65 emoji": _enc(_reading(k9=[_m(k0=EMOJI * 65, k2=1)])),
    "event of 256 emoji": _enc(_reading(k10={"note": EMOJI * 256})),
    "event of 257 chars": _enc(_reading(k10={"note": "x" * 257})),
    "event key of 23 bytes": _enc(_reading(k10={"k" * 23: 1})),
    "event key of 24 bytes": _enc(_reading(k10={"k" * 24: 1})),
    "event float and bool": _enc(_reading(k10={"a": 0.5, "b": True, "c": -7})),
    "event null": _enc(_reading(k10={"a": Raw(b"\xf6")})),
    "gap record": _enc(_reading(k8="gap", k9=[], k11=[1, 3])),
    "gap reaching seq": _enc(_reading(k8="gap", k9=[], k11=[1, 5])),
    "gap without kind": _enc(_reading(k11=[1, 3])),
    "bad device id": _enc(_reading(k2="<b>odd</b>")),
    "bad kind": _enc(_reading(k8="Water")),
    "short prev": _enc(_reading(k7=bytes(31))),
    "seq too large": _enc(_reading(k3=1 << 63)),
    "time too large": _enc(_reading(k5=1 << 53)),
    "missing key": _enc(_reading(k6=None)),
    "unknown key": _enc(_reading(k13=1)),
    "commitment not bytes": _enc(_reading(k12=1)),
    "private reading": _enc(_reading(k9=[], k12=bytes(range(32)))),
    "private reading with values": _enc(_reading(k12=bytes(32))),
    "private reading, short commitment": _enc(_reading(k9=[], k12=bytes(31))),
    "keys reversed": _enc(dict(reversed(list(_reading().items()))), canonical=False),
    "long head": b"\xa9\x01\x18\x01" + _enc(_reading())[3:],
    "repeated key": b"\xaa\x01\x01" + _enc(_reading())[1:],
    "indefinite array": _enc(_reading(k9=Raw(b"\x9f\xa2\x00\x62ph\x02\x01\xff"))),
    "invalid UTF-8": _enc(_reading(k9=[_m(k0=Raw(b"\x62\xc3\x28"), k2=1)])),
    "datetime tag": _enc(_reading(k5=Raw(b"\xc1\x1a\x00\x00\x00\x01"))),
    "simple value": _enc(_reading(k9=[_m(k0="x", k2=Raw(b"\xf0"))])),
    "trailing byte": _enc(_reading()) + b"\x00",
    "not a map": _enc([1, 2, 3]),
}


def _envelopes(key: PrivateKey) -> dict[str, bytes]:
    from provenance.envelope import sign

    out = {f"payload: {name}": sign(payload, key) for name, payload in PAYLOADS.items()}
    good = out["payload: valid"]
    out["envelope: self-described tag"] = b"\xd9\xd9\xf7" + good
    out["envelope: untagged"] = good[1:]
    out["envelope: unprotected header"] = good[:43] + b"\xa1\x05\x41\x00" + good[44:]
    out["envelope: other tag"] = b"\xd3" + good[1:]
    return out


def test_readings_signed_in_odd_encodings_get_the_verdicts_of_verify_proof(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    """The device checks a forged file cannot reach: the payloads are really signed (by a key
    of this test's own, enclosed in the file), so the page's CBOR decoder, its deterministic
    encoding check and its reading checks must each say what the command line says."""
    pin(page, proofs.policy())
    pf = decode_log_proof(proofs.cbor)
    key = PrivateKey.generate()
    seen: dict[str, set[str]] = {"device key binding": set(), "device signature": set()}
    for name, envelope in _envelopes(key).items():
        data = _with(pf, envelope=envelope, device_public_key=key.public.der)
        shown = check_in_page(page, data)
        cli = check_with_cli(tmp_path, data, "--policy", proofs.ledger.vkey)
        assert shown["checks"] == cli["checks"], (name, shown["details"])
        statuses = dict(shown["checks"])
        for check in seen:
            seen[check].add(statuses[check])
    # The cases reach both outcomes of both checks (the leaf is not in the log, of course).
    assert seen == {"device key binding": {"PASS", "FAIL"},
                    "device signature": {"PASS", "FAIL", "SKIP"}}


def test_private_readings_and_disclosed_values_get_the_verdicts_of_verify_proof(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    """A private reading (payload key 12, docs/privacy.md) really signed by a key of the
    test's own: without its opening, with the right one (proof key 10), with another reading's,
    and with a malformed one; the page says what verify-proof says."""
    from provenance.envelope import sign_reading
    from provenance.reading import Reading
    from provenance.sealed_values import Opening, seal
    from provenance.senml import Measurement

    pin(page, proofs.policy())
    pf = decode_log_proof(proofs.cbor)
    key = PrivateKey.generate()
    values = (Measurement(name="spo2", value=97, unit="%"),)
    opening = seal(values, {"finger_out": False})
    reading = Reading(device_id="ward-01", seq=3, boot=1, time_ms=BASE_TIME_MS,
                      clock_synced=True, prev=bytes(32), kind="pulse-oximeter",
                      commitment=opening.commitment)
    envelope = sign_reading(reading, key)
    other = seal(values, None)
    cases = {
        "not disclosed": None,
        "disclosed": opening.encode(),
        "another reading's opening": other.encode(),
        "salt of 31 bytes": b"\xa2\x01\x58\x1f" + bytes(31) + b"\x02\x41\xa0",
        "not CBOR": b"\xff",
    }
    seen = set()
    for name, data in cases.items():
        proof = _with(pf, envelope=envelope, device_public_key=key.public.der,
                      opening=data)
        shown = check_in_page(page, proof)
        cli = check_with_cli(tmp_path, proof, "--policy", proofs.ledger.vkey)
        assert shown["checks"] == cli["checks"], (name, shown["details"])
        seen.add(dict(shown["checks"]).get("disclosed values"))
    assert seen == {None, "PASS", "FAIL"}
    assert Opening.decode(opening.encode()).reveal()[0] == values


# Format 1: against a block header ----------------------------------------------------------------

def _format_1_proof(root: Path) -> tuple[Ledger, bytes]:
    """A ledger as the collector wrote it before the one log tree (format 1 blocks, as
    tests/collector/test_one_log.py builds one), and the CLI's proof of one of its readings."""
    import asyncio
    import time

    from collector.ledger.records import BatchWrite, ReadingRecord
    from collector.ledger.sealer import Sealer
    from collector.ledger.sqlite_store import SQLiteStore
    from provenance.keyfile import save_private_key

    ledger = Ledger(root)
    root.mkdir(parents=True)
    key = PrivateKey.generate()
    save_private_key(key, ledger.key)
    Path(ledger.public_key).write_text(key.public.to_pem())
    devices = [Device("old-000"), Device("old-001")]

    async def go() -> None:
        store = await SQLiteStore.open(ledger.db, create=True)
        try:
            await store.set_collector_public_key(key.public)
            for d in devices:
                await store.enrol(d.device_id, d.key.public, 0)
            now = time.time_ns() // 1_000_000
            rows = []
            for i, env in enumerate((d.next(time_ms=BASE_TIME_MS + 1000 * n)
                                     for n in range(5) for d in devices), 1):
                r = Envelope.decode(env).reading()
                rows.append(ReadingRecord(i, r.device_id, r.seq, r.boot, r.time_ms, now,
                                          r.kind, env))
            await store.commit_batch(BatchWrite(rows))
            sealer = Sealer(key, None, await store.pending_leaves(), size=4, age_ms=1)
            while sealer.pending:
                sealed = sealer.seal(now_ms=now)
                await store.commit_block(sealed)
                sealer.sealed(sealed)
        finally:
            await store.close()

    asyncio.run(go())
    out = root / "old.proof"
    made = _run_cli("proof", "--db", ledger.db, "old-001", "3", "-o", str(out))
    assert made.exit_code == 0 and "format 1" in made.output, made.output
    return ledger, out.read_bytes()


def test_format_1_proofs_get_the_verdicts_of_verify_proof(page: Any, tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as pool:
        ledger, good = pool.submit(_format_1_proof, tmp_path / "old").result()
    pem = Path(ledger.public_key).read_text()
    pin(page, pem)
    shown = check_in_page(page, good, "old.proof")
    cli = check_with_cli(tmp_path, good, "--collector-key", ledger.public_key)
    assert shown["ok"] and cli["ok"], shown["details"]
    assert shown["checks"] == cli["checks"] == [
        ("proof file format", "PASS"), ("collector key", "PASS"), ("block signature", "PASS"),
        ("device key binding", "PASS"), ("device signature", "PASS"),
        ("inclusion in block", "PASS"), ("time within block", "PASS")]
    proven = {k: v for k, v in shown["proven"].items() if not k.startswith("_")}
    assert proven == cli["proven"] and proven["block"]["height"] >= 0

    step = max(1, len(good) // 40)
    for at in range(0, len(good), step):
        data = _flip(good, at)
        shown = check_in_page(page, data)
        assert shown["checks"] == check_with_cli(tmp_path, data, "--collector-key",
                                                 ledger.public_key)["checks"], at
        assert not shown["ok"], at

    # Another collector's key, and a policy with no P-256 key at all (Ed25519 only).
    other = tmp_path / "other.pub.pem"
    other.write_text(PrivateKey.generate().public.to_pem())
    pin(page, other.read_text())
    shown = check_in_page(page, good)
    assert shown["checks"] == check_with_cli(tmp_path, good, "--collector-key",
                                             str(other))["checks"]
    assert failing(shown["checks"]) == ["collector key", "block signature"]
    from provenance.note import Ed25519NoteSigner

    ed = Ed25519NoteSigner.generate("sensorledger.example/other").verifier.vkey
    pin(page, ed)
    shown = check_in_page(page, good)
    assert shown["checks"] == check_with_cli(tmp_path, good, "--vkey", ed)["checks"]
    assert failing(shown["checks"]) == ["collector key"]


# Following a reading's link: ?proof=<url> on the page's own site ----------------------------------

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_proof_link_on_the_same_site_is_fetched_and_checked(
    browser: Any, proofs: Proofs, tmp_path: Path
) -> None:
    """Served over HTTP on loopback (a stand-in for `ledger-collector serve`: files only), the
    page fetches ?proof=<url> from its own origin and checks it; another origin is refused."""
    site = tmp_path / "site"
    (site / "proofs").mkdir(parents=True)
    shutil.copy(PAGE, site / "verify.html")
    (site / "proofs" / "arc-07-2.proof").write_bytes(proofs.cbor)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    context = browser.new_context()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        page = context.new_page()
        page.goto(f"{base}/verify.html")
        pin(page, proofs.policy())  # remembered for this origin
        page.goto(f"{base}/verify.html?proof=/proofs/arc-07-2.proof")
        page.wait_for_function("() => Number(document.body.dataset.checked || 0) > 0",
                               timeout=15_000)
        assert page.eval_on_selector("#verdict", "v => v.textContent") == "proof VERIFIED"
        assert "arc-07-2.proof" in page.inner_text("#file-name")

        page.goto(f"{base}/verify.html?proof=http://localhost:{server.server_address[1]}"
                  "/proofs/arc-07-2.proof")
        page.wait_for_function("() => document.getElementById('load-status').textContent")
        assert "only proofs from this page's own site" in page.inner_text("#load-status")
        assert page.eval_on_selector("#result", "r => r.classList.contains('hidden')")
    finally:
        context.close()
        server.shutdown()
        server.server_close()


_CSP = re.compile(r'(http-equiv="Content-Security-Policy" content=")([^"]*)(")')


# Collector key rotation (proof key 11) ------------------------------------------------------

def test_the_page_follows_a_rotation_from_the_pinned_old_key(page: Any, tmp_path: Path) -> None:
    origin = "sensorledger.example/rotation"
    old, old_note = PrivateKey.generate(), Ed25519NoteSigner.generate(origin)
    policy = tmp_path / "old.vkey"
    policy.write_text(f"{old_note.verifier.vkey}\n{EcdsaNoteSigner(origin, old).verifier.vkey}\n")
    pin(page, policy.read_text())

    good = rotated_log_proof(old, PrivateKey.generate(), origin)
    shown = check_in_page(page, good)
    cli = check_with_cli(tmp_path, good, "--policy", str(policy))
    assert shown["checks"] == cli["checks"]
    assert shown["ok"] and cli["ok"]
    assert ("collector key rotation", "PASS") in shown["checks"]
    assert "followed 1 key-rotate statement" in shown["details"]["collector key rotation"]

    forged = rotated_log_proof(PrivateKey.generate(), PrivateKey.generate(), origin)
    shown = check_in_page(page, forged)
    cli = check_with_cli(tmp_path, forged, "--policy", str(policy))
    assert shown["checks"] == cli["checks"]
    assert failing(shown["checks"]) == ["collector key rotation"]
    assert ("checkpoint signature", "SKIP") in shown["checks"] and not shown["ok"]


def page_csp(html: str) -> str:
    """The policy the page must carry: only its own one script and one style, by SHA-256."""
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == len(styles) == 1 and "<script " not in html and " style=" not in html

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    return (f"default-src 'none'; script-src {digest(scripts[0])}; style-src {digest(styles[0])}; "
            "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'")


def test_the_page_allows_only_its_own_inline_script_and_style() -> None:
    """Its Content-Security-Policy names the SHA-256 of its one script and one style: nothing
    else runs or loads. After editing either: `python -m tests.web.test_verify_page`."""
    html = PAGE.read_text()
    csp = _CSP.search(html)
    assert csp is not None
    assert csp.group(2) == page_csp(html), "run `python -m tests.web.test_verify_page`"


if __name__ == "__main__":  # rewrite the page's CSP for its current script and style
    text = PAGE.read_text()
    PAGE.write_text(_CSP.sub(lambda m: m.group(1) + page_csp(text) + m.group(3), text))
    print(page_csp(text))


# Witnesses: cosigned checkpoints and a quorum in the trust policy --------------------------------

def test_witness_cosignatures_and_quorum_get_the_verdicts_of_verify_proof(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    """The real proof's checkpoint, cosigned (cosignature/v1, type 0x04) by witness keys with the
    witnesses' own signing code; policies in the C2SP tlog-policy form with a quorum."""
    from provenance.cosignature import CosignatureSigner
    from provenance.note import Note, NoteSignature, parse_note

    pf = decode_log_proof(proofs.cbor)
    note = parse_note(pf.checkpoint)
    w1, w2, w3 = (CosignatureSigner.generate(f"witness.example/w{i}") for i in (1, 2, 3))

    def cosigned(*sigs: NoteSignature) -> bytes:
        return _with(pf, checkpoint=Note(note.text, note.signatures + sigs).to_bytes())

    def policy(quorum: str, *, log_lines: bool = False) -> str:
        keys = proofs.policy().split()
        head = "".join(f"log {k}\n" if log_lines else f"{k}\n" for k in keys)
        return (head + f"witness w1 {w1.verifier.vkey} https://w1.example/\n"
                f"witness w2 {w2.verifier.vkey}\ngroup both all w1 w2\n"
                f"group one 1 w1 w2\nquorum {quorum}\n")

    sig1, sig2 = w1.cosign(note.text), w2.cosign(note.text)
    bad = NoteSignature(sig1.name, sig1.key_id, _flip(sig1.signature, 20))
    at_zero = NoteSignature(sig1.name, sig1.key_id, bytes(8) + sig1.signature[8:])
    cases = [
        ("w1 cosigned, quorum w1", cosigned(sig1), policy("w1"), True),
        ("w1 cosigned, quorum both", cosigned(sig1), policy("both"), False),
        ("both cosigned, quorum both", cosigned(sig2, sig1), policy("both", log_lines=True), True),
        ("w2 cosigned, quorum one", cosigned(sig2), policy("one"), True),
        ("none cosigned, quorum one", proofs.cbor, policy("one"), False),
        ("none cosigned, quorum none", proofs.cbor, policy("none"), True),
        ("an unknown witness", cosigned(w3.cosign(note.text)), policy("w1"), False),
        ("an altered cosignature", cosigned(bad, sig2), policy("one"), False),
        ("timestamp zero", cosigned(at_zero), policy("w1"), False),
        ("cosigned, no witness pinned", cosigned(sig1, sig2), proofs.policy(), True),
    ]
    for name, data, text, ok in cases:
        (tmp_path / "w.policy").write_text(text)
        pin(page, text)
        shown = check_in_page(page, data)
        cli = check_with_cli(tmp_path, data, "--policy", str(tmp_path / "w.policy"))
        assert shown["checks"] == cli["checks"], (name, shown["details"])
        assert shown["ok"] is cli["ok"] is ok, name
        if ok:
            assert shown["details"] == cli["details"], name
        else:
            assert failing(shown["checks"]) == ["checkpoint signature"], name

    # A policy the command line refuses (witnesses but no quorum line): the page says why.
    text = policy("w1").replace("quorum w1\n", "")
    (tmp_path / "w.policy").write_text(text)
    refused = run_cli("verify-proof", str(tmp_path / "w.policy"), "--policy",
                              str(tmp_path / "w.policy"))
    assert refused.exit_code == 2 and "no 'quorum' line" in refused.output
    pin(page, text)
    assert "no 'quorum' line" in page.inner_text("#policy-status")
    shown = check_in_page(page, cosigned(sig1))
    assert not shown["ok"] and "no 'quorum' line" in shown["details"]["checkpoint signature"]


# History files: a device's complete history ------------------------------------------------------

def history_with_cli(tmp: Path, data: bytes, *key_args: str) -> dict[str, Any]:
    """``ledger-collector verify-history`` on ``data``: its checks and what it says."""
    path = tmp / "candidate.history"
    path.write_bytes(data)
    result = run_cli("verify-history", str(path), *key_args)
    assert result.exit_code in (0, 1), result.output
    lines = result.output.rstrip("\n").split("\n")
    checks = [re.fullmatch(r"\[(PASS|FAIL)\] ([^:]+): (.*)", line) for line in lines]
    made = [m for m in checks if m]
    summary = [line for line, m in zip(lines, checks, strict=True) if not m][:-1]
    return {"checks": [(m[2], m[1]) for m in made], "details": {m[2]: m[3] for m in made},
            "ok": result.exit_code == 0, "summary": summary[0] if summary else None,
            "verdict": lines[-1]}


def test_history_files_get_the_verdicts_of_verify_history(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    pin(page, proofs.policy())
    for name, good in (("arc-07.history", proofs.history), ("gap-01.history", proofs.gap_history)):
        shown = check_in_page(page, good, name)
        cli = history_with_cli(tmp_path, good, "--policy", proofs.ledger.vkey)
        assert cli["ok"] and shown["ok"], shown["details"]
        assert shown["checks"] == cli["checks"] == [
            ("history file format", "PASS"), ("checkpoint signature", "PASS"),
            ("device signatures", "PASS"), ("complete sequence", "PASS"),
            ("inclusion in log", "PASS")]
        assert shown["details"] == cli["details"]
        assert shown["verdict"] == cli["verdict"] == "history VERIFIED"
        assert page.inner_text("#summary") == cli["summary"]
    assert "except 1 signed gap(s) (2 readings dropped by the device)" in cli["summary"]

    # Every 40th or so byte flipped, a reading left out, and another device's key.
    step = max(1, len(proofs.gap_history) // 40)
    variants = [_flip(proofs.gap_history, at) for at in range(0, len(proofs.gap_history), step)]
    body = cbor2_loads(proofs.gap_history)
    variants.append(cbor.encode({**body, 6: body[6][:1] + body[6][2:]}))  # seq 1 left out
    variants.append(cbor.encode({**body, 2: PrivateKey.generate().public.der}))
    variants.append(cbor.encode({**body, 6: body[6] + body[6][-1:]}))  # a reading twice
    for data in variants:
        shown = check_in_page(page, data, "gap-01.history")
        cli = history_with_cli(tmp_path, data, "--policy", proofs.ledger.vkey)
        assert shown["checks"] == cli["checks"], shown["details"]
        assert not shown["ok"] and shown["verdict"] == cli["verdict"] == "history FAILED"


# The page's CBOR against cbor2, and random damage ------------------------------------------------

def test_the_pages_canonical_cbor_is_cbor2s(page: Any) -> None:
    """Floats (half-precision ones across their whole range) and integers of every size, as the page
    re-encodes them for its deterministic checks: byte for byte what the ledger's encoder
    (cbor2, canonical) writes."""
    import random
    import struct

    rng = random.Random(17)
    floats = [0.0, -0.0, 1.0, 1.5, 65504.0, 65505.0, 2.0 ** -24, 2.0 ** -25, 2.0 ** -14,
              2.0 ** -149, 3.4028234663852886e38, 1e300, 5e-324, 0.1, 7.25, 1 / 3]
    # Every 7th half-precision value, and all of them around the largest exponents.
    halves = [*range(0, 0x10000, 7), *range(0x7700, 0x7C00), *range(0xF700, 0xFC00)]
    floats += [struct.unpack(">e", h.to_bytes(2, "big"))[0] for h in halves]
    floats += [struct.unpack(">f", rng.randbytes(4))[0] for _ in range(300)]
    floats += [struct.unpack(">d", rng.randbytes(8))[0] for _ in range(300)]
    floats = [f for f in floats if f == f and abs(f) != float("inf")]  # finite (NaN: below)
    ints = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, 2**64, 2**70,
            -1, -24, -25, -(2**64), -(2**64) - 1, -(2**80)]
    ints += [rng.randrange(-(2**72), 2**72) >> rng.randrange(72) for _ in range(300)]
    items = [struct.pack(">Bd", 0xFB, f) for f in floats] + [cbor.encode(i) for i in ints]
    items += [b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x01", b"\xfa\x7f\x80\x00\x00", b"\xf9\xfc\x00"]
    got = page.evaluate("""items => items.map(h => {
        const bytes = Uint8Array.from(h.match(/../g).map(x => parseInt(x, 16)));
        const out = SensorLedgerVerify.cborEncode(SensorLedgerVerify.cborDecode(bytes, "x"));
        return Array.from(out, b => b.toString(16).padStart(2, "0")).join("");
    })""", [i.hex() for i in items])
    want = [cbor.encode(cbor2_loads(i)).hex() for i in items]
    assert got == want


def test_randomly_damaged_proofs_get_the_verdicts_of_verify_proof(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    """Bytes inserted, deleted, replaced, cut, in both the CBOR and the tlog-proof form."""
    import random

    rng = random.Random(29)
    pin(page, proofs.policy())
    for good in (proofs.cbor, proofs.tlog):
        for _ in range(15):
            data = bytearray(good)
            at = rng.randrange(len(data))
            action = rng.choice(["insert", "delete", "replace", "cut"])
            if action == "insert":
                data[at:at] = rng.randbytes(rng.randint(1, 3))
            elif action == "delete":
                del data[at:at + rng.randint(1, 3)]
            elif action == "replace":
                data[at] = rng.randrange(256)
            else:
                del data[at:]
            shown = check_in_page(page, bytes(data))
            cli = check_with_cli(tmp_path, bytes(data), "--policy", proofs.ledger.vkey)
            assert shown["checks"] == cli["checks"], (action, at, shown["details"])


# Private readings: a commitment in the signed payload, values only in a disclosed proof ----------

def _cli_text(tmp: Path, data: bytes, *key_args: str) -> str:
    path = tmp / "candidate.proof"
    path.write_bytes(data)
    return str(run_cli("verify-proof", str(path), *key_args).output)


def test_a_private_readings_proof_verifies_without_its_values(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    pin(page, proofs.policy())
    shown = check_in_page(page, proofs.private, "oxi-09-1.proof")
    cli = check_with_cli(tmp_path, proofs.private, "--policy", proofs.ledger.vkey)
    assert cli["ok"] and shown["ok"], shown["details"]
    assert shown["checks"] == cli["checks"] and "disclosed values" not in shown["details"]
    assert shown["details"] == cli["details"]
    proven = {k: v for k, v in shown["proven"].items() if not k.startswith("_")}
    assert proven == cli["proven"] and proven["measurements"] == [] and "commitment" in proven
    line = page.inner_text("[data-field='values']")
    assert line.startswith("private reading: values not disclosed (the device signed")
    assert f"  {line}\n" in _cli_text(tmp_path, proofs.private, "--policy", proofs.ledger.vkey)
    text = page.inner_text("#proven-section")
    assert "spo2" not in text and "finger_out" not in text
    assert page.eval_on_selector_all("#values tr", "rows => rows.length") == 0


def test_a_disclosed_opening_is_checked_against_the_commitment_and_shown(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    pin(page, proofs.policy())
    shown = check_in_page(page, proofs.disclosed, "oxi-09-1.proof")
    cli = check_with_cli(tmp_path, proofs.disclosed, "--policy", proofs.ledger.vkey)
    assert cli["ok"] and shown["ok"], shown["details"]
    assert shown["checks"] == cli["checks"] and ("disclosed values", "PASS") in shown["checks"]
    assert shown["details"] == cli["details"]
    proven = {k: v for k, v in shown["proven"].items() if not k.startswith("_")}
    assert proven == cli["proven"]
    assert proven["disclosed"] == {"measurements": [{"n": "spo2", "u": "%", "v": 95},
                                                    {"n": "pulse", "u": "1/min", "v": 62.5}],
                                   "event": {"finger_out": False}}
    line = page.inner_text("[data-field='values']")
    assert f"  {line}:\n" in _cli_text(tmp_path, proofs.disclosed, "--policy", proofs.ledger.vkey)
    rows = page.eval_on_selector_all(
        "#values tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))")
    assert rows == [["spo2", "95", "%", ""], ["pulse", "62.5", "1/min", ""]]
    assert '"finger_out":false' in page.inner_text("[data-field='event']").replace(" ", "")

    # Tampered openings: each fails "disclosed values", as verify-proof says.
    from dataclasses import replace

    from provenance.sealed_values import Opening, encode_values, open_values

    pf = decode_log_proof(proofs.disclosed)
    assert pf.opening is not None
    opening = Opening.decode(pf.opening)
    measurements, event = open_values(opening.values)
    changed = (replace(measurements[0], value=96), *measurements[1:])
    salt = bytearray(opening.salt)
    salt[7] ^= 0x01
    public = decode_log_proof(proofs.cbor)
    tampered = {
        "changed value": (Opening(opening.salt, encode_values(changed, event)).encode(),
                          "disclosed values"),
        "changed salt": (Opening(bytes(salt), opening.values).encode(), "disclosed values"),
        "event left out": (Opening(opening.salt, encode_values(measurements, None)).encode(),
                           "disclosed values"),
        "another reading's opening": (proofs.other_opening, "disclosed values"),
        "not an opening": (cbor.encode({1: opening.salt}), "disclosed values"),
        "values not CBOR": (cbor.encode({1: opening.salt, 2: b"\xff"}), "disclosed values"),
    }
    for name, (data, must_fail) in tampered.items():
        proof = replace(pf, opening=data).encode()
        shown = check_in_page(page, proof)
        cli = check_with_cli(tmp_path, proof, "--policy", proofs.ledger.vkey)
        assert shown["checks"] == cli["checks"], (name, shown["details"], cli["details"])
        assert failing(shown["checks"]) == [must_fail], (name, shown["checks"])
        assert not shown["ok"] and shown["proven"] is None, name
        assert shown["details"][must_fail] == cli["details"][must_fail], name
        if name.startswith("changed"):
            assert "do not hash to the commitment" in shown["details"][must_fail], name

    # An opening put in a public reading's proof; an opening that is not a byte string.
    for data, must_fail in ((replace(public, opening=pf.opening).encode(), "disclosed values"),
                            (cbor.encode({**cbor2_loads(proofs.disclosed), 10: 7}),
                             "proof file format")):
        shown = check_in_page(page, data)
        cli = check_with_cli(tmp_path, data, "--policy", proofs.ledger.vkey)
        assert shown["checks"] == cli["checks"] and failing(shown["checks"]) == [must_fail]
        assert shown["details"][must_fail] == cli["details"][must_fail]


# End to end through `ledger-collector serve`: a reading's page, its link, the check -------------

def test_a_reading_pages_link_checks_its_proof_in_the_browser_through_serve(
    browser: Any, proofs: Proofs, tmp_path: Path
) -> None:
    """The view serves the page at /verify and each reading's proof; following a reading page's
    "check in your browser" link fetches the proof from the view, and with the collector's
    keys pinned it verifies: a public reading with its values, a private one without."""
    import urllib.parse
    import urllib.request

    from tests.web.conftest import start_view, stop_view

    view = start_view(proofs.ledger.db, tmp_path / "view-cache")
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        for n, (device, seq) in enumerate((("arc-07", 2), ("oxi-09", 1))):
            page.goto(f"{view.url}/devices/{device}/readings/{seq}")
            proof_path = f"/devices/{device}/readings/{seq}/proof"
            link = "/verify?" + urllib.parse.urlencode({"proof": proof_path})
            assert page.get_attribute("#verify-link", "href") == link
            page.click("#verify-link")
            page.wait_for_function("() => Number(document.body.dataset.checked || 0) > 0",
                                   timeout=15_000)
            assert urllib.parse.urlsplit(page.url).path == "/verify"
            if n == 0:  # nothing pinned yet: it cannot vouch for the checkpoint
                assert page.inner_text("#verdict") == "proof FAILED"
                assert page.get_attribute("tr[data-check='checkpoint signature']",
                                          "data-status") == "FAIL"
                pin(page, proofs.policy())  # the collector's vkey file; re-checks the proof
                page.wait_for_function("() => Number(document.body.dataset.checked) > 1",
                                       timeout=15_000)
            assert page.inner_text("#verdict") == "proof VERIFIED", page.inner_text("#checks")
            assert f"{device}-{seq}.proof" in page.inner_text("#file-name")
            served = page.evaluate("window.lastReport")
            with urllib.request.urlopen(view.url + proof_path, timeout=15) as resp:
                data = resp.read()  # the same bytes the page fetched, to verify-proof
            cli = check_with_cli(tmp_path, data, "--policy", proofs.ledger.vkey)
            assert cli["ok"]
            assert [(c["name"], c["status"]) for c in served["checks"]] == cli["checks"]
            assert served["proven"]["device_id"] == device and served["proven"]["seq"] == seq
            if device == "oxi-09":
                assert page.inner_text("[data-field='values']").startswith(
                    "private reading: values not disclosed")
                assert page.eval_on_selector_all("#values tr", "rows => rows.length") == 0
            else:
                assert "21.5" in page.inner_text("#values")
        assert not errors, errors
    finally:
        context.close()
        stop_view(view)


def test_private_readings_history_and_damaged_openings_get_the_verdicts_of_the_cli(
    page: Any, proofs: Proofs, tmp_path: Path
) -> None:
    """A history of private readings (commitments only) as verify-history sees it, and one
    flipped bit at every third byte of a disclosed proof's opening, as verify-proof sees it."""
    pin(page, proofs.policy())
    shown = check_in_page(page, proofs.private_history, "oxi-09.history")
    cli = history_with_cli(tmp_path, proofs.private_history, "--policy", proofs.ledger.vkey)
    assert cli["ok"] and shown["ok"], shown["details"]
    assert shown["checks"] == cli["checks"] and shown["details"] == cli["details"]
    assert page.inner_text("#summary") == cli["summary"]

    opening = decode_log_proof(proofs.disclosed).opening
    assert opening is not None and proofs.disclosed.endswith(opening)
    start = len(proofs.disclosed) - len(opening) - 3  # key 10, the byte string's 2-byte head
    outcomes = set()
    for at in range(start, len(proofs.disclosed), 3):
        data = _flip(proofs.disclosed, at)
        shown = check_in_page(page, data)
        cli = check_with_cli(tmp_path, data, "--policy", proofs.ledger.vkey)
        assert shown["checks"] == cli["checks"], (at, shown["details"], cli["details"])
        assert shown["ok"] == cli["ok"], at
        outcomes.add(tuple(failing(shown["checks"])))
    assert ("disclosed values",) in outcomes and ("proof file format",) in outcomes, outcomes
