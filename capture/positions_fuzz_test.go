package capture

import (
	"maps"
	"testing"
)

// FuzzDecodePositions: a position file may hold anything a crash or a
// damaged disk leaves. Decoding never panics; what decodes re-encodes to
// the same bytes, and every encoded set of positions decodes to itself.
func FuzzDecodePositions(f *testing.F) {
	good, _ := encodePositions(7, Positions{"shard-0001": "49590338271490256608559692538361571095921575989136588898", "gtid": "0-1-42"})
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte("STELEPOS"))
	f.Fuzz(func(t *testing.T, data []byte) {
		gen, pos, err := decodePositions(data)
		if err != nil {
			return
		}
		again, err := encodePositions(gen, pos)
		if err != nil {
			t.Fatal(err)
		}
		gen2, pos2, err := decodePositions(again)
		if err != nil || gen2 != gen || !maps.Equal(pos, pos2) {
			t.Fatalf("positions do not survive a round trip: %d %v → %d %v (%v)", gen, pos, gen2, pos2, err)
		}
	})
}
