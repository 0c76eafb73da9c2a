package debezium

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-json-experiment/json"
)

// FuzzDecode: any message either decodes to an event whose record is
// complete, or fails with ErrMalformed; it never panics.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, fn := range files {
		if b, err := os.ReadFile(fn); err == nil {
			f.Add([]byte(`{"id":1}`), b)
		}
	}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		ev, err := (&Decoder{SourceName: "fuzz"}).Decode(key, value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if ev.Kind == Change {
			r := ev.Record
			if r.ID == "" || r.Tx == nil || r.Tx.Position == "" || len(r.Key) == 0 || r.Source.Table == "" || !r.Op.Valid() {
				t.Fatalf("incomplete record %+v", r)
			}
		}
	})
}

// FuzzFastPathsMatchUnmarshal: whatever the scanning fast paths accept,
// json.Unmarshal accepts too and decodes to the same fields, so the fast
// paths change no result and no error.
func FuzzFastPathsMatchUnmarshal(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, fn := range files {
		if b, err := os.ReadFile(fn); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"op":"c","ts_ms":1,"before":null,"after":{"id":1},"source":{"connector":"postgresql","lsn":5,"txId":null,"gtid":null},"transaction":{"id":"t","total_order":2}}`))
	f.Add([]byte(`{"status":"END","id":"t","event_count":3,"data_collections":[]}`))
	f.Add([]byte(`{"op":"c","o\u0070":"d"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if schema, body, ok := unwrapFast(b); ok {
			var env envelope
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatalf("%q: unwrapFast ok, Unmarshal: %v", b, err)
			}
			if len(env.Payload) > 0 && len(env.Schema) > 0 {
				if !bytes.Equal(schema, env.Schema) || !bytes.Equal(body, env.Payload) {
					t.Fatalf("%q: unwrapFast schema %q payload %q, Unmarshal %q %q", b, schema, body, env.Schema, env.Payload)
				}
			} else if schema != nil || !bytes.Equal(bytes.TrimSpace(b), body) {
				t.Fatalf("%q: unwrapFast schema %q body %q for a bare payload", b, schema, body)
			}
		}
		var fast, slow payload
		if payloadFast(b, &fast) {
			if err := json.Unmarshal(b, &slow); err != nil {
				t.Fatalf("%q: payloadFast ok, Unmarshal: %v", b, err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q: payloadFast %+v, Unmarshal %+v", b, fast, slow)
			}
		}
		// decodeFast, the one-walk path Decode takes, gives what unwrap,
		// payloadFast (or Unmarshal) and sourceFast (or Unmarshal) give.
		var p1 payload
		var s1 sourceBlock
		if schema, body, filled, srcOK, ok := decodeFast(b, &p1, &s1); ok {
			ws, wb, err := unwrap(b, "value")
			if err != nil || !bytes.Equal(schema, ws) || !bytes.Equal(body, wb) {
				t.Fatalf("%q: decodeFast schema %q body %q, unwrap %q %q %v", b, schema, body, ws, wb, err)
			}
			if filled {
				var p2 payload
				if err := json.Unmarshal(body, &p2); err != nil || !reflect.DeepEqual(p1, p2) {
					t.Fatalf("%q: decodeFast %+v, Unmarshal %+v %v", b, p1, p2, err)
				}
				if srcOK {
					var s2 sourceBlock
					if err := json.Unmarshal(p1.Source, &s2); err != nil || !reflect.DeepEqual(s1, s2) {
						t.Fatalf("%q: decodeFast source %+v, Unmarshal %+v %v", b, s1, s2, err)
					}
				}
			}
		}
		var fs, ss sourceBlock
		if sourceFast(b, &fs) {
			if err := json.Unmarshal(b, &ss); err != nil {
				t.Fatalf("%q: sourceFast ok, Unmarshal: %v", b, err)
			}
			if !reflect.DeepEqual(fs, ss) {
				t.Fatalf("%q: sourceFast %+v, Unmarshal %+v", b, fs, ss)
			}
		}
	})
}
