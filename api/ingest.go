package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/jsonscan"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/record"
	"github.com/stele/stele/sysrecord"
)

// postRecords ingests one object, an array of objects or NDJSON. The batch
// is validated in full before anything is appended, so a 400 leaves the log
// untouched, and the 201 is sent only once Append reports the batch durable.
func (s *Server) postRecords(w http.ResponseWriter, r *http.Request) {
	ndjson, aerr := bodyFormat(r.Header.Get("Content-Type"))
	if aerr != nil {
		writeError(w, http.StatusUnsupportedMediaType, aerr)
		return
	}
	var idemKey string
	if h, ok := r.Header["Idempotency-Key"]; ok {
		if len(h) != 1 {
			writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("Idempotency-Key header: sent %d times; send one key per batch", len(h))})
			return
		}
		var err error
		if idemKey, err = record.ParseIdempotencyKey(h[0]); err != nil {
			writeError(w, http.StatusBadRequest, &apiError{Msg: err.Error()})
			return
		}
	}
	tooBig := &apiError{Status: http.StatusRequestEntityTooLarge,
		Msg: fmt.Sprintf("request body is larger than the %d-byte limit; send fewer records per request", s.cfg.MaxBodyBytes)}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		// Refuse before reading: the client announced it.
		writeError(w, tooBig.status(), tooBig)
		return
	}
	body, err := s.readBody(w, r)
	pooled := true
	defer func() {
		if pooled {
			// Nothing kept points into it.
			s.bodies.Put(&body)
		}
	}()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, tooBig.status(), tooBig)
			return
		}
		writeError(w, http.StatusBadRequest, &apiError{Msg: "reading the request body failed: " + err.Error()})
		return
	}
	if !ndjson && idemKey == "" {
		// A batch fastBatch takes is valid UTF-8: it checks every string,
		// and refuses any other byte that is not ASCII.
		if fb, ok := s.fastBatch(r.Context(), body, fastChunkBytes); ok {
			// The records point into body, and so does what the log
			// stores; a log that gives up waiting (the request ends) may
			// still be storing it: it is not reused.
			pooled = false
			if fb.batch != nil {
				res, err := s.cfg.Log.(preparingLog).AppendBatch(r.Context(), fb.batch, fb.parts)
				s.answerAppend(w, r, res, err)
				return
			}
			s.appendBatch(w, r, fb.recs)
			return
		}
	}
	if !utf8.Valid(body) {
		writeError(w, http.StatusBadRequest, &apiError{Msg: "request body is not valid UTF-8"})
		return
	}
	var items [][]byte
	batch := true
	if ndjson {
		items, aerr = splitNDJSON(body, s.cfg.MaxBatch)
	} else {
		items, batch, aerr = splitJSON(body, s.cfg.MaxBatch)
	}
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	if len(items) == 0 {
		writeError(w, http.StatusBadRequest, &apiError{Msg: "request body holds no records"})
		return
	}
	recs, aerr := s.parseBatch(items, batch, idemKey)
	if aerr != nil {
		if batch && !ndjson {
			aerr = syntaxFirst(body, s.cfg.MaxBatch, aerr)
		}
		writeError(w, aerr.status(), aerr)
		return
	}
	s.appendBatch(w, r, recs)
}

// appendBatch appends a validated batch and answers with where its records
// are, once they are durable.
func (s *Server) appendBatch(w http.ResponseWriter, r *http.Request, recs []*record.Record) {
	res, err := s.cfg.Log.Append(r.Context(), recs)
	s.answerAppend(w, r, res, err)
}

// answerAppend answers an append with where its records are, or with
// why it failed.
func (s *Server) answerAppend(w http.ResponseWriter, r *http.Request, res []stele.Appended, err error) {
	if err != nil {
		s.appendFailed(w, r, err)
		return
	}
	fresh := 0
	for _, a := range res {
		if !a.Duplicate {
			fresh++
		}
	}
	s.metrics.appended.Add(float64(fresh))
	writeAppended(w, res)
}

