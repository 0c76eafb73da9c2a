package record

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// CloudEvents 1.0 as event records. A CloudEvent names itself by source
// and id (the spec makes the pair unique), so the record's position is
// that pair: a producer retrying an event stores it once.
//
//	source.name  ← source        op    event
//	source.table ← type          key   {"id": id}
//	occurred_at  ← time          after {"data": data, "subject", "datacontenttype", "dataschema", other extensions}
//	actor        ← the extension attributes actorid, actortype, actorapp, actorip, actorrequestid

// CloudEvent is one event's attributes and data as a transport gave them:
// Attrs holds every context attribute (structured mode: the JSON members
// but data; binary mode: the ce- headers, lowercased, without the prefix).
type CloudEvent struct {
	Attrs map[string]string
	// Data is the event's data as JSON (a JSON value), or nil.
	Data json.RawMessage
}

// actorAttrs maps extension attributes to actor fields.
var actorAttrs = map[string]string{
	"actorid": "id", "actortype": "type", "actorapp": "app", "actorip": "ip", "actorrequestid": "request_id",
}

// ParseStructuredCloudEvent reads one structured-mode event (a JSON object).
func ParseStructuredCloudEvent(data []byte) (*CloudEvent, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fieldErr("", "a structured CloudEvent must be a JSON object: %v", err)
	}
	ev := &CloudEvent{Attrs: map[string]string{}}
	for k, v := range m {
		switch k {
		case "data":
			ev.Data = v
		case "data_base64":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fieldErr("data_base64", "must be a base64 string")
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				return nil, fieldErr("data_base64", "must be standard base64")
			}
			ev.Data, _ = json.Marshal(map[string]string{"base64": s})
		default:
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				// Integer and boolean extension attributes.
				s = string(v)
			}
			ev.Attrs[k] = s
		}
	}
	return ev, nil
}

// CloudEventRecord maps a CloudEvent to its event record (id derived).
func CloudEventRecord(ev *CloudEvent, now time.Time) (*Record, error) {
	a := ev.Attrs
	if a["specversion"] != "1.0" {
		return nil, fieldErr("specversion", "must be \"1.0\", got %q", a["specversion"])
	}
	for _, k := range []string{"id", "source", "type"} {
		if a[k] == "" {
			return nil, fieldErr(k, "is required")
		}
		if len(a[k]) > MaxNameBytes || !utf8.ValidString(a[k]) {
			return nil, fieldErr(k, "must be UTF-8 of at most %d bytes", MaxNameBytes)
		}
	}
	r := &Record{Source: Source{Name: a["source"], Kind: "http", Table: a["type"]}, Op: OpEvent, OccurredAt: now.UTC()}
	if t := a["time"]; t != "" {
		at, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return nil, fieldErr("time", "must be an RFC 3339 timestamp, got %q", t)
		}
		r.OccurredAt = at.UTC()
	}
	key, _ := json.Marshal(map[string]string{"id": a["id"]})
	r.Key = key
	after := map[string]any{}
	actor := map[string]string{}
	for k, v := range a {
		switch {
		case k == "specversion" || k == "id" || k == "source" || k == "type" || k == "time":
		case actorAttrs[k] != "":
			actor[actorAttrs[k]] = v
		default:
			after[k] = v
		}
	}
	if len(ev.Data) > 0 {
		if !json.Valid(ev.Data) {
			return nil, fieldErr("data", "is not valid JSON")
		}
		after["data"] = ev.Data
	}
	b, err := json.Marshal(after)
	if err != nil {
		return nil, fieldErr("data", "%v", err)
	}
	if r.After, err = Canonical(b); err != nil {
		return nil, fieldErr("data", "%v", err)
	}
	if len(actor) > 0 {
		ab, _ := json.Marshal(actor)
		r.Actor = ab
	}
	if r.Changed, err = ChangedFields(nil, r.After); err != nil {
		return nil, err
	}
	zero := int64(0)
	r.Tx = &Tx{Position: "cloudevents " + a["source"] + " " + a["id"], Index: &zero}
	r.ID = DeriveID(r)
	return r, nil
}

// BinaryCloudEvent builds an event from binary mode: ce-* headers (given
// lowercased without the prefix) and the body; a body whose content type
// is not JSON is kept as base64.
func BinaryCloudEvent(attrs map[string]string, contentType string, body []byte) (*CloudEvent, error) {
	ev := &CloudEvent{Attrs: attrs}
	if contentType != "" {
		attrs["datacontenttype"] = contentType
	}
	if len(body) == 0 {
		return ev, nil
	}
	ct := strings.ToLower(contentType)
	if strings.HasPrefix(ct, "application/json") || strings.HasSuffix(strings.SplitN(ct, ";", 2)[0], "+json") {
		if !json.Valid(body) {
			return nil, fieldErr("data", "the body is declared %s but is not valid JSON", contentType)
		}
		ev.Data = body
		return ev, nil
	}
	ev.Data, _ = json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString(body)})
	return ev, nil
}

// String names an event for errors: its source and id.
func (ev *CloudEvent) String() string {
	return fmt.Sprintf("CloudEvent %s/%s", ev.Attrs["source"], ev.Attrs["id"])
}
