// Package query answers Stele's read questions — filtered record lists,
// entity history and entity state at an instant — from the index's posting
// lists and the log's records.
package query

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/record"
)

// Errors callers test with errors.Is.
var (
	// ErrNotFound: the unit did not exist at the instant asked.
	ErrNotFound = errors.New("not found")
	// ErrBadCursor: the cursor was not issued by this server.
	ErrBadCursor = errors.New("bad cursor")
	// ErrIndexRebuilding: the index was found damaged and is being rebuilt
	// from the log; the same query succeeds once it is done.
	ErrIndexRebuilding = index.ErrRebuilding
)

// FieldError names a bad query parameter.
type FieldError = record.FieldError

// Filter selects records; zero fields do not filter.
type Filter struct {
	Source, Table, Key, Actor string
	Op                        record.Op
	// Since is inclusive and Until exclusive, on occurred_at.
	Since, Until time.Time
	// Blind selects records whose blind index holds this token (a keyed
	// hash of a personal field's value; see privacy.Guard.BlindToken).
	Blind []byte
	// Cause selects the changes an event caused: records whose
	// cause.record_id is this event record's id.
	Cause string
}

// Order of results by seq.
type Order int

// Orders.
const (
	Desc Order = iota
	Asc
)

// Page limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// maxScan bounds the index entries one request examines, so a filter
	// that matches little cannot pin a core; the caller gets a cursor to
	// continue from.
	maxScan = 100_000
)

// PageRequest asks for one page.
type PageRequest struct {
	Order  Order
	Limit  int
	Cursor string
	// Budget, when set, is told the size of each record put on the page
	// (record.BodySize); when it answers false the page ends after that
	// record, with a cursor to continue from. It bounds the memory one
	// request holds whatever the records' sizes; callers may share one
	// budget between the pages of a request.
	Budget func(bytes int) bool
}

// Page is one page of records. NextCursor is empty at the end.
type Page struct {
	Records    []*record.Record
	NextCursor string
}

// State is a unit as it was at an instant.
type State struct {
	Source, Table, Key string
	At                 time.Time
	State              json.RawMessage
	// Seq is the last record folded into State.
	Seq        uint64
	OccurredAt time.Time
}

// Log is what queries need from the log.
type Log interface {
	Size() uint64
	Read(seq uint64) (*record.Record, error)
	// WaitIndexed returns once the index covers the first n records.
	WaitIndexed(ctx context.Context, n uint64) error
}

// snapshot returns the log size a query answers for, after the index has
// caught up with it: a record acknowledged before the query is always seen.
func (e *Engine) snapshot(ctx context.Context) (uint64, error) {
	size := e.log.Size()
	if err := e.log.WaitIndexed(ctx, size); err != nil {
		return 0, err
	}
	return size, nil
}

// Engine runs queries.
type Engine struct {
	log Log
	ix  *index.Index
}

// New returns an engine over a log and its index.
func New(l Log, ix *index.Index) *Engine { return &Engine{log: l, ix: ix} }

// Records lists records matching f.
func (e *Engine) Records(ctx context.Context, f Filter, req PageRequest) (*Page, error) {
	if f.Key != "" && (f.Source == "" || f.Table == "") {
		return nil, &FieldError{Field: "key", Reason: "needs source and table"}
	}
	if f.Op != "" && !f.Op.Valid() {
		return nil, &FieldError{Field: "op", Reason: fmt.Sprintf("%q is not one of %s", f.Op, record.OpList())}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return nil, &FieldError{Field: "until", Reason: "must be after since"}
	}
	l, residual := plan(f)
	return e.page(ctx, l, req, f, func(r *record.Record) bool { return residual(r) })
}

// History lists every change to one unit, oldest first.
func (e *Engine) History(ctx context.Context, source, table, key string, req PageRequest) (*Page, error) {
	req.Order = Asc
	return e.page(ctx, ptr(index.EntityList(source, table, key)), req, Filter{}, func(*record.Record) bool { return true })
}

