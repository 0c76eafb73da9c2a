package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele"
	"github.com/stele/stele/api"
	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// TestIngestConformance runs the source conformance suite against HTTP
// ingest: the "source" is a real API server on loopback appending to the
// suite's sink, its upstream a client posting each transaction as one
// batch of records with ids and resending every batch not answered 201.
// A crash closes the server and the store; the suite reopens both.
func TestIngestConformance(t *testing.T) {
	capturetest.Run(t, ingestHarness{})
}

type ingestHarness struct{}

func (ingestHarness) Kind() string { return "http" }

func (ingestHarness) Unsupported() map[capturetest.Capability]string {
	return map[capturetest.Capability]string{
		capturetest.BadCredentials: "HTTP ingest logs in to no upstream, so no source can fail for its credentials; a client with a bad token gets a 401 per request from the API's authentication, which is no source failure",
	}
}

func (ingestHarness) Start(*testing.T) {}

var ingestN atomic.Int64

func (ingestHarness) Open(t *testing.T) capturetest.Upstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{}
	c := &ingestClient{
		name: fmt.Sprintf("app%d", ingestN.Add(1)), addr: addr, tr: tr, hc: &http.Client{Transport: tr},
		rows: map[int64]string{}, wake: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
	c.connCtx, c.connCancel = context.WithCancel(ctx)
	go c.loop(ctx)
	t.Cleanup(func() {
		cancel()
		<-c.stopped
		tr.CloseIdleConnections()
	})
	return c
}

// ingestClient is the upstream: an application posting its changes. Each
// transaction is one batch; batches are sent one at a time, in order, and
// each is sent again until answered 201.
type ingestClient struct {
	name, addr string
	tr         *http.Transport
	hc         *http.Client

	mu         sync.Mutex
	rows       map[int64]string // the client's table, for before images
	extra      bool             // images carry the column the DDL added
	queue      [][]byte         // batch n+1 is queue[n]
	connCtx    context.Context  // ends with Restart
	connCancel context.CancelFunc

	acked   atomic.Int64 // batches answered 201, all of the first ones
	wake    chan struct{}
	stopped chan struct{}
}

func (c *ingestClient) Name() string  { return c.name }
func (c *ingestClient) Table() string { return "items" }

