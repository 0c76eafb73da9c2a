package record

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Stored layout of a record (the Merkle leaf is SHA-256(0x00 || these bytes)):
//
//	+---------+-------------+-----------------------+------------------------------+
//	| version | seq         | recorded_at           | body                         |
//	| 1 byte  | 8 bytes, BE | 8 bytes, BE, Unix ns  | canonical JSON object,       |
//	|         |             |                       | without seq and recorded_at  |
//	+---------+-------------+-----------------------+------------------------------+
//
// The two values the log assigns at append time sit in a fixed header: the
// body can then be encoded by the caller, in parallel, before the single
// writer stamps the header. The seq is inside the hashed bytes, so a record
// moved, dropped or inserted is caught at the exact seq where it happened,
// and a verifier reads it without parsing JSON. The body's
// top-level members always appear in the order of the Record struct; objects
// inside images, actor and cause are sorted by name, except key, which keeps
// the primary-key column order. Numbers keep their literal text so numeric
// columns never lose precision.
const (
	// FormatV1 is the only encoding version so far.
	FormatV1 byte = 1
	// HeaderSize is the fixed header before the JSON body.
	HeaderSize = 1 + 8 + 8
	timeLayout = time.RFC3339Nano
)

// ErrFormat reports stored bytes that are not a valid encoded record.
var ErrFormat = errors.New("record: bad encoding")

// Encode returns the stored bytes of r, with seq in the header.
func Encode(r *Record) []byte {
	buf := make([]byte, 0, 256+len(r.Key)+len(r.Before)+len(r.After)+len(r.Actor)+len(r.Cause))
	return AppendEncoded(buf, r)
}

// AppendEncoded appends the stored bytes of r to dst.
func AppendEncoded(dst []byte, r *Record) []byte {
	dst = AppendHeader(dst, r.Seq, r.RecordedAt)
	return appendBody(dst, r)
}

// AppendBody appends the body of r's stored bytes: everything but the
// header, so it does not depend on r.Seq or r.RecordedAt.
func AppendBody(dst []byte, r *Record) []byte { return appendBody(dst, r) }

// BodySize is a close upper estimate of the bytes AppendBody appends for r
// (strings that need escaping may exceed it), so the caller can allocate
// once instead of growing the buffer several times per record.
func BodySize(r *Record) int {
	n := 320 + len(r.ID) + len(r.Source.Name) + len(r.Source.Kind) + len(r.Source.Database) + len(r.Source.Schema) + len(r.Source.Table) +
		len(r.Key) + len(r.Before) + len(r.After) + len(r.Actor) + len(r.Cause)
	for _, c := range r.Changed {
		n += len(c) + 3
	}
	if r.Tx != nil {
		n += len(r.Tx.ID) + len(r.Tx.Position) + 96
	}
	if r.Schema != nil {
		n += len(r.Schema.Subject) + 48
	}
	return n
}

// AppendHeader appends the header of the stored bytes; a body from
// AppendBody follows it.
func AppendHeader(dst []byte, seq uint64, recordedAt time.Time) []byte {
	dst = append(dst, FormatV1)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	var ns int64
	if !recordedAt.IsZero() {
		// The zero time (a record never appended) has no Unix-ns form; 0
		// stands for it.
		ns = recordedAt.UnixNano()
	}
	return binary.BigEndian.AppendUint64(dst, uint64(ns))
}

// AppendJSON appends the API representation of r: seq first, then the
// stored body's members, then recorded_at.
func AppendJSON(dst []byte, r *Record) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, ',')
	start := len(dst)
	dst = appendBody(dst, r)
	// appendBody wrote a full object; drop its braces.
	copy(dst[start:], dst[start+1:])
	dst = dst[:len(dst)-2]
	dst = append(dst, `,"recorded_at":`...)
	dst = appendTime(dst, r.RecordedAt)
	return append(dst, '}')
}

// MarshalJSON renders the API representation.
func (r *Record) MarshalJSON() ([]byte, error) { return AppendJSON(nil, r), nil }

