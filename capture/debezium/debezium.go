// Package debezium decodes Debezium change events (the JSON converter's
// output, with or without schemas) into lineage records. It does no I/O: the
// Kafka and NATS sources feed it message keys and values, and tests feed it
// the files under testdata/.
//
// # Mapping
//
//	op          r→snapshot c→insert u→update d→delete t→truncate m→event
//	before/after the images, logical types decoded with the schema when the
//	            message carries one (see logical.go)
//	source      connector postgresql → kind postgres, mysql/mariadb → kind
//	            mysql, any other → kind debezium; db, schema, table (or
//	            collection) → source.database, .schema, .table; the name is
//	            the Stele source name configured, never Debezium's topic
//	            prefix
//	ts_ms       source.ts_ms (the commit time at the database) → occurred_at
//	            and tx.commit_time; the envelope's ts_ms when source has none
//	transaction {id, total_order} → tx.id and tx.index = total_order-1
//
// # Position and id
//
// A record's id derives from source + tx.position + tx.index (record.DeriveID),
// so the position must name the change at the database, never the Kafka
// offset: Debezium re-sending a change after its own crash then yields the
// same id, and the log stores it once.
//
//   - With a transaction block (provide.transaction.metadata=true): position
//     is the transaction (PostgreSQL: the transaction block's id, "txId:lsn";
//     MySQL: the GTID, or binlog file:pos without GTIDs), index is
//     total_order-1, the change's place in the transaction across tables.
//     For MySQL with GTIDs this is exactly what capture/mysql derives (GTID,
//     ordinal in the transaction), so with the same source name the two
//     paths give one record.
//   - Without one: position is the change's own place (PostgreSQL: its LSN;
//     MySQL: file:pos and row) followed by its key, because several changes
//     share one LSN (a multi-row WAL record, every row of a snapshot) and the
//     key tells them apart; there is no index.
//
// With Decoder.ChangeIDs (a Kafka or NATS source that mirrors a direct
// PostgreSQL source), a PostgreSQL event's position is its source.lsn
// alone, with or without a transaction block, and its id
// record.DeriveChangeID of that LSN and the key: exactly what capture/postgres
// derives from the LSN pgoutput sends with each change, so a change
// captured directly and through Debezium is one record. The key must print
// the same on both paths (integers, text and uuids do; a decimal or time
// key only with Debezium's precise and ISO handling modes). A snapshot row
// matches only a snapshot at the same LSN, which two readers with slots of
// their own never share.
package debezium

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/record"
)

// Kind is what a message is.
type Kind int

// The kinds of message Decode tells apart.
const (
	// Change is a data change event; Event.Record holds its record.
	Change Kind = iota + 1
	// Tombstone is the empty value Kafka log compaction needs after a
	// delete; it carries nothing to record.
	Tombstone
	// TxBegin and TxEnd are the transaction-metadata topic's events.
	TxBegin
	TxEnd
)

// Event is one decoded message.
type Event struct {
	Kind   Kind
	Record *record.Record // Change
	// TxID is the transaction's id (Change with a transaction block,
	// TxBegin, TxEnd).
	TxID string
	// EventCount is the number of change events in the transaction
	// (TxEnd).
	EventCount int64
}

// ErrMalformed is wrapped by every decoding failure: the message is not a
// Debezium event Stele can record (park it as a dead letter and move on).
var ErrMalformed = errors.New("malformed Debezium event")

// Error says which part of the message is wrong and why.
type Error struct {
	Field  string // dotted path such as "payload.source.lsn"
	Reason string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "debezium event: " + e.Reason
	}
	return "debezium event: " + e.Field + ": " + e.Reason
}

// Is makes errors.Is(err, ErrMalformed) hold.
func (e *Error) Is(target error) bool { return target == ErrMalformed }

func malformed(field, format string, args ...any) error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Decoder decodes messages of one Stele source. It caches the schemas it
// has parsed (every message of a table carries the same one), so it is not
// safe for concurrent use: one per consuming goroutine.
type Decoder struct {
	// SourceName is the records' source.name.
	SourceName string
	// ChangeIDs derives PostgreSQL events' ids as capture/postgres does
	// under its change ids: tx.position is source.lsn, the change's own
	// LSN, and the id hashes it with the key (record.DeriveChangeID),
	// with or without a transaction block. Set it (the Kafka and NATS
	// sources' Mirrors) when SourceName is a direct PostgreSQL source's
	// name whose changes this connector also publishes: each change is
	// then one record, whichever path brings it first.
	ChangeIDs bool
	schemas   map[string]*valueSchema
	ids       record.IDDeriver
}

