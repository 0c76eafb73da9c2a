package privacy

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

// Replacement values in responses.
const (
	erasedValue     = `{"$erased":true}`
	unreadableValue = `{"$unreadable":"the sealed value failed authentication"}`
)

var sealedMarker = []byte(`{"$sealed":`)

// envelope is a parsed {"$sealed":…}.
type envelope struct {
	kid string
	ct  []byte
}

// parseEnvelope recognises an object that is exactly one sealed envelope.
func parseEnvelope(v jsontext.Value) (envelope, bool, error) {
	if !bytes.HasPrefix(v, sealedMarker) {
		return envelope{}, false, nil
	}
	dec := jsontext.NewDecoder(bytes.NewReader(v))
	if _, err := dec.ReadToken(); err != nil { // {
		return envelope{}, true, ErrBadEnvelope
	}
	if _, err := dec.ReadToken(); err != nil { // "$sealed"
		return envelope{}, true, ErrBadEnvelope
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return envelope{}, true, ErrBadEnvelope
	}
	var e envelope
	var algSeen string
	for dec.PeekKind() == '"' {
		nameTok, err := dec.ReadToken()
		if err != nil {
			return envelope{}, true, ErrBadEnvelope
		}
		name := nameTok.String() // a token is valid only until the next read
		val, err := dec.ReadToken()
		if err != nil || val.Kind() != '"' {
			return envelope{}, true, ErrBadEnvelope
		}
		switch name {
		case "alg":
			algSeen = val.String()
		case "kid":
			e.kid = val.String()
		case "ct":
			if e.ct, err = base64.StdEncoding.DecodeString(val.String()); err != nil {
				return envelope{}, true, ErrBadEnvelope
			}
		}
	}
	if algSeen != alg || e.kid == "" || len(e.ct) == 0 {
		return envelope{}, true, ErrBadEnvelope
	}
	return e, true, nil
}

// walkEnvelopes copies an image, replacing every envelope by what fn
// returns; path names the envelope's place ("after.address.street").
func walkEnvelopes(dst []byte, img jsontext.Value, path string, fn func(path string, e envelope, raw jsontext.Value) []byte) ([]byte, error) {
	if img.Kind() != '{' {
		return append(dst, img...), nil
	}
	if e, ok, err := parseEnvelope(img); ok {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return append(dst, fn(path, e, img)...), nil
	}
	return copyObject(dst, img, func(dst []byte, name string, val jsontext.Value) ([]byte, error) {
		if val.Kind() == '{' && bytes.Contains(val, sealedMarker) {
			return walkEnvelopes(dst, bytes.Clone(val), joinPath(path, name), fn)
		}
		return append(dst, val...), nil
	})
}

// open decrypts one envelope found at path of record id.
func (g *Guard) open(ctx context.Context, recordID, path string, e envelope) ([]byte, error) {
	var kid [80]byte // "<skid>.<pkid>" fits, in either kid form: no allocation per field read
	aead, err := g.pairAEAD(ctx, append(kid[:0], e.kid...))
	if err != nil {
		return nil, err
	}
	if len(e.ct) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrBadEnvelope
	}
	nonce, ct := e.ct[:aead.NonceSize()], e.ct[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, aad(recordID, path, e.kid))
	if err != nil {
		return nil, ErrTampered
	}
	return pt, nil
}

// pairAEAD is the field AEAD of kid ("<skid>.<pkid>"), from the cache or
// derived from the two keys.
func (g *Guard) pairAEAD(ctx context.Context, kid []byte) (cipher.AEAD, error) {
	if a, ok := g.aeads.get(kid); ok {
		return a, nil
	}
	skid, pkid, found := strings.Cut(string(kid), ".")
	if !found {
		return nil, ErrBadEnvelope
	}
	seen := g.epoch.Load()
	skey, err := g.keys.Key(ctx, skid)
	if err != nil {
		return nil, keyErr(err)
	}
	pkey, err := g.keys.Key(ctx, pkid)
	if err != nil {
		return nil, keyErr(err)
	}
	return g.aead(string(kid), skey, pkey, seen)
}

func keyErr(err error) error {
	if errors.Is(err, keystore.ErrDestroyed) || errors.Is(err, keystore.ErrUnknownKey) {
		return ErrKeyGone
	}
	return fmt.Errorf("privacy: load key: %w", err)
}

// Unseal decrypts every sealed field of r in place, as an auditor reads it,
// and fails on the first field that cannot be opened (FieldError naming it,
// wrapping ErrKeyGone, ErrTampered or ErrBadEnvelope).
func (g *Guard) Unseal(ctx context.Context, r *record.Record) error {
	var first error
	for _, side := range sides(r) {
		img := *side.img
		if bytes.Contains(img, sealedMarker) {
			out, err := walkEnvelopes(nil, img, side.name, func(path string, e envelope, raw jsontext.Value) []byte {
				pt, err := g.open(ctx, r.ID, path, e)
				if err != nil {
					if first == nil {
						first = &FieldError{RecordID: r.ID, Field: path, Err: err}
					}
					return raw
				}
				return pt
			})
			if err != nil {
				return &FieldError{RecordID: r.ID, Field: side.name, Err: err}
			}
			if first != nil {
				return first
			}
			img = out
		}
		out, _, err := g.revealCompact(ctx, r.ID, side.name, img, func(e *compactEnvelope) bool {
			if e.err != nil && first == nil {
				first = &FieldError{RecordID: r.ID, Field: imagePath(side.name, e.paths[0]), Err: e.err}
			}
			return false
		}, func(e *compactEnvelope, j int) []byte {
			if e.err != nil {
				return []byte("null")
			}
			return e.values[j]
		})
		if err != nil {
			return &FieldError{RecordID: r.ID, Field: side.name, Err: err}
		}
		if first != nil {
			return first
		}
		*side.img = out
	}
	return nil
}

