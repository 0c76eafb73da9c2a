package capture

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/stele/stele/record"
)

// TestTxBufferMemoryBounded: a transaction far larger than the limit
// holds in memory at most the records that fit under it — after the
// first spill none at all — and replays every record in order.
func TestTxBufferMemoryBounded(t *testing.T) {
	dir := t.TempDir()
	spilled := ""
	b := &TxBuffer{Limit: 64 << 10, Dir: dir, OnSpill: func(f string) { spilled = f }}
	defer b.Discard()
	const n = 20_000
	maxHeld := 0
	for i := range n {
		r := &record.Record{Op: record.OpInsert, Key: json.RawMessage(fmt.Sprintf(`{"id":%d}`, i)), After: json.RawMessage(fmt.Sprintf(`{"id":%d,"pad":"%0200d"}`, i, i))}
		if err := b.Add(r); err != nil {
			t.Fatal(err)
		}
		maxHeld = max(maxHeld, b.Held())
	}
	// Each record counts its images and 256 bytes: the limit holds ~130.
	if maxHeld > (64<<10)/256 || b.Held() != 0 {
		t.Errorf("held at most %d records in memory (%d at the end), want at most %d and none after the spill", maxHeld, b.Held(), (64<<10)/256)
	}
	if spilled == "" || !b.Spilled() || b.Len() != n {
		t.Fatalf("spilled %q, len %d", spilled, b.Len())
	}
	next := 0
	err := b.Replay(1000, func(batch []*record.Record) error {
		if len(batch) > 1000 {
			t.Errorf("batch of %d", len(batch))
		}
		for _, r := range batch {
			if want := fmt.Sprintf(`{"id":%d}`, next); string(r.Key) != want {
				t.Fatalf("record %d has key %s, want %s", next, r.Key, want)
			}
			next++
		}
		return nil
	})
	if err != nil || next != n {
		t.Fatalf("replayed %d of %d: %v", next, n, err)
	}
	b.Discard()
	if _, err := os.Stat(spilled); !os.IsNotExist(err) {
		t.Errorf("spill file left behind: %v", err)
	}
}
