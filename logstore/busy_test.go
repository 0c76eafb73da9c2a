package logstore_test

import (
	"testing"
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