// writeAppended answers 201 with the batch's seqs and ids, encoded by hand
// when every id is plain printable ASCII, which encoding/json would write
// as it is: a reflective encoding of a 1,000-record answer took about a
// tenth of the CPU validating the batch does, this less than half of that.
func writeAppended(w http.ResponseWriter, res []stele.Appended) {
	type answer struct {
		Records []stele.Appended `json:"records"`
	}
	if res == nil {
		writeJSON(w, http.StatusCreated, answer{res})
		return
	}
	n := len(`{"records":[]}`) + 1
	for _, a := range res {
		n += len(`{"seq":,"id":"","duplicate":true},`) + 20 + len(a.ID)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"records":[`...)
	for i, a := range res {
		if !plainASCII(a.ID) {
			writeJSON(w, http.StatusCreated, answer{res})
			return
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"seq":`...)
		b = strconv.AppendUint(b, a.Seq, 10)
		b = append(b, `,"id":"`...)
		b = append(b, a.ID...)
		b = append(b, '"')
		if a.Duplicate {
			b = append(b, `,"duplicate":true`...)
		}
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	writeRaw(w, http.StatusCreated, b)
}

// plainASCII reports whether s is printable ASCII without a quote or a backslash.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// readBody reads the request body into a reused buffer, sized once from
// Content-Length when the client sent one: io.ReadAll would grow a fresh
// buffer by doubling, copying a 512 KiB batch about twice over and leaving
// a megabyte of garbage per request.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var buf []byte
	if p, ok := s.bodies.Get().(*[]byte); ok {
		buf = (*p)[:0]
	}
	if n := r.ContentLength; n > 0 && int64(cap(buf)) < n+1 {
		// One byte more, so that reading to EOF needs no second buffer.
		buf = make([]byte, 0, n+1)
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// parseBatch validates every item and rejects ids repeated inside the
// batch: the log would store the second as a duplicate of the first, which
// for two different records would silently drop one.
//
// With an Idempotency-Key, records with neither an id nor a source
// position get ids derived from the key and their place in the batch
// (record.DeriveBatchID), so resending the batch stores nothing twice.
func (s *Server) parseBatch(items [][]byte, batch bool, idemKey string) ([]*record.Record, *apiError) {
	opts := record.IngestOptions{DefaultKind: "http", Now: s.cfg.Now(), IdempotencyKey: idemKey, BatchSize: len(items)}
	recs := make([]*record.Record, len(items))
	errs := make([]*apiError, len(items))
	schemas := s.schemas()
	if schemas != nil {
		schemas = &batchSchemas{Schemas: schemas}
	}
	// Records are validated on every core in contiguous chunks; a chunk
	// stops at its first bad record. The batch's answer is the lowest
	// index's error, so the reply is the one a sequential pass gives: the
	// checks below walk the items in order and stop where a chunk did.
	workers := min(runtime.GOMAXPROCS(0), (len(items)+parseChunk-1)/parseChunk)
	if workers <= 1 {
		s.parseRange(schemas, items, batch, opts, recs, errs, 0, len(items))
	} else {
		var wg sync.WaitGroup
		per := (len(items) + workers - 1) / workers
		for lo := 0; lo < len(items); lo += per {
			hi := min(lo+per, len(items))
			wg.Go(func() { s.parseRange(schemas, items, batch, opts, recs, errs, lo, hi) })
		}
		wg.Wait()
	}
	if aerr := firstRefusal(recs, errs); aerr != nil {
		return nil, aerr
	}
	return recs, nil
}

// firstRefusal is the answer to a batch with a refused record (errs[i],
// when errs is not nil) or an id given twice: the one of the lowest index.
func firstRefusal(recs []*record.Record, errs []*apiError) *apiError {
	seen := make(map[string]int, len(recs))
	for i, rec := range recs {
		if errs != nil && errs[i] != nil {
			return errs[i]
		}
		if first, dup := seen[rec.ID]; dup {
			return &apiError{
				Msg:   fmt.Sprintf("id: same id as record %d of this batch (ids, given or derived from source and tx.position, must be unique within a batch)", first),
				Field: "id", Index: indexPtr(i)}
		}
		seen[rec.ID] = i
	}
	return nil
}

// fastChunkBytes is how much of a batch body fastBatch gives a worker at a
// time: about 128 records of the usual size, so that a core taken by the
// collector or another process delays a small part of the batch.
const fastChunkBytes = 64 << 10

// preparingLog is a Log that prepares a batch in parts (logstore.Store):
// fastBatch then seals and encodes each range of records on the core that
// parsed it, while other ranges are still being parsed, instead of Append
// going over the whole batch again once all of it is parsed. For a single
// producer, which waits for each answer before it sends its next batch,
// that is time off every batch.
type preparingLog interface {
	NewBatch() *logstore.Batch
	AppendBatch(ctx context.Context, b *logstore.Batch, parts []*logstore.Part) ([]stele.Appended, error)
}

// fastResult is a batch fastBatch took: its records and, when the log is
// a preparingLog, their prepared parts (batch nil otherwise), with each
// record's body as the client sent it when that is its stored body (nil
// when not; see record.IsBody), if the log takes such bodies.
type fastResult struct {
	recs   []*record.Record
	bodies [][]byte
	batch  *logstore.Batch
	parts  []*logstore.Part
}

// fastBatch validates a JSON array of records on every core without
// walking it first to find where its records are. The body is cut into
// ranges of about chunk bytes, each starting where a record appears to
// start (a '{' after "},", which a string may also hold), and each
// range's records are parsed in turn (record.Parser.ParseNext finds where
// each ends) up to where the next range starts. A range whose last record
// does not end exactly there was cut inside a record, by a "},{" within a
// string; that, and any record the one-pass parser leaves to the full one,
// or that is refused, makes ok false, and the caller takes the checked
// path, which gives every answer it always gave. What fastBatch accepts is
// thus exactly what that path accepts (FuzzFastBatchMatchesChecked).
//
// With a preparingLog each range is prepared for the log once parsed (by
// a log that seals, once every range is parsed and the batch has passed
// the whole-batch checks); a range the log refuses to prepare (a record
// its sealer refuses, one too large) also makes ok false, and the checked
// path's Append gives the answer it always gave.
//
// The records point into body (record.Parser.ParseNextInPlace), and so
// do the bodies the log is given: when ok, body is theirs and must never
// change.
func (s *Server) fastBatch(ctx context.Context, body []byte, chunk int) (*fastResult, bool) {
	i := jsonscan.Space(body, 0)
	if i >= len(body) || body[i] != '[' {
		return nil, false
	}
	starts := []int{jsonscan.Space(body, i+1)}
	for at := starts[0] + chunk; at < len(body); at += chunk {
		p, ok := recordStart(body, at)
		if !ok {
			break
		}
		starts = append(starts, p)
		at = p
	}
	opts := record.IngestOptions{DefaultKind: "http", Now: s.cfg.Now()}
	schemas := s.schemas()
	if schemas != nil {
		schemas = &batchSchemas{Schemas: schemas}
	}
	fb := &fastResult{}
	if pl, ok := s.cfg.Log.(preparingLog); ok {
		fb.batch = pl.NewBatch()
		fb.parts = make([]*logstore.Part, len(starts))
	}
	// Only a preparingLog takes the bodies records came in.
	withBodies := fb.batch != nil
	// A log that seals creates the key of each subject it sees for the
	// first time: its ranges are prepared only once the whole batch has
	// passed the checks below, so that a refused batch leaves no key for
	// people whose records were never stored. Other logs prepare each
	// range as soon as it is parsed.
	prepareLater := fb.batch != nil && fb.batch.Seals()
	parts := make([][]*record.Record, len(starts))
	partBodies := make([][][]byte, len(starts))
	// One parser per goroutine, each its own allocation: parsers next to
	// each other in one array would share cache lines between cores.
	workers := runtime.GOMAXPROCS(0)
	parsers := make([]*record.Parser, workers)
	if !onEveryCore(workers, len(starts), func(worker, c int) bool {
		if parsers[worker] == nil {
			parsers[worker] = new(record.Parser)
		}
		limit := len(body)
		if c+1 < len(starts) {
			limit = starts[c+1]
		}
		recs, bodies, ok := s.fastRange(parsers[worker], schemas, body, starts[c], limit, opts, withBodies)
		if ok && fb.batch != nil && !prepareLater {
			var err error
			fb.parts[c], err = fb.batch.Prepare(ctx, recs, bodies)
			ok = err == nil
		}
		parts[c], partBodies[c] = recs, bodies
		return ok
	}) {
		return nil, false
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > s.cfg.MaxBatch {
		return nil, false
	}
	recs := make([]*record.Record, 0, n)
	var bodies [][]byte
	if withBodies {
		bodies = make([][]byte, 0, n)
	}
	for c, p := range parts {
		recs = append(recs, p...)
		bodies = append(bodies, partBodies[c]...)
	}
	if firstRefusal(recs, nil) != nil {
		return nil, false
	}
	if prepareLater && !onEveryCore(workers, len(parts), func(_, c int) bool {
		var err error
		fb.parts[c], err = fb.batch.Prepare(ctx, parts[c], partBodies[c])
		return err == nil
	}) {
		return nil, false
	}
	fb.recs, fb.bodies = recs, bodies
	return fb, true
}

// onEveryCore calls do for i = 0, …, n-1 on up to workers goroutines
// (GOMAXPROCS: one a core), each taking the next i in turn (a core the
// collector or another process takes then delays one i, not a share), and
// reports whether every call returned true; none starts once one has
// returned false. worker, below workers, names the calling goroutine, for
// scratch space of its own.
func onEveryCore(workers, n int, do func(worker, i int) bool) bool {
	var next atomic.Int64
	var failed atomic.Bool
	work := func(worker int) {
		for {
			i := int(next.Add(1)) - 1
			if i >= n || failed.Load() {
				return
			}
			if !do(worker, i) {
				failed.Store(true)
				return
			}
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < min(workers, n); w++ {
		wg.Go(func() { work(w) })
	}
	work(0)
	wg.Wait()
	return !failed.Load()
}

// fastRange parses the records of body from pos, where one starts, to
// limit, where the next range starts (or the body ends): ok is false
// unless each is accepted by the one-pass parser and the checks parseItem
// makes, and the last ends exactly at limit (or the array at the end).
// withBodies, bodies[i] is the bytes recs[i] came from when they are its
// stored body, nil when not.
func (s *Server) fastRange(ps *record.Parser, schemas privacy.Schemas, body []byte, pos, limit int, opts record.IngestOptions, withBodies bool) (recs []*record.Record, bodies [][]byte, ok bool) {
	recs = make([]*record.Record, 0, (limit-pos)/256+1)
	if withBodies {
		bodies = make([][]byte, 0, cap(recs))
	}
	for {
		rec, n, ok := ps.ParseNextInPlace(body[pos:], opts)
		if !ok || sysrecord.IsSystem(rec.Source) || privacy.Admit(schemas, rec) != nil || len(recs) == s.cfg.MaxBatch {
			return nil, nil, false
		}
		recs = append(recs, rec)
		if withBodies {
			// The record starts at pos: one sent in its stored form is
			// stored as it came, not encoded again.
			var stored []byte
			if own := body[pos : pos+n : pos+n]; record.IsBody(own, rec) {
				stored = own
			}
			bodies = append(bodies, stored)
		}
		i := jsonscan.Space(body, pos+n)
		switch {
		case i >= len(body):
			return nil, nil, false
		case body[i] == ']':
			return recs, bodies, limit == len(body) && jsonscan.Space(body, i+1) == len(body)
		case body[i] != ',':
			return nil, nil, false
		}
		pos = jsonscan.Space(body, i+1)
		if pos >= limit {
			return recs, bodies, pos == limit && limit < len(body)
		}
	}
}

// recordStart finds the first '{' at or after at that follows "}," (white
// space around the comma allowed): where the next record of an array of
// objects starts, unless that is within a string.
func recordStart(body []byte, at int) (int, bool) {
	for at < len(body) {
		k := bytes.IndexByte(body[at:], '{')
		if k < 0 {
			return 0, false
		}
		p := at + k
		j := p - 1
		for j >= 0 && isSpace(body[j]) {
			j--
		}
		if j >= 0 && body[j] == ',' {
			for j--; j >= 0 && isSpace(body[j]); j-- {
			}
			if j >= 0 && body[j] == '}' {
				return p, true
			}
		}
		at = p + 1
	}
	return 0, false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// parseChunk is the fewest records worth a goroutine of their own.
const parseChunk = 64

// parseRange validates items[lo:hi] into recs, stopping at the first
// error, which it leaves in errs.
func (s *Server) parseRange(schemas privacy.Schemas, items [][]byte, batch bool, opts record.IngestOptions, recs []*record.Record, errs []*apiError, lo, hi int) {
	var ps record.Parser
	for i := lo; i < hi; i++ {
		opts.BatchIndex = i
		rec, e := s.parseItem(&ps, schemas, items[i], batch, opts, i)
		if e != nil {
			errs[i] = e
			return
		}
		recs[i] = rec
	}
}

func (s *Server) parseItem(ps *record.Parser, schemas privacy.Schemas, item []byte, batch bool, opts record.IngestOptions, i int) (*record.Record, *apiError) {
	rec, err := ps.Parse(item, opts)
	if err != nil {
		e := &apiError{Msg: err.Error()}
		if !batch && severalValues(item) {
			e.Msg += ": the body holds several JSON values; send several records as a JSON array, " +
				"or one a line as NDJSON with Content-Type: application/x-ndjson"
		}
		var fe *record.FieldError
		if errors.As(err, &fe) {
			e.Field = fe.Field
		}
		e.Index = batchIndex(batch, i)
		return nil, e
	}
	if sysrecord.IsSystem(rec.Source) {
		// Receipts, access and admin records are Stele's own: a
		// look-alike receipt would purge a subject's index entries
		// when the index is rebuilt.
		return nil, &apiError{Msg: fmt.Sprintf("source.name: %q is reserved for the records Stele writes about itself", rec.Source.Name),
			Field: "source.name", Index: batchIndex(batch, i)}
	}
	if err := privacy.Admit(schemas, rec); err != nil {
		var fe *record.FieldError
		if !errors.As(err, &fe) {
			s.log.Error("checking a record against the schema registry failed", "err", err)
			return nil, &apiError{Status: http.StatusInternalServerError, Msg: "internal error checking the record against the schema registry; see the server log"}
		}
		return nil, &apiError{Msg: fe.Error(), Field: fe.Field, Index: batchIndex(batch, i)}
	}
	return rec, nil
}

// batchSchemas lists the registry's subjects once per batch: Admit asks
// for them for every record whose table has no schema of its own, and the
// registry builds and sorts a fresh list each time.
type batchSchemas struct {
	privacy.Schemas
	once     sync.Once
	subjects []string
}

func (b *batchSchemas) Subjects() []string {
	b.once.Do(func() { b.subjects = b.Schemas.Subjects() })
	return b.subjects
}

// schemas is the registry ingest checks records against, nil without one.
func (s *Server) schemas() privacy.Schemas {
	if s.cfg.Schemas == nil {
		return nil
	}
	return s.cfg.Schemas
}

// batchIndex names item i of a batch in an error; a single record has none.
func batchIndex(batch bool, i int) *int {
	if batch {
		return indexPtr(i)
	}
	return nil
}

func (s *Server) appendFailed(w http.ResponseWriter, r *http.Request, err error) {
	var re *stele.RecordError
	var fe *record.FieldError
	switch {
	case errors.As(err, &re) && errors.As(re.Err, &fe):
		// The record broke its schema: nothing of the batch was appended.
		writeError(w, http.StatusBadRequest, &apiError{Msg: fe.Error(), Field: fe.Field, Index: indexPtr(re.Index)})
	case keysUnavailable(w, err):
	case errors.Is(err, stele.ErrOverloaded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "the log is overloaded; retry after a second (resubmitting the same records is safe)"})
	case errors.Is(err, stele.ErrUnavailable):
		// The cause (which NATS server, which timeout) is for the operator.
		s.log.WarnContext(r.Context(), "append refused: cluster unavailable", "err", err)
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "the cluster cannot sequence records now (no NATS quorum, or no writer holds the lease); nothing acknowledged is lost; retry in a few seconds (resubmitting the same records is safe)"})
	case errors.Is(err, logstore.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "the server is shutting down; retry against a running one"})
	case errors.Is(err, logstore.ErrNoSpace) || isNoSpace(err):
		// Nothing of the batch was stored; appends resume by themselves
		// once the operator frees space.
		s.log.ErrorContext(r.Context(), "append refused: storage full", "err", err)
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusInsufficientStorage, &apiError{Msg: "the log's disk is full: nothing of this batch was stored; the operator must free space in the data directory, after which the server resumes by itself; resubmit the batch then (records with ids are stored once)"})
	case errors.Is(err, logstore.ErrFailed):
		// The cause (a path, an errno) is for the operator, not the client.
		s.log.ErrorContext(r.Context(), "append refused", "err", err)
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "the log stopped accepting records after a storage failure; the operator must restart it"})
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The client gave up; whether the batch became durable is unknown to
		// it, and resubmitting is safe because ids are deduplicated.
		s.log.Warn("append not acknowledged before the request ended", "err", err)
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "request ended before the append was acknowledged; resubmitting the same records is safe"})
	default:
		s.internalError(w, r, "append", err)
	}
}