// maxCachedSchemas bounds the schema cache; past it the cache starts over
// (a topic set with more table versions than this only parses more).
const maxCachedSchemas = 512

type envelope struct {
	Schema  jsontext.Value `json:"schema"`
	Payload jsontext.Value `json:"payload"`
}

type payload struct {
	Before      jsontext.Value `json:"before"`
	After       jsontext.Value `json:"after"`
	Source      jsontext.Value `json:"source"`
	Op          string         `json:"op"`
	TsMs        *int64         `json:"ts_ms"`
	Transaction *txBlock       `json:"transaction"`
	Message     *struct {
		Prefix  string `json:"prefix"`
		Content string `json:"content"`
	} `json:"message"`
	// The transaction-metadata topic's fields.
	Status     string `json:"status"`
	ID         string `json:"id"`
	EventCount *int64 `json:"event_count"`
}

type sourceBlock struct {
	Connector  string         `json:"connector"`
	DB         string         `json:"db"`
	Schema     string         `json:"schema"`
	Table      string         `json:"table"`
	Collection string         `json:"collection"`
	TsMs       *int64         `json:"ts_ms"`
	Snapshot   jsontext.Value `json:"snapshot"`
	// PostgreSQL.
	LSN  *int64 `json:"lsn"`
	TxID *int64 `json:"txId"`
	// MySQL and MariaDB.
	File string  `json:"file"`
	Pos  *int64  `json:"pos"`
	Row  *int64  `json:"row"`
	GTID *string `json:"gtid"`
}

type txBlock struct {
	ID         string `json:"id"`
	TotalOrder int64  `json:"total_order"`
}

// isNull reports whether v is absent or JSON null.
func isNull(v jsontext.Value) bool { return len(v) == 0 || v.Kind() == 'n' }

// unwrap splits a converter message into its schema (nil without one) and
// payload.
func unwrap(data []byte, field string) (schema, body jsontext.Value, err error) {
	if schema, body, ok := unwrapFast(data); ok {
		return schema, body, nil
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, nil, malformed(field, "not a JSON object: %v", err)
	}
	// The JSON converter with schemas.enable=true writes exactly
	// {schema, payload}; a bare payload of a change has neither member.
	if len(env.Payload) > 0 && len(env.Schema) > 0 {
		return env.Schema, env.Payload, nil
	}
	return nil, data, nil
}

// Decode decodes one message: its Kafka key (may be empty) and value (empty
// or JSON null: a tombstone).
func (d *Decoder) Decode(key, value []byte) (Event, error) {
	if len(bytes.TrimSpace(value)) == 0 || string(bytes.TrimSpace(value)) == "null" {
		return Event{Kind: Tombstone}, nil
	}
	var p payload
	var src sourceBlock
	schema, body, filled, srcOK, ok := decodeFast(value, &p, &src)
	if !ok {
		var err error
		if schema, body, err = unwrap(value, "value"); err != nil {
			return Event{}, err
		}
	}
	if isNull(body) {
		return Event{Kind: Tombstone}, nil
	}
	if !filled && !payloadFast(body, &p) {
		p = payload{}
		if err := json.Unmarshal(body, &p); err != nil {
			return Event{}, malformed("payload", "%v", err)
		}
	}
	s := &src
	if !srcOK {
		s = nil
	}
	if p.Op == "" && p.Status != "" {
		return txEvent(&p)
	}
	vs, err := d.valueSchema(schema)
	if err != nil {
		return Event{}, err
	}
	r, err := d.change(key, &p, vs, s)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Kind: Change, Record: r}
	if p.Transaction != nil {
		ev.TxID = p.Transaction.ID
	}
	return ev, nil
}

func txEvent(p *payload) (Event, error) {
	if p.ID == "" {
		return Event{}, malformed("payload.id", "a transaction %s event needs the transaction id", p.Status)
	}
	switch p.Status {
	case "BEGIN":
		return Event{Kind: TxBegin, TxID: p.ID}, nil
	case "END":
		if p.EventCount == nil || *p.EventCount < 0 {
			return Event{}, malformed("payload.event_count", "a transaction END event needs a non-negative event_count")
		}
		return Event{Kind: TxEnd, TxID: p.ID, EventCount: *p.EventCount}, nil
	}
	return Event{}, malformed("payload.status", "%q is neither BEGIN nor END", p.Status)
}

var ops = map[string]record.Op{
	"r": record.OpSnapshot, "c": record.OpInsert, "u": record.OpUpdate,
	"d": record.OpDelete, "t": record.OpTruncate, "m": record.OpEvent,
}

