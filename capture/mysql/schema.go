package mysql

// # The schema as it was, never as it is
//
// go-mysql's canal decodes an old row event with the table definition it
// reads from the live server, so after an ALTER TABLE the columns of older
// events are mislabelled (its issues #427 and #905). This source never asks
// the live server how to decode a row: with binlog_row_metadata = FULL (a
// set-up check) every table-map event in the binlog carries the table's
// column names, types, signedness, character sets, ENUM/SET labels and
// primary key as they were when the row was written, and each row event is
// decoded with the table-map event right before it. An ALTER while Stele
// is stopped therefore changes nothing: the older events keep their old
// columns, the newer ones have the new.
//
// The schema history makes the versions durable: for each table, the list
// of distinct column lists seen (a signature of the table-map event), each
// with its version number (1, 2, …), its columns and the transaction
// position where it was first seen. It lives in the source's state
// directory (schema-history.json, replaced atomically) and is saved before
// any record of a new version is handed to the log, so version numbers
// survive restarts and a replay after a crash finds the same version for
// the same event (looked up by signature, whatever the order). Rows carry
// schema {subject: "<source>.<db>.<table>", version: n}. A version after
// the first yields, in the transaction that first shows it, an op "ddl"
// record keyed {"relation": "db.table"} with after {columns: [{name,
// type}…], primary_key, version}, numbered after the transaction's rows so
// that it never shifts their ids; a replay of that transaction yields it
// again with the same id.
//
// Servers without binlog_row_metadata (MySQL before 8.0.1, MariaDB before
// 10.5) send no names: the source then falls back to the live
// information_schema definition when its column count matches and warns
// that an ALTER between the event and now mislabels columns — the one case
// where the schema as it is leaks in. MariaDB's JSON type is LONGTEXT with
// a json_valid check, which the binlog does not carry either: whether a
// text column holds JSON is read from the live check constraints (a value
// that does not parse stays a string).

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/record"
)

const historyFile = "schema-history.json"

// tableVersion is one column list of a table.
type tableVersion struct {
	Version    int64        `json:"version"`
	Sig        string       `json:"sig"`
	Columns    []columnDesc `json:"columns"`
	PrimaryKey []string     `json:"primary_key,omitempty"`
	// Since is the tx position of the transaction that first showed this
	// version, Binlog the file:offset of its table-map event.
	Since  string `json:"since"`
	Binlog string `json:"binlog,omitempty"`
}

type columnDesc struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// schemaHistory is the durable list of versions per table.
type schemaHistory struct {
	path   string
	mu     sync.Mutex
	Tables map[string][]*tableVersion `json:"tables"`
}

func openHistory(dir string) (*schemaHistory, error) {
	h := &schemaHistory{path: filepath.Join(dir, historyFile), Tables: map[string][]*tableVersion{}}
	data, err := os.ReadFile(h.path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read schema history: %w", err)
	}
	if err := json.Unmarshal(data, h); err != nil {
		return nil, fmt.Errorf("schema history %s is damaged (%v): restore it from a backup, or remove it to number versions from 1 again", h.path, err)
	}
	if h.Tables == nil {
		h.Tables = map[string][]*tableVersion{}
	}
	return h, nil
}

// lookup returns the version of table full with signature sig, adding (and
// saving) a new one first seen at since when there is none.
func (h *schemaHistory) lookup(full, sig string, cols []columnDesc, pk []string, since, binlog string) (*tableVersion, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.Tables[full] {
		if v.Sig == sig {
			return v, nil
		}
	}
	// A version a snapshot seeded is the one its first table-map event
	// with the same columns shows.
	if vs := h.Tables[full]; len(vs) > 0 {
		if v := vs[len(vs)-1]; v.Sig == "" && slices.Equal(v.Columns, cols) && slices.Equal(v.PrimaryKey, pk) {
			v.Sig = sig
			if err := h.saveLocked(); err != nil {
				v.Sig = ""
				return nil, err
			}
			return v, nil
		}
	}
	v := &tableVersion{Version: int64(len(h.Tables[full]) + 1), Sig: sig, Columns: cols, PrimaryKey: pk, Since: since, Binlog: binlog}
	h.Tables[full] = append(h.Tables[full], v)
	if err := h.saveLocked(); err != nil {
		h.Tables[full] = h.Tables[full][:len(h.Tables[full])-1]
		return nil, err
	}
	return v, nil
}

