package record

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/stele/stele/internal/jsonscan"
)

// fastParse is parse in one pass over the record, for records in the form
// clients mostly send: string fields without escapes, and images (key,
// before, after, actor, cause) in one line with their nested values
// canonical already (the top-level members of an image may come in any
// order: they are sorted). It finds where each field lies, checks it and
// then builds the record with three allocations: the record with its
// fixed-size parts, one string holding all its strings and one byte slice
// holding all its JSON.
//
// It reports ok false for anything else, valid or not (an escape, white
// space inside an image, a field missing or wrong), and parse then does
// the work and names what is wrong: fastParse accepts only records parse
// accepts, and builds the same record (FuzzFastIngestMatchesParse), so
// every validation and error message stays parse's.
func (p *parser) fastParse(d []byte, opts IngestOptions) (_ *Record, ok bool) {
	if len(d) > MaxRecordBytes {
		return nil, false
	}
	r, end, ok := p.fastObject(d, opts, false)
	if !ok || jsonscan.Space(d, end) != len(d) {
		return nil, false
	}
	return r, true
}

// ParseNext parses the record at the start of data, which may go on after
// it, when it is in the form the one-pass parser takes, and returns it
// with the index after it. ok is false for anything else: then Parse,
// given the record alone, takes it or names what is wrong with it. It lets
// a batch be split as it is parsed, with no walk over it beforehand.
func (ps *Parser) ParseNext(data []byte, opts IngestOptions) (r *Record, end int, ok bool) {
	return ps.p.fastObject(data, opts, false)
}

// ParseNextInPlace is ParseNext for a batch whose records may share the
// memory they are built in: a record's images point into data, which the
// caller must therefore never change, instead of being copied out of it,
// and its fixed-size parts are carved from a slab the Parser shares
// between the records it parses this way, so that one record kept alive
// keeps its slab's others. A batch body of a thousand records then costs
// two allocations a record instead of three, a tenth of them as large.
func (ps *Parser) ParseNextInPlace(data []byte, opts IngestOptions) (r *Record, end int, ok bool) {
	return ps.p.fastObject(data, opts, true)
}

// fastObject is fastParse for the object at the start of d (after white
// space), which may go on after it: it returns the index after the object.
// inPlace is ParseNextInPlace's.
func (p *parser) fastObject(d []byte, opts IngestOptions, inPlace bool) (_ *Record, end int, ok bool) {
	f := &p.fast
	f.reset()
	i := jsonscan.Space(d, 0)
	if i >= len(d) || d[i] != '{' {
		return nil, 0, false
	}
	objStart := i
	i = jsonscan.Space(d, i+1)
	var seen uint16
	for {
		name, after, ok := plainAt(d, i)
		if !ok {
			return nil, 0, false
		}
		if i = jsonscan.Space(d, after); i >= len(d) || d[i] != ':' {
			return nil, 0, false
		}
		i = jsonscan.Space(d, i+1)
		var bit uint16
		switch string(d[name.start:name.end]) {
		case "id":
			bit = 1 << 0
			i, ok = f.str(d, i, MaxIDBytes, &f.id)
			ok = ok && f.id.end > f.id.start
		case "source":
			bit = 1 << 1
			i, ok = f.source(d, i)
		case "op":
			bit = 1 << 2
			var s span
			if i, ok = f.str(d, i, 32, &s); ok {
				f.op, ok = knownOp(d[s.start:s.end])
			}
		case "key":
			bit = 1 << 3
			i, ok = f.key.at(d, i, false)
			// Order kept and no members ({}) are refused.
			ok = ok && !f.key.null && f.key.in.end-f.key.in.start > 2
		case "before":
			bit = 1 << 4
			i, ok = f.image(d, i, &f.before, &f.bm)
		case "after":
			bit = 1 << 5
			i, ok = f.image(d, i, &f.after, &f.am)
		case "changed":
			bit = 1 << 6
			i, ok = f.changedList(d, i)
		case "actor":
			bit = 1 << 7
			if i, ok = f.image(d, i, &f.actor, &f.ms); ok {
				ok = actorFieldsOK(d, f.ms)
			}
		case "tx":
			bit = 1 << 8
			i, ok = f.tx(d, i)
		case "cause":
			bit = 1 << 9
			i, ok = f.image(d, i, &f.cause, &f.ms)
		case "schema":
			bit = 1 << 10
			i, ok = f.schemaRef(d, i)
		case "occurred_at":
			bit = 1 << 11
			f.haveOccurred = true
			i, ok = f.str(d, i, MaxRecordBytes, &f.occurred)
		}
		if bit == 0 || !ok || seen&bit != 0 {
			return nil, 0, false
		}
		seen |= bit
		var done bool
		if i, done, ok = next(d, i, '}'); !ok {
			return nil, 0, false
		}
		if done {
			break
		}
	}
	if i-objStart > MaxRecordBytes {
		return nil, 0, false
	}
	// requireFields, in the spans.
	if f.name.end == f.name.start || f.table.end == f.table.start || f.op == "" || f.key.in.end == 0 {
		return nil, 0, false
	}
	r, ok := f.build(d, opts, inPlace)
	return r, i, ok
}

