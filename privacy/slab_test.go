package privacy

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

// TestSealedImagesAreIndependent: sealed images and their parts are carved
// from shared slabs, so a caller growing one record's image, or changing
// its derived values, must leave every other record sealed in the same run
// as it was, each still opening to its own values.
func TestSealedImagesAreIndependent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	at := f.clock.Add(-time.Hour)
	var recs []*record.Record
	var clear [][]byte
	for i := range 40 { // more than a slab of images and of parts
		id := strconv.Itoa(100 + i)
		r := customer(t, id, `{"id":`+id+`,"email":"u`+id+`@example.com","name":"User `+id+`","plan":"gold"}`, at)
		clear = append(clear, bytes.Clone(r.After))
		if err := f.g.Seal(ctx, r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	stored := make([][]byte, len(recs))
	for i, r := range recs {
		stored[i] = bytes.Clone(r.After)
	}
	for i, r := range recs {
		if i%2 == 0 {
			r.After = append(r.After, bytes.Repeat([]byte("x"), 300)...) // past its slack
			r.Derived.Subjects = append(r.Derived.Subjects, "someone else")
			r.Derived.Terms[0].Token[0] ^= 0xff
			r.Schema.Version = 99
		}
	}
	for i, r := range recs {
		if i%2 == 0 {
			continue
		}
		if !bytes.Equal(r.After, stored[i]) {
			t.Fatalf("record %d: sealed image changed to %s when its neighbours' were changed", i, r.After)
		}
		if len(r.Derived.Subjects) != 1 || r.Schema.Version != 1 {
			t.Fatalf("record %d: derived subjects %q, schema %+v after its neighbours' were changed", i, r.Derived.Subjects, r.Schema)
		}
		if want := f.g.BlindToken("email", "u"+strconv.Itoa(100+i)+"@example.com"); !bytes.Equal(r.Derived.Terms[0].Token, want) {
			t.Fatalf("record %d: blind token changed when its neighbours' were changed", i)
		}
		c := *r
		if err := f.g.Unseal(ctx, &c); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.After, clear[i]) {
			t.Fatalf("record %d opens to %s, want %s", i, c.After, clear[i])
		}
	}
}
