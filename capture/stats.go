package capture

import (
	"strings"
	"sync/atomic"
	"time"
)

// Source states, as Stats.State reports them and stele_source_up labels
// them.
const (
	StateConnecting = "connecting"
	StateStreaming  = "streaming"
	StateRetrying   = "retrying"
	StateFailed     = "failed"
)

// States lists every state, in the order /metrics exports them.
func States() []string {
	return []string{StateConnecting, StateStreaming, StateRetrying, StateFailed}
}

// Stats is a snapshot of a source's progress and health, the same for
// every kind of source (/metrics and `stele status` show it).
type Stats struct {
	// State is StateConnecting (also before Run), StateStreaming,
	// StateRetrying (waiting to reconnect after a transient failure) or
	// StateFailed (Run returned a permanent error).
	State string
	// LagBytes is how far the upstream's end is past the position
	// acknowledged as durable, in the upstream's own offset unit (WAL bytes
	// for PostgreSQL, 0 for a source without a numeric offset or when
	// caught up).
	LagBytes uint64
	// LagSeconds is how long ago the oldest change that committed at the
	// source but is not yet appended to the log committed (0 when none is
	// pending).
	LagSeconds float64
	// RecordsTotal counts records appended to the sink since the source
	// was created (records the log already held count too).
	RecordsTotal uint64
	// LastError is the latest connection or stream error, without
	// secrets ("" when none yet).
	LastError string
	// Position is the position acknowledged as durable, in the source's
	// notation (e.g. "0/16B3748" for a PostgreSQL LSN); filled in by the
	// source.
	Position string
}

// Progress is a source's live figures, updated by its goroutines with
// atomic operations (the streaming loop touches it per message) and read
// by Snapshot from any goroutine.
type Progress struct {
	state   atomic.Pointer[string]
	lastErr atomic.Pointer[string]
	end     atomic.Uint64
	durable atomic.Uint64
	records atomic.Uint64
	// pending is the commit time (Unix ns) of the oldest change received
	// and not yet durable; 0 when none.
	pending atomic.Int64
}

// SetState records the source's state (one of the State constants).
func (p *Progress) SetState(s string) { p.state.Store(&s) }

// SetError records err's text, passed through redact (may be nil) so that
// no password reaches /metrics or `stele status`.
func (p *Progress) SetError(err error, redact func(string) string) {
	msg := err.Error()
	if redact != nil {
		msg = redact(msg)
	}
	p.lastErr.Store(&msg)
}

// Observe records the upstream's end offset (0 leaves it as it was) and the
// offset acknowledged as durable, for the lag.
func (p *Progress) Observe(end, durable uint64) {
	if end != 0 {
		p.end.Store(end)
	}
	p.durable.Store(durable)
}

// Durable is the offset last passed to Observe as durable.
func (p *Progress) Durable() uint64 { return p.durable.Load() }

// Appended counts n records made durable.
func (p *Progress) Appended(n int) { p.records.Add(uint64(n)) }

// Pending marks a change committed upstream at t as received and not yet
// durable; only the oldest such time is kept.
func (p *Progress) Pending(t time.Time) { p.pending.CompareAndSwap(0, t.UnixNano()) }

// CaughtUp clears the pending time: everything received is durable.
func (p *Progress) CaughtUp() { p.pending.Store(0) }

// Snapshot returns the current figures; Position is left to the source.
func (p *Progress) Snapshot() Stats {
	out := Stats{State: StateConnecting, RecordsTotal: p.records.Load()}
	if s := p.state.Load(); s != nil {
		out.State = *s
	}
	if e := p.lastErr.Load(); e != nil {
		out.LastError = *e
	}
	if end, durable := p.end.Load(), p.durable.Load(); end > durable {
		out.LagBytes = end - durable
	}
	if t := p.pending.Load(); t != 0 {
		out.LagSeconds = max(0, time.Since(time.Unix(0, t)).Seconds())
	}
	return out
}

// Redactor returns a function that replaces each non-empty secret in a
// text by REDACTED.
func Redactor(secrets ...string) func(string) string {
	return func(s string) string {
		for _, sec := range secrets {
			if sec != "" {
				s = strings.ReplaceAll(s, sec, "REDACTED")
			}
		}
		return s
	}
}
