// Package dbztest plays a Debezium PostgreSQL connector for the tests of
// the sources that consume Debezium's output (capture/kafka over Kafka
// topics, capture/nats over JetStream subjects): it turns row changes into
// the messages the connector writes with the JSON converter (schemas off,
// REPLICA IDENTITY FULL, transaction metadata on), so the transports'
// conformance harnesses share one faithful shape. Test support only:
// import it from test files.
package dbztest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/stele/stele/record"
)

// Msg is one message as the connector writes it: its topic (a Kafka topic,
// or a NATS subject of the same name), key and value (nil: a tombstone).
type Msg struct {
	Topic      string
	Key, Value []byte
}

// Change is one row change of the items table.
type Change struct {
	Op record.Op // insert, update or delete
	ID int64
	V  string
}

// Connector is the connector of one logical server Name (its topic
// prefix): tables name.public.<table>, the metadata topic name.transaction.
// Not safe for concurrent use: a harness serialises its calls.
type Connector struct {
	Name string
	// Rows is the items table as the changes left it (for before images).
	Rows map[int64]string
	// LSN and TxID are the last position and transaction id handed out.
	LSN, TxID int64
}

// New returns the connector of server name.
func New(name string) *Connector {
	return &Connector{Name: name, Rows: map[int64]string{}, LSN: 0x1000000, TxID: 700}
}

// Topic is a table's topic.
func (c *Connector) Topic(table string) string { return c.Name + ".public." + table }

// TxTopic is the transaction-metadata topic.
func (c *Connector) TxTopic() string { return c.Name + ".transaction" }

// Image is a row of the items table.
func Image(id int64, v string) map[string]any { return map[string]any{"id": id, "v": v} }

// SourceBlock is the source block of a change of table at lsn, in the current
// transaction.
func (c *Connector) SourceBlock(table string, lsn int64) map[string]any {
	return map[string]any{"version": "2.7.3.Final", "connector": "postgresql", "name": c.Name,
		"ts_ms": time.Now().UnixMilli(), "snapshot": "false", "db": "postgres",
		"sequence": fmt.Sprintf(`["%d","%d"]`, lsn-1, lsn), "schema": "public", "table": table,
		"txId": c.TxID, "lsn": lsn, "xmin": nil}
}

// MustJSON marshals v, which cannot fail for the maps built here.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Transaction frames events (payloads without source and transaction) as
// one transaction of table: BEGIN, the events with their keys, END.
func (c *Connector) Transaction(table string, events []map[string]any, keys []any) []Msg {
	c.TxID++
	c.LSN += 0x100
	txID := fmt.Sprintf("%d:%d", c.TxID, c.LSN)
	out := []Msg{{Topic: c.TxTopic(), Key: MustJSON(map[string]any{"id": txID}),
		Value: MustJSON(map[string]any{"status": "BEGIN", "id": txID, "event_count": nil, "data_collections": nil, "ts_ms": time.Now().UnixMilli()})}}
	for i, ev := range events {
		c.LSN += 0x28
		ev["source"] = c.SourceBlock(table, c.LSN)
		ev["transaction"] = map[string]any{"id": txID, "total_order": i + 1, "data_collection_order": i + 1}
		ev["ts_ms"] = time.Now().UnixMilli()
		out = append(out, Msg{Topic: c.Topic(table), Key: MustJSON(keys[i]), Value: MustJSON(ev)})
	}
	return append(out, Msg{Topic: c.TxTopic(), Key: MustJSON(map[string]any{"id": txID}),
		Value: MustJSON(map[string]any{"status": "END", "id": txID, "event_count": len(events),
			"data_collections": []any{map[string]any{"data_collection": "public." + table, "event_count": len(events)}},
			"ts_ms":            time.Now().UnixMilli()})})
}

