package privacy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
)

// Two data groups (two subjects) give an image two envelopes, each listing
// its own fields; names holding the list's separators round-trip; the
// stored image stays canonical.
func TestCompactEnvelopePerGroup(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const doc = `{"type":"object","properties":{
	  "id":{"type":"integer","x-subject":true},
	  "a.b,c~d":{"type":"string","x-pii":true},
	  "email":{"type":"string","x-pii":true,"x-mask":"last4"},
	  "referrer":{"type":"object","x-data-group":"referrer","properties":{
	    "id":{"type":"string","x-subject":true},
	    "name":{"type":"string","x-pii":true,"x-mask":"null"}}}}}`
	if _, _, err := f.schemas.Put(ctx, "crm.public.referrals", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	const img = `{"a.b,c~d":"odd name","email":"ann@example.com","id":3,"referrer":{"id":"r9","name":"Rita"}}`
	r := customer(t, "3", img, f.clock.Add(-1))
	r.Source.Table = "referrals"
	if err := f.g.Seal(ctx, r); err != nil {
		t.Fatal(err)
	}
	_, envs, ok, err := splitCompact(r.After)
	if !ok || err != nil || len(envs) != 2 {
		t.Fatalf("envelopes of %s: %d, %v", r.After, len(envs), err)
	}
	if envs[0].list != "a~1b~2c~0d,email" || envs[1].list != "referrer.name" {
		t.Fatalf("field lists %q and %q", envs[0].list, envs[1].list)
	}
	if c, _ := record.Canonical(r.After); !bytes.Equal(c, r.After) {
		t.Fatalf("sealed image not canonical:\n%s\n%s", r.After, c)
	}
	if len(r.Derived.Subjects) != 2 {
		t.Fatalf("subjects %v, want one per group", r.Derived.Subjects)
	}
	stored := bytes.Clone(r.After)
	analyst := *r
	if _, err := f.g.Reveal(ctx, auth.RoleAnalyst, &analyst); err != nil {
		t.Fatal(err)
	}
	if want := `{"a.b,c~d":"***","email":"***.com","id":3,"referrer":{"id":"r9","name":null}}`; string(analyst.After) != want {
		t.Fatalf("analyst sees %s, want %s", analyst.After, want)
	}
	r.After = bytes.Clone(stored)
	if err := f.g.Unseal(ctx, r); err != nil || string(r.After) != img {
		t.Fatalf("Unseal: %v\n got %s\nwant %s", err, r.After, img)
	}
	// The referrer's erasure leaves the other envelope sealed for a
	// service, and its fields erased.
	kids, err := f.keys.Destroy(ctx, keystore.KindSubject, f.g.subjectName("referrer", "r9"))
	if err != nil || len(kids) == 0 {
		t.Fatalf("destroy: %v %v", kids, err)
	}
	f.g.forget(kids)
	svc := *r
	svc.After = bytes.Clone(stored)
	if _, err := f.g.Reveal(ctx, auth.RoleService, &svc); err != nil {
		t.Fatal(err)
	}
	if s := string(svc.After); !strings.Contains(s, `"referrer":{"id":"r9","name":{"$erased":true}}`) || !strings.Contains(s, `"$pii":{"a~1b~2c~0d,email":"`) || strings.Contains(s, "referrer.name") {
		t.Fatalf("service after the referrer's erasure: %s", s)
	}
}

// A client may not send the member readers take for sealed fields.
func TestSealRefusesPIIMember(t *testing.T) {
	f := newFixture(t)
	r := customer(t, "7", `{"id":7}`, *f.clock)
	r.After = json.RawMessage(`{"$pii":{"email":"AgAA"},"id":7}`)
	err := f.g.Seal(context.Background(), r)
	var fe *record.FieldError
	if !errors.As(err, &fe) || fe.Field != "after.$pii" {
		t.Fatalf("Seal = %v; want a FieldError naming after.$pii", err)
	}
}

// An envelope listing a field the image also holds in clear is a forgery.
func TestCompactFieldAlsoInClearIsRefused(t *testing.T) {
	f := newFixture(t)
	r := sealed(t, f, "7", alice)
	r.After = bytes.Replace(r.After, []byte(`"id":7`), []byte(`"email":"x@y.z","id":7`), 1)
	if err := f.g.Unseal(context.Background(), r); !errors.Is(err, ErrBadEnvelope) {
		t.Fatalf("Unseal = %v; want ErrBadEnvelope", err)
	}
}

// BenchmarkReveal is the read path of a sealed record, per role.
func BenchmarkReveal(b *testing.B) {
	env := newBenchEnv(b, b.TempDir())
	ctx := context.Background()
	r := benchRecords(1, 0)[0]
	if err := env.guard.Seal(ctx, r); err != nil {
		b.Fatal(err)
	}
	stored := r.After
	for _, role := range []auth.Role{auth.RoleAuditor, auth.RoleAnalyst, auth.RoleService} {
		b.Run(string(role), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := *r
				c.After = stored
				if _, err := env.guard.Reveal(ctx, role, &c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
