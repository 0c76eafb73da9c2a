package privacy

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/privacy/schema"
	"github.com/stele/stele/record"
)

// Keys is what the privacy layer needs from the keystore.
type Keys interface {
	GetOrCreate(ctx context.Context, kind keystore.Kind, name string) (kid string, key []byte, err error)
	Key(ctx context.Context, kid string) ([]byte, error)
	Sync(ctx context.Context) error
	Destroy(ctx context.Context, kind keystore.Kind, name string) (kids []string, err error)
	Names(kind keystore.Kind) []string
}

// Schemas is what the privacy layer needs from the schema registry.
type Schemas interface {
	Latest(subject string) (*schema.Schema, error)
	Version(subject string, n int) (*schema.Schema, error)
	Subjects() []string
}

// Errors callers test with errors.Is.
var (
	// ErrKeyGone: the field's subject or period key was destroyed; the
	// value is erased.
	ErrKeyGone = errors.New("key destroyed: the value is erased")
	// ErrTampered: an envelope failed authentication — altered, moved to
	// another record or field, or sealed under other keys.
	ErrTampered = errors.New("sealed value failed authentication")
	// ErrBadEnvelope: a "$sealed" object is malformed.
	ErrBadEnvelope = errors.New("malformed sealed envelope")
)

// FieldError is a privacy failure on one field of one record. It never
// holds the value.
type FieldError struct {
	RecordID string
	Field    string // "after.email"
	Err      error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("record %s, field %s: %v", e.RecordID, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

const (
	alg = "A256GCM"
	// System key names in the keystore.
	subjectNamesKey = "subject-names"
	blindIndexKey   = "blind-index"
	noRetention     = "none"
	aeadCacheSize   = 1 << 16
)

// Options tune a Guard.
type Options struct {
	Logger *slog.Logger
	// Now is the clock of the retention job (default time.Now).
	Now func() time.Time
}

// Guard seals personal data on the append path and reveals it on reads.
type Guard struct {
	keys    Keys
	schemas Schemas
	log     *slog.Logger
	now     func() time.Time

	subjectNames []byte // HMAC key naming subjects in the keystore
	blindKey     []byte // HMAC key of the blind index

	plans     sync.Map // *schema.Schema -> *plan
	aeads     aeadCache
	namePool  sync.Pool // hmac states keyed by subjectNames
	blindPool sync.Pool // hmac states keyed by blindKey
}

// New returns a Guard over a keystore and a schema registry, creating its
// system keys on first use.
func New(ctx context.Context, keys Keys, schemas Schemas, opts Options) (*Guard, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &Guard{keys: keys, schemas: schemas, log: opts.Logger, now: opts.Now}
	g.aeads.init(aeadCacheSize)
	var err error
	if _, g.subjectNames, err = keys.GetOrCreate(ctx, keystore.KindSystem, subjectNamesKey); err != nil {
		return nil, fmt.Errorf("privacy: system key: %w", err)
	}
	if _, g.blindKey, err = keys.GetOrCreate(ctx, keystore.KindSystem, blindIndexKey); err != nil {
		return nil, fmt.Errorf("privacy: system key: %w", err)
	}
	if err := keys.Sync(ctx); err != nil {
		return nil, fmt.Errorf("privacy: system key: %w", err)
	}
	return g, nil
}

func (g *Guard) plan(s *schema.Schema) *plan {
	if p, ok := g.plans.Load(s); ok {
		return p.(*plan)
	}
	p, _ := g.plans.LoadOrStore(s, compilePlan(s))
	return p.(*plan)
}

// sealed reports whether records of this op carry images a schema covers.
func sealable(op record.Op) bool {
	switch op {
	case record.OpInsert, record.OpUpdate, record.OpDelete, record.OpSnapshot, record.OpEvent:
		return true
	}
	return false
}

// Seal validates r against its subject's latest schema and seals its
// personal fields in place, setting r.Schema and r.Derived. A record whose
// subject has no schema passes unchanged. Keys created here are durable
// only after Sync. Errors wrapping *record.FieldError name the field that
// does not match the schema.
func (g *Guard) Seal(ctx context.Context, r *record.Record) error {
	if !sealable(r.Op) || (r.Derived != nil && r.Derived.Sealed) {
		return nil
	}
	sch, err := g.schemas.Latest(SubjectName(r.Source))
	if errors.Is(err, schema.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("privacy: schema of %s: %w", SubjectName(r.Source), err)
	}
	// The decoded images serve validation and then the subject lookups.
	var decoded [2]map[string]any
	for i, side := range []struct {
		name string
		img  []byte
	}{{"before", r.Before}, {"after", r.After}} {
		if len(side.img) == 0 {
			continue
		}
		m, err := schema.DecodeImage(side.img)
		if err == nil {
			err = sch.ValidateImage(m)
		}
		if err != nil {
			var ve *schema.ValidationError
			if errors.As(err, &ve) {
				return &record.FieldError{Field: side.name + dotted(ve.Field), Reason: fmt.Sprintf("does not match schema %s version %d: %s", ve.Subject, ve.Version, ve.Reason)}
			}
			return fmt.Errorf("privacy: validate %s: %w", side.name, err)
		}
		decoded[i] = m
	}
	r.Schema = &record.SchemaRef{Subject: sch.Subject, Version: int64(sch.Version)}
	p := g.plan(sch)
	if len(p.groups) == 0 || len(p.root.children) == 0 {
		return nil
	}
	s := &sealing{g: g, ctx: ctx, r: r, plan: p, groups: make([]groupKeys, len(p.groups)), before: decoded[0], after: decoded[1]}
	if err := s.resolveSubjects(); err != nil {
		return err
	}
	// All sides are sealed before any is replaced: a failure leaves the
	// record as it came, so a retry starts from the same state.
	sd := sides(r)
	outs := make([][]byte, len(sd))
	for i, side := range sd {
		if len(*side.img) == 0 {
			continue
		}
		out, err := rewrite(nil, *side.img, p.root, side.name, s.seal)
		if err != nil {
			var fe *record.FieldError
			if errors.As(err, &fe) {
				return fe
			}
			return fmt.Errorf("privacy: seal %s of record %s: %w", side.name, r.ID, err)
		}
		outs[i] = out
	}
	for i, side := range sd {
		if outs[i] != nil {
			*side.img = outs[i]
		}
	}
	s.derived.Sealed = true
	r.Derived = &s.derived
	return nil
}

// Sync makes keys created by Seal durable; the log calls it before it
// acknowledges the records sealed under them.
func (g *Guard) Sync(ctx context.Context) error { return g.keys.Sync(ctx) }

func dotted(pointer string) string {
	if pointer == "" {
		return ""
	}
	return strings.ReplaceAll(pointer, "/", ".")
}

type groupKeys struct {
	subject string // keystore name; "" when the record has no subject value
	kid     string
	aead    cipher.AEAD
}

// sealing is the state of sealing one record.
type sealing struct {
	g       *Guard
	ctx     context.Context
	r       *record.Record
	plan    *plan
	groups  []groupKeys
	derived record.Derived
	// before and after decoded, for subject lookups (nil when absent)
	before, after map[string]any
}

// resolveSubjects finds each group's subject value (after, else before,
// else key) and loads the group's keys.
func (s *sealing) resolveSubjects() error {
	period := s.r.OccurredAt.UTC()
	for i, gp := range s.plan.groups {
		if len(gp.group.PII) == 0 || len(gp.group.SubjectField) == 0 {
			continue
		}
		text, found, err := s.subjectValue(gp.group.SubjectField)
		if !found {
			// Checked lazily: a record without any of the group's PII
			// fields needs no subject.
			continue
		}
		if err != nil {
			return &record.FieldError{Field: "after." + gp.group.SubjectField.String(), Reason: "subject field of data group " + gp.group.Name + " " + err.Error()}
		}
		name := s.g.subjectName(gp.group.Name, text)
		skid, skey, err := s.g.keys.GetOrCreate(s.ctx, keystore.KindSubject, name)
		if err != nil {
			return fmt.Errorf("privacy: subject key: %w", err)
		}
		pname := periodName(gp.group.Retention, period)
		pkid, pkey, err := s.g.keys.GetOrCreate(s.ctx, keystore.KindPeriod, pname)
		if err != nil {
			return fmt.Errorf("privacy: period key: %w", err)
		}
		kid := skid + "." + pkid
		aead, err := s.g.aeads.get(kid, skey, pkey)
		if err != nil {
			return err
		}
		s.groups[i] = groupKeys{subject: name, kid: kid, aead: aead}
		s.derived.Subjects = append(s.derived.Subjects, name)
	}
	return nil
}

// subjectValue finds a group's subject value in after, else before (from
// their decoded forms), else key.
func (s *sealing) subjectValue(path schema.Path) (string, bool, error) {
	for _, m := range []map[string]any{s.after, s.before} {
		if m == nil {
			continue
		}
		v, ok := path.Lookup(m)
		if !ok || v == nil {
			continue
		}
		switch v := v.(type) {
		case string:
			return v, true, nil
		case json.Number:
			return string(v), true, nil
		case bool:
			return strconv.FormatBool(v), true, nil
		}
		return "", true, errors.New("is not a string, number or boolean")
	}
	if len(s.r.Key) > 0 {
		if raw, ok := lookup(s.r.Key, path); ok && string(raw) != "null" {
			text, err := scalarText(raw)
			return text, true, err
		}
	}
	return "", false, nil
}

func (s *sealing) seal(f *fieldPlan, path string, raw jsontext.Value) ([]byte, error) {
	gk := s.groups[f.group.index]
	if gk.aead == nil {
		return nil, &record.FieldError{Field: "after." + f.group.group.SubjectField.String(),
			Reason: "is required: the record carries personal data of data group " + f.group.group.Name + " (" + path + ") and this field names whose it is"}
	}
	if f.field.Searchable {
		if text, err := scalarText(raw); err == nil {
			s.derived.Terms = append(s.derived.Terms, record.Term{Token: s.g.blindToken(f.field.Path.String(), text), Subject: gk.subject})
		}
	}
	return sealValue(gk.aead, gk.kid, s.r.ID, path, raw)
}

// sealValue encrypts one field value into its envelope.
func sealValue(aead cipher.AEAD, kid, recordID, path string, plaintext []byte) ([]byte, error) {
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return nil, fmt.Errorf("privacy: nonce: %w", err)
	}
	buf = aead.Seal(buf, buf, plaintext, aad(recordID, path, kid))
	out := make([]byte, 0, 64+base64.StdEncoding.EncodedLen(len(buf))+len(kid))
	out = append(out, `{"$sealed":{"alg":"`+alg+`","ct":"`...)
	out = base64.StdEncoding.AppendEncode(out, buf)
	out = append(out, `","kid":"`...)
	out = append(out, kid...)
	return append(out, `"}}`...), nil
}

// aad binds an envelope to its record, its field and its keys.
func aad(recordID, path, kid string) []byte {
	b := make([]byte, 0, len(recordID)+len(path)+len(kid)+16)
	b = append(b, "stele/seal/v1\x00"...)
	b = append(b, recordID...)
	b = append(b, 0)
	b = append(b, path...)
	b = append(b, 0)
	return append(b, kid...)
}

func (g *Guard) subjectName(group, value string) string {
	var sum [sha256.Size]byte
	return hex.EncodeToString(keyedHash(&g.namePool, g.subjectNames, group, value, sum[:0])[:16])
}

// blindToken is the blind-index token of a field's value.
func (g *Guard) blindToken(field, value string) []byte {
	return keyedHash(&g.blindPool, g.blindKey, field, value, nil)[:16]
}

// keyedHash is HMAC-SHA256(key, a ‖ 0 ‖ b). HMAC states are pooled: they
// are built per record on the append path, and setting one up costs more
// than hashing the few bytes it is used for.
func keyedHash(pool *sync.Pool, key []byte, a, b string, dst []byte) []byte {
	m, _ := pool.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, key)
	}
	m.Reset()
	m.Write([]byte(a))
	m.Write([]byte{0})
	m.Write([]byte(b))
	out := m.Sum(dst)
	pool.Put(m)
	return out
}