func appendBody(dst []byte, r *Record) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, r.ID)
	dst = append(dst, `,"source":{"name":`...)
	dst = appendString(dst, r.Source.Name)
	dst = append(dst, `,"kind":`...)
	dst = appendString(dst, r.Source.Kind)
	if r.Source.Database != "" {
		dst = append(dst, `,"database":`...)
		dst = appendString(dst, r.Source.Database)
	}
	if r.Source.Schema != "" {
		dst = append(dst, `,"schema":`...)
		dst = appendString(dst, r.Source.Schema)
	}
	dst = append(dst, `,"table":`...)
	dst = appendString(dst, r.Source.Table)
	dst = append(dst, `},"op":`...)
	dst = appendString(dst, string(r.Op))
	dst = append(dst, `,"key":`...)
	dst = append(dst, r.Key...)
	dst = appendRaw(dst, `,"before":`, r.Before)
	dst = appendRaw(dst, `,"after":`, r.After)
	if len(r.Changed) > 0 {
		dst = append(dst, `,"changed":[`...)
		for i, c := range r.Changed {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, c)
		}
		dst = append(dst, ']')
	}
	dst = appendRaw(dst, `,"actor":`, r.Actor)
	if r.Tx != nil {
		dst = appendTx(dst, r.Tx)
	}
	dst = appendRaw(dst, `,"cause":`, r.Cause)
	if r.Schema != nil {
		dst = append(dst, `,"schema":{"subject":`...)
		dst = appendString(dst, r.Schema.Subject)
		dst = append(dst, `,"version":`...)
		dst = strconv.AppendInt(dst, r.Schema.Version, 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `,"occurred_at":`...)
	dst = appendTime(dst, r.OccurredAt)
	return append(dst, '}')
}

func appendTx(dst []byte, tx *Tx) []byte {
	dst = append(dst, `,"tx":{`...)
	sep := ""
	if tx.ID != "" {
		dst = append(dst, `"id":`...)
		dst = appendString(dst, tx.ID)
		sep = ","
	}
	if tx.Position != "" {
		dst = append(dst, sep+`"position":`...)
		dst = appendString(dst, tx.Position)
		sep = ","
	}
	if tx.Index != nil {
		dst = append(dst, sep+`"index":`...)
		dst = strconv.AppendInt(dst, *tx.Index, 10)
		sep = ","
	}
	if tx.CommitTime != nil {
		dst = append(dst, sep+`"commit_time":`...)
		dst = appendTime(dst, *tx.CommitTime)
	}
	return append(dst, '}')
}

func appendRaw(dst []byte, name string, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return dst
	}
	dst = append(dst, name...)
	return append(dst, raw...)
}

func appendString(dst []byte, s string) []byte {
	out, err := jsontext.AppendQuote(dst, s)
	if err != nil {
		// Only invalid UTF-8 fails, and ingest rejects it before any record
		// is built; keep the replacement-character output rather than panic.
		return out
	}
	return out
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, timeLayout)
	return append(dst, '"')
}

// Seq returns the seq stored in the header of encoded record bytes without
// decoding the body.
func Seq(stored []byte) (uint64, error) {
	if len(stored) < HeaderSize {
		return 0, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrFormat, len(stored), HeaderSize)
	}
	if stored[0] != FormatV1 {
		return 0, fmt.Errorf("%w: unknown format version %d", ErrFormat, stored[0])
	}
	return binary.BigEndian.Uint64(stored[1:HeaderSize]), nil
}

// RecordedAt returns the append time stored in the header of encoded record
// bytes without decoding the body (the zero time when none was stored).
func RecordedAt(stored []byte) (time.Time, error) {
	if _, err := Seq(stored); err != nil {
		return time.Time{}, err
	}
	if ns := int64(binary.BigEndian.Uint64(stored[9:HeaderSize])); ns != 0 {
		return time.Unix(0, ns).UTC(), nil
	}
	return time.Time{}, nil
}

// Decode parses stored record bytes.
func Decode(stored []byte) (*Record, error) {
	seq, err := Seq(stored)
	if err != nil {
		return nil, err
	}
	r, ok := decodeStored(stored[HeaderSize:])
	if !ok {
		r = new(Record)
		if err := json.Unmarshal(stored[HeaderSize:], r); err != nil {
			return nil, fmt.Errorf("%w: body of seq %d: %w", ErrFormat, seq, err)
		}
	}
	if r.Seq != 0 || !r.RecordedAt.IsZero() {
		return nil, fmt.Errorf("%w: body of seq %d holds seq or recorded_at, which belong in the header", ErrFormat, seq)
	}
	r.Seq = seq
	if ns := int64(binary.BigEndian.Uint64(stored[9:HeaderSize])); ns != 0 {
		r.RecordedAt = time.Unix(0, ns).UTC()
	}
	// Reject what Encode could not write back: a body without a key, or a
	// time whose UTC year has no four-digit RFC 3339 form.
	if len(r.Key) == 0 {
		return nil, fmt.Errorf("%w: body of seq %d has no key", ErrFormat, seq)
	}
	if !encodableTime(r.OccurredAt) || !encodableTime(r.RecordedAt) || (r.Tx != nil && r.Tx.CommitTime != nil && !encodableTime(*r.Tx.CommitTime)) {
		return nil, fmt.Errorf("%w: body of seq %d has a time outside the years 0000 to 9999 in UTC", ErrFormat, seq)
	}
	return r, nil
}

// encodableTime reports whether t, written in UTC, has the four-digit year
// that RFC 3339 (and so Decode) requires.
func encodableTime(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}
