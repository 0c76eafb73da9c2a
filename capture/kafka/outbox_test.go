package kafka

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stele/stele/capture/debezium/dbztest"
)

// TestOutbox: a transaction with an outbox row and two row changes, through
// Kafka with transaction metadata, is one event and two changes whose
// cause names it.
func TestOutbox(t *testing.T) {
	b := startBroker(t)
	u := newDebeziumTopics(t, b, "ob", 1)
	for _, topic := range []string{"ob.public.outbox", "ob.public.orders"} {
		if err := b.cluster().CreateTopic(topic, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	st := openStore(t)
	cfg := u.config(false)
	cfg.OutboxTable = "public.outbox"
	msgs := u.Transaction("items", []map[string]any{
		{"before": nil, "after": map[string]any{"id": 7, "total": 12.5}, "op": "c"},
		{"before": nil, "after": map[string]any{"id": "a1", "aggregatetype": "order", "aggregateid": "7", "type": "OrderPlaced", "payload": `{"total":12.5}`}, "op": "c"},
		{"before": nil, "after": dbztest.Image(70, "line"), "op": "c"},
	}, []any{map[string]any{"id": 7}, map[string]any{"id": "a1"}, map[string]any{"id": 70}})
	for i, table := range map[int]string{1: "orders", 2: "outbox"} {
		var ev map[string]any
		_ = json.Unmarshal(msgs[i].Value, &ev)
		ev["source"].(map[string]any)["table"] = table
		msgs[i].Topic, msgs[i].Value = "ob.public."+table, dbztest.MustJSON(ev)
	}
	u.Mu.Lock()
	err := u.produce(context.Background(), msgs)
	u.Mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	stop := runSource(t, cfg, st)
	waitRecords(t, st, 3)
	stop()
	recs := allRecords(t, st)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	event := recs[1]
	if event.Op != "event" || event.Source.Table != "outbox" || !strings.Contains(string(event.After), `"type":"OrderPlaced"`) {
		t.Fatalf("record 1 = %s %s %s, want the outbox event", event.Op, event.Source.Table, event.After)
	}
	for _, r := range []int{0, 2} {
		if !strings.Contains(string(recs[r].Cause), `"record_id":"`+event.ID+`"`) {
			t.Errorf("%s cause %s, want the event %s", recs[r].Source.Table, recs[r].Cause, event.ID)
		}
	}
}
