package index

import (
	"errors"
	"testing"

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