// plan picks the most selective posting list for f and returns the checks
// the list does not already guarantee.
func plan(f Filter) (*index.List, func(*record.Record) bool) {
	var l *index.List
	checkSource, checkTable, checkActor, checkOp := f.Source != "", f.Table != "", f.Actor != "", f.Op != ""
	checkCause := f.Cause != ""
	switch {
	case f.Blind != nil:
		// Scanned by scanSeqs from the blind index; every other filter is
		// checked on each record.
	case f.Cause != "":
		// An event causes a handful of changes: the smallest list.
		l = ptr(index.CauseList(f.Cause))
		checkCause = false
	case f.Key != "":
		l = ptr(index.EntityList(f.Source, f.Table, f.Key))
		checkSource, checkTable = false, false
	case f.Actor != "":
		l = ptr(index.ActorList(f.Actor))
		checkActor = false
	case f.Table != "" && f.Source != "":
		// Table lists are per source; a table name alone is checked on
		// each record instead.
		l = ptr(index.TableList(f.Source, f.Table))
		checkSource, checkTable = false, false
	case f.Source != "":
		l = ptr(index.SourceList(f.Source))
		checkSource = false
	}
	return l, func(r *record.Record) bool {
		return (!checkSource || r.Source.Name == f.Source) &&
			(!checkTable || r.Source.Table == f.Table) &&
			(!checkActor || r.ActorID() == f.Actor) &&
			(!checkCause || r.CauseID() == f.Cause) &&
			(!checkOp || r.Op == f.Op)
	}
}

func ptr[T any](v T) *T { return &v }

// scanSeqs walks the posting list l, or with no list every seq of the log,
// in blocks only when blocks is not nil (a time window's, from
// index.TimeBlocks).
func (e *Engine) scanSeqs(l *index.List, blind []byte, blocks *index.Blocks, desc bool, from, size uint64, fn func(index.Posting) bool) error {
	if blind != nil {
		var ps []index.Posting
		if err := e.ix.SearchBlind(blind, func(p index.Posting) bool {
			if (desc && p.Seq <= from) || (!desc && p.Seq >= from) {
				ps = append(ps, p)
			}
			return true
		}); err != nil {
			return err
		}
		if desc {
			slices.Reverse(ps)
		}
		for _, p := range ps {
			if !fn(p) {
				return nil
			}
		}
		return nil
	}
	if l != nil {
		return e.ix.ScanBlocks(*l, desc, from, blocks, fn)
	}
	if size == 0 {
		return nil
	}
	// Without a list, a time window's blocks are scanned record by
	// record: their times come from stored bytes read in chunks.
	var peek *occurredPeek
	if blocks != nil {
		peek = e.occurredPeek()
	}
	if desc {
		for seq := min(from, size-1); ; seq-- {
			if blocks != nil {
				var ok bool
				if seq, ok = blocks.Prev(seq); !ok {
					return nil
				}
			}
			if !fn(index.Posting{Seq: seq, OccurredAt: peek.at(seq, true)}) || seq == 0 {
				return nil
			}
		}
	}
	for seq := from; seq < size; seq++ {
		if blocks != nil {
			var ok bool
			if seq, ok = blocks.Next(seq); !ok || seq >= size {
				return nil
			}
		}
		if !fn(index.Posting{Seq: seq, OccurredAt: peek.at(seq, false)}) {
			return nil
		}
	}
	return nil
}

