package publish_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/publish"
)

// BenchmarkRawJetStream is the baseline for BenchmarkPublishVsAppend: what
// the same embedded JetStream accepts with async publish and acks, with the
// same per-message options (Nats-Msg-Id, expected last sequence, ack
// timeout) and a payload of an event's size, but no log to read and no
// encoding. Run both in one invocation:
//
//	go test -run XXX -bench 'PublishVsAppend|RawJetStream' -benchtime 100000x ./stream/
func BenchmarkRawJetStream(b *testing.B) {
	dir := b.TempDir()
	emb, err := publish.StartEmbedded(publish.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := emb.Connect()
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*publish.DefaultWindow),
		jetstream.WithPublishAsyncTimeout(publish.DefaultAckTimeout))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	data := []byte(strings.Repeat("x", 700))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := js.PublishAsync("raw.a.b.c", data, jetstream.WithMsgID(strconv.Itoa(i)),
			jetstream.WithExpectLastSequence(uint64(i))); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "publish_rec/s")
}
