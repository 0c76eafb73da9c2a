package capture

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stele/stele/record"
)

// outboxTx is one transaction: a change, the outbox row, another change
// and the outbox row's delete, as a source delivers it whole.
func outboxTx(src record.Source, outbox string) []*record.Record {
	mk := func(table string, op record.Op, before, after string, i int64) *record.Record {
		s := src
		s.Table = table
		r := &record.Record{Source: s, Op: op, Key: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), Tx: &record.Tx{ID: "5", Position: fmt.Sprintf("0/%X", 100+i), Index: &i}}
		if before != "" {
			r.Before = json.RawMessage(before)
		}
		if after != "" {
			r.After = json.RawMessage(after)
		}
		r.ID = record.DeriveChangeID(r)
		return r
	}
	return []*record.Record{
		mk("orders", record.OpInsert, "", `{"id":7,"total":12.5}`, 0),
		mk(outbox, record.OpInsert, "", `{"id":"a1","aggregatetype":"order","aggregateid":"7","type":"OrderPlaced","payload":"{\"total\":12.5}"}`, 1),
		mk("order_lines", record.OpInsert, "", `{"id":70,"order":7}`, 2),
		mk(outbox, record.OpDelete, `{"id":"a1","aggregatetype":"order","aggregateid":"7","type":"OrderPlaced","payload":"{}"}`, "", 3),
	}
}

func TestJoinOutbox(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		src         record.Source
	}{
		{"postgres", "public.outbox", record.Source{Name: "shop", Kind: "postgres", Database: "d", Schema: "public"}},
		{"mysql", "shop.outbox", record.Source{Name: "shop", Kind: "mysql", Database: "shop"}},
		{"bare table", "outbox", record.Source{Name: "shop", Kind: "mysql", Database: "shop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := outboxTx(tc.src, "outbox")
			outboxID := recs[1].ID
			got := JoinOutbox(recs, tc.table)
			if len(got) != 3 {
				t.Fatalf("%d records, want the event and two changes", len(got))
			}
			event := got[1]
			if event.Op != record.OpEvent || event.ID != outboxID ||
				string(event.After) != `{"aggregateid":"7","aggregatetype":"order","payload":{"total":12.5},"type":"OrderPlaced"}` {
				t.Errorf("event %s %s %s", event.Op, event.ID, event.After)
			}
			want := `{"aggregateid":"7","aggregatetype":"order","record_id":"` + outboxID + `","type":"OrderPlaced"}`
			for _, r := range []*record.Record{got[0], got[2]} {
				if string(r.Cause) != want || r.CauseID() != outboxID {
					t.Errorf("%s cause %s, want %s", r.Source.Table, r.Cause, want)
				}
			}
			if event.Cause != nil {
				t.Errorf("the event has a cause %s", event.Cause)
			}
		})
	}
	t.Run("other schema is not the outbox", func(t *testing.T) {
		recs := outboxTx(record.Source{Name: "shop", Kind: "postgres", Database: "d", Schema: "audit"}, "outbox")
		if got := JoinOutbox(recs, "public.outbox"); len(got) != 4 || got[1].Op != record.OpInsert || got[0].Cause != nil {
			t.Errorf("audit.outbox was joined as public.outbox: %d records, op %s", len(got), got[1].Op)
		}
	})
	t.Run("own cause kept beside the event", func(t *testing.T) {
		recs := outboxTx(record.Source{Name: "shop", Kind: "postgres", Database: "d", Schema: "public"}, "outbox")
		recs[0].Cause = json.RawMessage(`{"description":"checkout","type":"web"}`)
		got := JoinOutbox(recs, "public.outbox")
		want := `{"aggregateid":"7","aggregatetype":"order","description":"checkout","record_id":"` + recs[1].ID + `","type":"OrderPlaced"}`
		if string(got[0].Cause) != want {
			t.Errorf("cause %s, want %s", got[0].Cause, want)
		}
	})
	t.Run("no outbox row", func(t *testing.T) {
		recs := outboxTx(record.Source{Name: "shop", Kind: "postgres", Database: "d", Schema: "public"}, "orders_archive")
		if got := JoinOutbox(recs, "public.outbox"); len(got) != 4 || got[0].Cause != nil {
			t.Errorf("%d records, cause %s", len(got), got[0].Cause)
		}
	})
}