// BlindToken is the token to search the blind index for a field path
// ("email", "address.zip") holding value.
func (g *Guard) BlindToken(field, value string) []byte { return g.blindToken(field, value) }

// periodName buckets a record into its retention period: the month of
// occurred_at under the group's retention, or one key for groups kept
// until erased.
func periodName(retention schema.Duration, at time.Time) string {
	if retention.IsZero() {
		return noRetention
	}
	return retention.String() + "/" + at.Format("2006-01")
}

// periodExpiry is when a period's data must be gone: the end of its month
// plus the retention.
func periodExpiry(name string) (time.Time, bool) {
	ret, month, ok := strings.Cut(name, "/")
	if !ok {
		return time.Time{}, false
	}
	d, err := schema.ParseDuration(ret)
	if err != nil {
		return time.Time{}, false
	}
	start, err := time.Parse("2006-01", month)
	if err != nil {
		return time.Time{}, false
	}
	return d.AddTo(start.AddDate(0, 1, 0)), true
}

// fieldKey derives the AEAD of one subject and period: both keys feed
// HKDF, so either one's destruction makes the field unreadable.
func fieldKey(subjectKey, periodKey []byte) (cipher.AEAD, error) {
	secret := make([]byte, 0, len(subjectKey)+len(periodKey))
	secret = append(append(secret, subjectKey...), periodKey...)
	k, err := hkdf.Key(sha256.New, secret, nil, "stele field key v1", 32)
	clear(secret)
	if err != nil {
		return nil, fmt.Errorf("privacy: derive field key: %w", err)
	}
	block, err := aes.NewCipher(k)
	clear(k)
	if err != nil {
		return nil, fmt.Errorf("privacy: derive field key: %w", err)
	}
	return cipher.NewGCM(block)
}