// fastScratch is what fastParse reuses from one record to the next: where
// the fields lie in the input and the buffers the record is built in.
type fastScratch struct {
	id, name, kind, database, schema, table, txID, txPos, subject, occurred, commit span
	op                                                                              Op
	key, before, after, actor, cause                                                image
	haveTx, haveSchema, haveIndex, haveCommit, haveChanged, haveOccurred            bool
	index, version                                                                  int64
	changed                                                                         []span
	bm, am, ms                                                                      []imember
	computed                                                                        []span
	// sorted holds the images whose members had to be put in order.
	sorted []byte
	// text is the record's strings being gathered into one.
	text []byte
	// last are the previous record's source strings: a batch names the
	// same few sources again and again, which then cost nothing.
	last Source
	// slab is where ParseNextInPlace's records are carved from.
	slab []fastRecord
}

func (f *fastScratch) reset() {
	last, changed, bm, am, ms, computed, sorted, text, slab := f.last, f.changed[:0], f.bm[:0], f.am[:0], f.ms[:0], f.computed[:0], f.sorted[:0], f.text[:0], f.slab
	*f = fastScratch{last: last, changed: changed, bm: bm, am: am, ms: ms, computed: computed, sorted: sorted, text: text, slab: slab}
}

// slabRecords is how many records a slab of ParseNextInPlace holds: about
// the records of one range of a batch body that the API gives a worker.
const slabRecords = 64

// carve is a zeroed fastRecord of the slab.
func (f *fastScratch) carve() *fastRecord {
	if len(f.slab) == 0 {
		f.slab = make([]fastRecord, slabRecords)
	}
	fr := &f.slab[0]
	f.slab = f.slab[1:]
	return fr
}

// image is where a JSON object of the record lies: in the input, or (when
// sorted) in fastScratch.sorted.
type image struct {
	in     span
	sorted bool
	null   bool
}

// at checks the object (or null) at d[i] for being canonical with its
// order kept (the key) and returns the index after it.
func (im *image) at(d []byte, i int, sorted bool) (int, bool) {
	if end, ok := nullAt(d, i); ok {
		im.null = true
		return end, true
	}
	if i >= len(d) || d[i] != '{' {
		return 0, false
	}
	end, ok := canonicalAt(d, i, sorted)
	im.in = span{i, end}
	return end, ok
}

// image reads an optional image: null, or an object whose member values
// are canonical, its members sorted into fastScratch.sorted when they come
// out of order. ms receives its members, in order.
func (f *fastScratch) image(d []byte, i int, im *image, ms *[]imember) (int, bool) {
	if end, ok := nullAt(d, i); ok {
		im.null = true
		return end, true
	}
	members, end, inOrder, ok := canonicalMembers(d, i, (*ms)[:0])
	if !ok {
		return 0, false
	}
	*ms = members
	if inOrder {
		im.in = span{i, end}
		return end, true
	}
	if !sortMembers(d, members) {
		return 0, false
	}
	start := len(f.sorted)
	f.sorted = appendMembers(f.sorted, d, members)
	im.in, im.sorted = span{start, len(f.sorted)}, true
	return end, true
}

