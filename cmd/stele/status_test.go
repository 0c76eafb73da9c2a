package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/internal/pgtest"
)

func TestStatus(t *testing.T) {
	url := pgtest.Start(t, pgtest.Options{}).URL("postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE orders (id int PRIMARY KEY, total numeric)"); err != nil {
		t.Fatal(err)
	}

	sc, err := sourceFromURL(url)
	if err != nil {
		t.Fatal(err)
	}
	sc.Name = "shop"
	if err := sc.validate(); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = t.TempDir(), "127.0.0.1:0"
	cfg.Sources = &[]SourceConfig{sc}
	addrFile := filepath.Join(t.TempDir(), "addr")
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	base, err := waitReady(ctx, addrFile, served)
	if err != nil {
		t.Fatal(err)
	}

	// Wait until the source streams, then write.
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'stele_shop' AND active").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the source never started streaming")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 40) g"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for {
		out.Reset()
		if err := printStatus(ctx, base, "", &out, 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "log size    40 records") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("records never arrived:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"health      ok", "checkpoint  size", "root ", "shop", "streaming", "RECORDS/S", "stream      0 records (0.0s) behind the log"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
	var line string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "shop ") {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) != 6 || f[1] != "streaming" || f[4] != "40" {
		t.Errorf("source line %q, want shop streaming … 40 records", line)
	}
	t.Logf("stele status:\n%s", out.String())
}

func TestParseSample(t *testing.T) {
	for _, tc := range []struct {
		line   string
		name   string
		labels map[string]string
		value  float64
		ok     bool
	}{
		{`stele_log_size 42`, "stele_log_size", map[string]string{}, 42, true},
		{`stele_source_up{source="a\"b",state="streaming"} 1`, "stele_source_up", map[string]string{"source": `a"b`, "state": "streaming"}, 1, true},
		{`stele_source_lag_seconds{source="x"} 1.5e-3`, "stele_source_lag_seconds", map[string]string{"source": "x"}, 0.0015, true},
		{`# HELP stele_log_size Number`, "", nil, 0, false},
		{`broken{source="x 1`, "", nil, 0, false},
	} {
		name, labels, v, ok := parseSample(tc.line)
		if ok != tc.ok || name != tc.name || v != tc.value || len(labels) != len(tc.labels) {
			t.Errorf("%s: got %q %v %v %v", tc.line, name, labels, v, ok)
			continue
		}
		for k, want := range tc.labels {
			if labels[k] != want {
				t.Errorf("%s: label %s = %q, want %q", tc.line, k, labels[k], want)
			}
		}
	}
}
