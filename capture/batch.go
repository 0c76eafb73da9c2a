package capture

import (
	"context"
	"encoding/json"
	"time"

	"github.com/stele/stele/record"
)

// Batcher appends records to a sink in batches of Size, on the caller's
// goroutine, waiting out overload (AppendRetry): for what a source
// appends outside its Acknowledger, such as an initial snapshot, whose
// position is stored only after the last batch.
type Batcher struct {
	Sink Sink
	Size int
	// Progress, when set, counts the appended records.
	Progress *Progress
	batch    []*record.Record
}

// Add queues r, appending the batch once it holds Size records.
func (b *Batcher) Add(ctx context.Context, r *record.Record) error {
	b.batch = append(b.batch, r)
	if len(b.batch) >= max(b.Size, 1) {
		return b.Flush(ctx)
	}
	return nil
}

// Flush appends the queued records. The next batch gets a new slice: the
// sink may keep the one it was given.
func (b *Batcher) Flush(ctx context.Context) error {
	if len(b.batch) == 0 {
		return nil
	}
	if _, err := AppendRetry(ctx, b.Sink, b.batch); err != nil {
		return err
	}
	if b.Progress != nil {
		b.Progress.Appended(len(b.batch))
	}
	b.batch = nil
	return nil
}

// SnapshotMarker is the record a source appends after the last row of a
// complete initial snapshot, under src (its Table set to "$snapshot").
// Its id depends only on src and txPosition, so a source restarted after a
// crash finds out, by looking the id up, whether its snapshot completed;
// after describes the snapshot (position, rows) and stays out of the id.
func SnapshotMarker(src record.Source, txPosition string, after map[string]any, at time.Time) *record.Record {
	img, _ := json.Marshal(after)
	img, _ = record.Canonical(img)
	idx := int64(0)
	src.Table = "$snapshot"
	r := &record.Record{
		Op:         record.OpSnapshot,
		Source:     src,
		Key:        json.RawMessage(`{"$snapshot":"complete"}`),
		After:      img,
		Actor:      json.RawMessage(`{"id":"unknown","type":"unknown"}`),
		Tx:         &record.Tx{Position: txPosition, Index: &idx},
		OccurredAt: at,
	}
	r.ID = record.DeriveID(r)
	return r
}
