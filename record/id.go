package record

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
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
	d.h.Reset()
	d.h.Write(b)
	b = d.h.Sum(b[:0])
	n := len(b)
	b = append(b, 'p')
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
