package capture

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

func TestBatcher(t *testing.T) {
	ctx := context.Background()
	g := &gateSink{release: make(chan struct{})}
	close(g.release)
	var p Progress
	b := Batcher{Sink: g, Size: 3, Progress: &p}
	for _, r := range recsOf(7) {
		if err := b.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil { // nothing queued: no append
		t.Fatal(err)
	}
	if !slices.Equal(g.sizes, []int{3, 3, 1}) || p.Snapshot().RecordsTotal != 7 {
		t.Errorf("appends %v, %d counted; want [3 3 1] and 7", g.sizes, p.Snapshot().RecordsTotal)
	}
	boom := errors.New("disk full")
	f := Batcher{Sink: &gateSink{release: g.release, fail: boom}, Size: 1}
	if err := f.Add(ctx, recsOf(1)[0]); !errors.Is(err, boom) {
		t.Errorf("Add = %v, want the sink's error", err)
	}
}

// A snapshot marker's id names the source and its snapshot, not what the
// snapshot held: a restarted source finds the marker it wrote before.
func TestSnapshotMarkerIDIgnoresItsDescription(t *testing.T) {
	src := record.Source{Name: "crm", Kind: "postgres", Database: "db"}
	a := SnapshotMarker(src, "snapshot/s1", map[string]any{"rows": 0}, time.Time{})
	b := SnapshotMarker(src, "snapshot/s1", map[string]any{"rows": 42, "position": "0/1"}, time.Unix(1767225600, 0))
	if a.ID != b.ID || a.Source.Table != "$snapshot" || a.Op != record.OpSnapshot {
		t.Fatalf("markers %s (%s %s) and %s", a.ID, a.Source.Table, a.Op, b.ID)
	}
	if c := SnapshotMarker(src, "snapshot/s2", nil, time.Time{}); c.ID == a.ID {
		t.Fatal("two slots' snapshots share a marker id")
	}
	other := src
	other.Name = "billing"
	if c := SnapshotMarker(other, "snapshot/s1", nil, time.Time{}); c.ID == a.ID {
		t.Fatal("two sources share a marker id")
	}
}
