package record

import (
	"encoding/json"
	"testing"
)

// The fast paths must agree with the full parser on every input they
// accept; inputs they decline go to the full parser anyway.
func TestKeyFastPathAgreesWithParser(t *testing.T) {
	keys := []string{
		`{"id":42}`, `{"id":-1.5e3}`, `{"id":"abc"}`, `{"id":""}`, `{"id":true}`, `{"id":null}`,
		`{"id":"a,b=c%d"}`, `{"a":1,"b":2}`, `{"a":"x","b":"y"}`, `{"a":"x,\"b\":y"}`, `{"id":{"x":1}}`,
		`{"id":[1,2]}`, `{"id":"x\"y"}`, `{"i\"d":1}`, `{"id":"東京"}`, `{"id":12345678901234567890.123}`,
		`{"id":"a","b":"c"}`, `{"a":1,"b":"x","c":null}`,
	}
	for _, k := range keys {
		want, werr := slowKeyString(json.RawMessage(k))
		got, ok := singleScalarKey([]byte(k))
		if ok && (werr != nil || got != want) {
			t.Errorf("key %s: fast path %q, parser %q (%v)", k, got, want, werr)
		}
		if all, err := KeyString(json.RawMessage(k)); err != werr && (err == nil || werr == nil) || all != want {
			t.Errorf("key %s: KeyString %q %v, parser %q %v", k, all, err, want, werr)
		}
	}
}

func slowKeyString(key json.RawMessage) (string, error) { return parsedKeyString(key) }

func TestActorFastPathAgreesWithParser(t *testing.T) {
	actors := []string{
		`{"id":"alice"}`, `{"app":"crm","id":"alice","ip":"10.0.0.1"}`, `{"app":"crm"}`, `{"id":7}`,
		`{"app":{"id":"nested"},"id":"top"}`, `{"app":"x\"id\":\"y","id":"z"}`, `{"roles":["id"],"id":"a"}`,
		`{"aid":"no","id":"yes"}`, `{"id":""}`, `{"note":"\"id\":\"fake\"","id":"real"}`, `{"name":"id","id":"x"}`,
		`{"id":"é"}`, `{}`, `{"id" :"a"}`, `{"id":"a","type":7}`,
	}
	for _, a := range actors {
		r := &Record{Actor: json.RawMessage(a)}
		want := slowActorID(r)
		if got, ok := flatActorID([]byte(a)); ok && got != want {
			t.Errorf("actor %s: fast path %q, parser %q", a, got, want)
		}
		if got := r.ActorID(); got != want {
			t.Errorf("actor %s: ActorID %q, parser %q", a, got, want)
		}
	}
}

// The fast path must serve the actors capture and the SDK write, or it
// saves nothing.
func TestActorFastPathTaken(t *testing.T) {
	for _, a := range []string{`{"id":"alice"}`, `{"app":"crm","id":"alice","ip":"10.0.0.1"}`, `{"id":"unknown","type":"unknown"}`, `{}`, `{"app":"crm"}`} {
		if _, ok := flatActorID([]byte(a)); !ok {
			t.Errorf("actor %s left to the parser", a)
		}
	}
}

func slowActorID(r *Record) string {
	var a map[string]json.RawMessage
	if json.Unmarshal(r.Actor, &a) != nil {
		return ""
	}
	var id string
	if json.Unmarshal(a["id"], &id) != nil {
		return ""
	}
	return id
}

func FuzzKeyFastPaths(f *testing.F) {
	for _, s := range []string{`{"id":42}`, `{"id":"abc"}`, `{"a":1,"b":2}`, `{"app":"crm","id":"alice"}`, `{"id":"x\"y"}`, `{"app":{"id":"n"},"id":"t"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, ok := singleScalarKey(data); ok {
			want, err := parsedKeyString(data)
			if err != nil || got != want {
				t.Fatalf("key %q: fast path %q, parser %q (%v)", data, got, want, err)
			}
		}
		if got, ok := flatActorID(data); ok && json.Valid(data) {
			if want := slowActorID(&Record{Actor: data}); got != want {
				t.Fatalf("actor %q: fast path %q, parser %q", data, got, want)
			}
		}
	})
}
