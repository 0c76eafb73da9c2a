package debezium

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
