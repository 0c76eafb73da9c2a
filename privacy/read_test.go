package privacy

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/record"
)

// events is one ordered trace of access records and bytes sent.
type events []string

// traceReads reveals every record with one clear value and notes access
// records in the trace; recording fails while fail is set.
type traceReads struct {
	ev   *events
	fail bool
}

func (p *traceReads) Reveal(context.Context, auth.Role, *record.Record) (int, error) { return 1, nil }

func (p *traceReads) RecordAccess(_ context.Context, by auth.Principal, endpoint string, seqs []uint64, fields int) error {
	if p.fail {
		return errors.New("log unavailable")
	}
	*p.ev = append(*p.ev, fmt.Sprint("access ", by.Name, " ", endpoint, " ", seqs, " ", fields))
	return nil
}

type traceWriter struct{ ev *events }

func (w traceWriter) Write(p []byte) (int, error) {
	*w.ev = append(*w.ev, fmt.Sprintf("send %d", len(p)))
	return len(p), nil
}

// Each chunk the gate passes on is preceded by the access record of the
// records revealed before it; if recording fails, nothing is passed on.
func TestGatedWriterRecordsBeforeSending(t *testing.T) {
	ctx := context.Background()
	var ev events
	tr := &traceReads{ev: &ev}
	rd := NewReadGuard(tr, tr, nil).Read(auth.Principal{Name: "carol", Role: auth.RoleAuditor}, "GET /v1/export")
	gate := rd.Writer(ctx, traceWriter{&ev})
	row := make([]byte, GateChunk/2)
	for seq := range uint64(5) {
		if err := rd.Reveal(ctx, &record.Record{Seq: seq}); err != nil {
			t.Fatal(err)
		}
		if _, err := gate.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := gate.Flush(); err != nil {
		t.Fatal(err)
	}
	want := events{"access carol GET /v1/export [0 1] 2", fmt.Sprint("send ", GateChunk), "access carol GET /v1/export [2 3] 2", fmt.Sprint("send ", GateChunk),
		"access carol GET /v1/export [4] 1", fmt.Sprint("send ", GateChunk/2)}
	if fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Fatalf("trace %v, want %v", ev, want)
	}

	ev = nil
	tr.fail = true
	if err := rd.Reveal(ctx, &record.Record{Seq: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := gate.Write(row); err != nil {
		t.Fatal(err)
	}
	if err := gate.Flush(); !errors.Is(err, ErrAccessNotRecorded) || len(ev) != 0 {
		t.Fatalf("failed recording: %v, trace %v", err, ev)
	}
}

// Commit names each record once, in ascending order, and a read with
// nothing in clear records nothing; a nil guard reveals and records
// nothing.
func TestReadCommitDedupsAndSkipsEmpty(t *testing.T) {
	ctx := context.Background()
	var ev events
	tr := &traceReads{ev: &ev}
	rd := NewReadGuard(tr, tr, nil).Read(auth.Principal{Name: "a"}, "POST /graphql")
	if err := rd.Commit(ctx); err != nil || len(ev) != 0 {
		t.Fatalf("empty commit: %v, %v", err, ev)
	}
	for _, seq := range []uint64{7, 3, 7} {
		_ = rd.Reveal(ctx, &record.Record{Seq: seq})
	}
	if err := rd.Commit(ctx); err != nil || fmt.Sprint(ev) != "[access a POST /graphql [3 7] 3]" {
		t.Fatalf("commit: %v, %v", err, ev)
	}
	var none *ReadGuard
	nrd := none.Read(auth.Principal{Role: auth.RoleAdmin}, "GET /v1/records")
	r := &record.Record{After: []byte(`{"x":1}`)}
	if err := nrd.Reveal(ctx, r); err != nil || nrd.Pending() || nrd.Commit(ctx) != nil || string(r.After) != `{"x":1}` {
		t.Fatal("a nil guard changed or recorded something")
	}
}

// With nothing in clear to record, the first bytes leave after
// GateFirstFlush and each flush doubles the next, up to GateFlush: a
// reader wanting the first lines of a long stream gets them early.
func TestGatedWriterFlushesEarlyThenLarger(t *testing.T) {
	ctx := context.Background()
	var ev events
	var none *ReadGuard
	rd := none.Read(auth.Principal{Role: auth.RoleAdmin}, "GET /v1/tables/crm/customers/state")
	gate := rd.Writer(ctx, traceWriter{&ev})
	line := make([]byte, 1<<10)
	for range 256 {
		if _, err := gate.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	var want events
	for n := GateFirstFlush; len(want) < 8; n = min(2*n, GateFlush) {
		want = append(want, fmt.Sprint("send ", n))
	}
	// 4+8+16+32+64+64+64 KiB = 252 of the 256 KiB written; 4 KiB held.
	if fmt.Sprint(ev) != fmt.Sprint(want[:7]) {
		t.Fatalf("trace %v, want %v", ev, want[:7])
	}
	if err := gate.Flush(); err != nil || fmt.Sprint(ev[7:]) != "[send 4096]" {
		t.Fatalf("final flush: %v, trace %v", err, ev)
	}
}
