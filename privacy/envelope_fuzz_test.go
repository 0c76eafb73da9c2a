package privacy

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/record"
)

// FuzzReadStoredImage: readers open the envelopes of images read from the
// log (or a replica's stream, or an export), which damage or a hostile
// operator can make hold anything. Revealing for every role, unsealing,
// re-deriving and listing subjects never panic, and whatever comes back
// without an error is JSON.
func FuzzReadStoredImage(f *testing.F) {
	fx := newFixture(f)
	ctx := context.Background()
	at := time.Date(2026, 3, 10, 11, 0, 0, 0, time.UTC)
	sealed := customer(f, "7", alice, at)
	if err := fx.g.Seal(ctx, sealed); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(sealed.After))
	f.Add(bytes.Replace(sealed.After, []byte(`"$pii":{"`), []byte(`"$pii":{"x`), 1))
	f.Add([]byte(`{"$pii":{"email":"AAAA"},"id":7}`))
	f.Add([]byte(`{"$pii":{"email,name":""},"id":7}`))
	f.Add([]byte(`{"id":7,"name":{"$sealed":{"alg":"A256GCM","ct":"AAAA","kid":"k"}}}`))
	f.Add([]byte(`{"$pii":[],"id":7}`))
	f.Fuzz(func(t *testing.T, img []byte) {
		stored := func() *record.Record {
			r := *sealed
			r.Key, r.After, r.Derived = json.RawMessage(`{"id":7}`), json.RawMessage(bytes.Clone(img)), nil
			return &r
		}
		valid := json.Valid(img)
		for _, role := range auth.Roles {
			r := stored()
			if _, err := fx.g.Reveal(ctx, role, r); err == nil && valid && !json.Valid(r.After) {
				t.Fatalf("reveal for %s of %s gave %s", role, img, r.After)
			}
		}
		if r := stored(); fx.g.Unseal(ctx, r) == nil && valid && !json.Valid(r.After) {
			t.Fatalf("unseal of %s gave %s", img, r.After)
		}
		r := stored()
		_ = fx.g.Rederive(ctx, r)
		fx.g.SubjectsOf(stored())
	})
}
