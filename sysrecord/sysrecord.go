// Package sysrecord builds the records Stele writes about itself (source
// "stele"): access records naming who read personal data in clear, admin
// actions, and erasure and retention receipts. They are ordinary event
// records in the log, so they are covered by the same Merkle tree and
// checkpoints as the data they speak about.
//
// The package holds only the shape of these records (no I/O): privacy
// appends receipts and access records, the API appends admin actions, and
// the ingest path refuses client records that claim the system source.
package sysrecord

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/record"
)

// The source and tables of the records Stele writes about itself.
const (
	Source        = "stele"
	ErasuresTable = "erasures"
	AccessTable   = "access"
	AdminTable    = "admin"
	// ReceiptVersion is the version of the Receipt format.
	ReceiptVersion = 1
)

// IsSystem reports whether src names Stele's own source, which clients may
// not write to: a look-alike receipt would purge a subject's index entries
// when the index is rebuilt.
func IsSystem(src record.Source) bool { return src.Name == Source }

// Access is the record of one clear read of personal data: who read which
// records through which endpoint, and how many values were shown in clear.
func Access(by auth.Principal, endpoint string, seqs []uint64, fields int, at time.Time) (*record.Record, error) {
	after := mustJSON(map[string]any{"endpoint": endpoint, "records": seqs, "fields_in_clear": fields})
	return build(AccessTable, "access", "access", NewID(), after, &by, at)
}

// Admin is the record of an administrative action; detail must not hold
// secrets or personal data (it lives in the log forever).
func Admin(by auth.Principal, action string, detail map[string]any, at time.Time) (*record.Record, error) {
	d := map[string]any{"action": action}
	for k, v := range detail {
		d[k] = v
	}
	return build(AdminTable, "admin", "action", NewID(), mustJSON(d), &by, at)
}

// Receipt is the proof of an erasure or a retention shredding, appended to
// the log and signed with the log's key.
type Receipt struct {
	Version       int               `json:"version"`
	Type          string            `json:"type"` // "erasure" or "retention"
	ID            string            `json:"id"`
	At            time.Time         `json:"at"`
	RequestedBy   *auth.Principal   `json:"requested_by,omitempty"`
	Reason        string            `json:"reason,omitempty"`
	Subjects      []SubjectRef      `json:"subjects,omitempty"`
	Period        string            `json:"period,omitempty"`
	Records       *uint64           `json:"records,omitempty"`
	KeysDestroyed int               `json:"keys_destroyed"`
	CopiesRemoved int               `json:"copies_removed,omitempty"` // parked dead letters removed
	Checkpoint    ReceiptCheckpoint `json:"checkpoint"`
}

// SubjectRef names an erased subject by its keyed pseudonym, never by the
// value: the receipt lives forever in the log.
type SubjectRef struct {
	Group string `json:"group"`
	Ref   string `json:"ref"`
}

// ReceiptCheckpoint is the log's signed state when the keys were destroyed.
type ReceiptCheckpoint struct {
	Size uint64 `json:"size"`
	Root string `json:"root"`
	Note string `json:"note"`
}

// ReceiptRecord completes rc (version, id, time, the checkpoint cp it
// cites), signs it as a note with signer and returns the record to append
// and the signed note. by is who asked (nil for the retention job); erased
// lists the keyed subject names the receipt erased, for the index.
func ReceiptRecord(rc *Receipt, cp *stele.Checkpoint, signer note.Signer, by *auth.Principal, erased []string, at time.Time) (*record.Record, string, error) {
	rc.Version = ReceiptVersion
	rc.ID = NewID()
	rc.At = at.UTC()
	rc.Checkpoint = ReceiptCheckpoint{Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root), Note: string(cp.Note)}
	body, err := json.Marshal(rc)
	if err != nil {
		return nil, "", fmt.Errorf("receipt: %w", err)
	}
	signed, err := note.Sign(&note.Note{Text: "stele receipt\n" + string(body) + "\n"}, signer)
	if err != nil {
		return nil, "", fmt.Errorf("receipt: sign: %w", err)
	}
	after, err := json.Marshal(map[string]any{"receipt": json.RawMessage(body), "signed": string(signed)})
	if err != nil {
		return nil, "", fmt.Errorf("receipt: %w", err)
	}
	r, err := build(ErasuresTable, rc.Type, "receipt", rc.ID, after, by, rc.At)
	if err != nil {
		return nil, "", err
	}
	if len(erased) > 0 {
		r.Derived = &record.Derived{Erased: erased}
	}
	return r, string(signed), nil
}

// IsReceipt reports whether r is an erasure or retention receipt.
func IsReceipt(r *record.Record) bool {
	return r.Source.Kind == Source && r.Source.Name == Source && r.Source.Table == ErasuresTable && r.Op == record.OpEvent
}

// ReceiptSubjects are the keyed subject names a receipt record's after
// image erased.
func ReceiptSubjects(after []byte) ([]string, error) {
	var body struct {
		Receipt Receipt `json:"receipt"`
	}
	if err := json.Unmarshal(after, &body); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	var out []string
	for _, s := range body.Receipt.Subjects {
		out = append(out, s.Ref)
	}
	return out, nil
}

// Event builds an event record of Stele's own source in table, with id
// "<idPrefix>-<id>" and key {keyName: id}; by nil means the system itself.
func Event(table, idPrefix, keyName, id string, after json.RawMessage, by *auth.Principal, at time.Time) (*record.Record, error) {
	return build(table, idPrefix, keyName, id, after, by, at)
}

func build(table, idPrefix, keyName, id string, after json.RawMessage, by *auth.Principal, at time.Time) (*record.Record, error) {
	r := &record.Record{
		ID:         idPrefix + "-" + id,
		Source:     record.Source{Name: Source, Kind: Source, Table: table},
		Op:         record.OpEvent,
		Key:        mustJSON(map[string]string{keyName: id}),
		After:      after,
		Actor:      actorJSON(by),
		OccurredAt: at.UTC(),
	}
	for _, p := range []*json.RawMessage{&r.Key, &r.After, &r.Actor} {
		if len(*p) == 0 {
			continue
		}
		c, err := record.Canonical(*p)
		if err != nil {
			return nil, fmt.Errorf("sysrecord: canonical %s record: %w", table, err)
		}
		*p = c
	}
	return r, nil
}

func actorJSON(by *auth.Principal) json.RawMessage {
	if by == nil {
		return mustJSON(map[string]string{"id": "stele", "type": "system"})
	}
	return mustJSON(map[string]string{"id": by.Name, "type": "token", "role": string(by.Role)})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of strings, numbers and raw JSON reach here
	}
	return b
}

// NewID is a random 128-bit id in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
