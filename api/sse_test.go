package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/api"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

type streamEnv struct {
	api   *api.Server
	srv   *httptest.Server
	store *logstore.Store
}

func newStreamEnv(t *testing.T, heartbeat time.Duration) *streamEnv {
	t.Helper()
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := logstore.Open(context.Background(), dir, logstore.Options{Origin: "test.example/log", Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	a := api.New(api.Config{Log: store, Query: query.New(store, ix), StreamHeartbeat: heartbeat})
	e := &streamEnv{api: a, srv: httptest.NewServer(a), store: store}
	t.Cleanup(func() {
		e.srv.Close()
		store.Close()
		ix.Close()
	})
	return e
}

// streamRec is record i: tables alternate, ops cycle insert/update/delete,
// actors alternate alice/bob, keys cycle 0..4.
func streamRec(i int) *record.Record {
	ops := []record.Op{record.OpInsert, record.OpUpdate, record.OpDelete}
	return &record.Record{
		ID:         fmt.Sprintf("sse-%d", i),
		Source:     record.Source{Name: "crm", Kind: "http", Table: []string{"customers", "orders"}[i%2]},
		Op:         ops[i%3],
		Key:        json.RawMessage(fmt.Sprintf(`{"id":%d}`, i%5)),
		After:      json.RawMessage(fmt.Sprintf(`{"id":%d}`, i%5)),
		Actor:      json.RawMessage(fmt.Sprintf(`{"id":%q}`, []string{"alice", "bob"}[i%2])),
		OccurredAt: testNow,
	}
}

func (e *streamEnv) appendRecs(t *testing.T, from, to int) {
	t.Helper()
	var recs []*record.Record
	for i := from; i < to; i++ {
		recs = append(recs, streamRec(i))
	}
	if _, err := e.store.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

type sseEvent struct {
	id, data string
	hasID    bool
}

type sseClient struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
	lines  chan string // every line, comments included
	done   chan struct{}
}

// openStream opens GET path; lastEventID is sent when non-empty.
func (e *streamEnv) openStream(t *testing.T, path, lastEventID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+path, nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("GET %s: status %d, content type %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{resp: resp, cancel: cancel, events: make(chan sseEvent, 1024), lines: make(chan string, 4096), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			select {
			case c.lines <- line:
			default:
			}
			switch {
			case line == "":
				if ev.hasID || ev.data != "" {
					c.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id, ev.hasID = line[4:], true
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
	<-c.done
}

func (c *sseClient) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev := <-c.events:
		return ev
	case <-c.done:
		t.Fatal("stream ended")
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

// expect reads events and checks they are exactly the records at seqs.
func (c *sseClient) expect(t *testing.T, seqs ...int) {
	t.Helper()
	for _, seq := range seqs {
		ev := c.next(t)
		if ev.id != strconv.Itoa(seq) {
			t.Fatalf("event id %q, want %d", ev.id, seq)
		}
		var r struct {
			Seq uint64 `json:"seq"`
			ID  string `json:"id"`
		}
		if err := json.Unmarshal([]byte(ev.data), &r); err != nil {
			t.Fatalf("event %d: data %q is not a record: %v", seq, ev.data, err)
		}
		if r.Seq != uint64(seq) || r.ID != fmt.Sprintf("sse-%d", seq) {
			t.Fatalf("event %d carries seq %d id %q", seq, r.Seq, r.ID)
		}
	}
}

func seqRange(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestStreamResumesWithoutGaps(t *testing.T) {
	e := newStreamEnv(t, time.Hour)
	e.appendRecs(t, 0, 30)

	c := e.openStream(t, "/v1/stream?from=10", "")
	c.expect(t, seqRange(10, 30)...)
	e.appendRecs(t, 30, 35) // live, after catching up
	c.expect(t, seqRange(30, 35)...)
	c.close()

	// A reconnect repeats the URL; Last-Event-ID says where it stopped.
	c = e.openStream(t, "/v1/stream?from=0", "32")
	c.expect(t, 33, 34)
	e.appendRecs(t, 35, 37)
	c.expect(t, 35, 36)

	// Without from, the stream starts at the end of the log.
	c = e.openStream(t, "/v1/stream", "")
	e.appendRecs(t, 37, 38)
	c.expect(t, 37)
}

func TestStreamFilters(t *testing.T) {
	e := newStreamEnv(t, time.Hour)
	e.appendRecs(t, 0, 30)
	for _, tc := range []struct {
		query string
		want  func(i int) bool
	}{
		{"table=orders", func(i int) bool { return i%2 == 1 }},
		{"source=crm&op=delete", func(i int) bool { return i%3 == 2 }},
		{"actor=alice&op=insert", func(i int) bool { return i%2 == 0 && i%3 == 0 }},
		{"source=crm&table=customers&key=4", func(i int) bool { return i%2 == 0 && i%5 == 4 }},
	} {
		t.Run(tc.query, func(t *testing.T) {
			var want []int
			for i := range 30 {
				if tc.want(i) {
					want = append(want, i)
				}
			}
			c := e.openStream(t, "/v1/stream?from=0&"+tc.query, "")
			c.expect(t, want...) // in order, none skipped, none that fails the filter
			c.close()
		})
	}
}

// Records the filter skips still advance the resume point, through an
// id-only event sent with the heartbeat.
func TestStreamHeartbeatAdvancesResumePoint(t *testing.T) {
	e := newStreamEnv(t, 20*time.Millisecond)
	e.appendRecs(t, 0, 10)
	c := e.openStream(t, "/v1/stream?from=0&actor=nobody", "")
	ev := c.next(t)
	if ev.id != "9" || ev.data != "" {
		t.Fatalf("first event %+v, want an id-only event with id 9", ev)
	}
	sawHeartbeat := false
	for !sawHeartbeat {
		select {
		case l := <-c.lines:
			sawHeartbeat = l == ": heartbeat"
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat comment")
		}
	}
}

func TestStreamBadParams(t *testing.T) {
	e := newStreamEnv(t, time.Hour)
	e.appendRecs(t, 0, 5)
	for _, tc := range []struct{ path, lastEventID, field string }{
		{"/v1/stream?from=abc", "", "from"},
		{"/v1/stream?from=-1", "", "from"},
		{"/v1/stream?from=6", "", "from"},
		{"/v1/stream?op=upsert", "", "op"},
		{"/v1/stream?key=1", "", "key"},
		{"/v1/stream?source=crm&key=1", "", "key"},
		{"/v1/stream?sorce=crm", "", "sorce"},
		{"/v1/stream?table=a&table=b", "", "table"},
		{"/v1/stream", "x", "Last-Event-ID"},
		{"/v1/stream", "5", "Last-Event-ID"},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+tc.path, nil)
		if tc.lastEventID != "" {
			req.Header.Set("Last-Event-ID", tc.lastEventID)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error, Field string }
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || body.Field != tc.field || !strings.HasPrefix(body.Error, tc.field+":") {
			t.Errorf("GET %s (Last-Event-ID %q): status %d, body %+v; want 400 naming %s", tc.path, tc.lastEventID, resp.StatusCode, body, tc.field)
		}
	}
	resp, err := e.srv.Client().Post(e.srv.URL+"/v1/stream", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/stream: status %d, want 405", resp.StatusCode)
	}
}

func TestStreamEndsOnShutdownAndDisconnect(t *testing.T) {
	e := newStreamEnv(t, time.Hour)
	// Client disconnect: the handler returns, so the server can close
	// (httptest.Server.Close waits for every handler).
	c := e.openStream(t, "/v1/stream", "")
	c.close()

	c = e.openStream(t, "/v1/stream?from=0", "")
	e.api.CloseStreams()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("stream still open after CloseStreams")
	}
	var last string
	for len(c.lines) > 0 {
		if l := <-c.lines; l != "" {
			last = l
		}
	}
	if !strings.Contains(last, "shutting down") {
		t.Errorf("last line %q, want the shutdown comment", last)
	}
	closed := make(chan struct{})
	go func() { e.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("server close blocked by a stream handler")
	}
}

// TestStreamReportsFollowerMetrics: a live stream follows the log through
// the one follow primitive, so /metrics shows it like every other follower
// while it runs, and no longer once the client has left.
func TestStreamReportsFollowerMetrics(t *testing.T) {
	e := newStreamEnv(t, time.Hour)
	e.appendRecs(t, 0, 20)
	c := e.openStream(t, "/v1/stream?from=0", "")
	c.expect(t, seqRange(0, 20)...)
	metric := func(name string) string {
		t.Helper()
		resp, err := e.srv.Client().Get(e.srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), name+`{follower="sse"} `); ok {
				return v
			}
		}
		return ""
	}
	waitFor(t, func() bool { return metric("stele_follow_processed_records_total") == "20" })
	if got := metric("stele_follow_running"); got != "1" {
		t.Fatalf("stele_follow_running{follower=sse} = %q with one client connected, want 1", got)
	}
	if got := metric("stele_follow_behind_records"); got != "0" {
		t.Fatalf("stele_follow_behind_records{follower=sse} = %q after catching up, want 0", got)
	}
	c.close()
	waitFor(t, func() bool { return metric("stele_follow_running") == "0" })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
