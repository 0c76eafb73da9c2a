package privacy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/sysrecord"
)

// ledgerFixture is a Guard over a real log and index.
func ledgerFixture(t *testing.T) (*fixture, *logstore.Store, *index.Index, *Ledger) {
	t.Helper()
	f := newFixture(t)
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := logstore.Open(context.Background(), filepath.Join(dir, "log"), logstore.Options{Hook: ix, Sealer: f.g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); ix.Close() })
	return f, st, ix, NewLedger(f.g, st, ix)
}

func readAll(t *testing.T, st *logstore.Store, g *Guard, role auth.Role) []*record.Record {
	t.Helper()
	var out []*record.Record
	for seq := range st.Size() {
		r, err := st.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Reveal(context.Background(), role, r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestRetentionShredsExpiredPeriodsOnly(t *testing.T) {
	f, st, _, ledger := ledgerFixture(t)
	ctx := context.Background()
	// The schema keeps PII one year (P1Y). Records from Jan 2025 and Feb 2026.
	old := customer(t, "7", alice, time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC))
	recent := customer(t, "7", alice, time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC))
	if _, err := st.Append(ctx, []*record.Record{old, recent}); err != nil {
		t.Fatal(err)
	}
	*f.clock = time.Date(2026, 1, 31, 23, 0, 0, 0, time.UTC) // Jan 2025 + 1 month + 1 year = 2026-02-01
	done, err := ledger.ExpirePeriods(ctx)
	if err != nil || len(done) != 0 {
		t.Fatalf("before expiry: shredded %v, %v", done, err)
	}
	*f.clock = time.Date(2026, 2, 1, 0, 0, 1, 0, time.UTC)
	done, err = ledger.ExpirePeriods(ctx)
	if err != nil || len(done) != 1 || done[0] != "P1Y/2025-01" {
		t.Fatalf("at expiry: shredded %v, %v", done, err)
	}
	recs := readAll(t, st, f.g, auth.RoleAuditor)
	if len(recs) != 3 {
		t.Fatalf("want 2 records and 1 receipt, have %d", len(recs))
	}
	if !bytes.Contains(recs[0].After, []byte(`"email":{"$erased":true}`)) {
		t.Fatalf("expired period still readable: %s", recs[0].After)
	}
	if !bytes.Contains(recs[1].After, []byte(`"email":"alice@example.com"`)) {
		t.Fatalf("a later period was shredded too: %s", recs[1].After)
	}
	rc := recs[2]
	if rc.Source.Table != sysrecord.ErasuresTable || !bytes.Contains(rc.After, []byte(`"type":"retention"`)) || !bytes.Contains(rc.After, []byte(`"period":"P1Y/2025-01"`)) {
		t.Fatalf("receipt: %s", rc.After)
	}
	// Running again shreds nothing more and writes no receipt.
	if done, err := ledger.ExpirePeriods(ctx); err != nil || len(done) != 0 || st.Size() != 3 {
		t.Fatalf("second run: %v %v size %d", done, err, st.Size())
	}
}

func TestEraseReceiptCountsAndIsSigned(t *testing.T) {
	f, st, ix, ledger := ledgerFixture(t)
	ctx := context.Background()
	var recs []*record.Record
	for i := range 4 {
		recs = append(recs, customer(t, "7", alice, f.clock.Add(-time.Duration(i+1)*time.Hour)))
		b := customer(t, "8", strings.ReplaceAll(alice, `"id":7`, `"id":8`), f.clock.Add(-time.Duration(i+1)*time.Hour))
		recs = append(recs, b)
	}
	for i, r := range recs {
		r.ID += string(rune('a' + i))
	}
	if _, err := st.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	res, err := ledger.Erase(ctx, EraseRequest{Subject: "7", By: auth.Principal{Name: "ops", Role: auth.RoleAdmin}, Reason: "ticket-1"})
	if err != nil {
		t.Fatal(err)
	}
	if *res.Receipt.Records != 4 || res.Receipt.KeysDestroyed != 1 || len(res.Receipt.Subjects) != 1 || res.Seq != 8 {
		t.Fatalf("receipt %+v seq %d", res.Receipt, res.Seq)
	}
	if strings.Contains(res.Signed, `"7"`) || !strings.Contains(res.Signed, "\n— ") {
		t.Fatalf("signed receipt holds the subject value or lacks a signature:\n%s", res.Signed)
	}
	stored, err := st.Read(res.Seq)
	if err != nil {
		t.Fatal(err)
	}
	var after struct {
		Signed string `json:"signed"`
	}
	if err := json.Unmarshal(stored.After, &after); err != nil || after.Signed != res.Signed {
		t.Fatalf("stored receipt differs: %v", err)
	}
	if err := st.WaitIndexed(ctx, st.Size()); err != nil {
		t.Fatal(err)
	}
	var hits int
	if err := ix.SearchBlind(f.g.BlindToken("email", "alice@example.com"), func(index.Posting) bool { hits++; return true }); err != nil {
		t.Fatal(err)
	}
	if hits != 4 {
		// Subject 8 also uses alice's email in this fixture: only its 4 remain.
		t.Fatalf("blind index after erasure finds %d records, want subject 8's 4", hits)
	}
	if _, err := ledger.Erase(ctx, EraseRequest{Subject: "7", Group: "nope"}); err == nil {
		t.Fatal("an unknown group was accepted")
	}
}

// kidOf is the kid ("<subject kid>.<period kid>") of the envelope holding
// an image's sealed email.
func kidOf(t *testing.T, img []byte) string {
	t.Helper()
	_, envs, ok, err := splitCompact(img)
	if !ok || err != nil {
		t.Fatalf("no compact envelope in %s: %v", img, err)
	}
	for _, e := range envs {
		if slices.ContainsFunc(e.paths, func(p []string) bool { return len(p) == 1 && p[0] == "email" }) {
			return kidText.EncodeToString(e.blob[1:1+kidLen]) + "." + kidText.EncodeToString(e.blob[1+kidLen:1+2*kidLen])
		}
	}
	t.Fatalf("no sealed email in %s", img)
	return ""
}

// legacyEnvelope seals value at path of record id as Stele did before the
// compact form (format 1): one {"$sealed":…} per field, kid in text.
func legacyEnvelope(t *testing.T, keys [2][]byte, id, path, kid, value string) string {
	t.Helper()
	aead, err := fieldKey(keys[0], keys[1])
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, nonceSize)
	rand.Read(nonce)
	ct := aead.Seal(bytes.Clone(nonce), nonce, []byte(value), aad(id, path, kid))
	return `{"$sealed":{"alg":"A256GCM","ct":"` + base64.StdEncoding.EncodeToString(ct) + `","kid":"` + kid + `"}}`
}

