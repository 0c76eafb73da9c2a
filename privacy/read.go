package privacy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/record"
)

// The read-privacy rule, for every reader of the log (REST, GraphQL,
// exports, the live stream, the web UI): records are revealed as the
// reader's role may see them, and no byte showing personal data in clear
// leaves before an access record naming the records it shows is durable in
// the log. Readers get it by composition: a Read's Reveal is the read hook
// of the query engine (query.WithReadHook) and of exports, and its Commit
// or Writer stands between the answer and the client. The rule is here,
// not in HTTP code, so a new reader cannot forget half of it.

// ErrAccessNotRecorded: a read of personal data in clear could not be
// recorded in the log, so its answer must not be sent.
var ErrAccessNotRecorded = errors.New("the read of personal data could not be recorded in the log")

// Revealer shows a record's sealed fields as a role may see them and
// counts the values shown in clear; *Guard is one.
type Revealer interface {
	Reveal(ctx context.Context, role auth.Role, r *record.Record) (clear int, err error)
}

// AccessRecorder appends one access record and returns once it is durable;
// *Ledger is one.
type AccessRecorder interface {
	RecordAccess(ctx context.Context, by auth.Principal, endpoint string, seqs []uint64, fields int) error
}

// ReadGuard hands out guarded reads. A nil *ReadGuard hands out reads that
// reveal nothing and record nothing, for a server without a privacy layer
// (nothing is sealed there, so records are served as stored).
type ReadGuard struct {
	rev Revealer
	rec AccessRecorder
	log *slog.Logger
}

// NewReadGuard returns a ReadGuard that reveals through rev and records
// clear reads through rec. logger may be nil.
func NewReadGuard(rev Revealer, rec AccessRecorder, logger *slog.Logger) *ReadGuard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ReadGuard{rev: rev, rec: rec, log: logger}
}

// Read starts one guarded read (one request) by a principal through an
// endpoint, which the access record names ("GET /v1/records").
func (rg *ReadGuard) Read(by auth.Principal, endpoint string) *Read {
	return &Read{rg: rg, by: by, endpoint: endpoint}
}

// Read is one reader's guarded read. Its methods are safe for concurrent
// use: a GraphQL operation resolves fields in parallel.
type Read struct {
	rg       *ReadGuard
	by       auth.Principal
	endpoint string

	mu     sync.Mutex
	seqs   []uint64 // revealed in clear since the last Commit
	fields int
}

// Reveal rewrites r's sealed fields for the reader's role (clear for
// admins and auditors, masked for analysts, sealed for services,
// {"$erased":true} once a key is gone) and notes the clear values for the
// next Commit. It has the shape of the query engine's read hook.
func (rd *Read) Reveal(ctx context.Context, r *record.Record) error {
	if rd.rg == nil {
		return nil
	}
	n, err := rd.rg.rev.Reveal(ctx, rd.by.Role, r)
	if n > 0 {
		rd.mu.Lock()
		rd.seqs = append(rd.seqs, r.Seq)
		rd.fields += n
		rd.mu.Unlock()
	}
	return err
}

// Pending reports whether clear reads await Commit.
func (rd *Read) Pending() bool {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return len(rd.seqs) > 0
}

// Commit appends one access record naming, each once and in ascending
// order, the records revealed in clear since the previous Commit, and
// returns once it is durable; with none it appends nothing. Only after it
// returns nil may the bytes of those records be sent. An error wraps
// ErrAccessNotRecorded; the reads it was for count as not recorded and are
// dropped, so the caller must not send them.
func (rd *Read) Commit(ctx context.Context) error {
	if rd.rg == nil {
		return nil
	}
	rd.mu.Lock()
	seqs, fields := rd.seqs, rd.fields
	rd.seqs, rd.fields = nil, 0
	rd.mu.Unlock()
	if len(seqs) == 0 {
		return nil
	}
	slices.Sort(seqs)
	seqs = slices.Compact(seqs) // GraphQL fields or folded states may show a record twice
	if err := rd.rg.rec.RecordAccess(ctx, rd.by, rd.endpoint, seqs, fields); err != nil {
		rd.rg.log.ErrorContext(ctx, "could not record a read of personal data; withholding the answer", "endpoint", rd.endpoint, "err", err)
		return fmt.Errorf("%w: %w", ErrAccessNotRecorded, err)
	}
	return nil
}

// Sizes at which a GatedWriter passes held bytes on.
const (
	// GateFirstFlush is the first flush when no clear read awaits
	// recording; each flush doubles it up to GateFlush, so that a reader
	// wanting a screenful (the UI's table page) gets it without waiting
	// for 64 KiB of a stream to be built.
	GateFirstFlush = 4 << 10
	GateFlush      = 64 << 10 // when no clear read awaits recording
	GateChunk      = 1 << 20  // in any case, after recording the access
)

// Writer returns a writer that holds back a streamed answer so that no
// byte of it leaves before the access record of what it shows is durable.
// The caller reveals each record (Reveal) before writing its bytes.
func (rd *Read) Writer(ctx context.Context, w io.Writer) *GatedWriter {
	return &GatedWriter{rd: rd, ctx: ctx, w: w, flushAt: GateFirstFlush}
}

// GatedWriter passes bytes on in chunks, each preceded by one access record
// naming the records revealed since the previous one. A record is revealed
// before its bytes are written here, so the access record it lands in
// always precedes them. Chunks keep memory bounded and the access records
// few (one per MiB at most).
type GatedWriter struct {
	rd      *Read
	ctx     context.Context
	w       io.Writer
	buf     []byte
	flushAt int // when no clear read awaits recording
}

// Write holds p, passing held bytes on once enough have gathered.
func (g *GatedWriter) Write(p []byte) (int, error) {
	g.buf = append(g.buf, p...)
	if len(g.buf) >= GateChunk || (len(g.buf) >= g.flushAt && !g.rd.Pending()) {
		if err := g.Flush(); err != nil {
			return 0, err
		}
		g.flushAt = min(2*g.flushAt, GateFlush)
	}
	return len(p), nil
}

// Flush records the access of what was revealed so far, then passes every
// held byte on; if recording fails nothing is passed on (and the error
// wraps ErrAccessNotRecorded).
func (g *GatedWriter) Flush() error {
	if err := g.rd.Commit(g.ctx); err != nil {
		return err
	}
	if len(g.buf) == 0 {
		return nil
	}
	_, err := g.w.Write(g.buf)
	g.buf = g.buf[:0]
	return err
}

// Discard drops the held bytes, unsent.
func (g *GatedWriter) Discard() { g.buf = nil }