// actorFieldsOK applies parseActor's checks to the members it names.
func actorFieldsOK(d []byte, ms []imember) bool {
	for _, m := range ms {
		switch string(d[m.name.start:m.name.end]) {
		case "id", "type", "app", "ip", "request_id":
			// The value is canonical: a string has no escape and no
			// control character but DEL.
			v := d[m.value.start:m.value.end]
			if v[0] != '"' || len(v)-2 > MaxNameBytes || bytes.IndexByte(v, 0x7f) >= 0 {
				return false
			}
		}
	}
	return true
}

// str reads a string field that holds no escape and passes stringField
// with limit max, into s (its contents).
func (f *fastScratch) str(d []byte, i, max int, s *span) (int, bool) {
	c, end, ok := plainAt(d, i)
	if !ok || c.end-c.start > max {
		return 0, false
	}
	*s = c
	return end, true
}

func (f *fastScratch) source(d []byte, i int) (int, bool) {
	return fields(d, i, func(name []byte, i int) (int, bool) {
		k := sourceField(name)
		if k < 0 {
			return 0, false
		}
		return f.str(d, i, MaxNameBytes, [...]*span{&f.name, &f.kind, &f.database, &f.schema, &f.table}[k])
	})
}

func (f *fastScratch) tx(d []byte, i int) (int, bool) {
	if end, ok := nullAt(d, i); ok {
		return end, true
	}
	f.haveTx = true
	return fields(d, i, func(name []byte, i int) (int, bool) {
		switch string(name) {
		case "id":
			return f.str(d, i, MaxNameBytes, &f.txID)
		case "position":
			return f.str(d, i, MaxNameBytes, &f.txPos)
		case "index":
			f.haveIndex = true
			end, ok := intAt(d, i, &f.index)
			return end, ok && f.index >= 0
		case "commit_time":
			f.haveCommit = true
			return f.str(d, i, MaxRecordBytes, &f.commit)
		}
		return 0, false
	})
}

func (f *fastScratch) schemaRef(d []byte, i int) (int, bool) {
	if end, ok := nullAt(d, i); ok {
		return end, true
	}
	f.haveSchema = true
	end, ok := fields(d, i, func(name []byte, i int) (int, bool) {
		switch string(name) {
		case "subject":
			return f.str(d, i, MaxNameBytes, &f.subject)
		case "version":
			end, ok := intAt(d, i, &f.version)
			return end, ok && f.version >= 1
		}
		return 0, false
	})
	return end, ok && f.subject.end > f.subject.start
}

func (f *fastScratch) changedList(d []byte, i int) (int, bool) {
	f.haveChanged = true
	if i >= len(d) || d[i] != '[' {
		return 0, false
	}
	i = jsonscan.Space(d, i+1)
	if i < len(d) && d[i] == ']' {
		return i + 1, true
	}
	for {
		var s span
		end, ok := f.str(d, i, MaxNameBytes, &s)
		if !ok {
			return 0, false
		}
		f.changed = append(f.changed, s)
		var done bool
		if i, done, ok = next(d, end, ']'); !ok || done {
			return i, ok
		}
	}
}

// fields walks the small object at d[i] whose members fn reads, refusing
// a name given twice; a name fn does not know it refuses itself.
func fields(d []byte, i int, fn func(name []byte, v int) (int, bool)) (int, bool) {
	if i >= len(d) || d[i] != '{' {
		return 0, false
	}
	i = jsonscan.Space(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, true
	}
	var names [8][]byte
	for n := 0; ; n++ {
		name, end, ok := plainAt(d, i)
		if !ok || n == len(names) {
			return 0, false
		}
		for _, prev := range names[:n] {
			if bytes.Equal(prev, d[name.start:name.end]) {
				return 0, false
			}
		}
		names[n] = d[name.start:name.end]
		if i = jsonscan.Space(d, end); i >= len(d) || d[i] != ':' {
			return 0, false
		}
		if i, ok = fn(names[n], jsonscan.Space(d, i+1)); !ok {
			return 0, false
		}
		var done bool
		if i, done, ok = next(d, i, '}'); !ok || done {
			return i, ok
		}
	}
}

// next moves past the ',' after an item (and the space after it) or past
// the closing bracket, reporting done.
func next(d []byte, i int, closing byte) (_ int, done, ok bool) {
	i = jsonscan.Space(d, i)
	switch {
	case i >= len(d):
		return 0, false, false
	case d[i] == ',':
		return jsonscan.Space(d, i+1), false, true
	case d[i] == closing:
		return i + 1, true, true
	}
	return 0, false, false
}