// keysUnavailable answers 503 when err is the key store's passing
// unavailability (privacy.ErrKeysUnavailable: a cluster key store that
// cannot confirm it is current, while NATS lacks a quorum), and reports
// whether it did.
func keysUnavailable(w http.ResponseWriter, err error) bool {
	if !errors.Is(err, privacy.ErrKeysUnavailable) {
		return false
	}
	w.Header().Set("Retry-After", "2")
	writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "the cluster key store cannot confirm it is current (no NATS quorum reachable): nothing was stored or shown; retry in a few seconds (resubmitting the same records is safe)"})
	return true
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.ErrorContext(r.Context(), what+" failed", "err", err)
	writeError(w, http.StatusInternalServerError, &apiError{Msg: "internal error during " + what + "; see the server log"})
}

// bodyFormat reports whether the Content-Type announces NDJSON, or an error
// for a type the API does not read.
func bodyFormat(ct string) (ndjson bool, _ *apiError) {
	if ct == "" {
		return false, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false, &apiError{Msg: "malformed Content-Type header: " + err.Error()}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false, &apiError{Msg: "unsupported charset " + strconv.Quote(cs) + ": the body must be UTF-8"}
	}
	switch mt {
	case "application/json":
		return false, nil
	case "application/x-ndjson":
		return true, nil
	case "application/x-www-form-urlencoded", "multipart/form-data":
		return false, &apiError{Msg: "unsupported Content-Type " + strconv.Quote(mt) + " (what curl -d and -F send unless told otherwise): " +
			"add -H 'Content-Type: application/json' for a record or a JSON array, or -H 'Content-Type: application/x-ndjson' for one record a line"}
	}
	return false, &apiError{Msg: "unsupported Content-Type " + strconv.Quote(mt) + ": send application/json (a record or a JSON array) or application/x-ndjson (one record a line)"}
}