func (c *ingestClient) loop(ctx context.Context) {
	defer close(c.stopped)
	for {
		next := int(c.acked.Load())
		c.mu.Lock()
		var body []byte
		if next < len(c.queue) {
			body = c.queue[next]
		}
		connCtx := c.connCtx
		c.mu.Unlock()
		if body == nil {
			select {
			case <-ctx.Done():
				return
			case <-c.wake:
			}
			continue
		}
		if c.post(connCtx, body) {
			c.acked.Add(1)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// post sends one batch and reports whether it was answered 201.
func (c *ingestClient) post(ctx context.Context, body []byte) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.addr+"/v1/records", bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var out struct {
		Records []stele.Appended `json:"records"`
	}
	return resp.StatusCode == http.StatusCreated && json.NewDecoder(resp.Body).Decode(&out) == nil && len(out.Records) > 0
}

// enqueue adds a batch built by build(batch number) and wakes the sender.
func (c *ingestClient) enqueue(build func(batch int) ([]map[string]any, error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.queue) + 1
	recs, err := build(n)
	if err != nil {
		return err
	}
	for i, r := range recs {
		r["id"] = fmt.Sprintf("%s-%d-%d", c.name, n, i)
		r["source"] = map[string]any{"name": c.name, "table": r["table"]}
		delete(r, "table")
		tx := map[string]any{"id": "t" + strconv.Itoa(n), "position": strconv.Itoa(n), "index": i}
		r["tx"] = tx
	}
	body, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	c.queue = append(c.queue, body)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

func (c *ingestClient) image(id int64, v string) map[string]any {
	img := map[string]any{"id": id, "v": v}
	if c.extra {
		img["extra"] = nil
	}
	return img
}

func (c *ingestClient) Apply(_ context.Context, tx capturetest.Tx) error {
	return c.enqueue(func(int) ([]map[string]any, error) {
		var recs []map[string]any
		for _, ch := range tx.Changes {
			r := map[string]any{"table": "items", "op": string(ch.Op), "key": map[string]any{"id": ch.ID}}
			old, exists := c.rows[ch.ID]
			switch ch.Op {
			case record.OpInsert:
				if exists {
					return nil, fmt.Errorf("insert of row %d, which exists", ch.ID)
				}
				r["after"] = c.image(ch.ID, ch.V)
				c.rows[ch.ID] = ch.V
			case record.OpUpdate, record.OpDelete:
				if !exists {
					return nil, fmt.Errorf("%s of row %d, which does not exist", ch.Op, ch.ID)
				}
				r["before"] = c.image(ch.ID, old)
				if ch.Op == record.OpUpdate {
					r["after"] = c.image(ch.ID, ch.V)
					c.rows[ch.ID] = ch.V
				} else {
					delete(c.rows, ch.ID)
				}
			}
			if tx.Actor != nil {
				r["actor"] = tx.Actor
			}
			recs = append(recs, r)
		}
		return recs, nil
	})
}

// Acknowledged: the batches answered 201 are those the client will never
// send again.
func (c *ingestClient) Acknowledged(context.Context) (func(*record.Record) bool, error) {
	acked := c.acked.Load()
	return func(r *record.Record) bool {
		if r.Tx == nil {
			return false
		}
		n, err := strconv.ParseInt(r.Tx.Position, 10, 64)
		return err == nil && n <= acked
	}, nil
}

// Restart drops the client's connections, the request in flight too; the
// client sends that batch again.
func (c *ingestClient) Restart(*testing.T) {
	c.mu.Lock()
	c.connCancel()
	c.connCtx, c.connCancel = context.WithCancel(context.Background())
	c.mu.Unlock()
	c.tr.CloseIdleConnections()
}

func (c *ingestClient) Truncate(context.Context) error {
	return c.enqueue(func(int) ([]map[string]any, error) {
		clear(c.rows)
		return []map[string]any{{"table": "items", "op": "truncate", "key": map[string]any{"table": "items"}}}, nil
	})
}

func (c *ingestClient) DDL(context.Context) error {
	return c.enqueue(func(int) ([]map[string]any, error) {
		c.extra = true
		return []map[string]any{{"table": "items", "op": "ddl", "key": map[string]any{"relation": "items"},
			"after": map[string]any{"columns": []map[string]string{{"name": "id", "type": "bigint"}, {"name": "v", "type": "text"}, {"name": "extra", "type": "text"}}}}}, nil
	})
}

// WriteTyped posts JSON values the API must keep as sent, canonically:
// number literals digit for digit, strings with only the escapes JSON
// needs, object members sorted at every depth.
func (c *ingestClient) WriteTyped(context.Context) (capturetest.TypedRow, error) {
	after := json.RawMessage(`{"id": 1, "big": 123456789012345678901234567890, "dec": 0.10, "exp": 1E-7, "neg": -0,
		"s": "h\u00e9llo \"q\" <x>\t\u2028/", "obj": {"b": 2, "a": [1, "x", null, true]}, "empty": "", "nul": null, "arr": [ ]}`)
	err := c.enqueue(func(int) ([]map[string]any, error) {
		return []map[string]any{{"table": "typed", "op": "insert", "key": map[string]any{"id": 1}, "after": after}}, nil
	})
	return capturetest.TypedRow{Table: "typed", Key: `{"id":1}`, Want: map[string]string{
		"id": "1", "big": "123456789012345678901234567890", "dec": "0.10", "exp": "1E-7", "neg": "-0",
		"s": "\"héllo \\\"q\\\" <x>\\t\u2028/\"", "obj": `{"a":[1,"x",null,true],"b":2}`, "empty": `""`, "nul": "null", "arr": "[]",
	}}, err
}

func (c *ingestClient) CheckCredentialError(t *testing.T, err error) {
	t.Fatal("not supported")
}

// Source is the API server, listening on the client's address.
func (c *ingestClient) Source(t *testing.T, bad bool) capture.Source {
	if bad {
		t.Fatal("not supported")
	}
	return &ingestSource{name: c.name, addr: c.addr}
}

func (c *ingestClient) Ready(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", c.addr)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server does not listen on %s: %v", c.addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ingestSource runs the API server; Run ends once the server is closed
// and its handlers have returned, so no append of this run reaches a store
// opened after it.
type ingestSource struct {
	name, addr string
}

func (s *ingestSource) Name() string { return s.name }

func (s *ingestSource) Run(ctx context.Context, sink capture.Sink) error {
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", s.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	handler := api.New(api.Config{Log: sinkLog{sink}, Registry: prometheus.NewRegistry()})
	var (
		mu       sync.Mutex
		inflight int
		closed   bool
		idle     = sync.NewCond(&mu)
	)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if closed {
			mu.Unlock()
			panic(http.ErrAbortHandler)
		}
		inflight++
		mu.Unlock()
		defer func() {
			mu.Lock()
			inflight--
			idle.Broadcast()
			mu.Unlock()
		}()
		handler.ServeHTTP(w, r)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	srv.Close()
	<-served
	mu.Lock()
	closed = true
	for inflight > 0 {
		idle.Wait()
	}
	mu.Unlock()
	return nil
}

// sinkLog is the API's Log for ingest only: appends go to the suite's
// sink; nothing is read.
type sinkLog struct{ sink capture.Sink }

var errIngestOnly = errors.New("ingest conformance: the log is write-only here")

func (l sinkLog) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	return l.sink.Append(ctx, recs)
}
func (sinkLog) Size() uint64                                    { return 0 }
func (sinkLog) ReadRaw(uint64) ([]byte, error)                  { return nil, errIngestOnly }
func (sinkLog) InclusionProof(uint64, uint64) ([][]byte, error) { return nil, errIngestOnly }
func (sinkLog) ConsistencyProof(uint64, uint64) ([][]byte, error) {
	return nil, errIngestOnly
}
func (sinkLog) LatestCheckpoint() *stele.Checkpoint                   { return nil }
func (sinkLog) Checkpoint(context.Context) (*stele.Checkpoint, error) { return nil, errIngestOnly }
func (sinkLog) Keys() *logstore.Keys                                  { return nil }

// Changed never fires: the suite reads back from its own store, not
// through this server's live stream.
func (sinkLog) Changed() <-chan struct{} { return nil }
