package kafka

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stele/stele/capture/debezium"
)

// TestCommitNeverSplitsATransaction: the offsets committed never have a
// completed transaction on both sides. T2's change arrives first and its
// END last; T3 completes in between. Committing the metadata partition
// past T3's END while the items partition waits before T2 would make a
// restarted session read T3's change again without its END: a transaction
// that never completes, holding the items partition's commit for ever.
func TestCommitNeverSplitsATransaction(t *testing.T) {
	src, err := New(Config{Name: "cut", Brokers: []string{"b:9092"}, Topics: []string{"cut.public.items"}, TransactionTopic: "cut.transaction"})
	if err != nil {
		t.Fatal(err)
	}
	x := &session{src: src, next: map[tp]ref{}, sent: map[tp]int64{}, decs: make([]debezium.Decoder, 1)}
	x.decs[0].SourceName = "cut"
	change := func(tx string, lsn int) []byte {
		return fmt.Appendf(nil, `{"before":null,"after":{"id":%d},"source":{"connector":"postgresql","db":"d","schema":"public","table":"items","ts_ms":1,"lsn":%d},"op":"c","transaction":{"id":%q,"total_order":1,"data_collection_order":1}}`, lsn, lsn, tx)
	}
	end := func(tx string) []byte {
		return fmt.Appendf(nil, `{"status":"END","id":%q,"event_count":1,"data_collections":[]}`, tx)
	}
	feed := func(topic string, offset int64, value []byte) {
		t.Helper()
		m := &kgo.Record{Topic: topic, Partition: 0, Offset: offset, Value: value, Key: []byte(`{"id":1}`)}
		var d decoded
		d.ev, d.err = x.decs[0].Decode(m.Key, m.Value)
		if d.err != nil {
			t.Fatalf("decode %s: %v", value, d.err)
		}
		if _, err := x.add(context.Background(), m, d); err != nil {
			t.Fatal(err)
		}
	}
	flat := func(o offsets) map[string]int64 {
		out := map[string]int64{}
		for topic, ps := range o {
			for p, eo := range ps {
				out[fmt.Sprintf("%s/%d", topic, p)] = eo.Offset
			}
		}
		return out
	}
	feed("cut.public.items", 0, change("T1", 50))
	feed("cut.transaction", 0, end("T1"))
	feed("cut.public.items", 1, change("T2", 100))
	feed("cut.public.items", 2, change("T3", 200))
	feed("cut.transaction", 1, end("T3"))
	got := flat(x.committable())
	want := map[string]int64{"cut.public.items/0": 1, "cut.transaction/0": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("with T2 open and T3 complete: committable %v, want %v (T3 wholly after the cut)", got, want)
	}
	feed("cut.transaction", 2, end("T2"))
	got = flat(x.committable())
	want = map[string]int64{"cut.public.items/0": 3, "cut.transaction/0": 3}
	if !maps.Equal(got, want) {
		t.Fatalf("with both complete: committable %v, want %v", got, want)
	}
	if len(x.spans) != 0 {
		t.Errorf("%d transactions still tracked once behind the cut", len(x.spans))
	}
}
