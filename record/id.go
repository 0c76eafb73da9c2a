package record

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// The id contract every source shares: a change that names its source
// position gets an id derived from the source and the position alone, so the
// same change captured twice — after a crash, by a second path such as
// Debezium — is stored once.

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// DeriveID returns the record id for a change that names its source position
// (tx.position, with tx.index inside the transaction): the same change
// captured twice gets the same id and so is stored once. Without a position
// the change cannot be recognised again, so it gets a random id.
func DeriveID(r *Record) string {
	if r.Tx == nil || r.Tx.Position == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return "r" + strings.ToLower(idEncoding.EncodeToString(b[:]))
	}
	h := sha256.New()
	for _, part := range []string{r.Source.Kind, r.Source.Name, r.Source.Database, r.Source.Schema, r.Source.Table, r.Tx.Position} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	if r.Tx.Index != nil {
		h.Write(strconv.AppendInt(nil, *r.Tx.Index, 10))
	}
	sum := h.Sum(nil)
	return "p" + strings.ToLower(idEncoding.EncodeToString(sum[:16]))
}

// MaxIdempotencyKeyBytes bounds an Idempotency-Key.
const MaxIdempotencyKeyBytes = 200

// ErrIdempotencyKey is wrapped by ParseIdempotencyKey's errors.
var ErrIdempotencyKey = errors.New("invalid Idempotency-Key")

// ParseIdempotencyKey returns the key an Idempotency-Key header carries:
// either a structured-field string ("…", as the IETF draft writes it) or
// the bare token, 1 to MaxIdempotencyKeyBytes printable ASCII characters.
func ParseIdempotencyKey(header string) (string, error) {
	k := header
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if k == "" || len(k) > MaxIdempotencyKeyBytes {
		return "", keyErr("must be 1 to %d characters, got %d", MaxIdempotencyKeyBytes, len(k))
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return "", keyErr("character %d is not allowed: use printable ASCII without quotes or backslashes (a random UUID is a good key)", i)
		}
	}
	return k, nil
}

func keyErr(format string, args ...any) error {
	return &idempotencyKeyError{reason: fmt.Sprintf(format, args...)}
}

type idempotencyKeyError struct{ reason string }

func (e *idempotencyKeyError) Error() string { return "Idempotency-Key header: " + e.reason }
func (e *idempotencyKeyError) Unwrap() error { return ErrIdempotencyKey }

// DeriveBatchID returns the id of record index of a batch of size records
// sent with an Idempotency-Key, for a record with neither an id nor a
// source position: the same batch resent with the same key gets the same
// ids, so a client resending every batch not answered 201 stores each
// record once, while the same record in another batch (another key) is
// another record. The hash covers the key, the record's place in the batch
// and the batch's size, and the record's source and op, so a key reused
// for a different batch mostly gets fresh ids; it does not cover key,
// images, actor or cause, which may hold personal data that erasure must
// leave unreadable (an id is stored in clear, forever).
func DeriveBatchID(idempotencyKey string, index, size int, r *Record) string {
	h := sha256.New()
	h.Write([]byte("stele batch id v1\x00"))
	for _, part := range []string{idempotencyKey, strconv.Itoa(index), strconv.Itoa(size),
		r.Source.Kind, r.Source.Name, r.Source.Database, r.Source.Schema, r.Source.Table, string(r.Op)} {
		h.Write(strconv.AppendInt(nil, int64(len(part)), 10))
		h.Write([]byte{':'})
		h.Write([]byte(part))
	}
	sum := h.Sum(nil)
	return "k" + strings.ToLower(idEncoding.EncodeToString(sum[:16]))
}

// IDDeriver computes DeriveID for positioned records with one hash
// state and scratch buffer reused across the records of a source (DeriveID
// allocates several times per call), for the capture hot path; TestIDDeriverMatchesDeriveID holds them equal.
type IDDeriver struct {
	h   hash.Hash
	buf []byte
}

// Derive returns DeriveID(r).
func (d *IDDeriver) Derive(r *Record) string {
	if r.Tx == nil || r.Tx.Position == "" || r.Tx.Index == nil {
		return DeriveID(r)
	}
	if d.h == nil {
		d.h = sha256.New()
	}
	b := d.buf[:0]
	for _, part := range [...]string{r.Source.Kind, r.Source.Name, r.Source.Database, r.Source.Schema, r.Source.Table, r.Tx.Position} {
		b = append(b, part...)
		b = append(b, 0)
	}
	b = strconv.AppendInt(b, *r.Tx.Index, 10)
	return d.finish(b, 'p')
}

// finish hashes the id input b (held in d's buffer) and returns the id:
// prefix and the first 16 bytes of the SHA-256 in lower-case base32.
func (d *IDDeriver) finish(b []byte, prefix byte) string {
	d.h.Reset()
	d.h.Write(b)
	b = d.h.Sum(b[:0])
	n := len(b)
	b = append(b, prefix)
	b = idEncoding.AppendEncode(b, b[:16])
	id := b[n:]
	for i, c := range id {
		if 'A' <= c && c <= 'Z' {
			id[i] = c + 'a' - 'A'
		}
	}
	d.buf = b
	return string(id)
}

// DeriveChangeID returns the id of a change named by its own position at
// the source (tx.position: for PostgreSQL the LSN of the change's WAL
// record, not of its transaction's commit) and its key. It is the id
// convention two readers of one database can both compute: capture/postgres
// sees each change's LSN in the replication stream, and a Debezium
// PostgreSQL event carries the same LSN as source.lsn, while neither knows
// what the other counts as the change's place in its transaction. Several
// changes share one LSN when one WAL record holds several rows (COPY, a
// multi-row INSERT, every row of a snapshot): the key tells them apart, so
// it is part of the hash (canonicalised, so the two readers' member order
// and spacing do not matter), and so is whether the record is a snapshot
// row. The index is left out. The id hashes
// the key like the Debezium path always has; a key of personal data is
// then guessable from the id by whoever can enumerate the candidates.
func DeriveChangeID(r *Record) string {
	var d IDDeriver
	return d.DeriveChange(r)
}

// DeriveChange returns DeriveChangeID(r), reusing d's hash state.
func (d *IDDeriver) DeriveChange(r *Record) string {
	if r.Tx == nil || r.Tx.Position == "" {
		return DeriveID(r)
	}
	if d.h == nil {
		d.h = sha256.New()
	}
	key := r.Key
	if _, simple := singleScalarValue(key); !simple {
		// A one-column key of a number or a plain string, the commonest,
		// is canonical as it stands (TestSimpleKeysAreCanonical):
		// canonicalising costs four times the hash.
		if c, err := Canonical(key); err == nil {
			key = c
		}
	}
	b := append(d.buf[:0], "stele change id v1\x00"...)
	if r.Op == OpSnapshot {
		// A snapshot row is read at its consistent point, and the first
		// change streamed after it may be written at that very LSN: the
		// same key there is two records.
		b = append(b, "snapshot\x00"...)
	}
	for _, part := range [...]string{r.Source.Kind, r.Source.Name, r.Source.Database, r.Source.Schema, r.Source.Table, r.Tx.Position} {
		b = strconv.AppendInt(b, int64(len(part)), 10)
		b = append(b, ':')
		b = append(b, part...)
	}
	b = strconv.AppendInt(b, int64(len(key)), 10)
	b = append(b, ':')
	b = append(b, key...)
	return d.finish(b, 'c')
}