// severalValues reports whether body is a JSON value followed by more
// JSON: NDJSON sent as application/json.
func severalValues(body []byte) bool {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true))
	if _, err := dec.ReadValue(); err != nil {
		return false
	}
	return dec.PeekKind() != 0
}

func tooMany(max int) *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge,
		Msg: fmt.Sprintf("more than %d records in one request; split the batch", max)}
}

// splitJSON splits a JSON body into raw record objects. batch is false for
// a single bare object, whose errors then carry no index.
func splitJSON(body []byte, max int) (items [][]byte, batch bool, _ *apiError) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, false, &apiError{Msg: "request body is empty; send a JSON object, an array of objects or NDJSON"}
	}
	if trimmed[0] != '[' {
		// ParseIngest reports what is wrong with a non-object itself.
		return [][]byte{body}, false, nil
	}
	if items, ok := cutArray(body, max); ok {
		if len(items) > max {
			return nil, true, tooMany(max)
		}
		return items, true, nil
	}
	return checkedSplit(body, max)
}

// checkedSplit splits a JSON array body after checking all of it, with the
// decoder's error message (the one clients have always been given) for a
// malformed body.
func checkedSplit(body []byte, max int) (items [][]byte, batch bool, _ *apiError) {
	if items, ok := scanArray(body, max); ok {
		if len(items) > max {
			return nil, true, tooMany(max)
		}
		return items, true, nil
	}
	// What the scanner refuses is decoded again for the decoder's error
	// message.
	return decodeArray(body, max)
}

