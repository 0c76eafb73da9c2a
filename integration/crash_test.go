package integration_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ackLog is what the clients were told: id -> seq for every acknowledged
// record.
type ackLog struct {
	mu     sync.Mutex
	seq    map[string]uint64
	maxSeq int64 // highest acknowledged seq, -1 for none
}

// ack records an acknowledged entry; an id acknowledged twice must keep
// its seq.
func (a *ackLog) ack(e appended) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.seq[e.ID]; ok && prev != e.Seq {
		return fmt.Errorf("id %s acknowledged at seq %d, then at seq %d (duplicate:%v)", e.ID, prev, e.Seq, e.Duplicate)
	}
	a.seq[e.ID] = e.Seq
	a.maxSeq = max(a.maxSeq, int64(e.Seq))
	return nil
}

func (a *ackLog) snapshot() (n int, maxSeq int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seq), a.maxSeq
}

// loadClient posts records continuously to the current server, retrying
// each batch with the same ids until it is acknowledged. With noIDs its
// records carry no id: each batch is sent with an Idempotency-Key instead,
// the same on every retry, and the server derives the ids.
type loadClient struct {
	t        *testing.T
	n        int
	srv      *server
	acks     *ackLog
	rng      *rand.Rand
	stop     *atomic.Bool
	noIDs    bool
	next     int
	batches  int
	posts    int
	retries  int
	reposts  int
	dupRetry int      // entries a retry found already stored
	sent     []string // every mark sent (noIDs), acknowledged or not
}

type loadBatch struct {
	ids    []string // nil for a batch without ids until its first answer
	key    string   // Idempotency-Key, for a batch without ids
	body   []byte
	ctype  string
	repost map[string]uint64 // for a resubmitted acknowledged batch: the seqs it got
	n      int               // records in the batch
}

func (c *loadClient) newBatch() loadBatch {
	n := 1 + c.rng.IntN(50)
	single := c.rng.IntN(4) == 0
	if single {
		n = 1
	}
	var b loadBatch
	var objs []string
	if c.noIDs {
		b.key = fmt.Sprintf("client-%d-batch-%d-%016x", c.n, c.batches, c.rng.Uint64())
	}
	c.batches++
	for range n {
		id := fmt.Sprintf("c%d-%06d", c.n, c.next)
		c.next++
		if c.noIDs {
			// The id names the record only inside its image: the server
			// knows it by the id it derives from the batch's key.
			c.sent = append(c.sent, id)
			objs = append(objs, fmt.Sprintf(`{"source":{"name":"load","table":"t%d"},"op":"insert","key":{"id":%d},"after":{"id":%d,"mark":%q,"pad":"%s"},"actor":{"id":"client-%d"}}`,
				c.n, c.next, c.next, id, strings.Repeat("x", c.rng.IntN(200)), c.n))
			continue
		}
		b.ids = append(b.ids, id)
		objs = append(objs, fmt.Sprintf(`{"id":%q,"source":{"name":"load","table":"t%d"},"op":"insert","key":{"id":%d},"after":{"id":%d,"pad":"%s"},"actor":{"id":"client-%d"}}`,
			id, c.n, c.next, c.next, strings.Repeat("x", c.rng.IntN(200)), c.n))
	}
	b.n = n
	switch {
	case single:
		b.ctype, b.body = "application/json", []byte(objs[0])
	case c.rng.IntN(3) == 0:
		b.ctype, b.body = "application/x-ndjson", []byte(strings.Join(objs, "\n")+"\n")
	default:
		b.ctype, b.body = "application/json", []byte("["+strings.Join(objs, ",")+"]")
	}
	return b
}

