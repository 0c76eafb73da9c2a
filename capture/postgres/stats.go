package postgres

import (
	"github.com/jackc/pglogrepl"

	"github.com/stele/stele/capture"
)

// Stats returns the source's current figures (the runtime's capture.Stats:
// LagBytes is WAL bytes past the flushed position, Position the flushed
// LSN, e.g. "0/16B3748"). It is safe to call from any goroutine while Run
// runs.
func (s *Source) Stats() capture.Stats {
	st := s.progress.Snapshot()
	st.Position = pglogrepl.LSN(s.progress.Durable()).String()
	return st
}
