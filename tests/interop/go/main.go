// Command interop checks SensorLedger's checkpoints and proofs with implementations that share
// no code with it: golang.org/x/mod/sumdb/note (Ed25519 note signatures), golang.org/x/mod/sumdb/tlog
// (RFC 6962 inclusion and consistency proofs), and an ECDSA (signed-note type 0x02) verifier written
// here from the C2SP signed-note specification on Go's crypto/ecdsa.
//
// Usage: interop DIR. DIR holds the files tests/interop/test_go_interop.py writes:
//
//	log.vkey            Ed25519 verifier key, name+hex(key id)+base64(0x01 || key)
//	collector.vkey      ECDSA verifier key, name+hex(key id)+base64(0x02 || DER SPKI)
//	old.checkpoint      an earlier checkpoint note
//	new.checkpoint      a later checkpoint note
//	entry.bin           one logged entry (the leaf data)
//	entry.tlog-proof    c2sp.org/tlog-proof@v1 of entry.bin against new.checkpoint
//	consistency.txt     "old N", then one base64 hash per line: the consistency proof
//	                    from old.checkpoint to new.checkpoint
//
// It prints one "ok" line per check and exits 0, or prints "FAIL: ..." and exits 1.
//
// Usage: interop tiles DIR VKEY. DIR holds a log published as C2SP tlog-tiles (`ledger-collector
// tiles export`): its checkpoint is opened with the Ed25519 verifier key VKEY, its hash tiles are
// read through tlog.TileHashReader (height 8; C2SP paths carry no height element, x/mod's do),
// which checks every tile it reads against the checkpoint's tree hash, and every entry of the
// entry bundles (big-endian uint16 length prefixes, read here from the C2SP text) must hash to
// its leaf, with a record proof from tlog.ProveRecord that tlog.CheckRecord accepts.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func read(dir, name string) []byte {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		fail("%v", err)
	}
	return data
}

func parseCheckpoint(text string) (checkpoint, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return checkpoint{}, errors.New("checkpoint has fewer than 3 lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return checkpoint{}, fmt.Errorf("bad tree size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return checkpoint{}, fmt.Errorf("bad root hash %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return checkpoint{lines[0], size, root}, nil
}

// openEd25519 verifies a checkpoint note with x/mod's note package (Ed25519 only).
func openEd25519(msg []byte, vkey string) (checkpoint, *note.Note) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		fail("x/mod note rejects the Ed25519 verifier key: %v", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fail("x/mod note rejects the checkpoint: %v", err)
	}
	if len(n.Sigs) != 1 {
		fail("expected 1 verified Ed25519 signature, got %d", len(n.Sigs))
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		fail("checkpoint body: %v", err)
	}
	return cp, n
}

// verifyECDSA checks the type 0x02 signature line of vkey's key on a note, following
// c2sp.org/signed-note: key id = SHA-256(DER SPKI)[:4], signature = ASN.1 ECDSA over
// SHA-256 of the note text.
func verifyECDSA(msg []byte, vkey string) error {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return errors.New("vkey is not name+id+key")
	}
	name := parts[0]
	id, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil || len(parts[1]) != 8 {
		return fmt.Errorf("bad key id %q", parts[1])
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) < 2 || key[0] != 0x02 {
		return errors.New("vkey is not an ECDSA (0x02) key")
	}
	der := key[1:]
	sum := sha256.Sum256(der)
	if binary.BigEndian.Uint32(sum[:4]) != uint32(id) {
		return errors.New("key id is not SHA-256(SPKI)[:4]")
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return err
	}
	ecKey, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("vkey is not an ECDSA public key")
	}
	split := bytes.LastIndex(msg, []byte("\n\n"))
	if split < 0 {
		return errors.New("note has no blank line")
	}
	text, sigs := msg[:split+1], msg[split+2:]
	digest := sha256.Sum256(text)
	found := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(sigs), "\n"), "\n") {
		if !strings.HasPrefix(line, "— ") {
			return fmt.Errorf("bad signature line %q", line)
		}
		fields := strings.SplitN(strings.TrimPrefix(line, "— "), " ", 2)
		if len(fields) != 2 {
			return fmt.Errorf("bad signature line %q", line)
		}
		blob, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil || len(blob) < 5 {
			return fmt.Errorf("bad signature encoding in %q", line)
		}
		if fields[0] != name || binary.BigEndian.Uint32(blob[:4]) != uint32(id) {
			continue // another key's signature: ignored, as the specification says
		}
		if !ecdsa.VerifyASN1(ecKey, digest[:], blob[4:]) {
			return fmt.Errorf("ECDSA signature of %s does not verify", name)
		}
		found++
	}
	if found != 1 {
		return fmt.Errorf("expected one signature by %s+%08x, found %d", name, id, found)
	}
	return nil
}

func parseHashes(lines []string) (tlog.TreeProof, error) {
	var out tlog.TreeProof
	for _, line := range lines {
		raw, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(raw) != tlog.HashSize {
			return nil, fmt.Errorf("bad hash line %q", line)
		}
		var h tlog.Hash
		copy(h[:], raw)
		out = append(out, h)
	}
	return out, nil
}

