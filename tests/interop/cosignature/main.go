// Command cosignature checks a witness cosignature (C2SP tlog-cosignature, cosignature/v1,
// Ed25519, signature type 0x04) on a checkpoint written by SensorLedger, written from the
// specification with Go's standard library and golang.org/x/mod/sumdb/note; it shares no code
// with the Python implementation.
//
//	cosignature LOG_VKEY WITNESS_VKEY NOTE_FILE
//
// The note must open with x/mod's note.Open under the log's Ed25519 key (the cosignature line
// is an unknown signature to it and must be ignored, as signed-note requires); then the
// witness's line, found by name and key hash, must verify over
// "cosignature/v1\ntime <t>\n" + note text. Prints "OK <timestamp>" or exits 1.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: cosignature LOG_VKEY WITNESS_VKEY NOTE_FILE")
	}
	msg, err := os.ReadFile(os.Args[3])
	if err != nil {
		fail("read: %v", err)
	}
	logKey, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fail("log vkey: %v", err)
	}
	n, err := note.Open(msg, note.VerifierList(logKey))
	if err != nil {
		fail("note.Open: %v", err)
	}

	parts := strings.SplitN(os.Args[2], "+", 3)
	if len(parts) != 3 {
		fail("witness vkey: want name+hash+key")
	}
	name := parts[0]
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || raw[0] != 0x04 {
		fail("witness vkey: want type 0x04 and a 32-byte Ed25519 key")
	}
	pub := ed25519.PublicKey(raw[1:])
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write(raw)
	sum := h.Sum(nil)
	keyHash := binary.BigEndian.Uint32(sum[:4])
	if fmt.Sprintf("%08x", keyHash) != parts[1] {
		fail("witness vkey: hash %s does not match its key (%08x)", parts[1], keyHash)
	}
	for _, sig := range n.UnverifiedSigs {
		if sig.Name != name || sig.Hash != keyHash {
			continue
		}
		blob, err := base64.StdEncoding.DecodeString(sig.Base64)
		if err != nil || len(blob) != 4+8+64 {
			fail("cosignature: want key hash, 8-byte timestamp and 64-byte signature")
		}
		ts := binary.BigEndian.Uint64(blob[4:12])
		var signed bytes.Buffer
		fmt.Fprintf(&signed, "cosignature/v1\ntime %d\n", ts)
		signed.WriteString(n.Text)
		if !ed25519.Verify(pub, signed.Bytes(), blob[12:]) {
			fail("cosignature of %s does not verify", name)
		}
		fmt.Printf("OK %d\n", ts)
		return
	}
	fail("no cosignature of %s+%08x on the note", name, keyHash)
}
