package publish

import (
	"bytes"
	"strconv"

	"github.com/stele/stele/internal/jsonscan"
	"github.com/stele/stele/record"
)

// AppendStored appends the event for the record whose stored bytes
// (record.Encode's form, as the log returns them) are stored, and returns
// the record's envelope fields (ID, Seq, RecordedAt, Source.Name,
// Source.Table, Op and Key; nothing else is set) for the message's subject
// and headers. The result is Append(dst, record.Decode(stored)) byte for
// byte: a CloudEvent's data is the record's API JSON, which is the stored
// body between the seq and recorded_at that the header holds, so it is
// spliced in rather than decoded and encoded again (that cost the
// publisher a quarter of its CPU). Only the envelope's few members are
// read from the body. The Debezium format, which rearranges the record,
// and any body the quick read does not understand go through Decode.
func (e Encoder) AppendStored(dst, stored []byte) ([]byte, *record.Record, error) {
	head, occurredAt, ok := storedHead(stored)
	if !ok || e.Format == FormatDebezium {
		rec, err := record.Decode(stored)
		if err != nil {
			return dst, nil, err
		}
		dst, err = e.Append(dst, rec)
		return dst, rec, err
	}
	body := stored[record.HeaderSize:]
	// The stored time is already RFC 3339 with nanoseconds in UTC, the
	// form appendTime writes.
	dst, err := e.appendEnvelope(dst, head, occurredAt)
	if err != nil {
		return dst, nil, err
	}
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, head.Seq, 10)
	dst = append(dst, ',')
	dst = append(dst, body[1:len(body)-1]...)
	dst = append(dst, `,"recorded_at":`...)
	dst = appendTime(dst, head.RecordedAt)
	return append(dst, "}}"...), head, nil
}

// storedHead reads the envelope's fields from stored bytes: the header,
// and the body's id, source name and table, op, key and occurred_at
// literal. The body is the log's own canonical encoding (checked against
// its frame checksum when read), whose members come in a fixed order
// (record.AppendBody) with occurred_at last, so the fields are read from
// its two ends and the images between are not walked at all. ok is false
// for anything else, which Decode then reads (and refuses, if it is not a
// record).
func storedHead(stored []byte) (head *record.Record, occurredAt []byte, ok bool) {
	seq, err := record.Seq(stored)
	if err != nil {
		return nil, nil, false
	}
	recordedAt, err := record.RecordedAt(stored)
	if err != nil {
		return nil, nil, false
	}
	body := stored[record.HeaderSize:]
	// The end: ,"occurred_at":"<RFC 3339 time>"} (a time has no quote or
	// backslash in it).
	const timeMember = `,"occurred_at":`
	if len(body) < 2 || body[len(body)-1] != '}' || body[len(body)-2] != '"' {
		return nil, nil, false
	}
	open := bytes.LastIndexByte(body[:len(body)-2], '"')
	if open < len(timeMember) || !bytes.Equal(body[open-len(timeMember):open], []byte(timeMember)) ||
		bytes.IndexByte(body[open:len(body)-1], '\\') >= 0 {
		return nil, nil, false
	}
	occurredAt = body[open : len(body)-1]
	// The start: {"id":…,"source":{"name":…,"kind":…[,"database":…][,"schema":…],"table":…},"op":…,"key":{…}
	head = &record.Record{Seq: seq, RecordedAt: recordedAt}
	i := 0
	str := func(prefix string) (string, bool) {
		if !bytes.HasPrefix(body[i:], []byte(prefix)) {
			return "", false
		}
		v := i + len(prefix)
		end, _, err := jsonscan.Str(body, v)
		if err != nil {
			return "", false
		}
		i = end
		return jsonscan.Unquote(body[v:end]), true
	}
	optional := func(prefix string) bool {
		if !bytes.HasPrefix(body[i:], []byte(prefix)) {
			return true
		}
		_, ok := str(prefix)
		return ok
	}
	var okID, okName, okKind, okTable, okOp bool
	if head.ID, okID = str(`{"id":`); !okID {
		return nil, nil, false
	}
	if head.Source.Name, okName = str(`,"source":{"name":`); !okName {
		return nil, nil, false
	}
	if _, okKind = str(`,"kind":`); !okKind || !optional(`,"database":`) || !optional(`,"schema":`) {
		return nil, nil, false
	}
	if head.Source.Table, okTable = str(`,"table":`); !okTable {
		return nil, nil, false
	}
	var op string
	if op, okOp = str(`},"op":`); !okOp {
		return nil, nil, false
	}
	head.Op = record.Op(op)
	const keyMember = `,"key":`
	if !bytes.HasPrefix(body[i:], []byte(keyMember)) {
		return nil, nil, false
	}
	v := i + len(keyMember)
	end, err := jsonscan.Skip(body, v, 1)
	if err != nil || jsonscan.Kind(body, v) != jsonscan.Object || end > open-len(timeMember) {
		return nil, nil, false
	}
	head.Key = body[v:end:end]
	return head, occurredAt, true
}
