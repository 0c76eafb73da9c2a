package logstore_test

import (
	"context"
	"testing"
	"time"
)

// TestAppendBusyCountsAppends: no time before the first append, some after
// it, and never less later.
func TestAppendBusyCountsAppends(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	if b := s.AppendBusy(); b != 0 {
		t.Fatalf("AppendBusy %v before any append, want 0", b)
	}
	appendN(t, s, 0, 50)
	first := s.AppendBusy()
	if first <= 0 {
		t.Fatalf("AppendBusy %v after an append, want more than 0", first)
	}
	if again := s.AppendBusy(); again != first {
		t.Fatalf("AppendBusy moved from %v to %v with no append in progress", first, again)
	}
	appendN(t, s, 50, 50)
	if later := s.AppendBusy(); later <= first {
		t.Fatalf("AppendBusy %v after a second append, want more than %v", later, first)
	}
}

// An AppendAsync is in progress from the call until its caller has the
// answer, as an Append is: the lineage publisher's flow control sees a
// pipelined capture source's burst too.
func TestAppendBusyCountsAsyncAppends(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	wait, _, err := s.AppendAsync(ctx, testRecords(0, 50), nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if b := s.AppendBusy(); b < 20*time.Millisecond {
		t.Fatalf("AppendBusy %v while an async append waits for its answer, want at least 20ms", b)
	}
	if _, err := wait(ctx); err != nil {
		t.Fatal(err)
	}
	done := s.AppendBusy()
	time.Sleep(5 * time.Millisecond)
	if again := s.AppendBusy(); again != done {
		t.Fatalf("AppendBusy moved from %v to %v after the answer", done, again)
	}
}
