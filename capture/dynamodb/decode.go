package dynamodb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
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

// localTTLEvent is the eventName DynamoDB Local (3.3.0) gives the stream
// records of its Time to Live deletions, with no userIdentity: its Java
// SDK's name for an enum value it has no name for. AWS's DynamoDB sends
// REMOVE with userIdentity dynamodb.amazonaws.com instead. Only a record
// with an old image and no new one is taken as such a deletion.
const localTTLEvent types.OperationType = "UNKNOWN_TO_SDK_VERSION"

// decoder turns stream records of one table into lineage records. It is
// used by one goroutine at a time.
type decoder struct {
	source string
	table  string
	// partial: the stream may lack an image (Config.AllowPartialImages);
	// a missing one is recorded as a missingImage marker.
	partial bool
	ids     record.IDDeriver
	buf     []byte
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
	ttl := r.UserIdentity != nil && r.UserIdentity.PrincipalId != nil && *r.UserIdentity.PrincipalId == ttlPrincipal
	switch r.EventName {
	case types.OperationTypeInsert:
		rec.Op = record.OpInsert
	case types.OperationTypeModify:
		rec.Op = record.OpUpdate
	case types.OperationTypeRemove:
		rec.Op = record.OpDelete
	case localTTLEvent:
		if sr.OldImage == nil || sr.NewImage != nil {
			return nil, where(fmt.Errorf("eventName %q without the old image alone of DynamoDB Local's Time to Live deletions", r.EventName))
		}
		rec.Op, ttl = record.OpDelete, true
	default:
		return nil, where(fmt.Errorf("eventName %q: want INSERT, MODIFY or REMOVE", r.EventName))
	}
	if len(sr.Keys) == 0 {
		return nil, where(fmt.Errorf("dynamodb.Keys is empty"))
	}
	key, err := d.object(sr.Keys, "")
	if err != nil {
		return nil, where(fmt.Errorf("key attributes (Keys): %w", err))
	}
	rec.Key = key.js
	var before, after image
	oldCtx, newCtx := sr.OldImage[dynamoctx.Attribute], sr.NewImage[dynamoctx.Attribute]
	missing := false
	if rec.Op != record.OpInsert {
		switch {
		case sr.OldImage == nil && d.partial:
			rec.Before, missing = missingImage("OldImage", sr.StreamViewType), true
		case sr.OldImage == nil:
			return nil, where(fmt.Errorf("%s without OldImage: the stream's view type must be NEW_AND_OLD_IMAGES", r.EventName))
		default:
			if before, err = d.object(sr.OldImage, dynamoctx.Attribute); err != nil {
				return nil, where(fmt.Errorf("OldImage: %w", err))
			}
			rec.Before = before.js
		}
	}
	if rec.Op != record.OpDelete {
		switch {
		case sr.NewImage == nil && d.partial:
			rec.After, missing = missingImage("NewImage", sr.StreamViewType), true
		case sr.NewImage == nil:
			return nil, where(fmt.Errorf("%s without NewImage: the stream's view type must be NEW_AND_OLD_IMAGES", r.EventName))
		default:
			if after, err = d.object(sr.NewImage, dynamoctx.Attribute); err != nil {
				return nil, where(fmt.Errorf("NewImage: %w", err))
			}
			rec.After = after.js
		}
	}
	if !missing {
		// With an image missing, what changed is not known.
		rec.Changed = changedFields(before, after)
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
	case ttl:
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

// image is an item (or key) as canonical JSON, and each top-level
// member's value as a sub-slice of it, for changed.
type image struct {
	js      json.RawMessage
	members map[string][]byte
}

// object maps an item (or its key) to canonical JSON, without the member
// named skip. appendMap writes canonical JSON itself (members sorted,
// strings escaped as RFC 8785 does, numbers as given) as long as every
// member name sorts the same in UTF-8 and UTF-16, which holds for names
// without characters above U+D7FF; other names go through
// record.Canonical, which orders by UTF-16 as RFC 8785 says.
func (d *decoder) object(m map[string]types.AttributeValue, skip string) (image, error) {
	names := make([]string, 0, len(m))
	fast := true
	for k := range m {
		if k != skip {
			names = append(names, k)
			fast = fast && bmpLow(k)
		}
	}
	slices.Sort(names)
	b := d.buf[:0]
	b = append(b, '{')
	offs := make([]int, 0, 2*len(names))
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		start := len(b)
		var err error
		if b, err = appendAttrChecked(b, m[k], &fast); err != nil {
			return image{}, fmt.Errorf("%s: %w", k, err)
		}
		offs = append(offs, start, len(b))
	}
	b = append(b, '}')
	d.buf = b
	if !fast {
		c, err := record.Canonical(b)
		if err != nil {
			return image{}, fmt.Errorf("canonical JSON: %w", err)
		}
		members, err := topMembers(c)
		return image{js: c, members: members}, err
	}
	js := json.RawMessage(slices.Clone(b))
	members := make(map[string][]byte, len(names))
	for i, k := range names {
		members[k] = js[offs[2*i]:offs[2*i+1]]
	}
	return image{js: js, members: members}, nil
}

// appendAttrChecked is appendAttr that clears *fast when a nested map has
// a name that needs record.Canonical's ordering.
func appendAttrChecked(b []byte, v types.AttributeValue, fast *bool) ([]byte, error) {
	if *fast && !namesBMPLow(v) {
		*fast = false
	}
	return appendAttr(b, v)
}

func namesBMPLow(v types.AttributeValue) bool {
	switch v := v.(type) {
	case *types.AttributeValueMemberM:
		for k, e := range v.Value {
			if !bmpLow(k) || !namesBMPLow(e) {
				return false
			}
		}
	case *types.AttributeValueMemberL:
		for _, e := range v.Value {
			if !namesBMPLow(e) {
				return false
			}
		}
	}
	return true
}

// bmpLow reports whether s has no character above U+D7FF: the UTF-8 byte
// order of such names is their UTF-16 order.
func bmpLow(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0xED { // lead bytes of U+D000 and above
			return false
		}
	}
	return true
}

// topMembers splits a canonical object into its members' values.
func topMembers(js []byte) (map[string][]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out, nil
}

// changedFields names the top-level members that differ between two
// images (record.ChangedFields, without parsing them again).
func changedFields(before, after image) []string {
	var out []string
	for k, av := range after.members {
		if bv, ok := before.members[k]; !ok || !bytes.Equal(av, bv) {
			out = append(out, k)
		}
	}
	for k := range before.members {
		if _, ok := after.members[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// missingImage is the image of a stream without it (view type NEW_IMAGE,
// OLD_IMAGE or KEYS_ONLY, with Config.AllowPartialImages): a marker object
// saying which image DynamoDB did not send and why, as a "$too_large"
// value says a value was left out.
func missingImage(which string, view types.StreamViewType) json.RawMessage {
	js, _ := json.Marshal(map[string]map[string]string{"$missing_image": {"image": which, "stream_view_type": string(view)}})
	return js
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
