package publish

import (
	"bytes"
	"fmt"
	"net/url"
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
	key, err := record.KeyString(head.Key)
	if err != nil {
		return dst, nil, fmt.Errorf("record %d: key: %w", head.Seq, err)
	}
	src := e.Source
	if src == "" {
		src = "stele://stele.local/log"
	}
	body := stored[record.HeaderSize:]
	dst = append(dst, `{"specversion":"1.0","id":`...)
	dst = appendString(dst, head.ID)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, src+"/"+url.PathEscape(head.Source.Name))
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, TypePrefix+string(head.Op))
	dst = append(dst, `,"subject":`...)
	dst = appendString(dst, head.Source.Table+"/"+key)
	// The stored time is already RFC 3339 with nanoseconds in UTC, the
	// form appendTime writes.
	dst = append(dst, `,"time":`...)
	dst = append(dst, occurredAt...)
	dst = append(dst, `,"datacontenttype":"application/json","stelseq":"`...)
	dst = strconv.AppendUint(dst, head.Seq, 10)
	dst = append(dst, `","data":{"seq":`...)
	dst = strconv.AppendUint(dst, head.Seq, 10)
	dst = append(dst, ',')
	dst = append(dst, body[1:len(body)-1]...)
	dst = append(dst, `,"recorded_at":`...)
	dst = appendTime(dst, head.RecordedAt)
	return append(dst, "}}"...), head, nil
}

// storedHead reads the envelope's fields from stored bytes: the header,
// and the body's id, source name and table, op, key and occurred_at
// literal. ok is false for anything it does not expect, which Decode then
// reads (and refuses, if it is not a record).
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
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, nil, false
	}
	head = &record.Record{Seq: seq, RecordedAt: recordedAt}
	var id, op, name, table []byte
	str := func(v int, into *[]byte) (int, error) {
		end, _, err := jsonscan.Str(body, v)
		if err == nil {
			*into = body[v:end]
		}
		return end, err
	}
	end, err := jsonscan.Members(body, 0, 0, func(lit []byte, v int) (int, error) {
		switch string(lit) {
		case `"id"`:
			return str(v, &id)
		case `"op"`:
			return str(v, &op)
		case `"occurred_at"`:
			return str(v, &occurredAt)
		case `"key"`:
			end, err := jsonscan.Skip(body, v, 1)
			if err == nil {
				head.Key = body[v:end:end]
			}
			return end, err
		case `"source"`:
			if jsonscan.Kind(body, v) != jsonscan.Object {
				return 0, jsonscan.ErrSyntax
			}
			return jsonscan.Members(body, v, 1, func(lit []byte, v int) (int, error) {
				switch string(lit) {
				case `"name"`:
					return str(v, &name)
				case `"table"`:
					return str(v, &table)
				}
				return jsonscan.Skip(body, v, 2)
			})
		}
		return jsonscan.Skip(body, v, 1)
	})
	if err != nil || end != len(body) || id == nil || op == nil || name == nil || table == nil || head.Key == nil || occurredAt == nil ||
		bytes.IndexByte(occurredAt, '\\') >= 0 {
		return nil, nil, false
	}
	head.ID, head.Op = jsonscan.Unquote(id), record.Op(jsonscan.Unquote(op))
	head.Source.Name, head.Source.Table = jsonscan.Unquote(name), jsonscan.Unquote(table)
	return head, occurredAt, true
}
