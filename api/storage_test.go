package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele/api"
	"github.com/stele/stele/internal/vfs"
	"github.com/stele/stele/logstore"
)

// TestFullDiskAnswers507AndResumes drives a full disk through the FS seam:
// the batch that hits it is answered 507 and is absent, /healthz and
// /metrics say writes are refused, and appends resume once space is back.
func TestFullDiskAnswers507AndResumes(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(nil)
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log", FS: efs, ProbeInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Log: store, Registry: prometheus.NewRegistry()}))
	defer srv.Close()
	defer store.Close()
	post := func(body string) (int, string) {
		resp, err := http.Post(srv.URL+"/v1/records", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("[" + rec(1, `"id":"a"`) + "]"); code != http.StatusCreated {
		t.Fatalf("first batch: %d %s", code, body)
	}
	// Every write fails, as on a real full disk: the store's probe writes its
	// own file, and a fault on records.log alone let it resume at once.
	fault := efs.Add(&vfs.Fault{Op: vfs.OpWrite, Err: syscall.ENOSPC, After: 100})
	code, body := post("[" + rec(2, `"id":"b"`) + "," + rec(3, `"id":"c"`) + "]")
	if code != http.StatusInsufficientStorage || !strings.Contains(body, "free space") {
		t.Fatalf("batch on a full disk: %d %s, want 507 saying what to do", code, body)
	}
	if store.Size() != 1 {
		t.Fatalf("the refused batch left %d records", store.Size())
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, api.StatusNotAcceptingWrites) {
		t.Fatalf("/healthz on a full disk: %d %s", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "stele_log_accepting_writes 0") {
		t.Fatalf("/metrics on a full disk lacks stele_log_accepting_writes 0")
	}
	fault.Off()
	deadline := time.Now().Add(30 * time.Second) // a hang guard, not a threshold
	for store.WriteErr() != nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if code, body := post("[" + rec(2, `"id":"b"`) + "," + rec(3, `"id":"c"`) + "]"); code != http.StatusCreated {
		t.Fatalf("resubmitted batch after space freed: %d %s", code, body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after recovery: %d %s", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "stele_log_accepting_writes 1") {
		t.Fatalf("/metrics after recovery lacks stele_log_accepting_writes 1")
	}
	if store.Size() != 3 {
		t.Fatalf("size %d, want 3", store.Size())
	}
	store.Close()
	if _, err := logstore.VerifyDir(context.Background(), dir, logstore.VerifyOptions{}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}
