// Package record defines Stele's lineage record: its JSON model, validation of
// client input, and the deterministic, versioned byte encoding that the Merkle
// log hashes and stores. It does no I/O, so the server, the verifier and
// outside auditors share exactly the same definition of a record's bytes.
package record

import (
	"encoding/json"
	"time"
)

// Op is the kind of change a record describes.
type Op string

// The ops a record may carry (VISION.md, "The record").
const (
	OpInsert   Op = "insert"
	OpUpdate   Op = "update"
	OpDelete   Op = "delete"
	OpTruncate Op = "truncate"
	OpSnapshot Op = "snapshot"
	OpDDL      Op = "ddl"
	OpEvent    Op = "event"
)

// Valid reports whether op is one of the known ops.
func (op Op) Valid() bool {
	switch op {
	case OpInsert, OpUpdate, OpDelete, OpTruncate, OpSnapshot, OpDDL, OpEvent:
		return true
	}
	return false
}

// Ops lists every valid op, in documentation order.
var Ops = []Op{OpInsert, OpUpdate, OpDelete, OpTruncate, OpSnapshot, OpDDL, OpEvent}

// Source names where a change was captured.
type Source struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Database string `json:"database,omitempty"`
	Schema   string `json:"schema,omitempty"`
	Table    string `json:"table"`
}

// Tx places a change in its source transaction.
type Tx struct {
	ID         string     `json:"id,omitempty"`
	Position   string     `json:"position,omitempty"`
	Index      *int64     `json:"index,omitempty"`
	CommitTime *time.Time `json:"commit_time,omitempty"`
}

// SchemaRef points at the schema-registry entry the images conform to.
type SchemaRef struct {
	Subject string `json:"subject"`
	Version int64  `json:"version"`
}

// Record is one change to one unit of data. Object-valued fields whose shape
// belongs to the source (key, images, actor, cause) are kept as canonical JSON
// so they round-trip byte for byte.
type Record struct {
	Seq        uint64          `json:"seq"`
	ID         string          `json:"id"`
	Source     Source          `json:"source"`
	Op         Op              `json:"op"`
	Key        json.RawMessage `json:"key"`
	Before     json.RawMessage `json:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty"`
	Changed    []string        `json:"changed,omitempty"`
	Actor      json.RawMessage `json:"actor,omitempty"`
	Tx         *Tx             `json:"tx,omitempty"`
	Cause      json.RawMessage `json:"cause,omitempty"`
	Schema     *SchemaRef      `json:"schema,omitempty"`
	OccurredAt time.Time       `json:"occurred_at"`
	RecordedAt time.Time       `json:"recorded_at"`
}