// syntaxFirst is the answer to a refused array batch: cutArray checked
// only what lies between its elements, so a body that is malformed
// anywhere gets the malformed-body answer it always had, and a well-formed
// one the record's own error.
func syntaxFirst(body []byte, max int, recErr *apiError) *apiError {
	if _, _, aerr := checkedSplit(body, max); aerr != nil {
		return aerr
	}
	return recErr
}

// cutArray finds where the elements of a JSON array body start and end
// without checking what is inside them: brackets are counted and strings
// skipped, nothing more. Every element is checked in full when it is
// parsed (in parallel, where this walk is one pass on one core), and a
// batch with any refused element is split again by checkedSplit for the
// error the body has always been given (see syntaxFirst). What lies
// between elements (the brackets, commas and whitespace) is checked here.
// ok is false for anything but such an array; it stops counting past
// max+1 elements.
func cutArray(body []byte, max int) (items [][]byte, ok bool) {
	i := jsonscan.Space(body, 0)
	if i >= len(body) || body[i] != '[' {
		return nil, false
	}
	i = jsonscan.Space(body, i+1)
	if i < len(body) && body[i] == ']' {
		return nil, jsonscan.Space(body, i+1) == len(body)
	}
	items = make([][]byte, 0, min(max+1, 1024))
	for {
		end, ok := cutValue(body, i)
		if !ok {
			return nil, false
		}
		if len(items) <= max {
			items = append(items, body[i:end:end])
		}
		i = jsonscan.Space(body, end)
		if i >= len(body) {
			return nil, false
		}
		switch body[i] {
		case ',':
			i = jsonscan.Space(body, i+1)
		case ']':
			return items, jsonscan.Space(body, i+1) == len(body)
		default:
			return nil, false
		}
	}
}

