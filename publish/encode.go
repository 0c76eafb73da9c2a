package publish

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/record"
)

// Format is the shape of an event's data.
type Format string

// Formats.
const (
	// FormatRecord puts the record's API JSON (as GET /v1/records serves
	// it) in data.
	FormatRecord Format = "cloudevents"
	// FormatDebezium puts a Debezium-style change event in data:
	// {before, after, source:{...}, op, ts_ms}.
	FormatDebezium Format = "debezium"
)

// ParseFormat accepts "cloudevents" (or "") and "debezium".
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatRecord:
		return FormatRecord, nil
	case FormatDebezium:
		return FormatDebezium, nil
	}
	return "", fmt.Errorf("format: %q is not cloudevents or debezium", s)
}

// ContentType is the NATS Content-Type header of a structured-mode
// CloudEvents message.
const ContentType = "application/cloudevents+json"

// TypePrefix starts every event type; the op follows.
const TypePrefix = "dev.stele.lineage."

// Encoder renders records as CloudEvents 1.0 JSON (structured mode). The
// envelope is written by hand, like record.AppendJSON: it has a fixed set
// of attributes, and the data member is the record's canonical JSON, so no
// reflection or extra SDK is needed on the hot path.
type Encoder struct {
	// Source is the CloudEvents source prefix; the record's source name is
	// appended as a path segment. Default "stele://stele.local/log".
	Source string
	Format Format
}

// Append appends the event for r to dst.
//
// Attributes: specversion "1.0"; id = record id (so redelivery keeps the
// event id); source = Source/<source name>; type = dev.stele.lineage.<op>;
// subject = <table>/<key string>; time = occurred_at; datacontenttype
// application/json; stelseq = the record's seq as a decimal string (a
// CloudEvents Integer is 32-bit, a seq is 64-bit); data.
func (e Encoder) Append(dst []byte, r *record.Record) ([]byte, error) {
	dst, err := e.appendEnvelope(dst, r, nil)
	if err != nil {
		return dst, err
	}
	if e.Format == FormatDebezium {
		dst = appendDebezium(dst, r)
	} else {
		dst = record.AppendJSON(dst, r)
	}
	return append(dst, '}'), nil
}

// appendEnvelope writes the event's attributes up to and including
// `"data":`, from r's envelope fields (ID, Seq, Source.Name, Source.Table,
// Op, Key, and OccurredAt unless timeLit, the stored time literal, is
// given).
func (e Encoder) appendEnvelope(dst []byte, r *record.Record, timeLit []byte) ([]byte, error) {
	key, err := record.KeyString(r.Key)
	if err != nil {
		return dst, fmt.Errorf("record %d: key: %w", r.Seq, err)
	}
	src := e.Source
	if src == "" {
		src = "stele://stele.local/log"
	}
	dst = append(dst, `{"specversion":"1.0","id":`...)
	dst = appendString(dst, r.ID)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, src+"/"+url.PathEscape(r.Source.Name))
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, TypePrefix+string(r.Op))
	dst = append(dst, `,"subject":`...)
	dst = appendString(dst, r.Source.Table+"/"+key)
	dst = append(dst, `,"time":`...)
	if timeLit != nil {
		dst = append(dst, timeLit...)
	} else {
		dst = appendTime(dst, r.OccurredAt)
	}
	dst = append(dst, `,"datacontenttype":"application/json","stelseq":"`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	return append(dst, `","data":`...), nil
}

// DebeziumOp maps a Stele op to Debezium's: insert c, update u, delete d,
// snapshot r (read), truncate t. ddl and event are not row changes; they
// get "m", the op Debezium uses for logical-decoding messages.
func DebeziumOp(op record.Op) string {
	switch op {
	case record.OpInsert:
		return "c"
	case record.OpUpdate:
		return "u"
	case record.OpDelete:
		return "d"
	case record.OpSnapshot:
		return "r"
	case record.OpTruncate:
		return "t"
	}
	return "m"
}

// appendDebezium writes {before, after, source, op, ts_ms}. source follows
// Debezium's field names where they have a meaning here (connector, name,
// db, schema, table, ts_ms = commit time, txId, lsn = source position,
// snapshot) and adds Stele's own: stele_seq, stele_id, key, actor.
func appendDebezium(dst []byte, r *record.Record) []byte {
	dst = append(dst, `{"before":`...)
	dst = appendRawOrNull(dst, r.Before)
	dst = append(dst, `,"after":`...)
	dst = appendRawOrNull(dst, r.After)
	dst = append(dst, `,"source":{"version":"stele","connector":`...)
	dst = appendString(dst, r.Source.Kind)
	dst = append(dst, `,"name":`...)
	dst = appendString(dst, r.Source.Name)
	dst = append(dst, `,"db":`...)
	dst = appendString(dst, r.Source.Database)
	dst = append(dst, `,"schema":`...)
	dst = appendString(dst, r.Source.Schema)
	dst = append(dst, `,"table":`...)
	dst = appendString(dst, r.Source.Table)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, r.OccurredAt.UnixMilli(), 10)
	dst = append(dst, `,"snapshot":`...)
	if r.Op == record.OpSnapshot {
		dst = append(dst, `"true"`...)
	} else {
		dst = append(dst, `"false"`...)
	}
	if r.Tx != nil {
		if r.Tx.ID != "" {
			dst = append(dst, `,"txId":`...)
			dst = appendString(dst, r.Tx.ID)
		}
		if r.Tx.Position != "" {
			dst = append(dst, `,"lsn":`...)
			dst = appendString(dst, r.Tx.Position)
		}
	}
	dst = append(dst, `,"stele_seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, `,"stele_id":`...)
	dst = appendString(dst, r.ID)
	dst = append(dst, `,"key":`...)
	dst = appendRawOrNull(dst, r.Key)
	if len(r.Actor) > 0 {
		dst = append(dst, `,"actor":`...)
		dst = append(dst, r.Actor...)
	}
	dst = append(dst, `},"op":"`...)
	dst = append(dst, DebeziumOp(r.Op)...)
	dst = append(dst, `","ts_ms":`...)
	dst = strconv.AppendInt(dst, r.RecordedAt.UnixMilli(), 10)
	return append(dst, '}')
}

func appendRawOrNull(dst, raw []byte) []byte {
	if len(raw) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, raw...)
}

func appendString(dst []byte, s string) []byte {
	// Record strings were validated as UTF-8 at ingest; on anything else
	// AppendQuote still writes replacement characters, which is valid JSON.
	out, _ := jsontext.AppendQuote(dst, s)
	return out
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}
