package logstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// bigCopy is record i with the images of r.
func bigCopy(r *record.Record, i int) *record.Record {
	c := *testRecord(i)
	c.After = r.After
	return &c
}

// TestReadRawRangeMatchesReadRaw: ranges of several lengths (to the end
// and past it too) from every seq of a log written in batches of several
// sizes (so batch trailers sit between some records) and holding records
// larger than one range's span read what ReadRaw reads, record by record:
// at least one record, and a whole range of small ones at once.
func TestReadRawRangeMatchesReadRaw(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	n := 0
	for _, batch := range []int{1, 7, 1, 30, 2} {
		appendN(t, s, n, batch)
		n += batch
	}
	big := testRecord(n)
	big.After = json.RawMessage(`{"note":"` + strings.Repeat("x", 700<<10) + `"}`)
	if _, err := s.Append(context.Background(), []*record.Record{big, testRecord(n + 1), bigCopy(big, n+2)}); err != nil {
		t.Fatal(err)
	}
	n += 3
	appendN(t, s, n, 5)
	n += 5
	want := make([][]byte, n)
	for seq := range want {
		raw, err := s.ReadRaw(uint64(seq))
		if err != nil {
			t.Fatal(err)
		}
		want[seq] = raw
	}
	for from := range n {
		for _, max := range []int{0, 1, 2, 3, 8, n - from - 1, n - from, n - from + 1} {
			got, err := s.ReadRawRange(uint64(from), max, nil)
			if err != nil {
				t.Fatalf("ReadRawRange(%d, %d): %v", from, max, err)
			}
			if len(got) == 0 || len(got) > max && max > 0 {
				t.Fatalf("ReadRawRange(%d, %d) read %d records", from, max, len(got))
			}
			for i, raw := range got {
				if !bytes.Equal(raw, want[from+i]) {
					t.Fatalf("ReadRawRange(%d, %d): record %d differs from ReadRaw's", from, max, from+i)
				}
			}
		}
	}
	if got, err := s.ReadRawRange(0, 8, nil); err != nil || len(got) != 8 {
		t.Errorf("ReadRawRange(0, 8) of small records read %d (%v), want all 8 at once", len(got), err)
	}
	if _, err := s.ReadRawRange(uint64(n), 10, nil); !errors.Is(err, logstore.ErrNotFound) {
		t.Errorf("ReadRawRange past the end: %v, want ErrNotFound", err)
	}
}

// TestReadRawRangeDetectsDamage: a byte changed on disk inside a record
// read as part of a range is ErrTampered naming that record's seq, and the
// records before it are returned intact.
func TestReadRawRangeDetectsDamage(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	defer s.Close()
	appendN(t, s, 0, 20)
	idx, err := os.ReadFile(filepath.Join(dir, "records.idx"))
	if err != nil {
		t.Fatal(err)
	}
	const damaged = 12
	off := int64(binary.LittleEndian.Uint64(idx[8*damaged:]))
	f, err := os.OpenFile(filepath.Join(dir, "records.log"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], off+40); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b[:], off+40); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadRawRange(5, 15, nil)
	if !errors.Is(err, logstore.ErrTampered) || !strings.Contains(err.Error(), "seq 12 ") {
		t.Fatalf("ReadRawRange over a damaged record: %v, want ErrTampered naming seq 12", err)
	}
	if len(got) != damaged-5 {
		t.Fatalf("ReadRawRange returned %d records before the damaged one, want %d", len(got), damaged-5)
	}
	for i, raw := range got {
		if seq, err := record.Seq(raw); err != nil || seq != uint64(5+i) {
			t.Fatalf("record %d of the range has seq %d (%v)", i, seq, err)
		}
	}
}
