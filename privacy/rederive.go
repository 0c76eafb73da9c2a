package privacy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
	"github.com/stele/stele/sysrecord"
)

// Rederive rebuilds r.Derived for a record read back from the log, for the
// index (log.Sealer): Derived is never stored, so the records an index
// replays after a crash, or all of them in a rebuild, get their subjects
// and blind-index terms from here. Sealed values are opened with their
// keys; a value whose key is gone derives nothing, which is what its
// erasure left in the index anyway. An erasure receipt gets back the
// subjects it purges.
func (g *Guard) Rederive(ctx context.Context, r *record.Record) error {
	if sysrecord.IsReceipt(r) {
		erased, err := sysrecord.ReceiptSubjects(r.After)
		if err != nil {
			return fmt.Errorf("privacy: receipt %s: %w", r.ID, err)
		}
		if len(erased) > 0 {
			r.Derived = &record.Derived{Erased: erased}
		}
		return nil
	}
	if r.Schema == nil {
		return nil
	}
	sch, err := g.schemas.Version(r.Schema.Subject, int(r.Schema.Version))
	if errors.Is(err, schema.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("privacy: schema %s version %d: %w", r.Schema.Subject, r.Schema.Version, err)
	}
	d := &record.Derived{Sealed: true}
	sides := [...]struct {
		name string
		img  []byte
	}{{"key", r.Key}, {"before", r.Before}, {"after", r.After}}
	// The compact envelopes of each side, opened once.
	var compact [len(sides)]map[string][]byte
	for i, sd := range sides {
		var err error
		compact[i], err = g.compactValues(ctx, r.ID, sd.name, sd.img, func(e *compactEnvelope) {
			if !errors.Is(e.err, ErrKeyGone) {
				g.log.Warn("index rebuild: a sealed envelope cannot be opened; its fields get no index entry", "record", r.ID, "field", imagePath(sd.name, e.paths[0]), "err", e.err)
			}
		})
		if err != nil {
			g.log.Warn("index rebuild: a malformed sealed envelope; its fields get no index entry", "record", r.ID, "field", sd.name, "err", err)
		}
	}
	// value is the clear value at path of one side, opening an envelope;
	// nil when absent, null, or sealed under a key that is gone.
	value := func(side int, path schema.Path) []byte {
		if v, ok := compact[side][strings.Join(path, "\x00")]; ok {
			return v
		}
		raw, ok := valueAt(sides[side].img, path)
		if !ok || string(raw) == "null" {
			return nil
		}
		e, sealed, err := parseEnvelope(raw)
		if !sealed {
			return raw
		}
		var pt []byte
		if err == nil {
			pt, err = g.open(ctx, r.ID, sides[side].name+"."+path.String(), e)
		}
		if err != nil {
			if !errors.Is(err, ErrKeyGone) {
				g.log.Warn("index rebuild: a sealed value cannot be opened; it gets no index entry", "record", r.ID, "field", sides[side].name+"."+path.String(), "err", err)
			}
			return nil
		}
		return pt
	}
	for _, gr := range sch.Groups {
		if len(gr.PII) == 0 || len(gr.SubjectField) == 0 {
			continue
		}
		// As sealing does: the subject value in after, else before, else key.
		var text string
		found := false
		for _, side := range [...]int{2, 1, 0} {
			if raw := value(side, gr.SubjectField); raw != nil {
				if text, err = scalarText(raw); err == nil {
					found = true
				}
				break
			}
		}
		if !found {
			continue
		}
		subject := g.subjectName(gr.Name, text)
		d.Subjects = append(d.Subjects, subject)
		for _, f := range gr.PII {
			if !f.Searchable {
				continue
			}
			for side := range sides {
				raw := value(side, f.Path)
				if raw == nil {
					continue
				}
				if t, err := scalarText(raw); err == nil {
					d.Terms = append(d.Terms, record.Term{Token: g.BlindToken(f.Path.String(), t), Subject: subject})
				}
			}
		}
	}
	r.Derived = d
	return nil
}

// valueAt returns the raw value at path in an object image; for the
// rebuild path and records kept outside the log, not the append path.
func valueAt(img []byte, path schema.Path) (jsontext.Value, bool) {
	cur := jsontext.Value(img)
	for _, part := range path {
		dec := jsontext.NewDecoder(bytes.NewReader(cur))
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
			return nil, false
		}
		found := false
		for dec.PeekKind() == '"' {
			name, err := dec.ReadToken()
			if err != nil {
				return nil, false
			}
			match := name.String() == part
			val, err := dec.ReadValue()
			if err != nil {
				return nil, false
			}
			if match {
				cur, found = bytes.Clone(val), true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return cur, true
}
