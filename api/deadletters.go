package api

import (
	"context"
	"net/http"

	"github.com/stele/stele/deadletter"
)

// DeadLetters is the parked captured records (package deadletter), as the
// admin endpoints see them.
type DeadLetters interface {
	Entries() ([]deadletter.Entry, error)
	// Replay offers every parked record to the log again.
	Replay(ctx context.Context) (*deadletter.ReplayResult, error)
}

// listDeadLetters answers GET /v1/deadletters: what is parked and why,
// without the records themselves (they may hold personal data unsealed).
func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	entries, err := s.cfg.DeadLetters.Entries()
	if err != nil {
		s.internalError(w, r, "list dead letters", err)
		return
	}
	for i := range entries {
		entries[i].Record = ""
	}
	if entries == nil {
		entries = []deadletter.Entry{}
	}
	writeJSON(w, http.StatusOK, struct {
		DeadLetters []deadletter.Entry `json:"dead_letters"`
	}{entries})
}

// replayDeadLetters answers POST /v1/deadletters/replay: parked records
// that fit their schema now are appended; the replay is itself recorded.
func (s *Server) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	res, err := s.cfg.DeadLetters.Replay(r.Context())
	if err != nil && res == nil {
		s.internalError(w, r, "replay dead letters", err)
		return
	}
	if !s.recordAdmin(w, r, "deadletters.replay", map[string]any{"appended": res.Appended, "duplicates": res.Duplicates, "still_parked": len(res.StillParked)}) {
		return
	}
	if err != nil {
		// Part was appended (and has left the file) before the log failed.
		s.internalError(w, r, "replay dead letters", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
