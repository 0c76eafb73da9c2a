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

// The ops a record may carry (docs/api.md, "The record").
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
	// Derived is set by the privacy layer on the append path; never stored.
	Derived *Derived `json:"-"`
}

// Derived is what the privacy layer learned from a record's personal data
// before sealing it: the data subjects it names (as keyed pseudonyms) and
// blind-index tokens of its searchable fields. It is never encoded into the
// log — the log holds only sealed envelopes — so only the rebuildable index
// keeps it, and erasure can purge it there.
type Derived struct {
	// Subjects are keystore names of the record's data subjects.
	Subjects []string
	// Terms are blind-index entries of searchable personal fields.
	Terms []Term
	// Sealed marks a record whose personal fields were already sealed, so
	// a retried append does not seal envelopes again.
	Sealed bool
	// Erased are subjects whose blind-index entries this record (an
	// erasure receipt) removes, at its position in the log, so a replay
	// after a crash or a rebuild purges them again.
	Erased []string
}

// Term is one blind-index entry: a keyed hash of a field and its value, and
// the subject whose erasure must remove it.
type Term struct {
	Token   []byte
	Subject string
}
