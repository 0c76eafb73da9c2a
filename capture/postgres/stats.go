package postgres

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
)

// Source states, as Stats.State reports them.
const (
	StateConnecting = "connecting"
	StateStreaming  = "streaming"
	StateRetrying   = "retrying"
	StateFailed     = "failed"
)

// Stats is a snapshot of a source's progress and health.
type Stats struct {
	// State is StateConnecting (also before Run), StateStreaming,
	// StateRetrying (waiting to reconnect after a transient failure) or
	// StateFailed (Run returned a permanent error).
	State string
	// LagBytes is the server's WAL end, from its latest keepalive or
	// XLogData message, minus the flushed position (0 when caught up).
	LagBytes uint64
	// LagSeconds is how long ago the oldest transaction that committed at
	// the source but is not yet appended to the log committed (0 when none
	// is pending).
	LagSeconds float64
	// RecordsTotal counts records appended to the sink since the source
	// was created (records the log already held count too).
	RecordsTotal uint64
	// LastError is the latest connection or stream error, without
	// passwords ("" when none yet).
	LastError string
	// FlushedLSN is the position acknowledged as durable, e.g. "0/16B3748".
	FlushedLSN string
	SlotName   string
}

// sourceStats is updated by the streaming goroutine and read by Stats.
type sourceStats struct {
	state   atomic.Pointer[string]
	lastErr atomic.Pointer[string]
	walEnd  atomic.Uint64
	flushed atomic.Uint64
	records atomic.Uint64
	// pending is the commit time (Unix ns) of the transaction being
	// received or appended; 0 when none.
	pending atomic.Int64
}

func (st *sourceStats) setState(s string) { st.state.Store(&s) }

// setError records err with the connection's password, if any, removed.
func (s *Source) setError(err error) {
	msg := err.Error()
	if pw := s.pgcfg.Password; pw != "" {
		msg = strings.ReplaceAll(msg, pw, "REDACTED")
	}
	s.stats.lastErr.Store(&msg)
}

// observe records the server's WAL end and the flushed position.
func (st *sourceStats) observe(walEnd, flushed pglogrepl.LSN) {
	if walEnd != 0 {
		st.walEnd.Store(uint64(walEnd))
	}
	st.flushed.Store(uint64(flushed))
}

// Stats returns the source's current figures. It is safe to call from any
// goroutine while Run runs.
func (s *Source) Stats() Stats {
	out := Stats{State: StateConnecting, SlotName: s.cfg.Slot, RecordsTotal: s.stats.records.Load()}
	if p := s.stats.state.Load(); p != nil {
		out.State = *p
	}
	if p := s.stats.lastErr.Load(); p != nil {
		out.LastError = *p
	}
	flushed, walEnd := s.stats.flushed.Load(), s.stats.walEnd.Load()
	out.FlushedLSN = pglogrepl.LSN(flushed).String()
	if walEnd > flushed {
		out.LagBytes = walEnd - flushed
	}
	if p := s.stats.pending.Load(); p != 0 {
		out.LagSeconds = max(0, time.Since(time.Unix(0, p)).Seconds())
	}
	return out
}
