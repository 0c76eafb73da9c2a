package record

import (
	"errors"
	"testing"
	"time"
)

const sampleCloudEvent = `{"specversion":"1.0","id":"e-1","source":"/shop/orders","type":"order.placed","time":"2026-01-02T03:04:05Z","actorid":"alice","data":{"order":7}}`

func TestCloudEventRecordID(t *testing.T) {
	ev, err := ParseStructuredCloudEvent([]byte(sampleCloudEvent))
	if err != nil {
		t.Fatal(err)
	}
	a, err := CloudEventRecord(ev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := CloudEventRecord(ev, time.Now().Add(time.Hour))
	if a.ID != b.ID || a.ID[0] != 'p' {
		t.Errorf("ids %s and %s: the same event must have one positioned id", a.ID, b.ID)
	}
	if string(a.Actor) != `{"id":"alice"}` || string(a.After) != `{"data":{"order":7}}` {
		t.Errorf("actor %s after %s", a.Actor, a.After)
	}
}

func FuzzCloudEvent(f *testing.F) {
	f.Add([]byte(sampleCloudEvent))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","data_base64":"aGk="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseStructuredCloudEvent(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		r, err := CloudEventRecord(ev, time.Unix(0, 0))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if r.ID == "" || r.Op != OpEvent || r.Source.Name == "" || r.Source.Table == "" || len(r.Key) == 0 {
			t.Fatalf("incomplete record %+v", r)
		}
	})
}

func BenchmarkCloudEventRecord(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ev, err := ParseStructuredCloudEvent([]byte(sampleCloudEvent))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := CloudEventRecord(ev, time.Unix(0, 0)); err != nil {
			b.Fatal(err)
		}
	}
}