// cutValue returns where the value starting at b[i] ends, counting
// brackets and skipping strings; a scalar ends at the next ',', ']' or
// whitespace.
func cutValue(b []byte, i int) (end int, ok bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '{', '[':
	case '"':
		return cutString(b, i)
	case ',', ']', '}', ':':
		return 0, false
	default:
		for j := i; j < len(b); j++ {
			switch b[j] {
			case ',', ']', ' ', '\t', '\r', '\n':
				return j, true
			}
		}
		return 0, false
	}
	depth := 0
	for j := i; j < len(b); j++ {
		// This walk is the one part of validating a batch that is not
		// spread over the cores: most bytes are skipped by the table.
		if !cutSpecial[b[j]] {
			continue
		}
		switch b[j] {
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return j + 1, true
			}
		case '"':
			e, ok := cutString(b, j)
			if !ok {
				return 0, false
			}
			j = e - 1
		}
	}
	return 0, false
}

// cutSpecial marks the bytes cutValue looks at outside strings.
var cutSpecial = [256]bool{'{': true, '}': true, '[': true, ']': true, '"': true}

// cutString returns the index after the string literal at b[i], looking
// at eight bytes at a time for the quote or backslash that ends a run.
func cutString(b []byte, i int) (int, bool) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	j := i + 1
	for {
		for ; j+8 <= len(b); j += 8 {
			w := binary.LittleEndian.Uint64(b[j:])
			q, bs := w^(ones*'"'), w^(ones*'\\')
			// A zero byte of q or bs is a quote or a backslash.
			if ((q-ones)&^q|(bs-ones)&^bs)&highs != 0 {
				break
			}
		}
		for j < len(b) && b[j] != '"' && b[j] != '\\' {
			j++
		}
		switch {
		case j >= len(b):
			return 0, false
		case b[j] == '"':
			return j + 1, true
		}
		// A backslash escapes the byte after it.
		j += 2
	}
}

