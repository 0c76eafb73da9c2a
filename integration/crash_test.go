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
// each batch with the same ids until it is acknowledged.
type loadClient struct {
	t        *testing.T
	n        int
	srv      *server
	acks     *ackLog
	rng      *rand.Rand
	stop     *atomic.Bool
	next     int
	posts    int
	retries  int
	reposts  int
	dupRetry int // entries a retry found already stored
}

type loadBatch struct {
	ids    []string
	body   []byte
	ctype  string
	repost map[string]uint64 // for a resubmitted acknowledged batch: the seqs it got
}

func (c *loadClient) newBatch() loadBatch {
	n := 1 + c.rng.IntN(50)
	single := c.rng.IntN(4) == 0
	if single {
		n = 1
	}
	var b loadBatch
	var objs []string
	for range n {
		id := fmt.Sprintf("c%d-%06d", c.n, c.next)
		c.next++
		b.ids = append(b.ids, id)
		objs = append(objs, fmt.Sprintf(`{"id":%q,"source":{"name":"load","table":"t%d"},"op":"insert","key":{"id":%d},"after":{"id":%d,"pad":"%s"},"actor":{"id":"client-%d"}}`,
			id, c.n, c.next, c.next, strings.Repeat("x", c.rng.IntN(200)), c.n))
	}
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
// interrupted request is retried with the same ids.
func (c *loadClient) send(b loadBatch) bool {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if c.stop.Load() {
				return false // unacknowledged; it may or may not be stored
			}
			c.retries++
			time.Sleep(time.Duration(5+c.rng.IntN(20)) * time.Millisecond)
		}
		r, err := request(c.srv.URL(), http.MethodPost, "/v1/records", b.ctype, b.body)
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
		if err := json.Unmarshal(r.body, &resp); err != nil || len(resp.Records) != len(b.ids) {
			c.t.Errorf("client %d: POST of %d records answered %s (%v)", c.n, len(b.ids), r.body, err)
			return false
		}
		c.posts++
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
		if !c.send(b) || c.rng.IntN(10) != 0 {
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
		c.send(b)
	}
}

func TestCrashKill9(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	vkey := s.verifierKey()
	rng := rand.New(rand.NewPCG(9, 9))

	acks := &ackLog{seq: make(map[string]uint64), maxSeq: -1}
	var stop atomic.Bool
	var wg sync.WaitGroup
	clients := make([]*loadClient, 8)
	for i := range clients {
		clients[i] = &loadClient{t: t, n: i, srv: s, acks: acks, stop: &stop, rng: rand.New(rand.NewPCG(uint64(i), 42))}
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

	for cycle := range 5 {
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
	idAt := make([]string, 0, size)
	cursor := ""
	for {
		path := "/v1/records?order=asc&limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var pg struct {
			Records []struct {
				Seq uint64 `json:"seq"`
				ID  string `json:"id"`
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
