package capturetest

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// CheckOutbox checks what a source with an outbox table made of one
// transaction that inserted an outbox row (Debezium's layout, type
// eventType) and changed two other rows, then deleted the outbox row:
// recs are that transaction's records in log order, and q answers from the
// same log. It wants exactly one event record, in the outbox row's place,
// with the row's type and payload, and two changes whose cause names the
// event by record id, which GET /v1/records?cause= (q's cause filter)
// returns, in both orders.
func CheckOutbox(t testing.TB, recs []*record.Record, eventType string, q *query.Engine) (event *record.Record) {
	t.Helper()
	var changes []*record.Record
	for _, r := range recs {
		if r.Op == record.OpEvent {
			if event != nil {
				t.Fatalf("two event records: %s and %s", event.After, r.After)
			}
			event = r
			continue
		}
		changes = append(changes, r)
	}
	if event == nil || len(changes) != 2 {
		t.Fatalf("%d records, want one event and two changes (the outbox row's delete dropped): %s", len(recs), describe(recs))
	}
	var after struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(event.After, &after); err != nil || after.Type != eventType || len(after.Payload) == 0 || after.Payload[0] != '{' {
		t.Errorf("event after %s: want type %q and the payload as JSON", event.After, eventType)
	}
	if event.Cause != nil {
		t.Errorf("the event has a cause: %s", event.Cause)
	}
	want := make([]string, 0, 2)
	for _, c := range changes {
		if c.CauseID() != event.ID {
			t.Errorf("%s %s: cause %s, want record_id %s", c.Source.Table, c.Op, c.Cause, event.ID)
		}
		want = append(want, c.ID)
	}
	for _, order := range []query.Order{query.Asc, query.Desc} {
		p, err := q.Records(context.Background(), query.Filter{Cause: event.ID}, query.PageRequest{Order: order})
		if err != nil {
			t.Fatalf("records caused by %s: %v", event.ID, err)
		}
		var got []string
		for _, r := range p.Records {
			got = append(got, r.ID)
		}
		w := slices.Clone(want)
		if order == query.Desc {
			slices.Reverse(w)
		}
		if !slices.Equal(got, w) {
			t.Errorf("records caused by %s (order %v): %v, want %v", event.ID, order, got, w)
		}
	}
	return event
}

func describe(recs []*record.Record) string {
	var b []byte
	for _, r := range recs {
		b = append(b, "\n  "+string(r.Op)+" "+r.Source.Table+" "+string(r.Key)+" cause "+string(r.Cause)...)
	}
	return string(b)
}
