package logstore_test

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/vfs"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

func testRecords(from, n int) []*record.Record {
	recs := make([]*record.Record, n)
	for i := range recs {
		recs[i] = testRecord(from + i)
	}
	return recs
}

// TestAppendAsyncKeepsQueueOrder: batches queued one after another without
// waiting are stored in the order queued, each answered as Append would.
func TestAppendAsyncKeepsQueueOrder(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	var waits []func(context.Context) ([]stele.Appended, error)
	var after func() bool
	for b := range 5 {
		wait, failed, err := s.AppendAsync(ctx, testRecords(b*100, 100), after)
		if err != nil {
			t.Fatalf("queue batch %d: %v", b, err)
		}
		waits, after = append(waits, wait), failed
	}
	for b, wait := range waits {
		res, err := wait(ctx)
		if err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		for i, r := range res {
			if r.Duplicate || r.Seq != uint64(b*100+i) {
				t.Fatalf("batch %d record %d: %+v, want seq %d", b, i, r, b*100+i)
			}
		}
	}
	if after() {
		t.Fatal("the last batch reports a failure")
	}
	for seq := range uint64(500) {
		r, err := s.Read(seq)
		if err != nil || r.ID != testRecord(int(seq)).ID {
			t.Fatalf("seq %d: %v %v", seq, r, err)
		}
	}
}

// TestAppendAsyncAfterAFailure: a batch queued behind one that failed (a
// full disk) is refused even once the disk has room again, so the caller's
// records are never stored after a gap; appends without the chain resume.
func TestAppendAsyncAfterAFailure(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(nil)
	s := openFS(t, dir, efs)
	defer s.Close()
	ctx := context.Background()
	appendN(t, s, 0, 10)
	fault := efs.Add(&vfs.Fault{Op: vfs.OpWrite, Match: "records.log", Err: syscall.ENOSPC})
	wait, failed, err := s.AppendAsync(ctx, testRecords(10, 10), nil)
	if err != nil {
		t.Fatalf("queue: %v", err)
	}
	if _, err := wait(ctx); !errors.Is(err, logstore.ErrNoSpace) {
		t.Fatalf("append on a full disk: %v, want ErrNoSpace", err)
	}
	if !failed() {
		t.Fatal("the failed append does not report it")
	}
	fault.Off()
	waitWritable(t, s)
	wait2, failed2, err := s.AppendAsync(ctx, testRecords(20, 10), failed)
	if err != nil {
		t.Fatalf("queue behind the failed one: %v", err)
	}
	if _, err := wait2(ctx); !errors.Is(err, logstore.ErrEarlierFailed) {
		t.Fatalf("append queued behind a failed one: %v, want ErrEarlierFailed", err)
	}
	if !failed2() || s.Size() != 10 {
		t.Fatalf("failed %v, size %d: the refused batch was stored", failed2(), s.Size())
	}
	appendN(t, s, 10, 10)
}
