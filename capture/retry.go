package capture

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/record"
)

// AppendRetry appends batch to sink, waiting out the log's overload
// pushback (stele.ErrOverloaded: nothing was appended, try again shortly)
// with a doubling wait from 10ms up to 1s. Any other error is returned
// wrapped with the batch size; ctx ends the wait.
func AppendRetry(ctx context.Context, sink Sink, batch []*record.Record) ([]stele.Appended, error) {
	wait := 10 * time.Millisecond
	for {
		out, err := sink.Append(ctx, batch)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, stele.ErrOverloaded) {
			return nil, fmt.Errorf("append %d records to the log: %w", len(batch), err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, time.Second)
	}
}
