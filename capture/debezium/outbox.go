package debezium

import (
	"encoding/json"

	"github.com/stele/stele/record"
)

// JoinOutbox applies Debezium's outbox pattern to the records of one whole
// transaction: a row inserted into the outbox table (columns id,
// aggregatetype, aggregateid, type, payload) becomes an event record, and
// every other row change of the transaction carries it as its cause
// ({"record_id", "type", "aggregatetype", "aggregateid"}), so "which
// business event caused this change" is answered by the change itself.
// The outbox rows' deletes (applications empty the table in the same
// transaction) are bookkeeping and dropped. With several outbox rows in a
// transaction the first is the cause. The event keeps the outbox row's
// position, so its id is the same however often it is read. table is
// "schema.table" or "table".
func JoinOutbox(recs []*record.Record, table string) []*record.Record {
	isOutbox := func(r *record.Record) bool {
		return r.Source.Table == table || r.Source.Schema+"."+r.Source.Table == table
	}
	out := recs[:0:0]
	var cause json.RawMessage
	for _, r := range recs {
		if !isOutbox(r) {
			continue
		}
		if r.Op != record.OpInsert && r.Op != record.OpSnapshot {
			continue
		}
		var row struct {
			ID            json.RawMessage `json:"id"`
			AggregateType string          `json:"aggregatetype"`
			AggregateID   json.RawMessage `json:"aggregateid"`
			Type          string          `json:"type"`
			Payload       json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(r.After, &row); err != nil || row.Type == "" {
			continue
		}
		payload := row.Payload
		var s string
		if json.Unmarshal(payload, &s) == nil && json.Valid([]byte(s)) {
			payload = json.RawMessage(s)
		}
		after, _ := json.Marshal(map[string]json.RawMessage{
			"type": mustQuote(row.Type), "aggregatetype": mustQuote(row.AggregateType),
			"aggregateid": row.AggregateID, "payload": payload,
		})
		if c, err := record.Canonical(after); err == nil {
			after = c
		}
		r.Op, r.Before, r.After = record.OpEvent, nil, after
		r.Changed, _ = record.ChangedFields(nil, r.After)
		if cause == nil {
			cause, _ = json.Marshal(map[string]json.RawMessage{
				"record_id": mustQuote(r.ID), "type": mustQuote(row.Type),
				"aggregatetype": mustQuote(row.AggregateType), "aggregateid": row.AggregateID,
			})
			if c, err := record.Canonical(cause); err == nil {
				cause = c
			}
		}
	}
	for _, r := range recs {
		if isOutbox(r) && r.Op != record.OpEvent {
			continue
		}
		if !isOutbox(r) && cause != nil {
			r.Cause = cause
		}
		out = append(out, r)
	}
	return out
}

func mustQuote(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