// change is the record of a change event; s is its source block when
// decodeFast already read it (nil: read p.Source here).
func (d *Decoder) change(key []byte, p *payload, vs *valueSchema, s *sourceBlock) (*record.Record, error) {
	op, ok := ops[p.Op]
	if !ok {
		return nil, malformed("payload.op", "%q is not one of r, c, u, d, t, m", p.Op)
	}
	if isNull(p.Source) {
		return nil, malformed("payload.source", "is required")
	}
	if s == nil {
		s = &sourceBlock{}
		if !sourceFast(p.Source, s) {
			*s = sourceBlock{}
			if err := json.Unmarshal(p.Source, s); err != nil {
				return nil, malformed("payload.source", "%v", err)
			}
		}
	}
	r := &record.Record{Op: op, Source: record.Source{Name: d.SourceName, Database: s.DB, Schema: s.Schema, Table: s.Table}}
	if r.Source.Table == "" {
		r.Source.Table = s.Collection
	}
	switch s.Connector {
	case "postgresql":
		r.Source.Kind = "postgres"
	case "mysql", "mariadb":
		r.Source.Kind = "mysql"
	case "":
		return nil, malformed("payload.source.connector", "is required")
	default:
		r.Source.Kind = "debezium"
	}
	var err error
	if r.Before, err = image(p.Before, vs.before, "payload.before"); err != nil {
		return nil, err
	}
	if r.After, err = image(p.After, vs.after, "payload.after"); err != nil {
		return nil, err
	}
	switch op {
	case record.OpInsert, record.OpSnapshot:
		if r.After == nil {
			return nil, malformed("payload.after", "an op %q event needs an after image", p.Op)
		}
	case record.OpUpdate:
		if r.After == nil {
			return nil, malformed("payload.after", "an update needs an after image")
		}
	case record.OpDelete:
		if r.Before == nil {
			return nil, malformed("payload.before", "a delete needs a before image")
		}
	case record.OpTruncate:
		r.Before, r.After = nil, nil
	case record.OpEvent:
		if p.Message == nil {
			return nil, malformed("payload.message", "an op \"m\" event needs a message")
		}
		msg, _ := json.Marshal(map[string]string{"prefix": p.Message.Prefix, "content": p.Message.Content}, json.Deterministic(true))
		r.After = msg
		if r.Source.Table == "" {
			r.Source.Table = "$message"
		}
	}
	if r.Source.Table == "" {
		return nil, malformed("payload.source.table", "is required")
	}
	if r.Key, err = d.key(key, r); err != nil {
		return nil, err
	}
	changed := record.ChangedCanonical // image made both canonical
	if op == record.OpEvent {
		changed = record.ChangedFields
	}
	if r.Changed, err = changed(r.Before, r.After); err != nil {
		return nil, malformed("payload", "%v", err)
	}
	switch {
	case s.TsMs != nil:
		r.OccurredAt = time.UnixMilli(*s.TsMs).UTC()
	case p.TsMs != nil:
		r.OccurredAt = time.UnixMilli(*p.TsMs).UTC()
	default:
		return nil, malformed("payload.source.ts_ms", "is required (the commit time at the database)")
	}
	if d.ChangeIDs && r.Source.Kind == "postgres" {
		return d.changeID(p, s, r)
	}
	tx, err := position(p, s, r)
	if err != nil {
		return nil, err
	}
	commit := r.OccurredAt
	tx.CommitTime = &commit
	r.Tx = tx
	r.ID = d.ids.Derive(r)
	return r, nil
}

// changeID fills tx and the id of a PostgreSQL event by capture/postgres'
// change ids: tx.id the transaction id, tx.position the change's own LSN,
// tx.index total_order-1 when the transaction block gives it (the id does
// not depend on it: the two readers count a transaction's changes over
// different tables).
func (d *Decoder) changeID(p *payload, s *sourceBlock, r *record.Record) (*record.Record, error) {
	if s.LSN == nil {
		return nil, malformed("payload.source.lsn", "is required for a postgresql event")
	}
	tx := &record.Tx{Position: formatLSN(uint64(*s.LSN))}
	if s.TxID != nil {
		tx.ID = strconv.FormatInt(*s.TxID, 10)
	}
	if t := p.Transaction; t != nil {
		if t.TotalOrder < 1 {
			return nil, malformed("payload.transaction.total_order", "must be 1 or more, got %d", t.TotalOrder)
		}
		idx := t.TotalOrder - 1
		tx.Index = &idx
	}
	commit := r.OccurredAt
	tx.CommitTime = &commit
	r.Tx = tx
	r.ID = d.ids.DeriveChange(r)
	return r, nil
}