// seed returns the latest version of table full when it has these columns,
// else adds one, first seen at since, that is not bound to a table-map
// signature yet (a snapshot reads the columns from information_schema).
func (h *schemaHistory) seed(full string, cols []columnDesc, pk []string, since string) (*tableVersion, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if vs := h.Tables[full]; len(vs) > 0 {
		if v := vs[len(vs)-1]; slices.Equal(v.Columns, cols) && slices.Equal(v.PrimaryKey, pk) {
			return v, nil
		}
	}
	v := &tableVersion{Version: int64(len(h.Tables[full]) + 1), Columns: cols, PrimaryKey: pk, Since: since}
	h.Tables[full] = append(h.Tables[full], v)
	if err := h.saveLocked(); err != nil {
		h.Tables[full] = h.Tables[full][:len(h.Tables[full])-1]
		return nil, err
	}
	return v, nil
}

func (h *schemaHistory) saveLocked() error {
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(h.path, data, 0o600); err != nil {
		return fmt.Errorf("save schema history: %w", err)
	}
	return nil
}

// tableMapSig is the part of a table-map event that defines its columns.
type tableMapSig string

func signature(e *replication.TableMapEvent) tableMapSig {
	var b bytes.Buffer
	field := func(p []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		b.Write(n[:])
		b.Write(p)
	}
	field(e.Schema)
	field(e.Table)
	field(e.ColumnType)
	meta := make([]byte, 2*len(e.ColumnMeta))
	for i, m := range e.ColumnMeta {
		binary.BigEndian.PutUint16(meta[2*i:], m)
	}
	field(meta)
	field(e.NullBitmap)
	field(e.SignednessBitmap)
	for _, list := range [][]uint64{e.DefaultCharset, e.ColumnCharset, e.EnumSetDefaultCharset, e.EnumSetColumnCharset, e.PrimaryKey, e.PrimaryKeyPrefix, e.GeometryType} {
		var v []byte
		for _, x := range list {
			v = binary.AppendUvarint(v, x)
		}
		field(v)
	}
	for _, names := range [][][]byte{e.ColumnName} {
		field(bytes.Join(names, []byte{0}))
	}
	for _, vals := range [][][][]byte{e.EnumStrValue, e.SetStrValue} {
		var v [][]byte
		for _, labels := range vals {
			v = append(v, bytes.Join(labels, []byte{1}))
		}
		field(bytes.Join(v, []byte{0}))
	}
	field(e.VisibilityBitmap)
	return tableMapSig(b.String())
}

// sameTableMap reports whether b has every field signature(a) covers
// equal to a's, so has a's signature (a nil: no).
func sameTableMap(a, b *replication.TableMapEvent) bool {
	if a == nil {
		return false
	}
	eq2 := func(x, y [][]byte) bool { return slices.EqualFunc(x, y, bytes.Equal) }
	eq3 := func(x, y [][][]byte) bool { return slices.EqualFunc(x, y, eq2) }
	return bytes.Equal(a.Schema, b.Schema) && bytes.Equal(a.Table, b.Table) &&
		bytes.Equal(a.ColumnType, b.ColumnType) && slices.Equal(a.ColumnMeta, b.ColumnMeta) &&
		bytes.Equal(a.NullBitmap, b.NullBitmap) && bytes.Equal(a.SignednessBitmap, b.SignednessBitmap) &&
		slices.Equal(a.DefaultCharset, b.DefaultCharset) && slices.Equal(a.ColumnCharset, b.ColumnCharset) &&
		slices.Equal(a.EnumSetDefaultCharset, b.EnumSetDefaultCharset) && slices.Equal(a.EnumSetColumnCharset, b.EnumSetColumnCharset) &&
		slices.Equal(a.PrimaryKey, b.PrimaryKey) && slices.Equal(a.PrimaryKeyPrefix, b.PrimaryKeyPrefix) &&
		slices.Equal(a.GeometryType, b.GeometryType) && eq2(a.ColumnName, b.ColumnName) &&
		eq3(a.EnumStrValue, b.EnumStrValue) && eq3(a.SetStrValue, b.SetStrValue) &&
		bytes.Equal(a.VisibilityBitmap, b.VisibilityBitmap)
}

