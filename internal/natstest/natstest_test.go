package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// An R3 stream keeps taking writes with one server killed, refuses them
// with two (no quorum), and has every message once the servers are back.
func TestClusterQuorum(t *testing.T) {
	c := StartT(t, 3)
	// Each phase has its own deadline below; this one only bounds the test,
	// wide enough for a loaded CI machine where re-electing stream leaders
	// after each kill and restart has taken tens of seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "Q", Subjects: []string{"q"}, Replicas: 3}); err != nil {
		t.Fatalf("create R3 stream: %v", err)
	}
	publish := func(n int) error {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		for i := 0; i < n; i++ {
			if _, err := js.Publish(pctx, "q", []byte("x")); err != nil {
				return err
			}
		}
		return nil
	}
	if err := publish(10); err != nil {
		t.Fatalf("publish with 3 servers: %v", err)
	}
	// Kill a server that is not the one this client is connected to, so
	// the test measures the quorum, not a client reconnect.
	connected := nc.ConnectedUrl()
	victims := []int{}
	for i := 0; i < c.Size() && len(victims) < 2; i++ {
		if c.URL(i) != connected {
			victims = append(victims, i)
		}
	}
	c.Kill(victims[0])
	var okWithTwo bool
	for try := 0; try < 20 && !okWithTwo; try++ {
		okWithTwo = publish(10) == nil
	}
	if !okWithTwo {
		t.Fatal("an R3 stream refused writes with 2 of 3 servers up")
	}
	c.Kill(victims[1])
	if err := publish(1); err == nil {
		t.Fatal("an R3 stream took a write with 1 of 3 servers up")
	}
	for _, v := range victims {
		if err := c.Restart(v); err != nil {
			t.Fatal(err)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	defer rcancel()
	if err := c.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	var msgs uint64
	var last error
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ictx, icancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := js.Stream(ictx, "Q")
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ictx)
		}
		icancel()
		if err == nil {
			if msgs = info.State.Msgs; msgs >= 20 {
				return
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after the quorum came back the stream has %d messages (last error %v), want at least the 20 acknowledged", msgs, last)
}