// send posts b until it is acknowledged or the run stops. A failed or
// interrupted request is retried with the same ids (or the same
// Idempotency-Key); b.ids is set by the first answer of a batch without ids.
func (c *loadClient) send(b *loadBatch) bool {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if c.stop.Load() {
				return false // unacknowledged; it may or may not be stored
			}
			c.retries++
			time.Sleep(time.Duration(5+c.rng.IntN(20)) * time.Millisecond)
		}
		var hdr http.Header
		if b.key != "" {
			hdr = http.Header{"Idempotency-Key": {b.key}}
		}
		r, err := requestWith(c.srv.URL(), http.MethodPost, "/v1/records", b.ctype, hdr, b.body)
		if err != nil {
			continue // killed mid-request, or not up yet
		}
		if r.status == http.StatusServiceUnavailable {
			continue // overloaded or shutting down
		}
		if r.status != http.StatusCreated {
			c.t.Errorf("client %d: POST: %s", c.n, r)
			return false
		}
		var resp struct {
			Records []appended `json:"records"`
		}
		if err := json.Unmarshal(r.body, &resp); err != nil || len(resp.Records) != b.n {
			c.t.Errorf("client %d: POST of %d records answered %s (%v)", c.n, b.n, r.body, err)
			return false
		}
		c.posts++
		if b.ids == nil {
			for _, e := range resp.Records {
				b.ids = append(b.ids, e.ID)
			}
		}
		for i, e := range resp.Records {
			if e.ID != b.ids[i] {
				c.t.Errorf("client %d: entry %d is id %s, sent %s", c.n, i, e.ID, b.ids[i])
				return false
			}
			switch {
			case b.repost != nil:
				if !e.Duplicate || e.Seq != b.repost[e.ID] {
					c.t.Errorf("client %d: resubmitted %s (acknowledged at seq %d) answered %+v", c.n, e.ID, b.repost[e.ID], e)
				}
			case attempt == 0 && e.Duplicate:
				c.t.Errorf("client %d: fresh id %s reported as duplicate of seq %d", c.n, e.ID, e.Seq)
			case e.Duplicate:
				c.dupRetry++
			}
			if err := c.acks.ack(e); err != nil {
				c.t.Errorf("client %d: %v", c.n, err)
			}
		}
		return true
	}
}

func (c *loadClient) run() {
	for !c.stop.Load() {
		b := c.newBatch()
		if !c.send(&b) || c.rng.IntN(10) != 0 {
			continue
		}
		// Now and then resubmit an acknowledged batch: every entry must
		// come back as a duplicate of its first seq.
		b.repost = make(map[string]uint64, len(b.ids))
		c.acks.mu.Lock()
		for _, id := range b.ids {
			b.repost[id] = c.acks.seq[id]
		}
		c.acks.mu.Unlock()
		c.reposts++
		c.send(&b)
	}
}

func TestCrashKill9(t *testing.T) {
	t.Parallel()
	crashLoop(t, 8, 5, false)
}

// Issue 12's acceptance: records without ids, each batch resent with its
// Idempotency-Key until answered 201, are each stored exactly once across
// kill -9s.
func TestCrashKill9WithoutIDs(t *testing.T) {
	t.Parallel()
	crashLoop(t, 4, 3, true)
}

