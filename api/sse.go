package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/stele/stele/follow"
	"github.com/stele/stele/record"
)

// Defaults of the live stream (GET /v1/stream).
const (
	DefaultStreamHeartbeat = 15 * time.Second
	// streamWriteTimeout bounds one flush to a client, replacing the
	// server's WriteTimeout, which would otherwise end every stream.
	streamWriteTimeout = 30 * time.Second
	// streamFlushBytes flushes a catch-up in chunks rather than per record.
	streamFlushBytes = 32 << 10
)

// streams lets Shutdown end live streams, which would otherwise hold the
// HTTP server's graceful shutdown until its deadline. The zero value works.
type streams struct {
	once sync.Once
	mu   sync.Mutex
	done chan struct{}
}

func (st *streams) stopped() chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done == nil {
		st.done = make(chan struct{})
	}
	return st.done
}

// CloseStreams ends every live stream (GET /v1/stream) cleanly and makes
// new ones end at once; register it with http.Server.RegisterOnShutdown.
func (s *Server) CloseStreams() {
	ch := s.streams.stopped()
	s.streams.once.Do(func() { close(ch) })
}

// streamFilter is the subset of GET /v1/records filters a live stream
// applies to each record as it passes.
type streamFilter struct {
	source, table, actor, key string
	op                        record.Op
}

func (f *streamFilter) match(r *record.Record) bool {
	if (f.source != "" && r.Source.Name != f.source) || (f.table != "" && r.Source.Table != f.table) ||
		(f.op != "" && r.Op != f.op) || (f.actor != "" && r.ActorID() != f.actor) {
		return false
	}
	if f.key != "" {
		k, err := record.KeyString(r.Key)
		return err == nil && k == f.key
	}
	return true
}

// streamRecords answers GET /v1/stream: Server-Sent Events, one event per
// matching record in log order, "id:" = seq, from ?from=SEQ (default: the
// current end of the log) or, on reconnect, after the Last-Event-ID header.
func (s *Server) streamRecords(w http.ResponseWriter, r *http.Request) {
	p, aerr := params(r.URL.RawQuery, "from", "source", "table", "actor", "op", "key")
	if aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	f := streamFilter{source: p["source"], table: p["table"], actor: p["actor"], key: p["key"]}
	if v, ok := p["op"]; ok {
		f.op = record.Op(v)
		if !f.op.Valid() {
			writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("op: %q is not one of %s", v, record.OpList()), Field: "op"})
			return
		}
	}
	if f.key != "" && (f.source == "" || f.table == "") {
		writeError(w, http.StatusBadRequest, &apiError{Msg: "key: requires source and table (a key is unique only within its table)", Field: "key"})
		return
	}
	size := s.cfg.Log.Size()
	from := size
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		// A reconnecting EventSource repeats the original URL; the header
		// is where it really left off, so it wins over ?from=.
		last, aerr := parseUint("Last-Event-ID", v)
		if aerr != nil {
			writeError(w, aerr.status(), aerr)
			return
		}
		if last >= size {
			writeError(w, http.StatusBadRequest, &apiError{
				Msg: fmt.Sprintf("Last-Event-ID: seq %d is not in the log, which holds %d records", last, size), Field: "Last-Event-ID"})
			return
		}
		from = last + 1
	} else if v, ok := p["from"]; ok {
		if from, aerr = parseUint("from", v); aerr != nil {
			writeError(w, aerr.status(), aerr)
			return
		}
		if from > size {
			writeError(w, http.StatusBadRequest, &apiError{
				Msg: fmt.Sprintf("from: %d is beyond the end of the log, which holds %d records", from, size), Field: "from"})
			return
		}
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies must not hold events back
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Events pass the read guard's gate: each flush first makes the access
	// record of the clear reads it carries durable. If that fails the held
	// events are never sent and the stream ends.
	rd := s.reads(r)
	gate := rd.Writer(r.Context(), w)
	bw := bufio.NewWriterSize(gate, streamFlushBytes+4096)
	flush := func() error {
		// Each flush gets its own deadline: a stuck client is dropped, a
		// live one may stay connected for days.
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := gate.Flush(); err != nil {
			gate.Discard()
			return err
		}
		return rc.Flush()
	}
	fmt.Fprintf(bw, ": stele live stream from seq %d\n\n", from)
	if flush() != nil {
		return
	}

	heartbeat := s.cfg.StreamHeartbeat
	if heartbeat <= 0 {
		heartbeat = DefaultStreamHeartbeat
	}
	// Shutdown (CloseStreams) ends the follower like a client leaving.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := s.streams.stopped()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	sentID := from // the client resumes at sentID
	var buf []byte
	fl := follow.New(s.cfg.Log, follow.Options{
		Name:      "sse",
		Metrics:   s.follow,
		IdleEvery: heartbeat,
		Idle: func(_ context.Context, next uint64) error {
			bw.WriteString(": heartbeat\n")
			if next > sentID {
				// Records skipped by the filter still move the resume
				// point: an event with only an id sets Last-Event-ID
				// without firing a message.
				bw.WriteString("id: " + strconv.FormatUint(next-1, 10) + "\n")
				sentID = next
			}
			bw.WriteString("\n")
			return flush()
		},
	})
	err := fl.Run(ctx, from, func(ctx context.Context, b follow.Batch) error {
		for _, rec := range b.Records {
			if !f.match(rec) {
				continue
			}
			if err := rd.Reveal(ctx, rec); err != nil {
				return fmt.Errorf("reveal record %d: %w", rec.Seq, err)
			}
			buf = append(buf[:0], "id: "...)
			buf = strconv.AppendUint(buf, rec.Seq, 10)
			buf = append(buf, "\ndata: "...)
			buf = record.AppendJSON(buf, rec)
			buf = append(buf, "\n\n"...)
			bw.Write(buf)
			sentID = rec.Seq + 1
			if bw.Buffered() >= streamFlushBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if b.CaughtUp() && bw.Buffered() > 0 {
			return flush()
		}
		return nil
	})
	var rerr *follow.ReadError
	switch {
	case errors.As(err, &rerr):
		// Ending the stream with the reason beats skipping a seq: the
		// client would never learn about the gap.
		s.log.ErrorContext(ctx, "live stream: read record", "seq", rerr.Seq, "err", err)
		fmt.Fprintf(bw, "event: error\ndata: {\"error\":%s,\"seq\":%d}\n\n",
			quote(fmt.Sprintf("record %d cannot be read; run `stele verify`", rerr.Seq)), rerr.Seq)
		_ = flush()
	case r.Context().Err() != nil:
		// The client left.
	case ctx.Err() != nil:
		bw.WriteString(": server shutting down; reconnect with Last-Event-ID to resume\n\n")
		_ = flush()
	case err != nil:
		s.log.ErrorContext(ctx, "live stream ended", "err", err)
	}
}
