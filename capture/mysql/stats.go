package mysql

import (
	"sync/atomic"

	"github.com/stele/stele/capture"
)

// statusBox holds what Stats adds to the runtime's figures.
type statusBox struct {
	lagBytes atomic.Uint64
	position atomic.Pointer[string]
}

func (b *statusBox) setPosition(p binlogPos) {
	s := p.String()
	b.position.Store(&s)
}

// Stats returns the source's current figures (the runtime's capture.Stats:
// LagBytes is binlog bytes written past the durable position, measured
// every heartbeat; Position the durable GTID set, or file:offset without
// GTIDs). It is safe to call from any goroutine while Run runs.
func (s *Source) Stats() capture.Stats {
	st := s.progress.Snapshot()
	st.LagBytes = s.status.lagBytes.Load()
	if p := s.status.position.Load(); p != nil {
		st.Position = *p
	}
	return st
}