type side struct {
	name string
	img  *[]byte
}

func sides(r *record.Record) []side {
	return []side{{"key", (*[]byte)(&r.Key)}, {"before", (*[]byte)(&r.Before)}, {"after", (*[]byte)(&r.After)}}
}

// Reveal rewrites r's sealed fields for a reader of role: in clear for
// roles that see personal data, masked for analysts, sealed for services;
// {"$erased":true} for every role once a key is gone. It returns how many
// values it showed in clear, which the caller must record as an access.
// A field that fails authentication is shown as {"$unreadable":…} and
// logged, never revealed.
func (g *Guard) Reveal(ctx context.Context, role auth.Role, r *record.Record) (clear int, err error) {
	var masks *plan
	var unavailable error
	failed := func(path string, err error) []byte {
		if errors.Is(err, ErrKeyGone) {
			return []byte(erasedValue)
		}
		if errors.Is(err, keystore.ErrStale) {
			// Not damage: the keys are there, this node cannot confirm
			// they still are. The record is not shown at all.
			if unavailable == nil {
				unavailable = fmt.Errorf("%w: record %s: %w", ErrKeysUnavailable, r.ID, err)
			}
			return []byte(unreadableValue)
		}
		g.log.Warn("a sealed field failed to open", "record", r.ID, "field", path, "err", err)
		return []byte(unreadableValue)
	}
	shown := func(path []string, pt []byte) []byte {
		switch {
		case role.SeesClear():
			clear++
			return pt
		case role == auth.RoleAnalyst:
			if masks == nil {
				masks = g.recordPlan(r)
			}
			return maskPath(masks, path, pt)
		}
		return nil // not reached: services keep the envelope
	}
	for _, side := range sides(r) {
		img := *side.img
		if bytes.Contains(img, sealedMarker) {
			out, err := walkEnvelopes(nil, img, side.name, func(path string, e envelope, raw jsontext.Value) []byte {
				pt, err := g.open(ctx, r.ID, path, e)
				if err != nil {
					return failed(path, err)
				}
				if !role.SeesClear() && role != auth.RoleAnalyst {
					return raw
				}
				_, rest, _ := strings.Cut(path, ".")
				return shown(strings.Split(rest, "."), pt)
			})
			if err != nil {
				return clear, &FieldError{RecordID: r.ID, Field: side.name, Err: err}
			}
			img = out
		}
		out, _, err := g.revealCompact(ctx, r.ID, side.name, img, func(e *compactEnvelope) bool {
			// Services see an envelope as stored, until its key is gone.
			return e.err == nil && !role.SeesClear() && role != auth.RoleAnalyst
		}, func(e *compactEnvelope, j int) []byte {
			if e.err != nil {
				return failed(imagePath(side.name, e.paths[j]), e.err)
			}
			return shown(e.paths[j], e.values[j])
		})
		if err != nil {
			return clear, &FieldError{RecordID: r.ID, Field: side.name, Err: err}
		}
		*side.img = out
	}
	return clear, unavailable
}

// recordPlan is the plan of the schema version r was sealed under, or of
// the latest one; nil when neither is known (then the default mask holds).
func (g *Guard) recordPlan(r *record.Record) *plan {
	var sch *schema.Schema
	var err error
	if r.Schema != nil {
		sch, err = g.schemas.Version(r.Schema.Subject, int(r.Schema.Version))
	}
	if sch == nil || err != nil {
		if sch, err = g.schemas.Latest(SubjectName(r.Source)); err != nil {
			return nil
		}
	}
	return g.plan(sch)
}

// maskPath renders a clear value as an analyst sees it; path is the
// field's path in its image.
func maskPath(p *plan, path []string, pt []byte) []byte {
	how := schema.MaskStars
	if p != nil {
		n := p.root
		for _, part := range path {
			if n = n.children[part]; n == nil {
				break
			}
		}
		if n != nil && n.field != nil && n.field.field.Mask != "" {
			how = n.field.field.Mask
		}
	}
	switch how {
	case schema.MaskNull:
		return []byte("null")
	case schema.MaskLast4:
		text, err := scalarText(pt)
		if err != nil || utf8.RuneCountInString(text) <= 4 {
			return []byte(`"***"`)
		}
		runes := []rune(text)
		out, _ := jsontext.AppendQuote([]byte(nil), "***"+string(runes[len(runes)-4:]))
		return out
	case schema.MaskYear:
		text, err := scalarText(pt)
		if err != nil || len(text) < 4 || strings.Trim(text[:4], "0123456789") != "" {
			return []byte(`"***"`)
		}
		out, _ := jsontext.AppendQuote([]byte(nil), text[:4])
		return out
	}
	return []byte(`"***"`)
}