// Seal caches a subject's keys; after an erasure, the subject's next
// records must be sealed under a new generation, readable, and its old
// ones stay erased.
func TestSealAfterErasureUsesNewKeys(t *testing.T) {
	f, st, _, ledger := ledgerFixture(t)
	ctx := context.Background()
	before := customer(t, "7", alice, f.clock.Add(-2*time.Hour))
	if _, err := st.Append(ctx, []*record.Record{before}); err != nil {
		t.Fatal(err)
	}
	oldKid := kidOf(t, before.After)
	if _, err := ledger.Erase(ctx, EraseRequest{Subject: "7", By: auth.Principal{Name: "ops", Role: auth.RoleAdmin}}); err != nil {
		t.Fatal(err)
	}
	later := customer(t, "7", alice, f.clock.Add(-time.Hour))
	later.ID += "-later"
	if _, err := st.Append(ctx, []*record.Record{later}); err != nil {
		t.Fatal(err)
	}
	if newKid := kidOf(t, later.After); newKid == oldKid {
		t.Fatalf("record after erasure sealed under the destroyed kid %s", oldKid)
	}
	recs := readAll(t, st, f.g, auth.RoleAuditor)
	if !bytes.Contains(recs[0].After, []byte(`"email":{"$erased":true}`)) {
		t.Fatalf("erased record readable: %s", recs[0].After)
	}
	if !bytes.Contains(recs[2].After, []byte(`"email":"alice@example.com"`)) {
		t.Fatalf("record sealed after erasure unreadable: %s", recs[2].After)
	}
}

// Envelopes sealed before kids were base64url name them in 32 hex digits.
// They stay readable, and erasing their subject erases them, although the
// field key read through them is cached under the old form of the kid.
func TestLegacyHexKidEnvelopes(t *testing.T) {
	f, st, _, ledger := ledgerFixture(t)
	ctx := context.Background()
	r := customer(t, "7", alice, f.clock.Add(-time.Hour))
	if err := f.g.Seal(ctx, r); err != nil {
		t.Fatal(err)
	}
	// Re-seal the email as an older Stele did: the same keys, the kid in
	// hex, bound into the associated data as written.
	skid, pkid, _ := strings.Cut(kidOf(t, r.After), ".")
	var keys [2][]byte
	var hexKids [2]string
	for i, kid := range []string{skid, pkid} {
		raw, err := base64.RawURLEncoding.DecodeString(kid)
		if err != nil || len(raw) != 16 {
			t.Fatalf("kid %q is not 16 bytes in base64url: %v", kid, err)
		}
		hexKids[i] = hex.EncodeToString(raw)
		if keys[i], err = f.keys.Key(ctx, kid); err != nil {
			t.Fatal(err)
		}
	}
	legacyKid := hexKids[0] + "." + hexKids[1]
	r.After = json.RawMessage(`{"email":` + legacyEnvelope(t, keys, r.ID, "after.email", legacyKid, `"alice@example.com"`) +
		`,"id":7,"name":` + legacyEnvelope(t, keys, r.ID, "after.name", legacyKid, `"Alice Liddell"`) + `}`)
	if _, err := st.Append(ctx, []*record.Record{r}); err != nil {
		t.Fatal(err)
	}
	if recs := readAll(t, st, f.g, auth.RoleAuditor); !bytes.Contains(recs[0].After, []byte(`"email":"alice@example.com"`)) {
		t.Fatalf("envelope with a hex kid unreadable: %s", recs[0].After)
	}
	if _, err := ledger.Erase(ctx, EraseRequest{Subject: "7", By: auth.Principal{Name: "ops", Role: auth.RoleAdmin}}); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, st, f.g, auth.RoleAuditor)
	if !bytes.Contains(recs[0].After, []byte(`"email":{"$erased":true}`)) || !bytes.Contains(recs[0].After, []byte(`"name":{"$erased":true}`)) {
		t.Fatalf("after erasure: %s", recs[0].After)
	}
}