func (s tableMapSig) hash() string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// liveColumn is a column as the live information_schema describes it (the
// fallback without binlog_row_metadata, and MariaDB's JSON check).
type liveColumn struct {
	name     string
	unsigned bool
	pk       bool
	charset  string
	labels   []string
	json     bool
}

// buildColumns turns a table-map event into columns. live (may be nil)
// supplies what the event lacks.
func buildColumns(e *replication.TableMapEvent, coll map[uint64]string, live []liveColumn) ([]column, []int, error) {
	n := int(e.ColumnCount)
	names := e.ColumnNameString()
	useLive := len(names) != n && len(live) == n
	if len(names) != n && !useLive {
		names = make([]string, n)
		for i := range names {
			names[i] = "col_" + strconv.Itoa(i+1)
		}
	}
	if useLive {
		names = make([]string, n)
		for i, c := range live {
			names[i] = c.name
		}
	}
	unsigned := e.UnsignedMap()
	collations := e.CollationMap()
	enumSetColl := e.EnumSetCollationMap()
	enums, sets := e.EnumStrValueMap(), e.SetStrValueMap()
	cols := make([]column, n)
	for i := range cols {
		c := &cols[i]
		c.name = names[i]
		c.typ, c.meta = e.ColumnType[i], e.ColumnMeta[i]
		c.unsigned = unsigned[i]
		if cl, ok := collations[i]; ok {
			c.collation = cl
		} else if cl, ok := enumSetColl[i]; ok {
			c.collation = cl
		}
		c.charset = charsetOf(coll, c.collation)
		if l, ok := enums[i]; ok {
			c.labels = l
		} else if l, ok := sets[i]; ok {
			c.labels = l
		}
		if len(live) == n {
			lc := live[i]
			if useLive || lc.name == c.name {
				if unsigned == nil && lc.unsigned {
					c.unsigned = true
				}
				if c.charset == "" && lc.charset != "" {
					c.charset = lc.charset
				}
				if c.labels == nil {
					c.labels = lc.labels
				}
			}
		}
		c.kind, c.fixedLen = columnKind(c.typ, c.meta, c.unsigned, c.charset)
		if c.kind == kindString && c.typ == gomysql.MYSQL_TYPE_BLOB {
			for _, lc := range live {
				if lc.name == c.name && lc.json {
					c.kind = kindTextJSON
				}
			}
		}
	}
	var pk []int
	for _, i := range e.PrimaryKey {
		if int(i) < n {
			pk = append(pk, int(i))
		}
	}
	if len(e.PrimaryKey) == 0 && len(live) == n && (useLive || len(e.ColumnName) == 0) {
		for i, lc := range live {
			if lc.pk {
				pk = append(pk, i)
			}
		}
	}
	return cols, pk, nil
}

// realType resolves the type MySQL hides in a STRING column's metadata
// (ENUM and SET are logged as STRING), and the column's byte length.
func realType(tp byte, meta uint16) (byte, int) {
	if tp != gomysql.MYSQL_TYPE_STRING {
		return tp, 0
	}
	if meta >= 256 {
		b0, b1 := byte(meta>>8), byte(meta&0xFF)
		if b0&0x30 != 0x30 {
			return b0 | 0x30, int(uint16(b1) | uint16((b0&0x30)^0x30)<<4)
		}
		return b0, int(meta & 0xFF)
	}
	return tp, int(meta)
}

