package capture

import (
	"encoding/json"

	"github.com/stele/stele/record"
)

// JoinOutbox applies Debezium's outbox pattern to the records of one whole
// transaction, for every source that delivers transactions whole (the
// PostgreSQL and MySQL sources, and Debezium events from Kafka or NATS once
// their transaction metadata made them whole): a row inserted into the
// outbox table (columns id, aggregatetype, aggregateid, type, payload)
// becomes an event record, and every other row change of the transaction
// carries it as its cause ({"record_id", "type", "aggregatetype",
// "aggregateid"}, merged over a cause the transaction set itself, as
// through a stele context message), so "which business event caused this
// change" is answered by the change itself and by the index's cause list
// (GET /v1/records?cause=<record_id>). The outbox rows' deletes
// (applications empty the table in the same transaction) are bookkeeping
// and dropped. With several outbox rows in a transaction the first is the
// cause. The event keeps the outbox row's position and id, so it is the same
// however often it is read. table is "schema.table" (PostgreSQL),
// "database.table" (MySQL) or "table".
// An empty table returns recs as they are.
func JoinOutbox(recs []*record.Record, table string) []*record.Record {
	if table == "" {
		return recs
	}
	isOutbox := func(r *record.Record) bool { return OutboxTable(r, table) }
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
		// The event is no row of the outbox table any more: its
		// table schema does not describe it.
		r.Op, r.Before, r.After, r.Schema = record.OpEvent, nil, after, nil
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
			r.Cause = mergeCause(r.Cause, cause)
		}
		out = append(out, r)
	}
	return out
}

func mustQuote(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// OutboxTable reports whether r is a change of the outbox table named
// table (see JoinOutbox).
func OutboxTable(r *record.Record, table string) bool {
	if r.Source.Table == table {
		return true
	}
	qual := r.Source.Schema
	if qual == "" {
		qual = r.Source.Database
	}
	return len(table) == len(qual)+1+len(r.Source.Table) && table[:len(qual)] == qual &&
		table[len(qual)] == '.' && table[len(qual)+1:] == r.Source.Table
}

// mergeCause is the outbox cause over the members of a cause the
// transaction set itself (a description, say), in canonical form; own is
// kept as it was only if it is not a JSON object.
func mergeCause(own, outbox json.RawMessage) json.RawMessage {
	if len(own) == 0 {
		return outbox
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(own, &m); err != nil || m == nil {
		return outbox
	}
	var o map[string]json.RawMessage
	_ = json.Unmarshal(outbox, &o)
	for k, v := range o {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return outbox
	}
	if c, err := record.Canonical(b); err == nil {
		return c
	}
	return b
}
