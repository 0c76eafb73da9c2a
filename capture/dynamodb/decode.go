package dynamodb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/stele/stele/capture/dynamoctx"
	"github.com/stele/stele/record"
)

// Kind is the source.kind of the records.
const Kind = "dynamodb"

// The actor of items deleted by DynamoDB's Time to Live process: the
// stream names it with userIdentity {type: Service, principalId:
// dynamodb.amazonaws.com}.
const (
	ttlPrincipal = "dynamodb.amazonaws.com"
	ttlActor     = `{"id":"dynamodb.amazonaws.com","type":"service"}`
	ttlCause     = `{"type":"ttl_expiry"}`
)

// decoder turns stream records of one table into lineage records. It is
// used by one goroutine at a time.
type decoder struct {
	source string
	table  string
	ids    record.IDDeriver
	buf    []byte
}

// decode returns the lineage record of one stream record of shard, or nil
// for a change that is not recorded (a MODIFY of nothing but _stele).
func (d *decoder) decode(shard string, r *types.Record) (*record.Record, error) {
	sr := r.Dynamodb
	if sr == nil || sr.SequenceNumber == nil {
		return nil, fmt.Errorf("stream record %s has no dynamodb.SequenceNumber", strOr(r.EventID, "(no eventID)"))
	}
	seq := *sr.SequenceNumber
	where := func(err error) error {
		return fmt.Errorf("stream record %s of shard %s (sequence number %s): %w", strOr(r.EventID, "?"), shard, seq, err)
	}
	rec := &record.Record{Source: record.Source{Name: d.source, Kind: Kind, Table: d.table}}
	switch r.EventName {
	case types.OperationTypeInsert:
		rec.Op = record.OpInsert
	case types.OperationTypeModify:
		rec.Op = record.OpUpdate
	case types.OperationTypeRemove:
		rec.Op = record.OpDelete
	default:
		return nil, where(fmt.Errorf("eventName %q: want INSERT, MODIFY or REMOVE", r.EventName))
	}
	var err error
	if len(sr.Keys) == 0 {
		return nil, where(fmt.Errorf("dynamodb.Keys is empty"))
	}
	if rec.Key, err = d.object(sr.Keys, ""); err != nil {
		return nil, where(fmt.Errorf("key attributes (Keys): %w", err))
	}
	oldCtx, newCtx := sr.OldImage[dynamoctx.Attribute], sr.NewImage[dynamoctx.Attribute]
	if rec.Op != record.OpInsert {
		if sr.OldImage == nil {
			return nil, where(fmt.Errorf("%s without OldImage: the stream's view type must be NEW_AND_OLD_IMAGES", r.EventName))
		}
		if rec.Before, err = d.object(sr.OldImage, dynamoctx.Attribute); err != nil {
			return nil, where(fmt.Errorf("OldImage: %w", err))
		}
	}
	if rec.Op != record.OpDelete {
		if sr.NewImage == nil {
			return nil, where(fmt.Errorf("%s without NewImage: the stream's view type must be NEW_AND_OLD_IMAGES", r.EventName))
		}
		if rec.After, err = d.object(sr.NewImage, dynamoctx.Attribute); err != nil {
			return nil, where(fmt.Errorf("NewImage: %w", err))
		}
	}
	if rec.Changed, err = record.ChangedFields(rec.Before, rec.After); err != nil {
		return nil, where(err)
	}
	// The context: a TTL deletion is DynamoDB's own; otherwise the
	// _stele attribute written with this change (see package dynamoctx).
	var oldJS, newJS []byte
	if oldCtx != nil {
		if oldJS, err = appendAttr(nil, oldCtx); err != nil {
			return nil, where(fmt.Errorf("OldImage %s: %w", dynamoctx.Attribute, err))
		}
	}
	if newCtx != nil {
		if newJS, err = appendAttr(nil, newCtx); err != nil {
			return nil, where(fmt.Errorf("NewImage %s: %w", dynamoctx.Attribute, err))
		}
	}
	if rec.Op == record.OpUpdate && len(rec.Changed) == 0 && newJS != nil && !bytes.Equal(oldJS, newJS) {
		return nil, nil // a context-only write, such as a delete marker
	}
	switch {
	case r.UserIdentity != nil && r.UserIdentity.PrincipalId != nil && *r.UserIdentity.PrincipalId == ttlPrincipal:
		rec.Actor, rec.Cause = json.RawMessage(ttlActor), json.RawMessage(ttlCause)
	case rec.Op == record.OpDelete:
		if c := parseContext(oldJS); c.op == dynamoctx.OpDelete {
			rec.Actor, rec.Cause = c.actor, c.cause
		}
	case newJS != nil && !bytes.Equal(oldJS, newJS):
		c := parseContext(newJS)
		rec.Actor, rec.Cause = c.actor, c.cause
	}
	occurred := time.Now().UTC()
	if sr.ApproximateCreationDateTime != nil {
		occurred = sr.ApproximateCreationDateTime.UTC()
	}
	rec.OccurredAt = occurred
	idx := int64(0)
	rec.Tx = &record.Tx{ID: strOr(r.EventID, ""), Position: shard + "/" + seq, Index: &idx, CommitTime: &occurred}
	rec.ID = d.ids.Derive(rec)
	return rec, nil
}

// object maps an item (or its key) to canonical JSON, without the member
// named skip.
func (d *decoder) object(m map[string]types.AttributeValue, skip string) (json.RawMessage, error) {
	if skip != "" {
		if _, ok := m[skip]; ok {
			cp := make(map[string]types.AttributeValue, len(m))
			for k, v := range m {
				if k != skip {
					cp[k] = v
				}
			}
			m = cp
		}
	}
	b, err := appendMap(d.buf[:0], m)
	if err != nil {
		return nil, err
	}
	d.buf = b
	c, err := record.Canonical(b)
	if err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	return c, nil
}

type itemContext struct {
	actor, cause json.RawMessage
	op           string
}

// parseContext reads a _stele value: {"actor": {…}, "cause": {…}, "op": …},
// as a map attribute or a string of JSON. Anything else is no context.
func parseContext(js []byte) itemContext {
	if len(js) == 0 {
		return itemContext{}
	}
	if js[0] == '"' {
		var s string
		if json.Unmarshal(js, &s) != nil {
			return itemContext{}
		}
		js = []byte(s)
	}
	var c struct {
		Actor json.RawMessage `json:"actor"`
		Cause json.RawMessage `json:"cause"`
		Op    string          `json:"op"`
	}
	if json.Unmarshal(js, &c) != nil {
		return itemContext{}
	}
	return itemContext{actor: canonObject(c.Actor), cause: canonObject(c.Cause), op: c.Op}
}

func canonObject(raw []byte) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	c, err := record.Canonical(raw)
	if err != nil {
		return nil
	}
	return c
}

func strOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}