func (e *Engine) page(ctx context.Context, l *index.List, req PageRequest, f Filter, keep func(*record.Record) bool) (*Page, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	if limit > MaxLimit {
		return nil, &FieldError{Field: "limit", Reason: fmt.Sprintf("must be at most %d", MaxLimit)}
	}
	desc := req.Order == Desc
	from := uint64(0)
	if desc {
		from = math.MaxUint64
	}
	if req.Cursor != "" {
		c, err := decodeCursor(req.Cursor, desc, queryPrint(l, f))
		if err != nil {
			return nil, err
		}
		from = c
	}
	size, err := e.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	// A time window visits only the blocks of seqs whose occurred_at span
	// meets it: without them a window far back would scan (and, with no
	// list, read) every record after it. The blind index's postings are
	// few and are filtered by time on each record instead.
	var blocks *index.Blocks
	if (!f.Since.IsZero() || !f.Until.IsZero()) && f.Blind == nil {
		if blocks, err = e.ix.TimeBlocks(f.Since, f.Until); err != nil {
			return nil, err
		}
	}
	var pre *prefetched
	if f.Blind == nil {
		if pre, err = e.prefetch(l, blocks, desc, from, size, limit, f); err != nil {
			return nil, err
		}
	}
	page := &Page{}
	scanned := 0
	var last uint64
	var scanErr error
	// more: a record is left for the next page, or req.Budget ended this
	// one (there may then be nothing after it, and the next page comes
	// back empty, which pagination allows).
	more := false
	visit := func(p index.Posting) bool {
		if p.Seq >= size {
			// Appended after this query's snapshot: descending scans meet
			// such postings first and skip them; ascending ones meet them
			// last and stop.
			return desc
		}
		if scanned == maxScan || len(page.Records) == limit {
			more = true
			return false
		}
		scanned++
		last = p.Seq
		if scanned%1024 == 0 && ctx.Err() != nil {
			scanErr = ctx.Err()
			return false
		}
		if !p.OccurredAt.IsZero() && !inWindow(p.OccurredAt, f) {
			return true
		}
		r, ok := pre.take(p.Seq)
		if !ok {
			var err error
			if r, err = e.log.Read(p.Seq); err != nil {
				scanErr = err
				return false
			}
		}
		if inWindow(r.OccurredAt, f) && keep(r) {
			if err := ApplyReadHook(ctx, r); err != nil {
				scanErr = err
				return false
			}
			page.Records = append(page.Records, r)
			if req.Budget != nil && !req.Budget(record.BodySize(r)) {
				more = true
				return false
			}
		}
		return true
	}
	if pre == nil {
		err = e.scanSeqs(l, f.Blind, blocks, desc, from, size, visit)
	} else {
		// The prefetch's postings first; the list again only past them.
		goOn := true
		for _, p := range pre.postings {
			if goOn = visit(p); !goOn {
				break
			}
		}
		if next, ok := pre.rest(desc); goOn && ok {
			err = e.scanSeqs(l, nil, blocks, desc, next, size, visit)
		}
	}
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return nil, err
	}
	if more {
		page.NextCursor = encodeCursor(last, desc, queryPrint(l, f))
	}
	return page, nil
}

// A cursor names the next seq to look at, the direction it was issued for
// and a fingerprint of the query (the list scanned and the filter), so it
// cannot be replayed in the other order or with another filter by mistake:
// a page of one query continued with another would silently skip or repeat
// records.
func encodeCursor(last uint64, desc bool, print string) string {
	dir, next := "a", last+1
	if desc {
		dir, next = "d", last-1
	}
	return base64.RawURLEncoding.EncodeToString([]byte("v2:" + dir + ":" + strconv.FormatUint(next, 10) + ":" + print))
}

func decodeCursor(c string, desc bool, print string) (uint64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, fmt.Errorf("%w: not base64url", ErrBadCursor)
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 || parts[0] != "v2" || (parts[1] != "a" && parts[1] != "d") {
		return 0, fmt.Errorf("%w: unknown format", ErrBadCursor)
	}
	if (parts[1] == "d") != desc {
		return 0, fmt.Errorf("%w: issued for the other order", ErrBadCursor)
	}
	if parts[3] != print {
		return 0, fmt.Errorf("%w: issued for another query (other filters or another entity); start again without a cursor", ErrBadCursor)
	}
	n, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad position", ErrBadCursor)
	}
	return n, nil
}

// queryPrint fingerprints what a page scans: the list and every filter
// field, each length-prefixed so no two queries share an encoding.
func queryPrint(l *index.List, f Filter) string {
	h := sha256.New()
	field := func(b []byte) {
		h.Write(binary.AppendUvarint(nil, uint64(len(b))))
		h.Write(b)
	}
	if l != nil {
		field(l.Key())
	} else {
		field(nil)
	}
	for _, s := range []string{f.Source, f.Table, f.Key, f.Actor, string(f.Op)} {
		field([]byte(s))
	}
	for _, t := range []time.Time{f.Since, f.Until} {
		b, _ := t.UTC().MarshalBinary()
		if t.IsZero() {
			b = nil
		}
		field(b)
	}
	field(f.Blind)
	if f.Cause != "" {
		// Only when set, so the cursors of queries without it stay valid.
		field([]byte("cause"))
		field([]byte(f.Cause))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:9])
}

func inWindow(t time.Time, f Filter) bool {
	return (f.Since.IsZero() || !t.Before(f.Since)) && (f.Until.IsZero() || t.Before(f.Until))
}
