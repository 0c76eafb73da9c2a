package logstore_test

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestChangedClosesOnCommit(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ch := s.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any append")
	default:
	}
	appendN(t, s, 0, 3)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed after an append")
	}
	if again := s.Changed(); again == ch {
		t.Fatal("Changed returned the closed channel again")
	}
}

func TestWaitSize(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- s.WaitSize(context.Background(), 4) }()
	appendN(t, s, 0, 2)
	appendN(t, s, 2, 2)
	select {
	case err := <-done:
		t.Fatalf("WaitSize(4) returned at size 4 with %v; want it to wait for a 5th record", err)
	case <-time.After(50 * time.Millisecond):
	}
	appendN(t, s, 4, 1)
	if err := <-done; err != nil {
		t.Fatalf("WaitSize: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitSize(ctx, 100); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitSize on a cancelled context: got %v, want context.Canceled", err)
	}
}
