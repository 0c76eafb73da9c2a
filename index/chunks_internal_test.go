package index

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// An index written before lists were chunked holds one key per posting,
// which the chunk reader cannot read: opening it must say it is
// incompatible, so the server sets it aside and rebuilds it.
func TestOpenRefusesUnchunkedIndex(t *testing.T) {
	refusesFormat(t, "stele.index.v2")
}

// An index written before the cause list (v3) lacks the postings of every
// change caused by an event: it too must be rebuilt.
func TestOpenRefusesIndexWithoutCauseList(t *testing.T) {
	refusesFormat(t, "stele.index.v3")
}

// v4 indexes have no time blocks: a time window would find nothing in them.
func TestOpenRefusesIndexWithoutTimeBlocks(t *testing.T) {
	refusesFormat(t, "stele.index.v4")
}

func refusesFormat(t *testing.T, merger string) {
	t.Helper()
	dir := t.TempDir()
	old := &pebble.Merger{Name: merger, Merge: indexMerger.Merge}
	db, err := pebble.Open(dir, &pebble.Options{Merger: old})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open of a %s index = %v, want ErrIncompatible", merger, err)
	}
}

// Operands handed over newest first (forward iteration) or oldest first
// (compaction) join in seq order either way.
func TestConcatMergerKeepsOperandOrder(t *testing.T) {
	m, err := indexMerger.Merge([]byte{pTable, 'x'}, []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.MergeOlder([]byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := m.MergeOlder([]byte("0")); err != nil {
		t.Fatal(err)
	}
	if err := m.MergeNewer([]byte("3")); err != nil {
		t.Fatal(err)
	}
	got, _, err := m.Finish(true)
	if err != nil || string(got) != "0123" {
		t.Fatalf("merged %q %v, want 0123", got, err)
	}
}

// A time block's span is the earliest and latest occurred_at of its
// operands whatever their order, years before 1970 included.
func TestSpanMergerKeepsEarliestAndLatest(t *testing.T) {
	span := func(a, b time.Time) []byte {
		v := make([]byte, timeSpanSize)
		putOccurredAt(v, a)
		putOccurredAt(v[postingValueSize:], b)
		return v
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC)
	old := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	m, err := indexMerger.Merge(timeBlockKey(3), span(t0, t0.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []func([]byte) error{m.MergeOlder, m.MergeNewer, m.MergeOlder} {
		if err := op(span(t0.Add(time.Minute), t0.Add(2*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.MergeNewer(span(old, t0)); err != nil {
		t.Fatal(err)
	}
	if err := m.MergeOlder(span(t0.Add(-time.Nanosecond), t0.Add(3*time.Hour))); err != nil {
		t.Fatal(err)
	}
	got, _, err := m.Finish(true)
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := occurredAt(got[:postingValueSize]), occurredAt(got[postingValueSize:]); !lo.Equal(old) || !hi.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("span %v..%v, want %v..%v", lo, hi, old, t0.Add(3*time.Hour))
	}
	if err := m.MergeNewer([]byte("short")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a malformed operand: %v, want ErrCorrupt", err)
	}
}
