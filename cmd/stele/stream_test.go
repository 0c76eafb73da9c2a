package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/publish"
	"github.com/stele/stele/record"
)

func TestStreamConfig(t *testing.T) {
	cfg, err := loadTest(t, "stream:\n  nats_url: nats://file:4222\n  format: debezium\n  listen: none\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (StreamConfig{NATSURL: "nats://file:4222", Format: "debezium", Listen: "none"}); cfg.Stream != want {
		t.Fatalf("stream config %+v, want %+v", cfg.Stream, want)
	}
	// STELE_NATS_URL over the file, the flag over both.
	cfg, err = loadTest(t, "stream: {enabled: false, nats_url: nats://file:4222}\n",
		map[string]string{"STELE_NATS_URL": "nats://env:4222", "STELE_STREAM_ENABLED": "true"}, "--stream-format", "cloudevents")
	if err != nil {
		t.Fatal(err)
	}
	if want := (StreamConfig{NATSURL: "nats://env:4222", Format: "cloudevents"}); cfg.Stream != want {
		t.Fatalf("stream config %+v, want %+v", cfg.Stream, want)
	}

	for _, tc := range []struct {
		yaml  string
		env   map[string]string
		wants []string
	}{
		{yaml: "stream:\n  format: avro\n", wants: []string{"stream.format", "line 2", "debezium"}},
		{yaml: "stream:\n  enabled: maybe\n", wants: []string{"stream.enabled", "true or false"}},
		{yaml: "stream:\n  natsurl: nats://x\n", wants: []string{`stream: unknown key "natsurl"`, "nats_url"}},
		{yaml: "stream: on\n", wants: []string{"stream", "mapping"}},
		{yaml: "stream:\n  listen: 4222\n", wants: []string{"stream.listen", "host:port"}},
		{env: map[string]string{"STELE_NATS_URL": "localhost:4222"}, wants: []string{"STELE_NATS_URL", "nats://"}},
	} {
		_, err := loadTest(t, tc.yaml, tc.env)
		if err == nil {
			t.Errorf("%q %v: no error", tc.yaml, tc.env)
			continue
		}
		for _, w := range tc.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	}
}

// The wiring publishes appended records on the embedded server, where a
// client in another process reads them over TCP, and reports the backlog.
func TestStartStreamEmbedded(t *testing.T) {
	dir := t.TempDir()
	store, err := logstore.Open(context.Background(), filepath.Join(dir, "log"), logstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := defaultConfig()
	cfg.Data = dir
	cfg.Stream = StreamConfig{Listen: addr, Format: "debezium"}
	reg := prometheus.NewRegistry()
	stop, err := startStream(cfg, store, reg, nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, err := store.Append(context.Background(), []*record.Record{{
		ID: "r1", Source: record.Source{Name: "crm", Kind: "http", Table: "customers"}, Op: record.OpInsert,
		Key: json.RawMessage(`{"id":1}`), After: json.RawMessage(`{"id":1}`), OccurredAt: time.Now(),
	}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for backlog := -1.0; backlog != 0; {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "stele_stream_backlog_records" {
				backlog = mf.Metric[0].GetGauge().GetValue()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog still %v", backlog)
		}
		time.Sleep(10 * time.Millisecond)
	}

	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, publish.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Data struct {
			Op    string         `json:"op"`
			After map[string]any `json:"after"`
		} `json:"data"`
	}
	if err := json.Unmarshal(msg.Data, &ev); err != nil || msg.Subject != "stele.lineage.crm.customers.insert" || ev.Data.Op != "c" || ev.Data.After["id"] != 1.0 {
		t.Fatalf("message on %s: %s (%v); want a Debezium insert of the record", msg.Subject, msg.Data, err)
	}
}

// A cluster node publishes only while it leads: fn starts each time lead
// starts holding and its context ends each time lead stops, or the server
// stops.
func TestRunWhileLeading(t *testing.T) {
	var leading atomic.Bool
	started, stopped := make(chan struct{}, 4), make(chan struct{}, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runWhileLeading(ctx, leading.Load, func(ctx context.Context) {
			started <- struct{}{}
			<-ctx.Done()
			stopped <- struct{}{}
		})
	}()
	for range 2 {
		leading.Store(true)
		<-started
		leading.Store(false)
		<-stopped
	}
	leading.Store(true)
	<-started
	cancel()
	<-stopped
	<-done
	if len(started) != 0 || len(stopped) != 0 {
		t.Fatalf("fn started %d more times and stopped %d more than lead allowed", len(started), len(stopped))
	}
}

// One machine and partition main publish where they always did; another
// partition gets a stream and subjects of its own, which may not overlap
// main's on one NATS cluster.
func TestLineagePlace(t *testing.T) {
	for _, tc := range []struct {
		cluster             ClusterConfig
		stream, subjectsPfx string
	}{
		{ClusterConfig{}, "STELE_LINEAGE", "stele.lineage"},
		{ClusterConfig{URLs: "nats://a:4222"}, "STELE_LINEAGE", "stele.lineage"},
		{ClusterConfig{URLs: "nats://a:4222", Log: "main"}, "STELE_LINEAGE", "stele.lineage"},
		{ClusterConfig{URLs: "nats://a:4222", Log: "billing"}, "STELE_LINEAGE_BILLING", "stele.lineage_billing"},
	} {
		st, pfx := lineagePlace(Config{Cluster: tc.cluster})
		if st != tc.stream || pfx != tc.subjectsPfx {
			t.Errorf("%+v: stream %s, prefix %s; want %s, %s", tc.cluster, st, pfx, tc.stream, tc.subjectsPfx)
		}
	}
}
