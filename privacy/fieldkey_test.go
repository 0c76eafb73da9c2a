package privacy

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// TestFieldKeyIsHKDF: the field key derived on the stack is HKDF-SHA256
// of the two keys, as envelopes sealed before were keyed, for keys of the
// keystore's size and for longer ones (which take hkdf.Key itself).
func TestFieldKeyIsHKDF(t *testing.T) {
	for _, n := range []int{32, 32, 32, 1, 48, 64} {
		sk, pk := make([]byte, n), make([]byte, 32)
		rand.Read(sk)
		rand.Read(pk)
		want, err := hkdf.Key(sha256.New, append(bytes.Clone(sk), pk...), nil, "stele field key v1", 32)
		if err != nil {
			t.Fatal(err)
		}
		var got [32]byte
		if err := fieldKeyBytes(&got, sk, pk); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:], want) {
			t.Fatalf("subject key of %d bytes: field key %x, HKDF gives %x", n, got, want)
		}
	}
}

func BenchmarkFieldKey(b *testing.B) {
	sk, pk := make([]byte, 32), make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fieldKey(sk, pk); err != nil {
			b.Fatal(err)
		}
	}
}
