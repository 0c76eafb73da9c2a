package privacy

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stele/stele/internal/jsonscan"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

// Keys is what the privacy layer needs from the keystore.
type Keys interface {
	GetOrCreate(ctx context.Context, kind keystore.Kind, name string) (kid string, key []byte, err error)
	Key(ctx context.Context, kid string) ([]byte, error)
	Sync(ctx context.Context) error
	Destroy(ctx context.Context, kind keystore.Kind, name string) (kids []string, err error)
	Names(kind keystore.Kind) []string
}

// DestroyNotifier is a keystore shared by several nodes (the KV keystore
// of a cluster): it tells every node of keys destroyed by any, so each
// guard drops the field keys it derived from them, not only the guard
// whose node ran the erasure.
type DestroyNotifier interface {
	OnDestroy(fn func(kids []string))
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
	// ErrKeysUnavailable: the keys exist but cannot be used now (a cluster
	// key store that cannot confirm it is current); retrying later works.
	ErrKeysUnavailable = errors.New("privacy: keys cannot be used now")
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

	plans    sync.Map // *schema.Schema -> *plan
	sealings sync.Pool
	aeads    keyCache[cipher.AEAD] // by kid
	// epoch moves whenever keys are destroyed (forget).
	epoch     atomic.Uint64
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
	if n, ok := keys.(DestroyNotifier); ok {
		n.OnDestroy(g.forget)
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

// rowImages reports whether the images of records of this op are rows of
// their table, which the table's schema validates. A ddl record's images
// describe the table's definition and a truncate's carry no row; they are
// not validated as rows, but they are still sealed: whatever sits at a
// personal-data path of the schema is personal data whatever the op says,
// or a client could pass it in clear by calling its record "ddl".
func rowImages(op record.Op) bool {
	return op != record.OpDDL && op != record.OpTruncate
}

// Seal validates r against its subject's latest schema and seals its
// personal fields in place, setting r.Schema and r.Derived. Every op is
// sealed, in every image and the key; the images of ddl and truncate
// records are sealed but not validated as rows (rowImages). A record whose
// subject has no schema passes unchanged. Keys created here are durable
// only after Sync. Errors wrapping *record.FieldError name the field that
// does not match the schema or cannot be sealed.
func (g *Guard) Seal(ctx context.Context, r *record.Record) error {
	if r.Derived != nil && r.Derived.Sealed {
		return nil
	}
	if err := refuseEnvelopes(r); err != nil {
		return err
	}
	s, _ := g.sealings.Get().(*sealing)
	if s == nil {
		s = &sealing{}
	}
	err := s.seal(g, ctx, r)
	g.sealings.Put(s)
	return err
}

func (s *sealing) seal(g *Guard, ctx context.Context, r *record.Record) error {
	subject := s.subjectName(r.Source)
	sch, err := g.schemas.Latest(subject)
	if errors.Is(err, schema.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("privacy: schema of %s: %w", subject, err)
	}
	p := g.plan(sch)
	if len(p.groups) == 0 || len(p.root.children) == 0 {
		for _, side := range [...]struct {
			side int
			img  []byte
		}{{sideBefore, r.Before}, {sideAfter, r.After}} {
			if !rowImages(r.Op) {
				break
			}
			if _, err := validate(sch, side.side, side.img, nil); err != nil {
				return err
			}
		}
		ref := carve(&s.refs)
		*ref = record.SchemaRef{Subject: sch.Subject, Version: int64(sch.Version)}
		r.Schema = ref
		return nil
	}
	s.reset(g, ctx, r, p)
	err = s.run()
	s.reset(nil, nil, nil, nil)
	return err
}

// subjectName is SubjectName(src), kept from the record before: a batch
// mostly comes from one table, and building the name costs an allocation.
func (s *sealing) subjectName(src record.Source) string {
	if src != s.source || s.subject == "" {
		s.source, s.subject = src, SubjectName(src)
	}
	return s.subject
}

// validate checks one side's image against sch and, when f is not nil,
// finds on the way the values sealing needs, if it can (scanned).
func validate(sch *schema.Schema, side int, img []byte, f *finder) (scanned bool, err error) {
	if len(img) == 0 {
		return false, nil
	}
	var found schema.Finder
	if f != nil {
		found = f
	}
	scanned, err = sch.ValidateScan(img, found)
	if err != nil {
		var ve *schema.ValidationError
		if errors.As(err, &ve) {
			return false, &record.FieldError{Field: sideNames[side] + dotted(ve.Field), Reason: fmt.Sprintf("does not match schema %s version %d: %s", ve.Subject, ve.Version, ve.Reason)}
		}
		return false, fmt.Errorf("privacy: validate %s: %w", sideNames[side], err)
	}
	return scanned, nil
}

// sealedParts are what sealing adds to a record, allocated together: one
// allocation instead of one each (the append path seals every record).
type sealedParts struct {
	ref      record.SchemaRef
	derived  record.Derived
	subjects [1]string
	terms    [1]record.Term
	tokens   [blindTokenSize]byte
}

const blindTokenSize = 16

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
	subject    string // keystore name; "" when the record has no subject value
	aead       cipher.AEAD
	skid, pkid string
	kidBin     [2 * kidLen]byte // skid and pkid as the envelope holds them
}

// sealing is the state of sealing one record; its buffers are reused
// from record to record (Guard.sealings).
type sealing struct {
	g    *Guard
	ctx  context.Context
	r    *record.Record
	plan *plan

	// source is the last record's source, subject its schema subject.
	source  record.Source
	subject string

	sides  [numSides]finder
	groups []groupKeys
	spans  []span // the sealed values of the image being sealed
	// groupLeaves, envs and member are sealSide's buffers.
	groupLeaves []leaf
	envs        []envelopeOut
	member      []byte
	random      []byte // nonce material not used yet
	tokens      []byte // where blind tokens go
	ct          []byte
	aad         []byte
	nonceBuf    [nonceSize]byte // sealCompact's; a local one would escape
	scratch     []byte
	// subjectSide is the side subjectValue last found a value in.
	subjectSide int
	// images, parts and refs are the slabs sealed images, sealedParts
	// and the references of records validated only are carved from.
	images []byte
	parts  []sealedParts
	refs   []record.SchemaRef
}

func (s *sealing) reset(g *Guard, ctx context.Context, r *record.Record, p *plan) {
	s.g, s.ctx, s.r, s.plan = g, ctx, r, p
	if r == nil {
		// Back to the pool: keep no record, and none of its values.
		for i := range s.sides {
			s.sides[i].img, s.sides[i].plan = nil, nil
		}
		s.tokens = nil
		clear(s.scratch)
		return
	}
	for i, img := range [numSides][]byte{r.Key, r.Before, r.After} {
		f := &s.sides[i]
		f.img, f.plan, f.leaves = img, p, f.leaves[:0]
		f.subjects = slices.Grow(f.subjects[:0], len(p.groups))[:len(p.groups)]
		clear(f.subjects)
	}
	s.groups = slices.Grow(s.groups[:0], len(p.groups))[:len(p.groups)]
	clear(s.groups)
}

// nonce returns n fresh random bytes, drawn from a buffer filled a few
// kilobytes at a time: one read from the system per record costs more
// than the encryption.
func (s *sealing) nonce(n int) ([]byte, error) {
	if len(s.random) < n {
		size := max(4096, n)
		s.random = slices.Grow(s.random[:0], size)[:size]
		if _, err := rand.Read(s.random); err != nil {
			return nil, fmt.Errorf("privacy: nonce: %w", err)
		}
	}
	b := s.random[:n:n]
	s.random = s.random[n:]
	return b, nil
}

func (s *sealing) run() error {
	r := s.r
	// Images are validated before anything else, and their sealed values
	// found on the way when the schema allows; the key, and the images of
	// records that are not rows, are not validated, only walked.
	rows := rowImages(r.Op)
	for _, side := range [...]int{sideBefore, sideAfter, sideKey} {
		f := &s.sides[side]
		scanned := false
		if side != sideKey && rows {
			var err error
			if scanned, err = validate(s.plan.schema, side, f.img, f); err != nil {
				return err
			}
		}
		if !scanned && len(f.img) > 0 {
			// The fast validator could not judge the image, or did not
			// see it: walk it.
			f.leaves, f.subjects = f.leaves[:0], f.subjects[:len(s.plan.groups)]
			clear(f.subjects)
			if err := f.scan(s.plan.root); err != nil {
				return fmt.Errorf("privacy: seal %s of record %s: %w", sideNames[side], r.ID, err)
			}
		}
	}
	parts := carve(&s.parts)
	parts.ref = record.SchemaRef{Subject: s.plan.schema.Subject, Version: int64(s.plan.schema.Version)}
	derived := &parts.derived
	derived.Sealed, derived.Subjects, derived.Terms = true, parts.subjects[:0], parts.terms[:0]
	s.tokens = parts.tokens[:0]
	if err := s.resolveSubjects(derived); err != nil {
		return err
	}
	// All sides are sealed before any is replaced: a failure leaves the
	// record as it came, so a retry starts from the same state.
	var outs [numSides][]byte
	for side := range s.sides {
		f := &s.sides[side]
		if len(f.leaves) == 0 {
			continue
		}
		out, err := s.sealSide(side, f.img, f.leaves, derived)
		if err != nil {
			return err
		}
		outs[side] = out
	}
	for side, p := range [...]*json.RawMessage{&r.Key, &r.Before, &r.After} {
		if outs[side] != nil {
			*p = outs[side]
		}
	}
	r.Schema, r.Derived = &parts.ref, derived
	return nil
}

// resolveSubjects finds each group's subject value (after, else before,
// else key) and loads the group's keys.
func (s *sealing) resolveSubjects(derived *record.Derived) error {
	for i, gp := range s.plan.groups {
		if len(gp.group.PII) == 0 || len(gp.group.SubjectField) == 0 {
			continue
		}
		raw := s.subjectValue(i)
		if raw == nil {
			// Checked lazily: a record without any of the group's PII
			// fields needs no subject.
			continue
		}
		text, err := scalarBytes(raw)
		if err != nil {
			if s.subjectSide != sideKey {
				err = errors.New("is not a string, number or boolean")
			}
			return &record.FieldError{Field: "after." + gp.subject, Reason: "subject field of data group " + gp.group.Name + " " + err.Error()}
		}
		gk, scratch, err := s.g.groupKeys(s.ctx, gp, raw, text, s.r.OccurredAt, s.scratch)
		s.scratch = scratch
		if err != nil {
			return err
		}
		s.groups[i] = gk
		derived.Subjects = append(derived.Subjects, gk.subject)
	}
	return nil
}

// subjectValue is group i's subject value: in after, else before, else
// key, whichever first holds a value that is not null; nil when none does.
func (s *sealing) subjectValue(i int) []byte {
	for _, side := range [...]int{sideAfter, sideBefore, sideKey} {
		f := &s.sides[side]
		sp := f.subjects[i]
		raw := f.img[sp.start:sp.end]
		if sp.end > 0 && jsonscan.Kind(raw, 0) != jsonscan.Null {
			s.subjectSide = side
			return raw
		}
	}
	return nil
}

// groupKeys loads the keys of one group's subject (whose value is raw, its
// text text, which may alias raw) and of the period of at, through the
// group's cache.
func (g *Guard) groupKeys(ctx context.Context, gp *groupPlan, raw, text []byte, at time.Time, scratch []byte) (groupKeys, []byte, error) {
	at = at.UTC()
	month := 0
	if gp.retains {
		y, m, _ := at.Date()
		month = y*12 + int(m)
	}
	scratch = append(binary.BigEndian.AppendUint32(scratch[:0], uint32(month)), raw...)
	if gk, ok := gp.keys.get(scratch); ok {
		return gk, scratch, nil
	}
	seen := g.epoch.Load()
	name := g.subjectName(gp.group.Name, string(text))
	skid, skey, err := g.keys.GetOrCreate(ctx, keystore.KindSubject, name)
	if err != nil {
		return groupKeys{}, scratch, keyStoreErr("subject key", err)
	}
	pkid, pkey, err := g.periodKey(ctx, gp, at, month, seen)
	if err != nil {
		return groupKeys{}, scratch, err
	}
	kid := skid + "." + pkid
	aead, err := g.aead(kid, skey, pkey, seen)
	if err != nil {
		return groupKeys{}, scratch, err
	}
	gk := groupKeys{subject: name, aead: aead, skid: skid, pkid: pkid}
	sb, err := kidBytes(skid)
	if err != nil {
		return groupKeys{}, scratch, err
	}
	pb, err := kidBytes(pkid)
	if err != nil {
		return groupKeys{}, scratch, err
	}
	copy(gk.kidBin[:], sb[:])
	copy(gk.kidBin[kidLen:], pb[:])
	gp.keys.put(string(scratch), gk, &g.epoch, seen)
	return gk, scratch, nil
}

// periodKey is the key of the period of at (month in groupKeys' terms)
// for gp's group; seen is the epoch read before the lookup began. The
// last one is kept in gp: a batch's records mostly share a period, and
// without it each new subject looked the same period up again.
func (g *Guard) periodKey(ctx context.Context, gp *groupPlan, at time.Time, month int, seen uint64) (kid string, key []byte, err error) {
	if p := gp.period.Load(); p != nil && p.month == month && p.epoch == seen {
		return p.kid, p.key, nil
	}
	kid, key, err = g.keys.GetOrCreate(ctx, keystore.KindPeriod, periodName(gp.group.Retention, at))
	if err != nil {
		return "", nil, keyStoreErr("period key", err)
	}
	// Valid only while the epoch stays at seen: forget moves it when any
	// key is destroyed.
	gp.period.Store(&periodEntry{month: month, epoch: seen, kid: kid, key: key})
	return kid, key, nil
}

// keyStoreErr wraps a key store failure; one the caller may retry
// (keystore.ErrStale) also wraps ErrKeysUnavailable.
func keyStoreErr(what string, err error) error {
	if errors.Is(err, keystore.ErrStale) {
		return fmt.Errorf("%w: %s: %w", ErrKeysUnavailable, what, err)
	}
	return fmt.Errorf("privacy: %s: %w", what, err)
}

// aead is the field AEAD of kid, derived from its keys if not cached; seen
// is the epoch read before the keys were looked up.
func (g *Guard) aead(kid string, skey, pkey []byte, seen uint64) (cipher.AEAD, error) {
	if a, ok := g.aeads.get([]byte(kid)); ok {
		return a, nil
	}
	a, err := fieldKey(skey, pkey)
	if err != nil {
		return nil, err
	}
	g.aeads.put(kid, a, &g.epoch, seen)
	return a, nil
}

// forget drops every cached key derived from one of kids, which were just
// destroyed.
func (g *Guard) forget(kids []string) {
	// A lookup that found its keys before the destruction must not cache
	// them after this; it sees the epoch move (keyCache.put).
	g.epoch.Add(1)
	gone := func(kid string) bool {
		// Kids read from envelopes sealed before keep the form they were
		// sealed with; Destroy names kids in today's.
		if c, ok := keystore.CanonicalKid(kid); ok {
			kid = c
		}
		return slices.Contains(kids, kid)
	}
	g.aeads.forget(func(kid string, _ cipher.AEAD) bool {
		skid, pkid, _ := strings.Cut(kid, ".")
		return gone(skid) || gone(pkid)
	})
	g.plans.Range(func(_, p any) bool {
		for _, gp := range p.(*plan).groups {
			gp.period.Store(nil)
			gp.keys.forget(func(_ string, gk groupKeys) bool {
				return gone(gk.skid) || gone(gk.pkid)
			})
		}
		return true
	})
}

const (
	nonceSize = 12 // AES-GCM's standard nonce (fieldKey)
	tagSize   = 16 // and tag
	// aadPrefix starts the associated data of the per-field envelopes of
	// format 1, which are read, no longer written.
	aadPrefix = "stele/seal/v1\x00"
)

// sealSide copies one side's image with its leaves taken out and sealed,
// one compact envelope per data group (compact.go), under the image's
// "$pii" member.
func (s *sealing) sealSide(side int, img []byte, leaves []leaf, derived *record.Derived) ([]byte, error) {
	s.spans = s.spans[:0]
	for _, l := range leaves {
		f := l.field
		gk := &s.groups[f.group.index]
		if gk.aead == nil {
			gp := f.group
			return nil, &record.FieldError{Field: "after." + gp.subject,
				Reason: "is required: the record carries personal data of data group " + gp.group.Name + " (" + f.paths[side] + ") and this field names whose it is"}
		}
		if f.field.Searchable {
			if text, err := scalarBytes(img[l.start:l.end]); err == nil {
				if cap(s.tokens)-len(s.tokens) < blindTokenSize {
					s.tokens = make([]byte, 0, blindTokenSize*len(leaves))
				}
				n := len(s.tokens)
				s.tokens = s.g.blindToken(s.tokens, f.name, text)
				derived.Terms = append(derived.Terms, record.Term{Token: s.tokens[n:len(s.tokens):len(s.tokens)], Subject: gk.subject})
			}
		}
		s.spans = append(s.spans, l.span)
	}
	// One envelope per group, in the order of the groups' first fields;
	// canonical order below.
	envs := s.envs[:0]
	for gi := range s.groups {
		s.groupLeaves = s.groupLeaves[:0]
		for _, l := range leaves {
			if l.field.group.index == gi {
				s.groupLeaves = append(s.groupLeaves, l)
			}
		}
		if len(s.groupLeaves) == 0 {
			continue
		}
		if len(envs) < cap(envs) {
			envs = envs[:len(envs)+1]
		} else {
			envs = append(envs, envelopeOut{})
		}
		if err := s.sealCompact(side, img, &s.groups[gi], s.groupLeaves, &envs[len(envs)-1]); err != nil {
			return nil, err
		}
	}
	s.envs = envs
	if len(envs) > 1 {
		slices.SortFunc(envs, func(a, b envelopeOut) int {
			if canonicalLess(string(a.fields), string(b.fields)) {
				return -1
			}
			return 1
		})
	}
	s.member = appendCompactMember(s.member[:0], envs)
	size := len(img) + len(s.member) + 1
	return exciseMembers(s.newImage(size), img, s.spans, s.member)
}

// Sealed images and parts are carved from slabs, each holding those of
// several records: one allocation per record for each cost more than the
// hashing. A slab stays alive while any record carved from it does, so
// slabs are kept small: records of one batch live and die together, and
// a record kept alone keeps at most a slab.
const (
	imageSlab = 8 << 10
	partsSlab = 16
)

// newImage returns an empty buffer of capacity size for a sealed image.
func (s *sealing) newImage(size int) []byte {
	if size > imageSlab/4 {
		return make([]byte, 0, size)
	}
	if cap(s.images)-len(s.images) < size {
		s.images = make([]byte, 0, imageSlab)
	}
	n := len(s.images)
	s.images = s.images[:n+size]
	// Full slice expression: growing one image never overwrites the next.
	return s.images[n : n : n+size]
}

// carve returns a zeroed T from slab, refilled partsSlab at a time.
func carve[T any](slab *[]T) *T {
	if len(*slab) == 0 {
		*slab = make([]T, partsSlab)
	}
	p := &(*slab)[0]
	*slab = (*slab)[1:]
	return p
}

// aad binds an envelope to its record, its field and its keys.
func aad(recordID, path, kid string) []byte {
	b := make([]byte, 0, len(recordID)+len(path)+len(kid)+16)
	b = append(b, aadPrefix...)
	b = append(b, recordID...)
	b = append(b, 0)
	b = append(b, path...)
	b = append(b, 0)
	return append(b, kid...)
}

func (g *Guard) subjectName(group, value string) string {
	var sum [16]byte
	return hex.EncodeToString(keyedHash(&g.namePool, g.subjectNames, group, []byte(value), sum[:0]))
}

// blindToken appends the blind-index token of a field's value to dst.
func (g *Guard) blindToken(dst []byte, field string, value []byte) []byte {
	return keyedHash(&g.blindPool, g.blindKey, field, value, dst)
}

// keyedHasher is a pooled HMAC state with its buffers: setting one up
// costs more than hashing the few bytes it is used for, and both are
// needed per record on the append path.
type keyedHasher struct {
	mac hash.Hash
	msg []byte // a and the separator; b, which may be personal, is not copied
	sum [sha256.Size]byte
}

// keyedHash appends the first 16 bytes of HMAC-SHA256(key, a ‖ 0 ‖ b) to
// dst.
func keyedHash(pool *sync.Pool, key []byte, a string, b []byte, dst []byte) []byte {
	h, _ := pool.Get().(*keyedHasher)
	if h == nil {
		h = &keyedHasher{mac: hmac.New(sha256.New, key)}
	}
	h.mac.Reset()
	h.msg = append(append(h.msg[:0], a...), 0)
	h.mac.Write(h.msg)
	h.mac.Write(b)
	dst = append(dst, h.mac.Sum(h.sum[:0])[:16]...)
	pool.Put(h)
	return dst
}

// BlindToken is the token to search the blind index for a field path
// ("email", "address.zip") holding value.
func (g *Guard) BlindToken(field, value string) []byte {
	return g.blindToken(nil, field, []byte(value))
}

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
	var k [32]byte
	if err := fieldKeyBytes(&k, subjectKey, periodKey); err != nil {
		return nil, fmt.Errorf("privacy: derive field key: %w", err)
	}
	block, err := aes.NewCipher(k[:])
	clear(k[:])
	if err != nil {
		return nil, fmt.Errorf("privacy: derive field key: %w", err)
	}
	return cipher.NewGCM(block)
}