// crashLoop runs nClients loadClients against a server killed with
// SIGKILL cycles times under load, then stopped gracefully, and checks
// that every acknowledged record is stored once at its acknowledged seq,
// that no record is stored twice, and that every checkpoint served is
// consistent with the final one.
func crashLoop(t *testing.T, nClients, cycles int, noIDs bool) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	vkey := s.verifierKey()
	rng := rand.New(rand.NewPCG(9, 9))

	acks := &ackLog{seq: make(map[string]uint64), maxSeq: -1}
	var stop atomic.Bool
	var wg sync.WaitGroup
	clients := make([]*loadClient, nClients)
	for i := range clients {
		clients[i] = &loadClient{t: t, n: i, srv: s, acks: acks, stop: &stop, noIDs: noIDs, rng: rand.New(rand.NewPCG(uint64(i), 42))}
		wg.Go(clients[i].run)
	}

	// Collect every checkpoint served during the run.
	var cpMu sync.Mutex
	var cps []checkpoint
	stopCP := make(chan struct{})
	var cpWG sync.WaitGroup
	cpWG.Go(func() {
		for {
			select {
			case <-stopCP:
				return
			case <-time.After(25 * time.Millisecond):
			}
			r, err := request(s.URL(), http.MethodGet, "/v1/checkpoint", "", nil)
			if err != nil || r.status != http.StatusOK {
				continue
			}
			cp, err := openCheckpoint(r.body, vkey)
			if err != nil {
				t.Errorf("checkpoint during the run: %v", err)
				continue
			}
			cpMu.Lock()
			if n := len(cps); n > 0 && cps[n-1].size > cp.size {
				t.Errorf("checkpoint size went back from %d to %d", cps[n-1].size, cp.size)
			}
			if n := len(cps); n == 0 || cps[n-1].size != cp.size || !bytes.Equal(cps[n-1].root, cp.root) {
				cps = append(cps, cp)
			}
			cpMu.Unlock()
		}
	})

	for cycle := range cycles {
		time.Sleep(time.Duration(200+rng.IntN(1301)) * time.Millisecond)
		s.kill()
		n, maxSeq := acks.snapshot()
		s.start()
		h := s.waitHealthy()
		if int64(h.Size) <= maxSeq {
			t.Fatalf("cycle %d: after SIGKILL the log holds %d records, but seq %d was acknowledged", cycle, h.Size, maxSeq)
		}
		t.Logf("cycle %d: killed with %d records acknowledged (highest seq %d); restarted with %d records", cycle, n, maxSeq, h.Size)
	}
	// The graceful stop comes under load too: requests in flight finish,
	// and the final checkpoint covers every record.
	time.Sleep(time.Duration(200+rng.IntN(1301)) * time.Millisecond)
	s.stop()
	stop.Store(true)
	wg.Wait()
	close(stopCP)
	cpWG.Wait()
	if t.Failed() {
		t.FailNow()
	}
	posts, retries, reposts, dupRetry := 0, 0, 0, 0
	for _, c := range clients {
		posts, retries, reposts, dupRetry = posts+c.posts, retries+c.retries, reposts+c.reposts, dupRetry+c.dupRetry
	}
	nAcked, _ := acks.snapshot()
	t.Logf("%d acknowledged POSTs (%d retries, finding %d records already stored; %d resubmissions of acknowledged batches), %d records acknowledged, %d distinct checkpoints seen",
		posts, retries, dupRetry, reposts, nAcked, len(cps))

	// Offline verification, then the checks through the API.
	out := mustStele(t, "verify", "--data", dir, "--key", vkey)
	t.Logf("stele verify --data: %s", strings.TrimSpace(out))
	m := regexp.MustCompile(`verified (\d+) records[^\n]*\n\d+ checkpoints; latest: origin \S+, size (\d+),`).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] {
		t.Errorf("after a graceful stop the latest checkpoint should cover every record:\n%s", out)
	}
	s.start()
	size := s.waitHealthy().Size

	seen := make(map[string]int)
	marks := make(map[string]int) // noIDs: the client's name of each stored record
	idAt := make([]string, 0, size)
	cursor := ""
	for {
		path := "/v1/records?order=asc&limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var pg struct {
			Records []struct {
				Seq   uint64 `json:"seq"`
				ID    string `json:"id"`
				After struct {
					Mark string `json:"mark"`
				} `json:"after"`
			} `json:"records"`
			NextCursor string `json:"next_cursor"`
		}
		s.getJSON(path, &pg)
		for _, r := range pg.Records {
			if r.Seq != uint64(len(idAt)) {
				t.Fatalf("GET %s: seq %d where %d was expected", path, r.Seq, len(idAt))
			}
			idAt = append(idAt, r.ID)
			seen[r.ID]++
			if r.After.Mark != "" {
				marks[r.After.Mark]++
			}
		}
		if pg.NextCursor == "" {
			break
		}
		cursor = pg.NextCursor
	}
	if uint64(len(idAt)) != size {
		t.Fatalf("paging found %d records, the log holds %d", len(idAt), size)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("id %s is stored %d times", id, n)
		}
	}
	acks.mu.Lock()
	for id, seq := range acks.seq {
		switch {
		case seen[id] == 0:
			t.Errorf("acknowledged id %s (seq %d) is missing", id, seq)
		case seq >= size || idAt[seq] != id:
			t.Errorf("acknowledged id %s at seq %d, but that seq holds %q", id, seq, idAt[min(seq, size-1)])
		}
	}
	acks.mu.Unlock()
	if noIDs {
		// Acknowledged records are present once (by the id checks above);
		// no record sent, acknowledged or not, is stored twice.
		sent := 0
		for _, c := range clients {
			for _, m := range c.sent {
				sent++
				if marks[m] > 1 {
					t.Errorf("record %s is stored %d times", m, marks[m])
				}
			}
		}
		if len(marks) < nAcked || uint64(len(marks)) != size {
			t.Errorf("%d distinct records stored of %d sent, %d acknowledged; the log holds %d", len(marks), sent, nAcked, size)
		}
		t.Logf("%d records sent without ids, %d stored, each once", sent, len(marks))
	}

	final := s.checkpoint(vkey)
	if final.size != size {
		t.Fatalf("final checkpoint size %d, log size %d", final.size, size)
	}
	for _, cp := range cps {
		if err := fetchConsistency(s.URL(), cp, final); err != nil {
			t.Error(err)
		}
	}
	// Spot-check inclusion of a few records against the final checkpoint.
	for _, seq := range []uint64{0, size / 3, size / 2, size - 1} {
		var rr recordResponse
		s.getJSON(fmt.Sprintf("/v1/records/%d?tree_size=%d", seq, final.size), &rr)
		if err := checkRecordResponse(rr, seq, final.size, final.root); err != nil {
			t.Error(err)
		}
	}
	s.stop()
}