// aeadCache keeps derived AEADs by kid, bounded: when full, the older half
// generation is dropped. Erasure clears it.
type aeadCache struct {
	mu       sync.Mutex
	max      int
	cur, old map[string]cipher.AEAD
}

func (c *aeadCache) init(max int) {
	c.max, c.cur, c.old = max, map[string]cipher.AEAD{}, map[string]cipher.AEAD{}
}

func (c *aeadCache) get(kid string, skey, pkey []byte) (cipher.AEAD, error) {
	c.mu.Lock()
	a, ok := c.cur[kid]
	if !ok {
		if a, ok = c.old[kid]; ok {
			c.cur[kid] = a
		}
	}
	c.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := fieldKey(skey, pkey)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.cur) >= c.max/2 {
		c.old, c.cur = c.cur, map[string]cipher.AEAD{}
	}
	c.cur[kid] = a
	c.mu.Unlock()
	return a, nil
}

func (c *aeadCache) lookup(kid string) (cipher.AEAD, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.cur[kid]; ok {
		return a, true
	}
	a, ok := c.old[kid]
	return a, ok
}

// forget drops every cached AEAD whose kid contains one of kids.
func (c *aeadCache) forget(kids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range []map[string]cipher.AEAD{c.cur, c.old} {
		for kid := range m {
			sk, pk, _ := strings.Cut(kid, ".")
			for _, gone := range kids {
				if sk == gone || pk == gone {
					delete(m, kid)
				}
			}
		}
	}
}

