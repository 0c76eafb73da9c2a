package mysql

import (
	"bytes"
	"encoding/json"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// keyAndImages, the stream's one allocation for a change, must give the
// bytes keyOf and image give, each slice capped so that appending to one
// leaves the others alone, and the same error for a missing key column.
func TestKeyAndImagesMatchKeyOfAndImage(t *testing.T) {
	cols := []column{
		{name: "id", typ: gomysql.MYSQL_TYPE_LONGLONG},
		{name: "note", typ: gomysql.MYSQL_TYPE_VARCHAR},
		{name: "b", typ: gomysql.MYSQL_TYPE_LONG},
	}
	for _, pk := range [][]int{{0}, {2, 0}, nil} {
		tbl, err := newTable("db", "t", cols, pk)
		if err != nil {
			t.Fatal(err)
		}
		full := rowVals{json.RawMessage(`7`), json.RawMessage(`"x"`), json.RawMessage(`3`)}
		partial := rowVals{json.RawMessage(`7`), nil, json.RawMessage(`4`)}
		for _, c := range []struct{ before, after rowVals }{
			{nil, full}, {full, nil}, {full, partial}, {partial, full},
		} {
			keySrc := c.after
			if keySrc == nil {
				keySrc = c.before
			}
			wantKey, wantErr := tbl.keyOf(keySrc)
			key, b, a, err := tbl.keyAndImages(keySrc, c.before, c.after)
			if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("pk %v: error %v, keyOf's %v", pk, err, wantErr)
			}
			if err != nil {
				continue
			}
			wantB, wantA := tbl.image(c.before), tbl.image(c.after)
			if !bytes.Equal(key, wantKey) || !bytes.Equal(b, wantB) || !bytes.Equal(a, wantA) || (b == nil) != (wantB == nil) || (a == nil) != (wantA == nil) {
				t.Fatalf("pk %v: got %s %s %s, want %s %s %s", pk, key, b, a, wantKey, wantB, wantA)
			}
			_ = append(key, "XXXX"...)
			_ = append(b, "XXXX"...)
			if !bytes.Equal(b, wantB) || !bytes.Equal(a, wantA) {
				t.Fatalf("pk %v: appending to the key or before image wrote into the next: %s %s", pk, b, a)
			}
		}
		// A key column missing from the image (binlog_row_image MINIMAL).
		noKey := rowVals{nil, json.RawMessage(`"x"`), nil}
		_, wantErr := tbl.keyOf(noKey)
		_, _, _, err = tbl.keyAndImages(noKey, nil, noKey)
		if wantErr == nil || err == nil || err.Error() != wantErr.Error() {
			t.Fatalf("pk %v: missing key column: error %v, keyOf's %v", pk, err, wantErr)
		}
	}
}

// Small records come from a shared slab, large ones alone (a record kept
// alive keeps its slab's neighbours alive).
func TestNewRecordSlab(t *testing.T) {
	var x stream
	a, b := x.newRecord(10), x.newRecord(slabMaxBytes)
	if len(x.slab) != slabRecords-2 {
		t.Fatalf("slab holds %d records after two small ones, want %d", len(x.slab), slabRecords-2)
	}
	if a == b || a.ID != "" || b.Seq != 0 {
		t.Fatal("slab records are not distinct zero records")
	}
	big := x.newRecord(slabMaxBytes + 1)
	if len(x.slab) != slabRecords-2 || big == nil {
		t.Fatal("a large record came from the slab")
	}
	for range slabRecords {
		x.newRecord(0)
	}
	if len(x.slab) != slabRecords-2 {
		t.Fatalf("the slab was not refilled: %d left", len(x.slab))
	}
}
