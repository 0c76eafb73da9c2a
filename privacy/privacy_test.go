package privacy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

const customersSchema = `{
  "type": "object",
  "x-retention": "P1Y",
  "properties": {
    "id":      {"type": "integer", "x-subject": true},
    "email":   {"type": "string", "x-pii": true, "x-searchable": true, "x-mask": "last4"},
    "name":    {"type": "string", "x-pii": true},
    "born":    {"type": "string", "x-pii": true, "x-mask": "year"},
    "score":   {"type": "number", "x-pii": true, "x-mask": "null"},
    "vip":     {"type": "boolean", "x-pii": true},
    "tags":    {"type": "array", "x-pii": true},
    "address": {"type": "object", "properties": {
        "street": {"type": "string", "x-pii": true},
        "city":   {"type": "string"}
    }},
    "plan":    {"type": "string"}
  },
  "required": ["id"]
}`

type fixture struct {
	g       *Guard
	keys    *keystore.Store
	schemas *schema.Registry
	clock   *time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	master, err := keystore.FileMaster(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.Open(ctx, filepath.Join(dir, "keys"), master, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	clock := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	f := &fixture{keys: keys, clock: &clock}
	f.g, f.schemas = customersGuard(t, dir, keys, Options{Now: func() time.Time { return *f.clock }})
	return f
}

// customersGuard is a Guard over keys and a registry in dir holding
// customersSchema.
func customersGuard(t testing.TB, dir string, keys Keys, opts Options) (*Guard, *schema.Registry) {
	t.Helper()
	ctx := context.Background()
	reg, err := schema.Open(filepath.Join(dir, "schemas"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Put(ctx, "crm.public.customers", []byte(customersSchema)); err != nil {
		t.Fatal(err)
	}
	g, err := New(ctx, keys, reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return g, reg
}

func customer(t testing.TB, id string, after string, at time.Time) *record.Record {
	t.Helper()
	a, err := record.Canonical([]byte(after))
	if err != nil {
		t.Fatal(err)
	}
	return &record.Record{
		ID:         "rec-" + id + "-" + at.Format("20060102"),
		Source:     record.Source{Name: "crm", Kind: "postgres", Schema: "public", Table: "customers"},
		Op:         record.OpInsert,
		Key:        json.RawMessage(`{"id":` + id + `}`),
		After:      a,
		OccurredAt: at,
	}
}

const alice = `{"id":7,"email":"alice@example.com","name":"Alice Liddell","born":"1990-05-04","score":4.5,"vip":true,"tags":["a","b"],"address":{"street":"1 Rabbit Hole","city":"Oxford"},"plan":"gold"}`

func field(t *testing.T, img []byte, path ...string) json.RawMessage {
	t.Helper()
	var cur any
	if err := json.Unmarshal(img, &cur); err != nil {
		t.Fatal(err)
	}
	for _, p := range path {
		cur = cur.(map[string]any)[p]
	}
	out, _ := json.Marshal(cur)
	return out
}

func TestSealRoundTripEveryType(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := customer(t, "7", alice, f.clock.Add(-time.Hour))
	orig := bytes.Clone(r.After)
	if err := f.g.Seal(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := f.g.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"alice@example.com", "Alice Liddell", "1990-05-04", "Rabbit Hole", "4.5", `["a","b"]`} {
		if bytes.Contains(r.After, []byte(plain)) {
			t.Errorf("sealed image still holds %s: %s", plain, r.After)
		}
	}
	for _, clear := range []string{`"city":"Oxford"`, `"plan":"gold"`, `"id":7`} {
		if !bytes.Contains(r.After, []byte(clear)) {
			t.Errorf("non-PII %s was not kept in clear: %s", clear, r.After)
		}
	}
	if r.Schema == nil || r.Schema.Subject != "crm.public.customers" || r.Schema.Version != 1 {
		t.Fatalf("schema ref %+v", r.Schema)
	}
	if r.Derived == nil || len(r.Derived.Subjects) != 1 || len(r.Derived.Terms) != 1 {
		t.Fatalf("derived %+v: want one subject and one blind term (email)", r.Derived)
	}
	once := bytes.Clone(r.After)
	if err := f.g.Seal(ctx, r); err != nil || !bytes.Equal(r.After, once) {
		t.Fatalf("sealing twice (a retried append) changed the record: %v", err)
	}
	// The stored form is canonical, so it survives encoding byte for byte.
	c, _ := record.Canonical(r.After)
	if !bytes.Equal(c, r.After) {
		t.Fatalf("sealed image is not canonical:\n%s\n%s", r.After, c)
	}
	if err := f.g.Unseal(ctx, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.After, orig) {
		t.Fatalf("round trip changed the image:\n got %s\nwant %s", r.After, orig)
	}
}

func sealed(t *testing.T, f *fixture, id, after string) *record.Record {
	t.Helper()
	r := customer(t, id, after, f.clock.Add(-time.Hour))
	if err := f.g.Seal(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTamperingIsDetected(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	bob := strings.Replace(strings.Replace(alice, `"id":7`, `"id":8`, 1), "alice@example.com", "bob@example.com", 1)

	// blob is the envelope text of an image (one data group here).
	blob := func(img []byte) []byte {
		i := bytes.Index(img, []byte(`":"`)) + 3
		return img[i : i+bytes.IndexByte(img[i:], '"')]
	}
	const list = `address.street,born,email,name,score,tags,vip`
	cases := map[string]func(a, b *record.Record){
		"flipped ciphertext byte": func(a, _ *record.Record) {
			// Another base64 letter, so the envelope still parses.
			e := blob(a.After)
			i := len(e) - 20
			if e[i] == 'A' {
				e[i] = 'B'
			} else {
				e[i] = 'A'
			}
		},
		"flipped salt byte": func(a, _ *record.Record) {
			e := blob(a.After)
			if e[50] == 'A' {
				e[50] = 'B'
			} else {
				e[50] = 'A'
			}
		},
		"fields listed in another order": func(a, _ *record.Record) {
			a.After = bytes.Replace(a.After, []byte(list), []byte(`address.street,born,name,email,score,tags,vip`), 1)
		},
		"a field left out of the list": func(a, _ *record.Record) {
			a.After = bytes.Replace(a.After, []byte(list), []byte(`address.street,born,email,name,score,tags`), 1)
		},
		"envelope moved from another record": func(a, b *record.Record) {
			a.After = bytes.Replace(a.After, blob(a.After), blob(b.After), 1)
		},
		"envelope moved from after to before": func(a, _ *record.Record) {
			a.Before = bytes.Clone(a.After)
			a.After = json.RawMessage(`{"id":7}`)
		},
		"kids changed to another subject's keys": func(a, b *record.Record) {
			ea, eb := blob(a.After), blob(b.After)
			// The kids are the blob's bytes 1..33: base64 characters 1..44.
			copy(ea[1:44], eb[1:44])
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := sealed(t, f, "7", alice), sealed(t, f, "8", bob)
			mutate(a, b)
			err := f.g.Unseal(ctx, a)
			var fe *FieldError
			if !errors.Is(err, ErrTampered) || !errors.As(err, &fe) || fe.Field == "" || fe.RecordID != a.ID {
				t.Fatalf("Unseal = %v; want ErrTampered naming the record and field", err)
			}
			for _, pii := range []string{"alice", "bob", "Liddell"} {
				if strings.Contains(err.Error(), pii) {
					t.Fatalf("error leaks personal data: %v", err)
				}
			}
		})
	}
	t.Run("malformed envelope", func(t *testing.T) {
		for _, bad := range [][2]string{
			{`":"A`, `":"!`},                                   // not base64url
			{`":"Ag`, `":"Aw`},                                 // another version
			{`"$pii":{"`, `"$pii":{"..`},                       // an empty path segment
			{`"$pii":{`, `"$pii":{"x":"AgA",`},                 // too short
			{`"$pii":{"address.street`, `"$pii":{"address.~9`}, // a bad escape
		} {
			a := sealed(t, f, "7", alice)
			a.After = bytes.Replace(a.After, []byte(bad[0]), []byte(bad[1]), 1)
			stored := string(a.After)
			if err := f.g.Unseal(ctx, a); !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("Unseal of %s = %v; want ErrBadEnvelope", stored, err)
			}
		}
	})
}

func TestSchemaViolationsAndMissingSubject(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := customer(t, "7", `{"id":7,"email":42}`, *f.clock)
	err := f.g.Seal(ctx, r)
	var fe *record.FieldError
	if !errors.As(err, &fe) || fe.Field != "after.email" {
		t.Fatalf("Seal of a mistyped field = %v; want a FieldError naming after.email", err)
	}
	if strings.Contains(err.Error(), "42") {
		t.Fatalf("error quotes the value: %v", err)
	}
	// A delete's before image without its subject field, but with PII.
	r = customer(t, "9", `{"id":9}`, *f.clock)
	r.Op, r.Before, r.After = record.OpDelete, json.RawMessage(`{"email":"x@y.z"}`), nil
	err = f.g.Seal(ctx, r)
	if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "before") || !strings.Contains(fe.Error(), "'id'") {
		// the schema requires id, so validation names it first
		t.Fatalf("PII without its subject = %v; want a FieldError naming the subject field", err)
	}
	// Records of subjects without a schema pass untouched.
	other := &record.Record{ID: "x", Source: record.Source{Name: "app", Table: "orders"}, Op: record.OpInsert, Key: json.RawMessage(`{"id":1}`), After: json.RawMessage(`{"email":"a@b.c"}`)}
	if err := f.g.Seal(ctx, other); err != nil || string(other.After) != `{"email":"a@b.c"}` || other.Derived != nil {
		t.Fatalf("unschematised record changed: %v %s", err, other.After)
	}
}

func TestRevealByRole(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	stored := sealed(t, f, "7", alice)
	read := func(role auth.Role) (*record.Record, int) {
		r := *stored
		r.After = bytes.Clone(stored.After)
		n, err := f.g.Reveal(ctx, role, &r)
		if err != nil {
			t.Fatal(err)
		}
		return &r, n
	}
	for _, role := range []auth.Role{auth.RoleAuditor, auth.RoleAdmin} {
		r, n := read(role)
		if n != 7 || string(field(t, r.After, "email")) != `"alice@example.com"` || string(field(t, r.After, "address", "street")) != `"1 Rabbit Hole"` {
			t.Fatalf("%s sees %d clear fields: %s", role, n, r.After)
		}
	}
	r, n := read(auth.RoleAnalyst)
	want := map[string]string{"email": `"***.com"`, "born": `"1990"`, "score": `null`, "name": `"***"`}
	for k, v := range want {
		if got := string(field(t, r.After, k)); got != v {
			t.Errorf("analyst sees %s = %s, want %s", k, got, v)
		}
	}
	if n != 0 || bytes.Contains(r.After, []byte("alice")) {
		t.Fatalf("analyst saw clear data (%d): %s", n, r.After)
	}
	r, n = read(auth.RoleService)
	if n != 0 || !bytes.Equal(r.After, stored.After) {
		t.Fatalf("service must see the stored envelopes: %s", r.After)
	}
}

func TestErasedSubjectAndPeriods(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := sealed(t, f, "7", alice)
	b := sealed(t, f, "8", strings.Replace(alice, `"id":7`, `"id":8`, 1))
	if err := f.g.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	name := f.g.subjectName("default", "7")
	kids, err := f.keys.Destroy(ctx, keystore.KindSubject, name)
	if err != nil || len(kids) != 1 {
		t.Fatalf("destroy: %v %v", kids, err)
	}
	f.g.forget(kids)
	for _, role := range auth.Roles {
		r := *a
		r.After = bytes.Clone(a.After)
		if _, err := f.g.Reveal(ctx, role, &r); err != nil {
			t.Fatal(err)
		}
		if string(field(t, r.After, "email")) != erasedValue || !bytes.Contains(r.After, []byte(`"plan":"gold"`)) {
			t.Fatalf("%s after erasure sees %s", role, r.After)
		}
	}
	if err := f.g.Unseal(ctx, a); !errors.Is(err, ErrKeyGone) {
		t.Fatalf("erased subject's Unseal = %v, want ErrKeyGone", err)
	}
	if err := f.g.Unseal(ctx, b); err != nil {
		t.Fatalf("the other subject is affected: %v", err)
	}
	// "7" is also "7" when given as a string: the same subject.
	if f.g.subjectName("default", "7") != name {
		t.Fatal("subject naming is not stable")
	}
}

func TestPeriodExpiry(t *testing.T) {
	exp, ok := periodExpiry("P1Y/2025-02")
	if !ok || !exp.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("expiry %v %v", exp, ok)
	}
	if _, ok := periodExpiry(noRetention); ok {
		t.Fatal("the no-retention period expires")
	}
	if _, ok := periodExpiry("P1Q/2025-02"); ok {
		t.Fatal("a bad duration parsed")
	}
}

// lead is a record of crm.public.leads, whose schema is the customers'
// without "required".
func lead(t *testing.T, f *fixture) *record.Record {
	t.Helper()
	doc := strings.Replace(customersSchema, `"required": ["id"]`, `"required": []`, 1)
	if _, _, err := f.schemas.Put(context.Background(), "crm.public.leads", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	r := customer(t, "7", `{"id":7}`, *f.clock)
	r.Source.Table = "leads"
	return r
}

// The key side is sealed too, and a group's subject is taken from the key
// when neither image names it.
func TestSealKeyAndSubjectFromKey(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := lead(t, f)
	r.Op, r.Key, r.Before, r.After = record.OpDelete, json.RawMessage(`{"email":"k@example.com","id":7}`), json.RawMessage(`{"name":"Kay"}`), nil
	if err := f.g.Seal(ctx, r); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(r.Key, []byte("k@example.com")) || bytes.Contains(r.Before, []byte("Kay")) || !bytes.Contains(r.Key, []byte(`"id":7`)) {
		t.Fatalf("key %s before %s", r.Key, r.Before)
	}
	if len(r.Derived.Subjects) != 1 || r.Derived.Subjects[0] != f.g.subjectName("default", "7") || len(r.Derived.Terms) != 1 {
		t.Fatalf("derived %+v", r.Derived)
	}
	if err := f.g.Unseal(ctx, r); err != nil || string(r.Key) != `{"email":"k@example.com","id":7}` || string(r.Before) != `{"name":"Kay"}` {
		t.Fatalf("round trip: %v %s %s", err, r.Key, r.Before)
	}
}

// Images that are valid JSON but not in canonical form (whitespace,
// escaped names, members out of order) are sealed value for value.
func TestSealNonCanonicalImages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	img := " {\"plan\" : \"gold\",\n \"\\u0065mail\": \"a@b.c\" , \"id\":7, \"address\": { \"street\" : \"1 Way\" } } "
	r := customer(t, "7", `{"id":7}`, *f.clock)
	r.After = json.RawMessage(img)
	if err := f.g.Seal(ctx, r); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(r.After, []byte("a@b.c")) || bytes.Contains(r.After, []byte("1 Way")) || !bytes.Contains(r.After, []byte(`"gold"`)) {
		t.Fatalf("sealed %s", r.After)
	}
	if len(r.Derived.Terms) != 1 || !bytes.Equal(r.Derived.Terms[0].Token, f.g.BlindToken("email", "a@b.c")) {
		t.Fatalf("blind term %+v", r.Derived.Terms)
	}
	if err := f.g.Unseal(ctx, r); err != nil {
		t.Fatal(err)
	}
	var got, want any
	_ = json.Unmarshal(r.After, &got)
	_ = json.Unmarshal([]byte(img), &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip: %s", r.After)
	}
}

func TestSealRefusesDuplicateMembers(t *testing.T) {
	f := newFixture(t)
	r := customer(t, "7", `{"id":7}`, *f.clock)
	r.After = json.RawMessage(`{"email":"a@b.c","email":"d@e.f","id":7}`)
	if err := f.g.Seal(context.Background(), r); err == nil || bytes.Contains(r.After, []byte(`$pii`)) {
		t.Fatalf("Seal of an image naming a member twice = %v, %s", err, r.After)
	}
}

// A subject value that is an object is refused, naming the field.
func TestSealRefusesNonScalarSubject(t *testing.T) {
	f := newFixture(t)
	r := lead(t, f)
	r.After, r.Key = nil, json.RawMessage(`{"id":{"x":1}}`)
	r.Op, r.Before = record.OpDelete, json.RawMessage(`{"email":"a@b.c"}`)
	err := f.g.Seal(context.Background(), r)
	var fe *record.FieldError
	if !errors.As(err, &fe) || fe.Field != "after.id" || !strings.Contains(fe.Reason, "is an object") {
		t.Fatalf("Seal = %v; want a FieldError naming the subject field", err)
	}
}

func TestNonceBeyondOneBuffer(t *testing.T) {
	var s sealing
	a, err := s.nonce(100)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.nonce(5000)
	if err != nil || len(b) != 5000 || len(a) != 100 || cap(a) != 100 {
		t.Fatalf("nonce: %d %d bytes, %v", len(a), len(b), err)
	}
	if bytes.Equal(a, b[:100]) {
		t.Fatal("nonce material reused")
	}
}

// The values sealing needs are found alike by the validator's scan and by
// the walk that serves when the validator leaves an image to the library.
func TestValidatorScanMatchesWalk(t *testing.T) {
	f := newFixture(t)
	const loose = `{"type":"object","x-retention":"P1Y","properties":{
	  "id":{"x-subject":true},
	  "email":{"x-pii":true,"x-searchable":true},
	  "name":{"x-pii":true},
	  "address":{"properties":{"street":{"x-pii":true},"city":{}}},
	  "card":{"x-pii":true,"type":["object","null"],"properties":{"n":{"type":"string"}}},
	  "news":{"x-data-group":"marketing","properties":{"contact":{"x-subject":true},"name":{"x-pii":true}}},
	  "plan":{}}}`
	if _, _, err := f.schemas.Put(context.Background(), "crm.public.loose", []byte(loose)); err != nil {
		t.Fatal(err)
	}
	sch, err := f.schemas.Latest("crm.public.loose")
	if err != nil {
		t.Fatal(err)
	}
	p := f.g.plan(sch)
	images := []string{
		`{}`, `{"id":7}`, `{"id":"7"}`, `{"id":null,"email":"a@b.c"}`, `{"email":null,"id":7,"name":null}`, `{"id":{"x":1}}`,
		`{"address":{"street":"x","city":"y"},"id":7}`, `{"address":{"city":"y"},"id":7}`, `{"address":{},"id":7}`, `{"address":"flat"}`,
		`{"address":{"street":null},"id":7,"card":{"n":"4111"},"plan":[1,{"email":"not here"}]}`, `{"card":null,"name":["a"]}`,
		` { "id" : 7 , "email" : "a@b.c" } `, `{"\u0065mail":"x","id":7}`, `{"plan":"gold","id":7,"name":{"first":"A"}}`,
		`{"news":{"contact":"c-1","name":"N"},"id":7}`, `{"news":{"name":"N"}}`, `{"news":5,"email":true}`,
	}
	leaves := 0
	for _, img := range images {
		scanned := finder{img: []byte(img), plan: p, subjects: make([]span, len(p.groups))}
		ok, err := sch.ValidateScan(scanned.img, &scanned)
		if err != nil || !ok {
			t.Fatalf("image %s: scanned %v, %v", img, ok, err)
		}
		walked := finder{img: []byte(img), plan: p, subjects: make([]span, len(p.groups))}
		if err := walked.scan(p.root); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(scanned.leaves, walked.leaves) || !reflect.DeepEqual(scanned.subjects, walked.subjects) {
			t.Errorf("image %s:\nscan %+v %+v\nwalk %+v %+v", img, scanned.leaves, scanned.subjects, walked.leaves, walked.subjects)
		}
		leaves += len(walked.leaves)
	}
	if leaves != 10 {
		t.Fatalf("%d sealed values found in all images, want 10", leaves)
	}
}
