package capture

import (
	"context"
	"errors"
	"slices"
	"testing"
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
