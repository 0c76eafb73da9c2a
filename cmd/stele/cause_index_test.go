package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// A data directory whose index was written before the cause list (format
// v3) holds events and the changes they caused: the server refuses the old
// index, sets it aside and rebuilds it, after which GET /v1/records?cause=
// lists the changes and the event's record page links to them.
func TestOldIndexGetsCauseList(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := t.TempDir()
	store, err := logstore.Open(ctx, data, logstore.Options{Origin: "stele.local/log"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ingest := func(i int, s string) *record.Record {
		r, err := record.ParseIngest([]byte(s), record.IngestOptions{Now: at.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	event := ingest(0, `{"source":{"name":"shop","table":"outbox"},"op":"event","key":{"id":"a1"},"after":{"type":"OrderPlaced"}}`)
	cause, _ := json.Marshal(map[string]string{"record_id": event.ID, "type": "OrderPlaced"})
	recs := []*record.Record{event}
	for i := 1; i <= 3; i++ {
		c := "null"
		if i != 2 {
			c = string(cause)
		}
		recs = append(recs, ingest(i, fmt.Sprintf(`{"source":{"name":"shop","table":"orders"},"op":"insert","key":{"id":%d},"after":{"id":%d},"cause":%s}`, i, i, c)))
	}
	if _, err := store.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// What an index of the previous format looks like to this one: its
	// merger's name, and a watermark saying every record is indexed (so
	// were it read, the cause list would be empty, not missing).
	old, err := pebble.Open(filepath.Join(data, "index"), &pebble.Options{Merger: &pebble.Merger{Name: "stele.index.v3", Merge: pebble.DefaultMerger.Merge}})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Set([]byte{'W'}, binary.BigEndian.AppendUint64(nil, uint64(len(recs))), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	base, stop := serveDir(t, ctx, data)
	defer stop()
	var page struct {
		Records []struct {
			ID  string `json:"id"`
			Key struct {
				ID int `json:"id"`
			} `json:"key"`
		} `json:"records"`
	}
	code, body, _ := get(t, base+"/v1/records?order=asc&cause="+url.QueryEscape(event.ID))
	if code != http.StatusOK {
		t.Fatalf("GET ?cause=: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 2 || page.Records[0].Key.ID != 1 || page.Records[1].Key.ID != 3 {
		t.Fatalf("GET ?cause=%s: %s, want the changes of keys 1 and 3", event.ID, body)
	}
	if aside, _ := filepath.Glob(filepath.Join(data, "index.*")); len(aside) == 0 {
		t.Error("the old index was not set aside")
	}
	code, body, h := get(t, base+"/v1/records/0")
	want := "/v1/records?cause=" + url.QueryEscape(event.ID)
	if code != http.StatusOK || !strings.Contains(body, `"caused":"`+want+`"`) || !strings.Contains(h.Get("Link"), want) {
		t.Errorf("the event's record page: %d, Link %q, body %.300s; want a link to %s", code, h.Get("Link"), body, want)
	}
	code, body, h = get(t, base+"/v1/records/1")
	if code != http.StatusOK || strings.Contains(body, `"caused"`) || h.Get("Link") != "" {
		t.Errorf("a change's record page links to caused changes: %d, Link %q", code, h.Get("Link"))
	}
}