// Apply is one transaction of changes to the items table, each delete
// followed by its tombstone, as Debezium writes it for log compaction.
func (c *Connector) Apply(changes []Change) ([]Msg, error) {
	var events []map[string]any
	var keys []any
	for _, ch := range changes {
		switch ch.Op {
		case record.OpInsert:
			events = append(events, map[string]any{"before": nil, "after": Image(ch.ID, ch.V), "op": "c"})
			c.Rows[ch.ID] = ch.V
		case record.OpUpdate:
			events = append(events, map[string]any{"before": Image(ch.ID, c.Rows[ch.ID]), "after": Image(ch.ID, ch.V), "op": "u"})
			c.Rows[ch.ID] = ch.V
		case record.OpDelete:
			events = append(events, map[string]any{"before": Image(ch.ID, c.Rows[ch.ID]), "after": nil, "op": "d"})
			delete(c.Rows, ch.ID)
		default:
			return nil, fmt.Errorf("op %s", ch.Op)
		}
		keys = append(keys, map[string]any{"id": ch.ID})
	}
	var out []Msg
	for _, m := range c.Transaction("items", events, keys) {
		out = append(out, m)
		if m.Topic == c.Topic("items") && strings.Contains(string(m.Value), `"op":"d"`) {
			out = append(out, Msg{Topic: m.Topic, Key: m.Key})
		}
	}
	return out, nil
}

// Truncate empties the items table in one transaction.
func (c *Connector) Truncate() []Msg {
	clear(c.Rows)
	return c.Transaction("items", []map[string]any{{"before": nil, "after": nil, "op": "t"}}, []any{nil})
}

// typedEvent is a Debezium PostgreSQL insert with schemas on, one column of
// each logical type the decoder converts.
const typedEvent = `{"schema":{"type":"struct","fields":[{"type":"struct","field":"after","optional":true,"name":"x.public.typed.Value","fields":[
{"type":"int32","field":"id"},
{"type":"int32","field":"d","name":"io.debezium.time.Date"},
{"type":"int64","field":"t","name":"io.debezium.time.MicroTime"},
{"type":"int64","field":"ts","name":"io.debezium.time.MicroTimestamp"},
{"type":"string","field":"tz","name":"io.debezium.time.ZonedTimestamp"},
{"type":"bytes","field":"n","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}},
{"type":"struct","field":"vn","name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]},
{"type":"string","field":"j","name":"io.debezium.data.Json"},
{"type":"bytes","field":"by"},
{"type":"string","field":"nul"}]}]},
"payload":{"before":null,"after":{"id":1,"d":20455,"t":11045123456,"ts":1767323045123456,"tz":"2026-01-02T03:04:05.123456+02:00","n":"/4c=","vn":{"scale":3,"value":"AeJA"},"j":"{\"b\": 2, \"a\": [1, \"x\"]}","by":"3q2+7w==","nul":null},
"source":SOURCE,"transaction":TX,"op":"c","ts_ms":1}}`

// Typed is one transaction inserting the typed fixture row (table typed,
// key {"id":1}, schemas on), and the canonical JSON each column's value
// must be recorded as.
func (c *Connector) Typed() ([]Msg, map[string]string, error) {
	msgs := c.Transaction("typed", []map[string]any{{}}, []any{map[string]any{"id": 1}})
	// Replace the event with the schema'd one, keeping its source and
	// transaction blocks.
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(msgs[1].Value, &ev); err != nil {
		return nil, nil, err
	}
	msgs[1].Value = []byte(strings.Replace(strings.Replace(typedEvent, "SOURCE", string(ev["source"]), 1), "TX", string(ev["transaction"]), 1))
	return msgs, map[string]string{
		"id": "1", "d": `"2026-01-02"`, "t": `"03:04:05.123456"`, "ts": `"2026-01-02T03:04:05.123456Z"`,
		"tz": `"2026-01-02T01:04:05.123456Z"`, "n": "-1.21", "vn": "123.456", "j": `{"a":[1,"x"],"b":2}`,
		"by": `"3q2+7w=="`, "nul": "null",
	}, nil
}