// key is the record's key: the Kafka key's payload, or for a message
// without one (a table without a primary key, a truncate) the image itself,
// or the table.
func (d *Decoder) key(key []byte, r *record.Record) ([]byte, error) {
	if len(bytes.TrimSpace(key)) > 0 && string(bytes.TrimSpace(key)) != "null" {
		schema, body, err := unwrap(key, "key")
		if err != nil {
			return nil, err
		}
		var ks *structSchema
		if len(schema) > 0 {
			var s structSchema
			if err := json.Unmarshal(schema, &s); err != nil {
				return nil, malformed("key.schema", "%v", err)
			}
			ks = &s
		}
		if !isNull(body) {
			if body.Kind() != '{' {
				return nil, malformed("key", "expected a JSON object, got %s", body.Kind())
			}
			return image(body, ks.columns(), "key.payload")
		}
	}
	switch {
	case r.Op == record.OpTruncate || r.Op == record.OpEvent:
		table := r.Source.Table
		if r.Source.Schema != "" {
			table = r.Source.Schema + "." + table
		}
		return json.Marshal(map[string]string{"table": table})
	case r.After != nil:
		return r.After, nil
	default:
		return r.Before, nil
	}
}

// position fills tx.id, tx.position and tx.index by the convention of the
// package doc.
func position(p *payload, s *sourceBlock, r *record.Record) (*record.Tx, error) {
	tx := &record.Tx{}
	var base, row string
	switch r.Source.Kind {
	case "postgres":
		if s.TxID != nil {
			tx.ID = strconv.FormatInt(*s.TxID, 10)
		}
		if s.LSN == nil {
			return nil, malformed("payload.source.lsn", "is required for a postgresql event")
		}
		base = formatLSN(uint64(*s.LSN))
	case "mysql":
		switch {
		case s.GTID != nil && *s.GTID != "":
			base = *s.GTID
			tx.ID = *s.GTID
		case s.File != "" && s.Pos != nil:
			base = s.File + ":" + strconv.FormatInt(*s.Pos, 10)
		default:
			return nil, malformed("payload.source", "a mysql event needs gtid or file and pos")
		}
		if s.Row != nil {
			row = strconv.FormatInt(*s.Row, 10)
		}
	default:
		var err error
		if base, err = genericPosition(p); err != nil {
			return nil, err
		}
	}
	if t := p.Transaction; t != nil {
		if t.TotalOrder < 1 {
			return nil, malformed("payload.transaction.total_order", "must be 1 or more, got %d", t.TotalOrder)
		}
		if t.ID == "" {
			return nil, malformed("payload.transaction.id", "is required")
		}
		tx.ID = t.ID
		if r.Source.Kind != "mysql" {
			base = t.ID
		}
		tx.Position = base
		idx := t.TotalOrder - 1
		tx.Index = &idx
		return tx, nil
	}
	var b strings.Builder
	b.WriteString(base)
	if row != "" {
		b.WriteString(" row ")
		b.WriteString(row)
	}
	b.WriteString(" key ")
	b.Write(r.Key)
	tx.Position = b.String()
	return tx, nil
}

// genericPosition names the change at the database for a connector Stele
// has no convention for: its source block without the members that differ
// between two sendings of one change (timestamps, version, snapshot flag),
// in canonical form.
func genericPosition(p *payload) (string, error) {
	var m map[string]jsontext.Value
	if err := json.Unmarshal(p.Source, &m); err != nil {
		return "", malformed("payload.source", "%v", err)
	}
	for _, k := range []string{"ts_ms", "ts_us", "ts_ns", "version", "snapshot", "name"} {
		delete(m, k)
	}
	b, err := json.Marshal(m, json.Deterministic(true))
	if err != nil {
		return "", malformed("payload.source", "%v", err)
	}
	c, err := record.Canonical(b)
	if err != nil {
		return "", malformed("payload.source", "%v", err)
	}
	return string(c), nil
}

// formatLSN prints an LSN as PostgreSQL does ("16/B374D848").
func formatLSN(lsn uint64) string {
	var b [24]byte
	out := strconv.AppendUint(b[:0], lsn>>32, 16)
	out = append(out, '/')
	out = strconv.AppendUint(out, uint64(uint32(lsn)), 16)
	for i, c := range out {
		if 'a' <= c && c <= 'f' {
			out[i] = c - 'a' + 'A'
		}
	}
	return string(out)
}
