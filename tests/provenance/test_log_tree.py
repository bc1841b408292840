"""The one log tree: perfect-node positions and the compact range against a naive reference
tree, format 2 block headers, proof format 2 / tlog-proof and the trust policy."""

from __future__ import annotations

import random

import pytest

from provenance import cbor, merkle
from provenance.block import GENESIS_BLOCK_HASH, BlockHeader, SignedBlock
from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.compact import (
    TILE_WIDTH,
    CompactRange,
    node_from_tile,
    range_nodes,
    subtree_from_nodes,
    tile_entries,
    tile_span,
)
from provenance.envelope import Envelope, sign_reading
from provenance.errors import MalformedError
from provenance.keys import PrivateKey
from provenance.logproof import LogProof, decode_log_proof, verify_any_proof, verify_log_proof
from provenance.merkle import SubtreeRangeError
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner
from provenance.trust import TrustPolicy, parse_policy

from .samples import EXAMPLE_COLLECTOR_KEY, reading

HASH_LEAF = merkle.RFC9162_SHA256.hash_leaf
ORIGIN = "sensorledger.example/test-log"


def _leaves(n: int) -> list[bytes]:
    return [HASH_LEAF(b"leaf %d" % i) for i in range(n)]


def _naive_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.RFC9162_SHA256.hash_children(_naive_root(leaves[:k]), _naive_root(leaves[k:]))


def _grown(n: int, seed: int) -> tuple[CompactRange, dict[tuple[int, int], bytes]]:
    """A tree of n leaves appended in random batches, with every node the batches yielded."""
    rng = random.Random(seed)
    leaves, tree, nodes = _leaves(n), CompactRange(), {}
    while tree.size < n:
        batch = leaves[tree.size:tree.size + rng.randint(1, 9)]
        for level, index, digest in tree.append(batch):
            assert (level, index) not in nodes, "a node is yielded twice"
            nodes[(level, index)] = digest
    return tree, nodes


@pytest.mark.parametrize("n", range(1, 65))
def test_compact_range_and_stored_nodes_give_every_proof_of_the_reference_tree(n: int) -> None:
    leaves = _leaves(n)
    tree, nodes = _grown(n, n)
    assert tree.root() == _naive_root(leaves) == merkle.root(leaves)
    # every perfect subtree is yielded exactly once: 2n - popcount(n) nodes
    assert len(nodes) == 2 * n - bin(n).count("1")
    for size in range(1, n + 1):
        root = merkle.root(leaves[:size])
        assert subtree_from_nodes(0, size, nodes) == root
        for index in range(size):
            path = [subtree_from_nodes(b, e, nodes)
                    for b, e in merkle.inclusion_nodes(index, size)]
            assert path == merkle.inclusion_proof(leaves[:size], index)
            merkle.verify_inclusion(index, size, leaves[index], path, root)
        for old in range(1, size + 1):
            proof = [subtree_from_nodes(b, e, nodes)
                     for b, e in merkle.consistency_nodes(old, size)]
            assert proof == merkle.consistency_proof(leaves[:size], old)
            merkle.verify_consistency(old, size, merkle.root(leaves[:old]), root, proof)


class _SameHashes(merkle.Hasher):
    """The RFC 9162 hasher under another type: the general (method call) path."""

    __slots__ = ()


@pytest.mark.parametrize("hasher", [merkle.RFC9162_SHA256, _SameHashes()])
def test_extend_keeps_the_right_edge_that_append_keeps(hasher: merkle.Hasher) -> None:
    """``extend`` (the audit's: no node list) grows the same tree as ``append``, from any
    size, in batches of any size."""
    rng = random.Random(5)
    leaves = _leaves(300)
    appended, extended = CompactRange(hasher=hasher), CompactRange(hasher=hasher)
    while appended.size < len(leaves):
        batch = leaves[appended.size:appended.size + rng.randint(1, 40)]
        appended.append(batch)
        extended.extend(batch)
        assert (extended.size, extended.hashes) == (appended.size, appended.hashes)
    assert extended.root() == merkle.root(leaves)


def test_a_compact_range_rebuilt_from_stored_nodes_continues_the_same_tree() -> None:
    tree, nodes = _grown(45, 1)
    positions = range_nodes(0, 45)
    again = CompactRange(45, [nodes[p] for p in positions])
    more = _leaves(70)[45:]
    tree.append(more)
    again.append(more)
    assert again.root() == tree.root() == merkle.root(_leaves(70))
    with pytest.raises(ValueError):
        CompactRange(45, [nodes[p] for p in positions][:-1])