// columnKind decides how a column's values become JSON.
func columnKind(tp byte, meta uint16, unsigned bool, charset string) (colKind, int) {
	rt, length := realType(tp, meta)
	binary := charset == "binary"
	switch rt {
	case gomysql.MYSQL_TYPE_TINY, gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_INT24, gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_LONGLONG:
		if unsigned {
			return kindUint, 0
		}
		return kindInt, 0
	case gomysql.MYSQL_TYPE_NEWDECIMAL, gomysql.MYSQL_TYPE_DECIMAL:
		return kindDecimal, 0
	case gomysql.MYSQL_TYPE_FLOAT:
		return kindFloat, 0
	case gomysql.MYSQL_TYPE_DOUBLE:
		return kindDouble, 0
	case gomysql.MYSQL_TYPE_BIT:
		return kindBit, 0
	case gomysql.MYSQL_TYPE_YEAR:
		return kindYear, 0
	case gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_NEWDATE:
		return kindDate, 0
	case gomysql.MYSQL_TYPE_TIME, gomysql.MYSQL_TYPE_TIME2:
		return kindTime, 0
	case gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_DATETIME2:
		return kindDatetime, 0
	case gomysql.MYSQL_TYPE_TIMESTAMP, gomysql.MYSQL_TYPE_TIMESTAMP2:
		return kindTimestamp, 0
	case gomysql.MYSQL_TYPE_ENUM:
		return kindEnum, 0
	case gomysql.MYSQL_TYPE_SET:
		return kindSet, 0
	case gomysql.MYSQL_TYPE_STRING:
		if binary {
			return kindFixedBinary, length
		}
		return kindString, 0
	case gomysql.MYSQL_TYPE_VARCHAR, gomysql.MYSQL_TYPE_VAR_STRING,
		gomysql.MYSQL_TYPE_BLOB, gomysql.MYSQL_TYPE_TINY_BLOB, gomysql.MYSQL_TYPE_MEDIUM_BLOB, gomysql.MYSQL_TYPE_LONG_BLOB:
		if binary {
			return kindBinary, 0
		}
		return kindString, 0
	case gomysql.MYSQL_TYPE_JSON:
		return kindJSON, 0
	case gomysql.MYSQL_TYPE_GEOMETRY:
		return kindGeometry, 0
	case gomysql.MYSQL_TYPE_VECTOR:
		return kindVector, 0
	case gomysql.MYSQL_TYPE_NULL:
		return kindNull, 0
	}
	return kindBinary, 0
}

