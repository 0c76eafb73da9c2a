package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/stele/stele/record"
)

// Format is the data file's format.
type Format string

// The formats an export may take.
const (
	JSONL   Format = "jsonl"
	CSV     Format = "csv"
	Parquet Format = "parquet"
)

// Formats lists every format, in documentation order.
var Formats = []Format{JSONL, CSV, Parquet}

// ErrFormat reports an unknown format name.
var ErrFormat = errors.New("unknown export format")

// ParseFormat returns the named format.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("%w %q: want one of jsonl, csv, parquet", ErrFormat, s)
}

// ContentType is the media type of the data file.
func (f Format) ContentType() string {
	switch f {
	case CSV:
		return "text/csv; charset=utf-8"
	case Parquet:
		return "application/vnd.apache.parquet"
	}
	return "application/x-ndjson"
}

// Columns are the flat columns of CSV and Parquet exports, in file order.
// JSON columns hold the stored JSON text; tx and schema_ref hold the whole
// object, tx_id and tx_position repeat two of its fields, and actor_id
// actor.id, for filtering without JSON functions.
var Columns = []string{
	"seq", "id", "source_name", "source_kind", "database", "schema", "table", "op",
	"key", "before", "after", "changed", "actor_id", "actor", "tx_id", "tx_position", "tx",
	"cause", "schema_ref", "occurred_at", "recorded_at",
}

// flat holds the text of a record's flat columns other than seq, changed
// and the two times, whose form differs between CSV and Parquet.
type flat struct {
	id, sourceName, sourceKind, database, schema, table, op  string
	key, before, after, actorID, actor, txID, txPosition, tx string
	cause, schemaRef                                         string
}

func flatten(r *record.Record) (flat, error) {
	f := flat{
		id: r.ID, sourceName: r.Source.Name, sourceKind: r.Source.Kind,
		database: r.Source.Database, schema: r.Source.Schema, table: r.Source.Table,
		op: string(r.Op), key: string(r.Key), before: string(r.Before), after: string(r.After),
		actorID: r.ActorID(), actor: string(r.Actor), cause: string(r.Cause),
	}
	if r.Tx != nil {
		b, err := marshal(r.Tx)
		if err != nil {
			return f, fmt.Errorf("seq %d: tx: %w", r.Seq, err)
		}
		f.tx, f.txID, f.txPosition = string(b), r.Tx.ID, r.Tx.Position
	}
	if r.Schema != nil {
		b, err := marshal(r.Schema)
		if err != nil {
			return f, fmt.Errorf("seq %d: schema: %w", r.Seq, err)
		}
		f.schemaRef = string(b)
	}
	return f, nil
}

// unflatten rebuilds the record fields held in f. The derived columns
// (actor_id, tx_id, tx_position) are not read: the verifier re-renders the
// row from the rebuilt record and compares, which checks them.
func unflatten(f flat, r *record.Record) error {
	r.ID = f.id
	r.Source = record.Source{Name: f.sourceName, Kind: f.sourceKind, Database: f.database, Schema: f.schema, Table: f.table}
	r.Op = record.Op(f.op)
	r.Key = rawOrNil(f.key)
	r.Before, r.After, r.Actor, r.Cause = rawOrNil(f.before), rawOrNil(f.after), rawOrNil(f.actor), rawOrNil(f.cause)
	if f.tx != "" {
		r.Tx = new(record.Tx)
		if err := unmarshalStrict(f.tx, r.Tx); err != nil {
			return &ColumnError{Column: "tx", Reason: err.Error()}
		}
	}
	if f.schemaRef != "" {
		r.Schema = new(record.SchemaRef)
		if err := unmarshalStrict(f.schemaRef, r.Schema); err != nil {
			return &ColumnError{Column: "schema_ref", Reason: err.Error()}
		}
	}
	return nil
}

func rawOrNil(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

// marshal renders v as compact JSON without HTML escaping, so text reads as
// stored.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func unmarshalStrict(s string, v any) error {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func changedJSON(c []string) (string, error) {
	if len(c) == 0 {
		return "", nil
	}
	b, err := marshal(c)
	return string(b), err
}

const timeLayout = time.RFC3339Nano

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(column, s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, &ColumnError{Column: column, Reason: fmt.Sprintf("%q is not an RFC 3339 time", s)}
	}
	return t.UTC(), nil
}

// nanos converts t to Unix nanoseconds for a Parquet TIMESTAMP(NANOS)
// column, refusing times that do not fit (before 1677 or after 2262) rather
// than writing a wrong instant.
func nanos(seq uint64, column string, t time.Time) (int64, error) {
	ns := t.UnixNano()
	if time.Unix(0, ns).Equal(t) {
		return ns, nil
	}
	return 0, fmt.Errorf("%w: seq %d: %s %s is outside Parquet's nanosecond timestamp range (years 1678-2261); export as jsonl or csv",
		ErrUnrepresentable, seq, column, formatTime(t))
}

// ErrUnrepresentable reports a record a format cannot hold exactly.
var ErrUnrepresentable = errors.New("record cannot be exported exactly in this format")

func fromNanos(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func parseSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > math.MaxInt64 {
		return 0, &ColumnError{Column: "seq", Reason: fmt.Sprintf("%q is not a seq", s)}
	}
	return n, nil
}

// ColumnError names a column of a row that could not be read or that does
// not match the record it should hold.
type ColumnError struct {
	Column string
	Reason string
}

func (e *ColumnError) Error() string { return "column " + e.Column + ": " + e.Reason }
