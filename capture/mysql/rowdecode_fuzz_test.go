package mysql

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/stele/stele/record"
)

// fuzzColumns are columns of every kind nativeRows reads, with the binlog
// types and metadata MariaDB writes for them.
func fuzzColumns() []column {
	cols := []column{
		{name: "ti", typ: gomysql.MYSQL_TYPE_TINY},
		{name: "su", typ: gomysql.MYSQL_TYPE_SHORT, unsigned: true},
		{name: "mi", typ: gomysql.MYSQL_TYPE_INT24},
		{name: "i", typ: gomysql.MYSQL_TYPE_LONG},
		{name: "bu", typ: gomysql.MYSQL_TYPE_LONGLONG, unsigned: true},
		{name: "f", typ: gomysql.MYSQL_TYPE_FLOAT, meta: 4},
		{name: "d", typ: gomysql.MYSQL_TYPE_DOUBLE, meta: 8},
		{name: "d1", typ: gomysql.MYSQL_TYPE_NEWDECIMAL, meta: 12<<8 | 2},
		{name: "d5", typ: gomysql.MYSQL_TYPE_NEWDECIMAL, meta: 65<<8 | 30},
		{name: "dt", typ: gomysql.MYSQL_TYPE_DATE},
		{name: "t3", typ: gomysql.MYSQL_TYPE_DATETIME2, meta: 3},
		{name: "ts6", typ: gomysql.MYSQL_TYPE_TIMESTAMP2, meta: 6},
		{name: "y", typ: gomysql.MYSQL_TYPE_YEAR},
		{name: "bt", typ: gomysql.MYSQL_TYPE_BIT, meta: 1<<8 | 2},
		{name: "e", typ: gomysql.MYSQL_TYPE_STRING, meta: uint16(gomysql.MYSQL_TYPE_ENUM)<<8 | 1, labels: []string{"a", "b", "c"}},
		{name: "s", typ: gomysql.MYSQL_TYPE_STRING, meta: uint16(gomysql.MYSQL_TYPE_SET)<<8 | 1, labels: []string{"x", "y", "z"}},
		{name: "vc", typ: gomysql.MYSQL_TYPE_VARCHAR, meta: 160, charset: "utf8mb4"},
		{name: "vl", typ: gomysql.MYSQL_TYPE_VARCHAR, meta: 1200, charset: "utf8mb4"},
		{name: "l1", typ: gomysql.MYSQL_TYPE_VARCHAR, meta: 20, charset: "latin1"},
		{name: "c", typ: gomysql.MYSQL_TYPE_STRING, meta: uint16(gomysql.MYSQL_TYPE_STRING)<<8 | 20, charset: "utf8mb4"},
		{name: "b", typ: gomysql.MYSQL_TYPE_STRING, meta: uint16(gomysql.MYSQL_TYPE_STRING)<<8 | 4, charset: "binary"},
		{name: "vb", typ: gomysql.MYSQL_TYPE_VARCHAR, meta: 20, charset: "binary"},
		{name: "tx", typ: gomysql.MYSQL_TYPE_BLOB, meta: 2, charset: "utf8mb4"},
		{name: "bl", typ: gomysql.MYSQL_TYPE_BLOB, meta: 2, charset: "binary"},
	}
	for i := range cols {
		c := &cols[i]
		c.kind, c.fixedLen = columnKind(c.typ, c.meta, c.unsigned, c.charset)
	}
	return cols
}

// FuzzNativeRowsJSON: whatever bytes a rows event carries (a damaged
// event, a server bug), nativeRows either refuses them (and go-mysql
// decodes the event) or writes for each value one canonical JSON value,
// as an image stored in a record must hold; it never panics out of
// decode.
func FuzzNativeRowsJSON(f *testing.F) {
	cols := fuzzColumns()
	for i := range cols {
		if !nativeColumn(&cols[i]) {
			f.Fatalf("column %s is not one nativeRows reads", cols[i].name)
		}
	}
	t, err := newTable("db", "t", cols, []int{0})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0xff, 0xff, 0xff}, []byte{0, 0, 0}, false)
	f.Add([]byte{0x01}, []byte{0xfe, 1, 2, 3, 0, 0, 1, 0, 'a'}, false)
	f.Add([]byte{0xff, 0xff, 0xff}, bytes.Repeat([]byte{0x80, 0x01, 0x7f, 0}, 40), true)
	f.Fuzz(func(tt *testing.T, bitmap, data []byte, update bool) {
		need := (len(cols) + 7) / 8
		bm := make([]byte, need)
		copy(bm, bitmap)
		e := &replication.RowsEvent{ColumnCount: uint64(len(cols)), ColumnBitmap1: bm, ColumnBitmap2: bm}
		var r rowImages
		err := r.decode(t, e, data, 0, update)
		if errors.Is(err, errNoColumns) {
			for i := range cols {
				if bitSet(bm, i) {
					tt.Fatalf("refused as holding no column, with column %d in the image", i)
				}
			}
		}
		if err != nil {
			return
		}
		start := 0
		for _, end := range r.ends {
			if end < 0 {
				continue
			}
			v := r.buf[start:end]
			start = end
			if !json.Valid(v) {
				tt.Fatalf("value %q is not JSON", v)
			}
			c, err := record.Canonical(bytes.Clone(v))
			if err != nil || !bytes.Equal(c, v) {
				tt.Fatalf("value %q is not canonical JSON (%q, %v)", v, c, err)
			}
		}
	})
}