func decodeArray(body []byte, max int) (items [][]byte, batch bool, _ *apiError) {
	// A bytes.Buffer lets the decoder parse the body in place; each item
	// is then the body's own bytes, found by offset, not a copy.
	dec := jsontext.NewDecoder(bytes.NewBuffer(body))
	if _, err := dec.ReadToken(); err != nil {
		return nil, true, &apiError{Msg: jsonErrMsg(err)}
	}
	for i := 0; dec.PeekKind() != ']'; i++ {
		if i == max {
			return nil, true, tooMany(max)
		}
		v, err := dec.ReadValue()
		if err != nil {
			return nil, true, &apiError{Msg: jsonErrMsg(err), Index: indexPtr(i)}
		}
		end := int(dec.InputOffset())
		items = append(items, body[end-len(v):end:end])
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, true, &apiError{Msg: jsonErrMsg(err)}
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, true, &apiError{Msg: "unexpected data after the JSON array"}
	}
	return items, true, nil
}

// scanArray splits a JSON array with the allocation-free scanner (each
// record is validated again when it is parsed, so this walk is most of
// what splitting costs); ok is false when the body is not a well-formed
// array. It stops counting past max+1 items.
func scanArray(body []byte, max int) (items [][]byte, ok bool) {
	start := jsonscan.Space(body, 0)
	end, err := jsonscan.Elements(body, start, 0, func(_, v int) (int, error) {
		end, err := jsonscan.Skip(body, v, 1)
		if err == nil && len(items) <= max {
			items = append(items, body[v:end:end])
		}
		return end, err
	})
	if err != nil || jsonscan.Space(body, end) != len(body) {
		return nil, false
	}
	return items, true
}

// splitNDJSON returns one item per non-blank line.
func splitNDJSON(body []byte, max int) ([][]byte, *apiError) {
	var items [][]byte
	for line := range bytes.Lines(body) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(items) == max {
			return nil, tooMany(max)
		}
		items = append(items, line)
	}
	return items, nil
}

func jsonErrMsg(err error) string {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.ByteOffset, se.Err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "malformed JSON: the body ends before the JSON array does"
	}
	return "malformed JSON: " + err.Error()
}