// SealOpaque encrypts a whole blob under one of Stele's own system keys
// (e.g. a record parked in the dead-letter file, whose personal fields
// could not be sealed field by field). purpose names the key and is bound
// as associated data.
func (g *Guard) SealOpaque(ctx context.Context, purpose string, plaintext []byte) ([]byte, error) {
	aead, err := g.systemAEAD(ctx, purpose)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return nil, fmt.Errorf("privacy: nonce: %w", err)
	}
	return aead.Seal(buf, buf, plaintext, []byte(purpose)), nil
}

// OpenOpaque decrypts what SealOpaque sealed.
func (g *Guard) OpenOpaque(ctx context.Context, purpose string, sealed []byte) ([]byte, error) {
	aead, err := g.systemAEAD(ctx, purpose)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrBadEnvelope
	}
	pt, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(purpose))
	if err != nil {
		return nil, ErrTampered
	}
	return pt, nil
}

func (g *Guard) systemAEAD(ctx context.Context, purpose string) (cipher.AEAD, error) {
	_, key, err := g.keys.GetOrCreate(ctx, keystore.KindSystem, "opaque/"+purpose)
	if err != nil {
		return nil, fmt.Errorf("privacy: system key: %w", err)
	}
	if err := g.keys.Sync(ctx); err != nil {
		return nil, fmt.Errorf("privacy: system key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("privacy: system key: %w", err)
	}
	return cipher.NewGCM(block)
}