// typeName describes a column's type for ddl records and the history.
func typeName(c *column) string {
	rt, length := realType(c.typ, c.meta)
	uns := ""
	if c.unsigned {
		uns = " unsigned"
	}
	cs := ""
	if c.charset != "" && c.charset != "binary" {
		cs = " character set " + c.charset
	}
	switch rt {
	case gomysql.MYSQL_TYPE_TINY:
		return "tinyint" + uns
	case gomysql.MYSQL_TYPE_SHORT:
		return "smallint" + uns
	case gomysql.MYSQL_TYPE_INT24:
		return "mediumint" + uns
	case gomysql.MYSQL_TYPE_LONG:
		return "int" + uns
	case gomysql.MYSQL_TYPE_LONGLONG:
		return "bigint" + uns
	case gomysql.MYSQL_TYPE_NEWDECIMAL, gomysql.MYSQL_TYPE_DECIMAL:
		return fmt.Sprintf("decimal(%d,%d)%s", c.meta>>8, c.meta&0xFF, uns)
	case gomysql.MYSQL_TYPE_FLOAT:
		return "float" + uns
	case gomysql.MYSQL_TYPE_DOUBLE:
		return "double" + uns
	case gomysql.MYSQL_TYPE_BIT:
		return fmt.Sprintf("bit(%d)", (c.meta>>8)*8+c.meta&0xFF)
	case gomysql.MYSQL_TYPE_YEAR:
		return "year"
	case gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_NEWDATE:
		return "date"
	case gomysql.MYSQL_TYPE_TIME:
		return "time"
	case gomysql.MYSQL_TYPE_TIME2:
		return fmt.Sprintf("time(%d)", c.meta)
	case gomysql.MYSQL_TYPE_DATETIME:
		return "datetime"
	case gomysql.MYSQL_TYPE_DATETIME2:
		return fmt.Sprintf("datetime(%d)", c.meta)
	case gomysql.MYSQL_TYPE_TIMESTAMP:
		return "timestamp"
	case gomysql.MYSQL_TYPE_TIMESTAMP2:
		return fmt.Sprintf("timestamp(%d)", c.meta)
	case gomysql.MYSQL_TYPE_ENUM, gomysql.MYSQL_TYPE_SET:
		name := "enum"
		if rt == gomysql.MYSQL_TYPE_SET {
			name = "set"
		}
		q := make([]string, len(c.labels))
		for i, l := range c.labels {
			q[i] = "'" + strings.ReplaceAll(l, "'", "''") + "'"
		}
		return name + "(" + strings.Join(q, ",") + ")" + cs
	case gomysql.MYSQL_TYPE_STRING:
		if c.charset == "binary" {
			return fmt.Sprintf("binary(%d)", length)
		}
		return fmt.Sprintf("char(%d bytes)%s", length, cs)
	case gomysql.MYSQL_TYPE_VARCHAR, gomysql.MYSQL_TYPE_VAR_STRING:
		if c.charset == "binary" {
			return fmt.Sprintf("varbinary(%d)", c.meta)
		}
		return fmt.Sprintf("varchar(%d bytes)%s", c.meta, cs)
	case gomysql.MYSQL_TYPE_BLOB, gomysql.MYSQL_TYPE_TINY_BLOB, gomysql.MYSQL_TYPE_MEDIUM_BLOB, gomysql.MYSQL_TYPE_LONG_BLOB:
		size := map[uint16]string{1: "tiny", 2: "", 3: "medium", 4: "long"}[c.meta]
		if c.kind == kindTextJSON {
			return "json"
		}
		if c.charset == "binary" {
			return size + "blob"
		}
		return size + "text" + cs
	case gomysql.MYSQL_TYPE_JSON:
		return "json"
	case gomysql.MYSQL_TYPE_GEOMETRY:
		return "geometry"
	case gomysql.MYSQL_TYPE_VECTOR:
		return fmt.Sprintf("vector(%d)", c.meta/4)
	}
	return fmt.Sprintf("type %d", rt)
}

// describe lists a table's columns and primary key for the history.
func describe(cols []column, pk []int) ([]columnDesc, []string) {
	out := make([]columnDesc, len(cols))
	for i := range cols {
		out[i] = columnDesc{Name: cols[i].name, Type: typeName(&cols[i])}
	}
	var key []string
	for _, i := range pk {
		key = append(key, cols[i].name)
	}
	return out, key
}

// relationRecord is the ddl record of a new table version.
func (x *stream) relationRecord(t *table) (*record.Record, error) {
	after, err := json.Marshal(map[string]any{"columns": t.version.Columns, "primary_key": t.version.PrimaryKey, "version": t.version.Version})
	if err != nil {
		return nil, err
	}
	if after, err = record.Canonical(after); err != nil {
		return nil, err
	}
	key, _ := json.Marshal(map[string]string{"relation": t.full})
	return &record.Record{Op: record.OpDDL, Source: x.source(t.db, t.name), Key: key, After: after}, nil
}