// checkTlogProof parses a c2sp.org/tlog-proof@v1 file and checks it with tlog.CheckRecord.
// tlog's RecordProof lists hashes from the leaf's sibling up, as RFC 6962/9162 PATH does,
// so the hashes are used in the file's order.
func checkTlogProof(data []byte, entry []byte, vkey string) (int64, checkpoint) {
	sep := bytes.Index(data, []byte("\n\n"))
	if sep < 0 {
		fail("tlog-proof has no blank line")
	}
	lines := strings.Split(string(data[:sep]), "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		fail("tlog-proof header is %q", lines[0])
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		fail("tlog-proof has no index line")
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(lines[0], "index "), 10, 64)
	if err != nil {
		fail("tlog-proof index: %v", err)
	}
	path, err := parseHashes(lines[1:])
	if err != nil {
		fail("tlog-proof path: %v", err)
	}
	cp, _ := openEd25519(data[sep+2:], vkey)
	leaf := tlog.RecordHash(entry)
	if err := tlog.CheckRecord(tlog.RecordProof(path), cp.size, cp.root, index, leaf); err != nil {
		fail("tlog.CheckRecord rejects leaf %d of %d: %v", index, cp.size, err)
	}
	return index, cp
}

// checkConsistency checks "old N" + base64 lines with tlog.CheckTree. tlog's TreeProof has
// the RFC 6962/9162 SUBPROOF order (deepest node first), so no reordering is needed.
func checkConsistency(data []byte, old, cur checkpoint) {
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if !strings.HasPrefix(lines[0], "old ") {
		fail("consistency proof has no 'old N' line")
	}
	size, err := strconv.ParseInt(strings.TrimPrefix(lines[0], "old "), 10, 64)
	if err != nil || size != old.size {
		fail("consistency proof is from size %q, the old checkpoint has %d", lines[0], old.size)
	}
	proof, err := parseHashes(lines[1:])
	if err != nil {
		fail("consistency proof: %v", err)
	}
	if err := tlog.CheckTree(proof, cur.size, cur.root, old.size, old.root); err != nil {
		fail("tlog.CheckTree rejects %d -> %d: %v", old.size, cur.size, err)
	}
}

// c2spTiles reads tlog-tiles hash tiles from a directory for tlog.TileHashReader.
type c2spTiles struct{ dir string }

func (c c2spTiles) Height() int { return 8 }

func (c c2spTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		// x/mod: tile/8/L/N[.p/W]; C2SP: tile/L/N[.p/W].
		path := "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
		data, err := os.ReadFile(filepath.Join(c.dir, path))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (c c2spTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func checkTiles(dir, vkey string) {
	cp, _ := openEd25519(read(dir, "checkpoint"), vkey)
	tree := tlog.Tree{N: cp.size, Hash: cp.root}
	thr := tlog.TileHashReader(tree, c2spTiles{dir})
	root, err := tlog.TreeHash(cp.size, thr)
	if err != nil {
		fail("tlog.TileHashReader rejects our tiles: %v", err)
	}
	if root != cp.root {
		fail("tiles give root %v, the checkpoint says %v", root, cp.root)
	}
	fmt.Printf("ok tlog.TileHashReader tree hash of %d leaves = checkpoint root\n", cp.size)
	var checked int64
	for n := int64(0); n*256 < cp.size; n++ {
		width := cp.size - n*256
		name := "tile/entries/" + strings.TrimPrefix(tlog.Tile{H: 8, L: 0, N: n, W: 256}.Path(), "tile/8/0/")
		if width < 256 {
			name = fmt.Sprintf("%s.p/%d", name, width)
		} else {
			width = 256
		}
		data := read(dir, name)
		for k := int64(0); k < width; k++ {
			if len(data) < 2 {
				fail("%s ends before entry %d", name, k)
			}
			size := int(binary.BigEndian.Uint16(data[:2]))
			if len(data) < 2+size {
				fail("%s: entry %d is cut short", name, k)
			}
			entry := data[2 : 2+size]
			data = data[2+size:]
			index := n*256 + k
			proof, err := tlog.ProveRecord(cp.size, index, thr)
			if err != nil {
				fail("tlog.ProveRecord %d: %v", index, err)
			}
			if err := tlog.CheckRecord(proof, cp.size, cp.root, index, tlog.RecordHash(entry)); err != nil {
				fail("entry %d of %s does not verify: %v", index, name, err)
			}
			checked++
		}
		if len(data) != 0 {
			fail("%s holds more than %d entries", name, width)
		}
	}
	fmt.Printf("ok tlog.CheckRecord every entry of the entry bundles (%d)\n", checked)
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "tiles" {
		checkTiles(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) != 2 {
		fail("usage: interop DIR | interop tiles DIR VKEY")
	}
	dir := os.Args[1]
	edKey := strings.TrimSpace(string(read(dir, "log.vkey")))
	ecKey := strings.TrimSpace(string(read(dir, "collector.vkey")))

	newNote := read(dir, "new.checkpoint")
	cur, n := openEd25519(newNote, edKey)
	fmt.Printf("ok note.Open Ed25519 %s size %d (%d other signature(s) ignored)\n",
		cur.origin, cur.size, len(n.UnverifiedSigs))
	if err := verifyECDSA(newNote, ecKey); err != nil {
		fail("ECDSA: %v", err)
	}
	fmt.Println("ok crypto/ecdsa type 0x02 signature")

	old, _ := openEd25519(read(dir, "old.checkpoint"), edKey)
	if old.origin != cur.origin {
		fail("old checkpoint origin %q differs from %q", old.origin, cur.origin)
	}

	index, proofCp := checkTlogProof(read(dir, "entry.tlog-proof"), read(dir, "entry.bin"), edKey)
	if proofCp != cur {
		fail("the tlog-proof's checkpoint differs from new.checkpoint")
	}
	fmt.Printf("ok tlog.CheckRecord leaf %d of %d\n", index, cur.size)

	checkConsistency(read(dir, "consistency.txt"), old, cur)
	fmt.Printf("ok tlog.CheckTree %d -> %d\n", old.size, cur.size)
}