@pytest.mark.parametrize("n", [1, 255, 256, 257, 700, 65_537])
def test_tiles_hold_every_perfect_node(n: int) -> None:
    _, nodes = _grown_fast(n)
    tiles: dict[tuple[int, int], bytes] = {}
    for key, entries in tile_entries((lv, i, h) for (lv, i), h in nodes.items()).items():
        assert [e for e, _ in entries] == list(range(len(entries)))
        tiles[key] = b"".join(h for _, h in entries)
    assert all(len(t) <= 32 * TILE_WIDTH for t in tiles.values())
    rng = random.Random(n)
    for (level, index), digest in rng.sample(sorted(nodes.items()), min(len(nodes), 400)):
        tile_level, tile_index, first, count = tile_span(level, index)
        assert node_from_tile(tiles[(tile_level, tile_index)], first, count) == digest
    assert node_from_tile(tiles[(0, (n - 1) >> 8)], (n - 1) % 256, 2) is None  # not there yet


def _grown_fast(n: int) -> tuple[CompactRange, dict[tuple[int, int], bytes]]:
    tree = CompactRange()
    nodes = {(lv, i): h for lv, i, h in tree.append(_leaves(n))}
    return tree, nodes


def test_ranges_that_are_not_tree_nodes_are_refused() -> None:
    for begin, end in ((1, 3), (2, 6), (3, 3), (5, 2)):
        with pytest.raises(SubtreeRangeError):
            range_nodes(begin, end)
    assert range_nodes(8, 13) == [(2, 2), (0, 12)]


# format 2 block headers -----------------------------------------------------------------------

def _v2(**changes: object) -> BlockHeader:
    fields: dict[str, object] = dict(
        height=3, prev_hash=bytes(range(32)), merkle_root=bytes(32 * [7]), leaf_count=10,
        first_time_ms=1, last_time_ms=2, sealed_at_ms=3, collector_kid=EXAMPLE_COLLECTOR_KEY.kid,
        version=2, tree_size_before=90)
    fields.update(changes)
    return BlockHeader(**fields)  # type: ignore[arg-type]


def test_a_format_2_header_states_tree_sizes_and_round_trips_signed() -> None:
    header = _v2()
    assert header.tree_size_after == 100
    body = cbor.decode(header.to_payload(), what="header")
    assert body[10] == 90 and body[11] == 100 and 5 not in body
    signed = SignedBlock.seal(header, EXAMPLE_COLLECTOR_KEY)
    again = SignedBlock.decode(signed.raw)
    again.verify(EXAMPLE_COLLECTOR_KEY.public)
    assert again.header == header


@pytest.mark.parametrize("body_change", [
    {11: 89},                 # tree shrinks
    {11: 90},                 # empty block
    {5: 10},                  # a format 1 key in a format 2 header
    {10: -1},
    {10: True},
])
def test_malformed_format_2_headers_are_refused(body_change: dict[int, object]) -> None:
    body = cbor.decode(_v2().to_payload(), what="header")
    body.update(body_change)
    with pytest.raises(MalformedError):
        BlockHeader.from_payload(cbor.encode(body))


def test_a_format_1_header_has_no_tree_size_and_a_format_2_one_needs_it() -> None:
    with pytest.raises(MalformedError):
        _v2(tree_size_before=None)
    with pytest.raises(MalformedError):
        _v2(version=1)
    v1 = _v2(version=1, tree_size_before=None, height=0, prev_hash=GENESIS_BLOCK_HASH)
    assert v1.tree_size_after is None
    assert BlockHeader.from_payload(v1.to_payload()) == v1


# proof format 2 -------------------------------------------------------------------------------

DEVICE = PrivateKey.generate()
NOTE_KEY = Ed25519NoteSigner.generate(ORIGIN)
SIGNERS = [NOTE_KEY, EcdsaNoteSigner(ORIGIN, EXAMPLE_COLLECTOR_KEY)]


def _proof(n: int = 13, index: int = 6) -> LogProof:
    envelopes = [sign_reading(reading(i), DEVICE) for i in range(n)]
    leaves = [HASH_LEAF(e) for e in envelopes]
    note = sign_checkpoint(Checkpoint(ORIGIN, n, merkle.root(leaves)), SIGNERS)
    return LogProof(envelopes[index], DEVICE.public.der, index,
                    tuple(merkle.inclusion_proof(leaves, index)), note)


POLICY = TrustPolicy((NOTE_KEY.verifier, SIGNERS[1].verifier))


def test_proof_format_2_and_tlog_proof_verify_and_round_trip() -> None:
    pf = _proof()
    for data in (pf.encode(), pf.to_tlog_proof()):
        assert decode_log_proof(data) == pf
        report = verify_log_proof(data, POLICY)
        assert report.ok, report.render()
        assert [c.name for c in report.checks] == ["proof file format", "checkpoint signature",
                                                   "device key binding", "device signature",
                                                   "inclusion in log"]
    # a PEM alone verifies (the ECDSA signature), and so does the vkey alone
    assert verify_any_proof(pf.encode(), TrustPolicy(collector_keys=(
        EXAMPLE_COLLECTOR_KEY.public,))).ok
    assert verify_any_proof(pf.encode(), TrustPolicy((NOTE_KEY.verifier,))).ok