// plainAt scans the string at d[i] when it holds no escape and nothing
// stringField refuses (a control character, DEL): its contents and the
// index after its closing quote.
func plainAt(d []byte, i int) (contents span, end int, ok bool) {
	if i >= len(d) || d[i] != '"' {
		return span{}, 0, false
	}
	for j := i + 1; j < len(d); {
		for j < len(d) && fieldByte[d[j]] {
			j++
		}
		if j >= len(d) {
			break
		}
		switch c := d[j]; {
		case c == '"':
			return span{i + 1, j}, j + 1, true
		case c < 0x20 || c == '\\' || c == 0x7f:
			return span{}, 0, false
		case c < utf8.RuneSelf:
			j++
		default:
			r, n := utf8.DecodeRune(d[j:])
			if r == utf8.RuneError && n <= 1 {
				return span{}, 0, false
			}
			j += n
		}
	}
	return span{}, 0, false
}

// fieldByte marks the ASCII bytes a string field holds as they are.
var fieldByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func nullAt(d []byte, i int) (int, bool) {
	if len(d)-i >= 4 && string(d[i:i+4]) == "null" {
		return i + 4, true
	}
	return 0, false
}

// intAt reads an integer of up to 18 digits (what intField accepts, short
// of the last digit of int64's range).
func intAt(d []byte, i int, n *int64) (int, bool) {
	end, integral, err := jsonscan.Num(d, i)
	if err != nil || !integral {
		return 0, false
	}
	lit := d[i:end]
	neg := lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range lit {
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	*n = v
	return end, true
}

func knownOp(b []byte) (Op, bool) {
	for _, op := range Ops {
		if string(b) == string(op) {
			return op, true
		}
	}
	return "", false
}

// fastRecord is the record fastParse builds with its fixed-size parts, in
// one allocation.
type fastRecord struct {
	rec     Record
	tx      Tx
	index   int64
	commit  time.Time
	schema  SchemaRef
	changed [4]string
}

// build makes the record out of the fields found in d (see
// ParseNextInPlace for inPlace).
func (f *fastScratch) build(d []byte, opts IngestOptions, inPlace bool) (*Record, bool) {
	if !f.changedFields(d) {
		return nil, false
	}
	// Every string, gathered into one.
	add := func(s span) span {
		at := len(f.text)
		f.text = append(f.text, d[s.start:s.end]...)
		return span{at, len(f.text)}
	}
	var kind string
	if k := d[f.kind.start:f.kind.end]; len(k) > 0 {
		i := slices.IndexFunc(Kinds, func(s string) bool { return s == string(k) })
		if i < 0 {
			return nil, false
		}
		kind = Kinds[i]
	}
	id, txID, txPos, subject, occurred, commit := add(f.id), add(f.txID), add(f.txPos), add(f.subject), add(f.occurred), add(f.commit)
	var src [4]span
	srcSpans := [4]span{f.name, f.database, f.schema, f.table}
	lastSrc := [4]*string{&f.last.Name, &f.last.Database, &f.last.Schema, &f.last.Table}
	for k, s := range srcSpans {
		if string(d[s.start:s.end]) != *lastSrc[k] {
			src[k] = add(s)
		} else {
			src[k] = span{-1, -1}
		}
	}
	changedAt := len(f.text)
	for _, s := range f.computed {
		add(s)
	}
	text := string(f.text)
	sub := func(s span) string { return text[s.start:s.end] }

	var fr *fastRecord
	if inPlace {
		fr = f.carve()
	} else {
		fr = &fastRecord{}
	}
	r := &fr.rec
	r.ID, r.Op = sub(id), f.op
	srcStr := [4]*string{&r.Source.Name, &r.Source.Database, &r.Source.Schema, &r.Source.Table}
	for k, s := range src {
		if s.start < 0 {
			*srcStr[k] = *lastSrc[k]
		} else {
			*srcStr[k] = sub(s)
			*lastSrc[k] = *srcStr[k]
		}
	}
	r.Source.Kind = kind
	if f.haveOccurred {
		t, ok := fastTime(sub(occurred))
		if !ok {
			return nil, false
		}
		r.OccurredAt = t
	}
	if f.haveTx {
		r.Tx = &fr.tx
		fr.tx.ID, fr.tx.Position = sub(txID), sub(txPos)
		if f.haveIndex {
			fr.index = f.index
			fr.tx.Index = &fr.index
		}
		if f.haveCommit {
			t, ok := fastTime(sub(commit))
			if !ok {
				return nil, false
			}
			fr.commit = t.UTC()
			fr.tx.CommitTime = &fr.commit
		}
	}
	if f.haveSchema {
		fr.schema = SchemaRef{Subject: sub(subject), Version: f.version}
		r.Schema = &fr.schema
	}
	if n := len(f.computed); n > 0 || f.haveChanged {
		names := fr.changed[:0]
		if n > len(fr.changed) {
			names = make([]string, 0, n)
		}
		for _, s := range f.computed {
			names = append(names, text[changedAt:changedAt+s.end-s.start])
			changedAt += s.end - s.start
		}
		r.Changed = names
	}
	f.raws(d, r, inPlace)
	defaults(r, opts)
	assignID(r, opts)
	return r, true
}

// changedFields leaves in f.computed the names the record's changed
// holds, as parse sets it: the fields that differ between the images
// (which, when the client names them too, must be the ones it names), or
// the client's names when an image is missing.
func (f *fastScratch) changedFields(d []byte) bool {
	name := func(m imember) []byte { return d[m.name.start:m.name.end] }
	b, a := f.bm, f.am
	if f.before.null {
		b = nil
	}
	if f.after.null {
		a = nil
	}
	for len(b) > 0 || len(a) > 0 {
		// Both lists are in name order, so one merge finds every name
		// that is in one image only or has different values.
		var c int
		switch {
		case len(a) == 0:
			c = -1
		case len(b) == 0:
			c = 1
		default:
			c = bytes.Compare(name(b[0]), name(a[0]))
		}
		switch {
		case c < 0:
			f.computed = append(f.computed, b[0].name)
			b = b[1:]
		case c > 0:
			f.computed = append(f.computed, a[0].name)
			a = a[1:]
		default:
			if !bytes.Equal(d[b[0].value.start:b[0].value.end], d[a[0].value.start:a[0].value.end]) {
				f.computed = append(f.computed, a[0].name)
			}
			a, b = a[1:], b[1:]
		}
	}
	if !f.haveChanged {
		return true
	}
	text := func(s span) []byte { return d[s.start:s.end] }
	slices.SortFunc(f.changed, func(x, y span) int { return bytes.Compare(text(x), text(y)) })
	f.changed = slices.CompactFunc(f.changed, func(x, y span) bool { return bytes.Equal(text(x), text(y)) })
	if f.before.in.end > 0 && f.after.in.end > 0 {
		return slices.EqualFunc(f.changed, f.computed, func(x, y span) bool { return bytes.Equal(text(x), text(y)) })
	}
	f.computed = append(f.computed[:0], f.changed...)
	return true
}

// raws copies the record's JSON objects into one new slice, each capped so
// that appending to one cannot overwrite the next; inPlace, only those
// whose members were sorted are copied, the others are d's own bytes.
func (f *fastScratch) raws(d []byte, r *Record, inPlace bool) {
	ims := [5]*image{&f.key, &f.before, &f.after, &f.actor, &f.cause}
	dsts := [5]*json.RawMessage{&r.Key, &r.Before, &r.After, &r.Actor, &r.Cause}
	n := 0
	for _, im := range ims {
		if !inPlace || im.sorted {
			n += im.in.end - im.in.start
		}
	}
	var buf []byte
	if n > 0 {
		buf = make([]byte, 0, n)
	}
	for k, im := range ims {
		if im.null || im.in.end == 0 {
			continue
		}
		if inPlace && !im.sorted {
			*dsts[k] = d[im.in.start:im.in.end:im.in.end]
			continue
		}
		src := d
		if im.sorted {
			src = f.sorted
		}
		at := len(buf)
		buf = append(buf, src[im.in.start:im.in.end]...)
		*dsts[k] = buf[at:len(buf):len(buf)]
	}
}

// fastTime is timeField for a string without escapes.
func fastTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil && encodableTime(t)
}