const fieldKeyInfo = "stele field key v1"

// fieldKeyBytes is HKDF-SHA256 (RFC 5869) of subjectKey ‖ periodKey,
// without salt, with info fieldKeyInfo, 32 bytes long, into k. Keys of the
// keystore's size are derived on the stack: hkdf.Key allocates two HMAC
// states per call, and the first batch of a table of customers derives a
// key per customer.
func fieldKeyBytes(k *[32]byte, subjectKey, periodKey []byte) error {
	if len(subjectKey)+len(periodKey) > 2*keystore.KeySize {
		secret := append(slices.Clone(subjectKey), periodKey...)
		out, err := hkdf.Key(sha256.New, secret, nil, fieldKeyInfo, 32)
		clear(secret)
		copy(k[:], out)
		clear(out)
		return err
	}
	var buf [hmacBlock + 2*keystore.KeySize]byte
	var salt [sha256.Size]byte // no salt: a hash length of zeros
	prk := hmacSHA256(&buf, salt[:], subjectKey, periodKey)
	okm := hmacSHA256(&buf, prk[:], []byte(fieldKeyInfo), []byte{1})
	*k = okm
	clear(prk[:])
	clear(okm[:])
	clear(buf[:])
	return nil
}

const hmacBlock = 64 // SHA-256's block

// hmacSHA256 is HMAC-SHA256(key, a ‖ b) = H((key^opad) ‖ H((key^ipad) ‖
// a ‖ b)), for a key of at most a block and a message that fits buf
// after a block.
func hmacSHA256(buf *[hmacBlock + 2*keystore.KeySize]byte, key, a, b []byte) [sha256.Size]byte {
	var pad [hmacBlock]byte
	copy(pad[:], key)
	for i := range pad {
		pad[i] ^= 0x36
	}
	inner := sha256.Sum256(append(append(append(buf[:0], pad[:]...), a...), b...))
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	out := sha256.Sum256(append(append(buf[:0], pad[:]...), inner[:]...))
	clear(pad[:])
	clear(inner[:])
	return out
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
