package record

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/stele/stele/internal/jsonscan"
)

// decodeStored decodes a body exactly as appendBody writes it: members in
// its order, no whitespace. Queries read every record they return through
// Decode, and encoding/json spent most of a query's CPU validating and
// decoding bodies whose layout is fixed. Any body that departs from that
// layout (older writers, hand-made bytes) returns ok false and takes
// encoding/json's path, so what is accepted, and every error, stays
// exactly encoding/json's.
func decodeStored(body []byte) (_ *Record, ok bool) {
	d := storedDecoder{b: body}
	r := new(Record)
	if !d.lit(`{"id":`) || !d.str(&r.ID) ||
		!d.lit(`,"source":{"name":`) || !d.str(&r.Source.Name) || !d.lit(`,"kind":`) || !d.str(&r.Source.Kind) ||
		(d.opt(`,"database":`) && !d.str(&r.Source.Database)) || (d.opt(`,"schema":`) && !d.str(&r.Source.Schema)) ||
		!d.lit(`,"table":`) || !d.str(&r.Source.Table) || !d.lit(`},"op":`) {
		return nil, false
	}
	var op string
	if !d.str(&op) || !d.lit(`,"key":`) {
		return nil, false
	}
	r.Op = Op(op)
	// The raw members share one copy of the body, each capped at its end
	// so that appending to one cannot overwrite the next.
	raws := make([]byte, 0, len(body))
	// raw takes the member if it is next, reporting false only when its
	// value does not scan.
	raw := func(name string, dst *json.RawMessage) bool {
		if !d.opt(name) {
			return true
		}
		start := d.i
		end, err := jsonscan.Skip(d.b, start, 1)
		if err != nil {
			return false
		}
		d.i = end
		at := len(raws)
		raws = append(raws, d.b[start:end]...)
		*dst = raws[at:len(raws):len(raws)]
		return true
	}
	if !raw(``, &r.Key) || !raw(`,"before":`, &r.Before) || !raw(`,"after":`, &r.After) {
		return nil, false
	}
	if d.opt(`,"changed":[`) {
		r.Changed = []string{}
		for first := true; !d.opt(`]`); first = false {
			var c string
			if (!first && !d.lit(`,`)) || !d.str(&c) {
				return nil, false
			}
			r.Changed = append(r.Changed, c)
		}
	}
	if !raw(`,"actor":`, &r.Actor) {
		return nil, false
	}
	if d.opt(`,"tx":{`) {
		r.Tx = new(Tx)
		sep := ``
		if d.opt(`"id":`) {
			if !d.str(&r.Tx.ID) {
				return nil, false
			}
			sep = `,`
		}
		if d.opt(sep + `"position":`) {
			if !d.str(&r.Tx.Position) {
				return nil, false
			}
			sep = `,`
		}
		if d.opt(sep + `"index":`) {
			var n int64
			if !d.int(&n) {
				return nil, false
			}
			r.Tx.Index, sep = &n, `,`
		}
		if d.opt(sep + `"commit_time":`) {
			var t time.Time
			if !d.time(&t) {
				return nil, false
			}
			r.Tx.CommitTime = &t
		}
		if !d.lit(`}`) {
			return nil, false
		}
	}
	if !raw(`,"cause":`, &r.Cause) {
		return nil, false
	}
	if d.opt(`,"schema":{"subject":`) {
		r.Schema = new(SchemaRef)
		if !d.str(&r.Schema.Subject) || !d.lit(`,"version":`) || !d.int(&r.Schema.Version) || !d.lit(`}`) {
			return nil, false
		}
	}
	if !d.lit(`,"occurred_at":`) || !d.time(&r.OccurredAt) || !d.lit(`}`) || d.i != len(d.b) {
		return nil, false
	}
	return r, true
}

// storedDecoder walks a stored body; every method reports whether the
// bytes at its position are what appendBody writes there.
type storedDecoder struct {
	b []byte
	i int
}

// lit consumes s, which must be next.
func (d *storedDecoder) lit(s string) bool {
	if len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		return false
	}
	d.i += len(s)
	return true
}

// opt consumes s if it is next.
func (d *storedDecoder) opt(s string) bool { return d.lit(s) }

// str decodes a string.
func (d *storedDecoder) str(dst *string) bool {
	end, _, err := jsonscan.Str(d.b, d.i)
	if err != nil {
		return false
	}
	*dst = jsonscan.Unquote(d.b[d.i:end])
	d.i = end
	return true
}

// int decodes an integer that fits an int64.
func (d *storedDecoder) int(dst *int64) bool {
	end, integral, err := jsonscan.Num(d.b, d.i)
	if err != nil || !integral {
		return false
	}
	n, err := strconv.ParseInt(string(d.b[d.i:end]), 10, 64)
	if err != nil {
		return false
	}
	*dst, d.i = n, end
	return true
}

// time decodes a time in appendTime's form only (UTC, the shortest
// fraction): that form is one time.Time's UnmarshalJSON reads the same
// way, while its strict RFC 3339 rules for any other form stay its own.
func (d *storedDecoder) time(dst *time.Time) bool {
	end, escaped, err := jsonscan.Str(d.b, d.i)
	if err != nil || escaped {
		return false
	}
	lit := d.b[d.i+1 : end-1]
	t, err := time.Parse(timeLayout, string(lit))
	if err != nil {
		return false
	}
	var buf [40]byte
	if string(t.UTC().AppendFormat(buf[:0], timeLayout)) != string(lit) {
		return false
	}
	*dst, d.i = t, end
	return true
}
