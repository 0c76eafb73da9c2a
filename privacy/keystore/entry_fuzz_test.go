package keystore

import (
	"bytes"
	"testing"
)

// FuzzDecodeValues: a key-store value read from a shard file or a
// JetStream KV bucket may hold anything the disk or the servers give.
// Decoding never panics, and whatever decodes is exactly what encoding the
// decoded value writes: no two byte strings read as the same entry.
func FuzzDecodeValues(f *testing.F) {
	e := &entry{kind: KindSubject, name: "s-1", masterID: "file:test", wrapped: []byte("wrapped key bytes")}
	e.kid[0] = 3
	f.Add(appendEntryBody(nil, e))
	f.Add(appendMasterBody(nil, "file:test", []byte("wrapped master check")))
	f.Add(appendDestroyedBody(nil, e.kid))
	f.Add([]byte{formatVersion, byte(KindPeriod)})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, err := decodeEntry(b); err == nil {
			if again := appendEntryBody(nil, got); !bytes.Equal(again, b) {
				t.Fatalf("entry %x decodes, but encodes back as %x", b, again)
			}
			if !got.kind.valid() {
				t.Fatalf("entry %x decodes with kind %d", b, got.kind)
			}
		}
		if id, wrapped, err := decodeMaster(b); err == nil {
			if again := appendMasterBody(nil, id, wrapped); !bytes.Equal(again, b) {
				t.Fatalf("MASTER %x decodes, but encodes back as %x", b, again)
			}
		}
		if k, err := decodeDestroyed(b); err == nil {
			if again := appendDestroyedBody(nil, k); !bytes.Equal(again, b) {
				t.Fatalf("destroyed %x decodes, but encodes back as %x", b, again)
			}
		}
		// The bucket's keys are untrusted too.
		if nk, ok := parseNameKey(string(b)); ok && len(nk.name) > 0 && !nk.kind.valid() {
			t.Fatalf("name key %q parses with kind %d", b, nk.kind)
		}
		kidFromKey(string(b), kvKeyPrefix)
		kidFromKey(string(b), kvTombPfx)
	})
}
