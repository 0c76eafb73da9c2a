// Package natstest runs real NATS JetStream clusters inside a test process:
// n nats-server instances on pre-picked loopback ports, joined by cluster
// routes, each with its own store directory. The cluster tests of Stele
// (the replicated log, the keystore in a KV bucket) need a quorum that can
// be broken and healed, so a server can be killed — its in-memory state
// dropped without a clean shutdown of its streams — and restarted on the
// same ports and store.
//
// Ports are picked before the servers start because every server's route
// list must name every other server; a port taken in between makes Start
// fail with the server's own error, and the test can retry.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a running set of JetStream servers joined by routes.
type Cluster struct {
	Name string
	dir  string

	mu      sync.Mutex
	nodes   []*node
	stopped bool
}

type node struct {
	name        string
	storeDir    string
	clientPort  int
	clusterPort int
	srv         *server.Server // nil while killed
}

// Start runs an n-server cluster (n ≥ 1; 3 for an R3 quorum) with its store
// directories under dir, and waits until every server accepts clients and
// JetStream has a meta leader. Stop (or the test's Cleanup) shuts it down.
func Start(ctx context.Context, dir string, n int) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("natstest: want at least 1 server, got %d", n)
	}
	c := &Cluster{Name: "stele-test", dir: dir}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("n%d", i+1)
		c.nodes = append(c.nodes, &node{
			name:        name,
			storeDir:    filepath.Join(dir, name),
			clientPort:  ports[2*i],
			clusterPort: ports[2*i+1],
		})
	}
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// StartT is Start for a test: the store lives in t.TempDir(), a failure
// fails the test, and the cluster stops when the test ends.
func StartT(t testing.TB, n int) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Start(ctx, t.TempDir(), n)
	if err != nil {
		t.Fatalf("start a %d-server NATS cluster: %v", n, err)
	}
	t.Cleanup(c.Stop)
	return c
}

func (c *Cluster) options(i int) *server.Options {
	nd := c.nodes[i]
	var routes []*url.URL
	for j, other := range c.nodes {
		if j != i {
			routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", other.clusterPort)})
		}
	}
	o := &server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       nd.clientPort,
		JetStream:  true,
		StoreDir:   nd.storeDir,
		NoSigs:     true,
		NoLog:      true,
		Routes:     routes,
	}
	if len(c.nodes) > 1 {
		o.Cluster = server.ClusterOpts{Name: c.Name, Host: "127.0.0.1", Port: nd.clusterPort}
	}
	return o
}

func (c *Cluster) start(i int) error {
	nd := c.nodes[i]
	if err := os.MkdirAll(nd.storeDir, 0o700); err != nil {
		return fmt.Errorf("natstest: %w", err)
	}
	srv, err := server.NewServer(c.options(i))
	if err != nil {
		return fmt.Errorf("natstest: server %s: %w", nd.name, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("natstest: server %s did not accept clients on port %d within 20s", nd.name, nd.clientPort)
	}
	nd.srv = srv
	return nil
}

// Size is the number of servers, running or killed.
func (c *Cluster) Size() int { return len(c.nodes) }

// URL is the client URL of server i (0-based).
func (c *Cluster) URL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].clientPort)
}

// URLs is every server's client URL joined by commas, as `stele serve
// --cluster` and nats.Connect take them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.URL(i)
	}
	return strings.Join(urls, ",")
}

// StoreDir is server i's JetStream store directory (the forensic scans of
// erasure tests read every one).
func (c *Cluster) StoreDir(i int) string { return c.nodes[i].storeDir }

// Server is server i, or nil while it is killed.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Kill stops server i abruptly: its client and route connections drop and
// JetStream is not given the chance to snapshot its streams first, which is
// as close to kill -9 as a server sharing the test's process can come.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	srv := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart starts a killed server i again on its ports and store.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i].srv != nil {
		return fmt.Errorf("natstest: server %s is running", c.nodes[i].name)
	}
	return c.start(i)
}

// WaitReady waits until every running server reports JetStream healthy
// and a client can create and delete a probe stream replicated on all
// running servers, which only works once the meta leader exists.
func (c *Cluster) WaitReady(ctx context.Context) error {
	running := 0
	var url string
	for i := range c.nodes {
		if s := c.Server(i); s != nil {
			running++
			url = c.URL(i)
		}
	}
	if running == 0 {
		return errors.New("natstest: no server is running")
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("natstest: connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("natstest: %w", err)
	}
	var last error
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.CreateOrUpdateStream(sctx, jetstream.StreamConfig{
			Name: "NATSTEST_PROBE", Subjects: []string{"natstest.probe"}, Replicas: running, Storage: jetstream.MemoryStorage,
		})
		if err == nil {
			err = js.DeleteStream(sctx, "NATSTEST_PROBE")
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("natstest: JetStream not ready on %d servers: %w (last: %v)", running, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop shuts every running server down; calling it twice is harmless.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	c.mu.Unlock()
	for i := range c.nodes {
		c.Kill(i)
	}
}

// freePorts reserves n distinct loopback ports by listening on them all at
// once, then releases them for the servers to take.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natstest: pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// JetStream connects to url (reconnecting for ever, every 50 ms, so a test
// may kill and restart servers under it) and returns its JetStream
// context; the connection closes when t ends.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
