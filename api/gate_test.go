package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/record"
)

// events is one ordered trace of access records and bytes sent.
type events []string

// tracePrivacy reveals every record with one clear value and notes access
// records in the trace; it fails while fail is set.
type tracePrivacy struct {
	ev   *events
	fail bool
}

func (p *tracePrivacy) Reveal(context.Context, auth.Role, *record.Record) (int, error) { return 1, nil }
func (p *tracePrivacy) BlindToken(string, string) []byte                               { return nil }
func (p *tracePrivacy) Erase(context.Context, privacy.EraseRequest) (*privacy.ReceiptResult, error) {
	return nil, errors.New("not here")
}

func (p *tracePrivacy) RecordAccess(_ context.Context, _ auth.Principal, _ string, seqs []uint64, _ int) error {
	if p.fail {
		return errors.New("log unavailable")
	}
	*p.ev = append(*p.ev, fmt.Sprint("access ", seqs))
	return nil
}

type traceWriter struct{ ev *events }

func (w traceWriter) Write(p []byte) (int, error) {
	*w.ev = append(*w.ev, fmt.Sprintf("send %d", len(p)))
	return len(p), nil
}

// Each chunk the gate passes on is preceded by the access record of the
// records revealed before it; if recording fails, nothing is passed on.
func TestAccessGateRecordsBeforeSending(t *testing.T) {
	var ev events
	tp := &tracePrivacy{ev: &ev}
	s := &Server{cfg: Config{Privacy: tp}, log: slog.New(slog.DiscardHandler)}
	r := httptest.NewRequest("GET", "/v1/export", nil)
	r.Pattern = "GET /v1/export"
	hook, acc := s.revealer(r.Context())
	gate := &accessGate{s: s, r: r, acc: acc, w: traceWriter{&ev}}
	row := make([]byte, gateChunk/2)
	for seq := range uint64(5) {
		if err := hook(r.Context(), &record.Record{Seq: seq}); err != nil {
			t.Fatal(err)
		}
		if _, err := gate.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := gate.Flush(); err != nil {
		t.Fatal(err)
	}
	want := events{"access [0 1]", fmt.Sprint("send ", gateChunk), "access [2 3]", fmt.Sprint("send ", gateChunk), "access [4]", fmt.Sprint("send ", gateChunk/2)}
	if fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Fatalf("trace %v, want %v", ev, want)
	}

	ev = nil
	tp.fail = true
	if err := hook(r.Context(), &record.Record{Seq: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := gate.Write(row); err != nil {
		t.Fatal(err)
	}
	if err := gate.Flush(); !errors.Is(err, errAccessNotRecorded) || len(ev) != 0 {
		t.Fatalf("failed recording: %v, trace %v", err, ev)
	}
}

// TestHandlerPanicIsA500 checks a panicking handler answers a JSON 500
// instead of dropping the connection.
func TestHandlerPanicIsA500(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	h := s.recovering("GET /x", func(http.ResponseWriter, *http.Request) {
		var xs []int
		_ = xs[len(xs)] // out of range: a runtime panic, as a damaged value's slice bounds were
	})
	rec := httptest.NewRecorder()
	h(&statusRecorder{ResponseWriter: rec}, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), `"error":"internal error in GET /x`) {
		t.Fatalf("got %d %s, want a JSON 500", rec.Code, rec.Body.String())
	}
}
