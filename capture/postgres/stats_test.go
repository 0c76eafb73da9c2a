package postgres

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/internal/pgtest"
)

func TestStats(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := newDB(t, srv, "statsdb", "CREATE TABLE items (id int PRIMARY KEY, v text)")
	store := openStore(t, t.TempDir())
	src, err := New(Config{ConnString: url, Heartbeat: 100 * time.Millisecond, MinBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if st := src.Stats(); st.State != capture.StateConnecting || src.Config().Slot != "stele_statsdb" || st.RecordsTotal != 0 {
		t.Fatalf("before Run: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, store) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitSlot(t, url, "stele_statsdb")

	execIn(t, url,
		"INSERT INTO items SELECT g, 'x' FROM generate_series(1, 250) g",
		"UPDATE items SET v = 'y' WHERE id <= 10",
		"DELETE FROM items WHERE id > 240",
	)
	const want = 250 + 10 + 10
	store.records(t, want)

	// Once idle, the keepalives move the flushed position to the server's
	// WAL end: no lag.
	deadline := time.Now().Add(20 * time.Second)
	var st capture.Stats
	for {
		st = src.Stats()
		if st.RecordsTotal == want && st.LagBytes == 0 && st.LagSeconds == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never settled: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.State != capture.StateStreaming || st.LastError != "" || st.Position == "0/0" || !strings.Contains(st.Position, "/") {
		t.Errorf("stats = %+v", st)
	}
}

func TestStatsFailed(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	src, err := New(Config{ConnString: srv.PasswordURL("postgres", "wrong-pw-123"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.Run(ctx, openStore(t, t.TempDir())); err == nil {
		t.Fatal("Run with a wrong password succeeded")
	}
	st := src.Stats()
	if st.State != capture.StateFailed || st.LastError == "" || strings.Contains(st.LastError, "wrong-pw-123") {
		t.Errorf("stats = %+v", st)
	}
}
