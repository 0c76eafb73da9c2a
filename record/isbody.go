package record

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// IsBody reports whether b is the body AppendBody writes for r, without
// writing it: a client that sends a record in its stored form (what Stele
// itself exports, and what most clients' encoders write for the fields in
// this order) then has its own bytes stored, and the append path skips
// encoding the record again. It may report false for a body that is r's
// when r holds a string with a byte other than printable ASCII, which
// AppendBody may escape (a caller then encodes r); it never reports true
// for bytes AppendBody would not write (checkIsBody, in the fuzz targets
// of ParseIngest, Decode and the fast ingest parser).
func IsBody(b []byte, r *Record) bool {
	m := bodyMatch{b: b}
	m.lit(`{"id":`)
	m.str(r.ID)
	m.lit(`,"source":{"name":`)
	m.str(r.Source.Name)
	m.lit(`,"kind":`)
	m.str(r.Source.Kind)
	if r.Source.Database != "" {
		m.lit(`,"database":`)
		m.str(r.Source.Database)
	}
	if r.Source.Schema != "" {
		m.lit(`,"schema":`)
		m.str(r.Source.Schema)
	}
	m.lit(`,"table":`)
	m.str(r.Source.Table)
	m.lit(`},"op":`)
	m.str(string(r.Op))
	m.lit(`,"key":`)
	m.raw(r.Key)
	m.optRaw(`,"before":`, r.Before)
	m.optRaw(`,"after":`, r.After)
	if len(r.Changed) > 0 {
		m.lit(`,"changed":[`)
		for i, c := range r.Changed {
			if i > 0 {
				m.lit(`,`)
			}
			m.str(c)
		}
		m.lit(`]`)
	}
	m.optRaw(`,"actor":`, r.Actor)
	if tx := r.Tx; tx != nil {
		m.lit(`,"tx":{`)
		sep := ""
		if tx.ID != "" {
			m.lit(`"id":`)
			m.str(tx.ID)
			sep = ","
		}
		if tx.Position != "" {
			m.lit(sep + `"position":`)
			m.str(tx.Position)
			sep = ","
		}
		if tx.Index != nil {
			m.lit(sep + `"index":`)
			m.int(*tx.Index)
			sep = ","
		}
		if tx.CommitTime != nil {
			m.lit(sep + `"commit_time":`)
			m.time(*tx.CommitTime)
		}
		m.lit(`}`)
	}
	m.optRaw(`,"cause":`, r.Cause)
	if r.Schema != nil {
		m.lit(`,"schema":{"subject":`)
		m.str(r.Schema.Subject)
		m.lit(`,"version":`)
		m.int(r.Schema.Version)
		m.lit(`}`)
	}
	m.lit(`,"occurred_at":`)
	m.time(r.OccurredAt)
	m.lit(`}`)
	return m.ok() && m.at == len(b)
}

// bodyMatch walks b as appendBody writes a body, each step checking that
// what it would write is what b holds next; after the first mismatch
// (at -1) every step fails.
type bodyMatch struct {
	b  []byte
	at int
}

func (m *bodyMatch) ok() bool { return m.at >= 0 }

func (m *bodyMatch) lit(s string) {
	if m.at >= 0 && len(m.b)-m.at >= len(s) && string(m.b[m.at:m.at+len(s)]) == s {
		m.at += len(s)
		return
	}
	m.at = -1
}

func (m *bodyMatch) raw(raw []byte) {
	if m.at >= 0 && bytes.HasPrefix(m.b[m.at:], raw) {
		m.at += len(raw)
		return
	}
	m.at = -1
}

// optRaw is appendRaw's: nothing for an absent value.
func (m *bodyMatch) optRaw(name string, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	m.lit(name)
	m.raw(raw)
}

// str matches s quoted, when no byte of s is one that appendString may
// escape or replace.
func (m *bodyMatch) str(s string) {
	for i := 0; i < len(s); i++ {
		if !fieldByte[s[i]] {
			m.at = -1
			return
		}
	}
	m.lit(`"`)
	m.lit(s)
	m.lit(`"`)
}

func (m *bodyMatch) int(n int64) {
	var buf [20]byte
	m.raw(strconv.AppendInt(buf[:0], n, 10))
}

func (m *bodyMatch) time(t time.Time) {
	var buf [48]byte
	m.raw(appendTime(buf[:0], t))
}