// Sealing that races an erasure may seal under the keys being destroyed
// (that data is erased with the rest), but must not keep using them: here
// Seal looks the subject's key up, the erasure runs, and only then does
// Seal go on to cache what it found.
func TestSealRacingErasureCachesNothingStale(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	keys := &pausingKeys{Store: f.keys}
	g, err := New(ctx, keys, f.schemas, Options{Now: func() time.Time { return *f.clock }})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := logstore.Open(ctx, filepath.Join(dir, "log"), logstore.Options{Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); ix.Close() })
	ledger := NewLedger(g, st, ix)

	keys.found, keys.resume = make(chan struct{}), make(chan struct{})
	sealed := make(chan error)
	racing := customer(t, "7", alice, *f.clock)
	go func() { sealed <- g.Seal(ctx, racing) }()
	<-keys.found // Seal holds subject 7's key and has not cached it yet
	keys.found = nil
	if _, err := ledger.Erase(ctx, EraseRequest{Subject: "7"}); err != nil {
		t.Fatal(err)
	}
	close(keys.resume)
	if err := <-sealed; err != nil {
		t.Fatal(err)
	}
	r := customer(t, "7", alice, *f.clock)
	if err := g.Seal(ctx, r); err != nil {
		t.Fatal(err)
	}
	if kidOf(t, r.After) == kidOf(t, racing.After) {
		t.Fatal("a record sealed after the erasure used the destroyed key")
	}
	if err := g.Unseal(ctx, r); err != nil {
		t.Fatalf("a record sealed after the erasure is unreadable: %v", err)
	}
	// And the raced record is erased like the others, not readable from
	// a cached key.
	if err := g.Unseal(ctx, racing); !errors.Is(err, ErrKeyGone) {
		t.Fatalf("the record sealed during the erasure: Unseal = %v, want ErrKeyGone", err)
	}
}

// pausingKeys stops the first subject key lookup after it found the key,
// until resume is closed.
type pausingKeys struct {
	*keystore.Store
	found, resume chan struct{}
}

func (k *pausingKeys) GetOrCreate(ctx context.Context, kind keystore.Kind, name string) (string, []byte, error) {
	kid, key, err := k.Store.GetOrCreate(ctx, kind, name)
	if kind == keystore.KindSubject && k.found != nil {
		close(k.found)
		<-k.resume
	}
	return kid, key, err
}

// TestSealAfterPeriodExpiry: a record of an expired period that arrives
// late is sealed under the period's next key, not the destroyed one the
// guard looked up last, so it stays readable.
func TestSealAfterPeriodExpiry(t *testing.T) {
	f, st, _, ledger := ledgerFixture(t)
	ctx := context.Background()
	jan := time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC)
	if _, err := st.Append(ctx, []*record.Record{customer(t, "7", alice, jan)}); err != nil {
		t.Fatal(err)
	}
	*f.clock = time.Date(2026, 2, 1, 0, 0, 1, 0, time.UTC)
	if done, err := ledger.ExpirePeriods(ctx); err != nil || len(done) != 1 {
		t.Fatalf("at expiry: shredded %v, %v", done, err)
	}
	late := customer(t, "8", strings.Replace(alice, `"id":7`, `"id":8`, 1), jan.Add(time.Hour))
	if _, err := st.Append(ctx, []*record.Record{late}); err != nil {
		t.Fatal(err)
	}
	// A guard of its own, with none of the first one's cached keys: as
	// after a restart.
	fresh, err := New(ctx, f.keys, f.schemas, Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, st, fresh, auth.RoleAuditor)
	if len(recs) != 3 || !bytes.Contains(recs[2].After, []byte(`"email":"alice@example.com"`)) {
		t.Fatalf("record sealed after its period expired: %s", recs[len(recs)-1].After)
	}
}
