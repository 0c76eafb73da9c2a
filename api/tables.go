package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/stele/stele/privacy"
	"github.com/stele/stele/query"
)

// TableStateContentType is the media type of GET
// /v1/tables/{source}/{table}/state: JSON Lines, one unit per line.
const TableStateContentType = "application/x-ndjson"

// AppendUnitJSON appends one line of a table-state stream (without the
// newline): {"key":…,"state":…,"seq":…,"occurred_at":…}. The CLI's
// snapshot command writes the same lines.
func AppendUnitJSON(dst []byte, u query.Unit) []byte {
	dst = append(dst, `{"key":`...)
	dst = append(dst, quote(u.Key)...)
	dst = append(dst, `,"state":`...)
	dst = append(dst, u.State...)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, u.Seq, 10)
	dst = append(dst, `,"occurred_at":"`...)
	dst = u.OccurredAt.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, `"}`...)
}

// tableWriteTimeout is how long a table-state stream may take to write
// the next 1,024 units.
const tableWriteTimeout = 2 * time.Minute

// tableState answers GET /v1/tables/{source}/{table}/state?at=T: every unit
// of the table as it was at T (default now), streamed as JSON Lines so a
// table of millions of rows never sits in memory. Personal data shows as
// the caller's role may see it; what shows in clear passes a
// privacy.GatedWriter.
// An error found before the first byte is sent is an ordinary JSON error
// answer; one found after it (the status is sent by then) ends the stream
// with a line {"error": …}, so a client must treat a line holding "error"
// and no "key" as a failed read.
func (s *Server) tableState(w http.ResponseWriter, r *http.Request) {
	p, aerr := params(r.URL.RawQuery, "at")
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	at := s.cfg.Now()
	if v, ok := p["at"]; ok {
		if at, aerr = parseTime("at", v); aerr != nil {
			writeError(w, aerr.status(), aerr)
			return
		}
	}
	if !s.queryAvailable(w) {
		return
	}
	lw := &lazyWriter{w: w, start: func(h http.Header) {
		h.Set("Content-Type", TableStateContentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Stele-At", at.UTC().Format(time.RFC3339Nano))
	}}
	rd := s.reads(r)
	ctx := revealing(r.Context(), rd)
	gate := rd.Writer(r.Context(), lw)
	// The server's write timeout bounds a whole response; a large table
	// streams for longer, so each stretch of progress extends it. A stuck
	// client still times out.
	rc := http.NewResponseController(w)
	var line []byte
	units := 0
	err := s.cfg.Query.TableStateAt(ctx, r.PathValue("source"), r.PathValue("table"), at, func(u query.Unit) error {
		if units++; units%1024 == 1 {
			_ = rc.SetWriteDeadline(time.Now().Add(tableWriteTimeout))
		}
		line = append(AppendUnitJSON(line[:0], u), '\n')
		_, err := gate.Write(line)
		return err
	})
	if err == nil {
		err = gate.Flush()
	}
	if err == nil {
		if !lw.started {
			lw.begin() // an empty table: an empty stream
		}
		return
	}
	gate.Discard()
	switch {
	case !lw.started && errors.Is(err, privacy.ErrAccessNotRecorded):
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: accessNotRecordedMsg})
	case !lw.started:
		s.queryFailed(w, r, err)
	case r.Context().Err() == nil:
		s.log.ErrorContext(r.Context(), "table state stream failed", "err", err)
		msg := "reading the table state failed after streaming began; the stream is incomplete"
		if errors.Is(err, privacy.ErrAccessNotRecorded) {
			msg = "the read of personal data could not be recorded in the log, so the stream stops here; it is incomplete"
		}
		line = append(append(append(line[:0], `{"error":`...), quote(msg)...), "}\n"...)
		_, _ = lw.Write(line)
	}
}