def test_every_bit_flip_of_a_format_2_proof_fails_under_the_full_policy() -> None:
    data = _proof(9, 4).encode()
    for i in range(len(data)):
        altered = bytearray(data)
        altered[i] ^= 0x01
        assert not verify_any_proof(bytes(altered), POLICY).ok, f"byte {i}"


@pytest.mark.parametrize("mutate", ["index", "size", "path_short", "path_long", "other_key"])
def test_a_shifted_index_a_truncated_path_or_an_untrusted_log_fails(mutate: str) -> None:
    pf = _proof()
    policy = POLICY
    if mutate == "index":
        pf = LogProof(pf.envelope, pf.device_public_key, pf.leaf_index + 1, pf.audit_path,
                      pf.checkpoint)
    elif mutate == "size":
        envelopes = [sign_reading(reading(i), DEVICE) for i in range(14)]
        leaves = [HASH_LEAF(e) for e in envelopes]
        note = sign_checkpoint(Checkpoint(ORIGIN, 14, merkle.root(leaves)), SIGNERS)
        pf = LogProof(pf.envelope, pf.device_public_key, pf.leaf_index, pf.audit_path, note)
    elif mutate == "path_short":
        pf = LogProof(pf.envelope, pf.device_public_key, pf.leaf_index, pf.audit_path[:-1],
                      pf.checkpoint)
    elif mutate == "path_long":
        pf = LogProof(pf.envelope, pf.device_public_key, pf.leaf_index,
                      (*pf.audit_path, bytes(32)), pf.checkpoint)
    else:
        policy = TrustPolicy((Ed25519NoteSigner.generate(ORIGIN).verifier,))
    report = verify_log_proof(pf.encode(), policy)
    assert not report.ok
    failed = [c.name for c in report.checks if not c.ok]
    assert failed == (["checkpoint signature"] if mutate == "other_key" else ["inclusion in log"])


def test_the_policy_file_takes_vkeys_bare_keys_and_pem_and_every_trusted_key_must_sign() -> None:
    text = (f"# the busan log\nlog {ORIGIN}\nvkey {NOTE_KEY.verifier.vkey}\n"
            f"{EXAMPLE_COLLECTOR_KEY.public.to_pem()}")
    policy = parse_policy(text)
    assert policy.origin == ORIGIN and len(policy.verifiers) == 1
    assert len(policy.collector_keys) == 1
    assert parse_policy(SIGNERS[1].verifier.vkey + "\n").verifiers[0].vkey == (
        SIGNERS[1].verifier.vkey)
    pf = _proof()
    assert verify_log_proof(pf.encode(), policy).ok
    only_ed25519 = sign_checkpoint(parse_checkpoint_of(pf), [NOTE_KEY])
    half = LogProof(pf.envelope, pf.device_public_key, pf.leaf_index, pf.audit_path,
                    only_ed25519)
    report = verify_log_proof(half.encode(), policy)
    assert not report.ok and "did not sign" in report.render()
    other_log = parse_policy(f"log other.example/log\nvkey {NOTE_KEY.verifier.vkey}\n")
    assert not verify_log_proof(pf.encode(), other_log).ok
    for bad in ("", "vkey nonsense\n", "frobnicate 1\n", "-----BEGIN PUBLIC KEY-----\nAAAA\n"):
        with pytest.raises(MalformedError):
            parse_policy(bad)


def parse_checkpoint_of(pf: LogProof) -> Checkpoint:
    from provenance.checkpoint import parse_checkpoint
    from provenance.note import parse_note

    return parse_checkpoint(parse_note(pf.checkpoint).text)


def test_a_format_1_proof_still_verifies_through_the_policy() -> None:
    from provenance.prooffile import ProofFile

    envelopes = [sign_reading(reading(i), DEVICE) for i in range(5)]
    leaves = [HASH_LEAF(e) for e in envelopes]
    times = [Envelope.decode(e).reading().time_ms for e in envelopes]
    header = BlockHeader(height=0, prev_hash=GENESIS_BLOCK_HASH, merkle_root=merkle.root(leaves),
                         leaf_count=5, first_time_ms=min(times), last_time_ms=max(times),
                         sealed_at_ms=max(times), collector_kid=EXAMPLE_COLLECTOR_KEY.kid)
    block = SignedBlock.seal(header, EXAMPLE_COLLECTOR_KEY)
    pf = ProofFile(envelopes[2], DEVICE.public.der, 2, tuple(merkle.inclusion_proof(leaves, 2)),
                   block.raw, EXAMPLE_COLLECTOR_KEY.kid)
    assert verify_any_proof(pf.encode(), POLICY).ok  # via the ECDSA vkey's key
    assert not verify_any_proof(pf.encode(), TrustPolicy((NOTE_KEY.verifier,))).ok
