package mysql

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/stele/stele/record"
)

// systemDatabases are never captured.
var systemDatabases = []string{"mysql", "information_schema", "performance_schema", "sys"}

// tableFilter decides which tables are captured.
type tableFilter struct {
	database string              // the URL's database ("" = every database)
	include  map[string]struct{} // "db.table"; empty = every table of the captured databases
	exclude  map[string]struct{}
	context  string // the context table's name (in any database)
}

func newTableFilter(database string, tables, exclude []string, contextTable string) (tableFilter, error) {
	f := tableFilter{database: database, include: map[string]struct{}{}, exclude: map[string]struct{}{}, context: contextTable}
	for _, list := range []struct {
		names []string
		into  map[string]struct{}
		key   string
	}{{tables, f.include, "tables"}, {exclude, f.exclude, "exclude_tables"}} {
		for _, t := range list.names {
			db, tb, ok := strings.Cut(t, ".")
			if !ok {
				if database == "" {
					return f, fmt.Errorf("%s: %q names no database and the URL names none: write it as database.table", list.key, t)
				}
				db, tb = database, t
			}
			if db == "" || tb == "" {
				return f, fmt.Errorf("%s: %q: want database.table or table", list.key, t)
			}
			list.into[db+"."+tb] = struct{}{}
		}
	}
	return f, nil
}

// database reports whether db is captured at all (its DDL is recorded).
func (f tableFilter) databaseCaptured(db string) bool {
	if slices.Contains(systemDatabases, strings.ToLower(db)) {
		return false
	}
	if len(f.include) > 0 {
		for t := range f.include {
			if d, _, _ := strings.Cut(t, "."); d == db {
				return true
			}
		}
		return false
	}
	return f.database == "" || db == f.database
}

// captured reports whether changes of db.table are recorded.
func (f tableFilter) captured(db, table string) bool {
	if slices.Contains(systemDatabases, strings.ToLower(db)) || f.isContext(table) {
		return false
	}
	full := db + "." + table
	if _, ok := f.exclude[full]; ok {
		return false
	}
	if len(f.include) > 0 {
		_, ok := f.include[full]
		return ok
	}
	return f.database == "" || db == f.database
}

// isContext reports whether table is the context table.
func (f tableFilter) isContext(table string) bool { return table == f.context }

// colKind is how a column's decoded value becomes JSON (decode.go).
type colKind uint8

const (
	kindInt colKind = iota
	kindUint
	kindDecimal
	kindFloat
	kindDouble
	kindBit
	kindYear
	kindDate
	kindTime
	kindDatetime  // DATETIME: wall time, written as UTC like PostgreSQL's timestamp
	kindTimestamp // TIMESTAMP: an instant, decoded in UTC
	kindString    // text in a character set
	kindBinary    // BINARY/VARBINARY/BLOB: base64
	kindFixedBinary
	kindEnum
	kindSet
	kindJSON     // MySQL's binary JSON
	kindTextJSON // MariaDB's JSON (LONGTEXT checked by json_valid)
	kindGeometry
	kindVector
	kindNull
)

// column is one column of a table version, as its table-map event
// describes it.
type column struct {
	name      string
	typ       byte   // binlog type (go-mysql's MYSQL_TYPE_*)
	meta      uint16 // binlog type metadata
	unsigned  bool
	collation uint64 // 0 when not a character column
	charset   string // of collation
	labels    []string
	kind      colKind
	fixedLen  int // BINARY(n): n
}

// table is what building records needs from one table-map event, worked
// out once per table version instead of once per row.
type table struct {
	// ev is the last table-map event of this table id (sameTableMap).
	ev       *replication.TableMapEvent
	db, name string
	full     string // db.table
	skip     bool
	context  bool
	native   bool // every column is read by nativeRows (rowdecode.go)
	cols     []column
	names    [][]byte // each column's name as a canonical JSON string
	order    []int    // column positions in canonical (UTF-16) member order
	byName   map[string]int
	key      []int // key column positions (every column without a primary key)
	hasPK    bool
	allCols  []string // every column's name, sorted (changed of inserts and deletes)
	// schemaRef is the table version's schema reference; version the
	// schema history entry.
	schemaRef *record.SchemaRef
	version   *tableVersion
	// sig identifies the table-map event this was built from.
	sig tableMapSig
}

func newTable(db, name string, cols []column, pk []int) (*table, error) {
	t := &table{db: db, name: name, full: db + "." + name, cols: cols, byName: make(map[string]int, len(cols))}
	for i, c := range cols {
		q, err := jsontext.AppendQuote(nil, c.name)
		if err != nil {
			return nil, fmt.Errorf("table %s: column name %q: %w", t.full, c.name, err)
		}
		if q, err = record.Canonical(q); err != nil {
			return nil, fmt.Errorf("table %s: column name %q: %w", t.full, c.name, err)
		}
		t.names = append(t.names, q)
		t.order = append(t.order, i)
		t.byName[c.name] = i
	}
	units := make([][]uint16, len(cols))
	for i, c := range cols {
		units[i] = utf16.Encode([]rune(c.name))
	}
	slices.SortStableFunc(t.order, func(a, b int) int { return slices.Compare(units[a], units[b]) })
	if len(pk) > 0 {
		t.key, t.hasPK = pk, true
	} else {
		for i := range cols {
			t.key = append(t.key, i)
		}
	}
	for _, c := range cols {
		t.allCols = append(t.allCols, c.name)
	}
	slices.Sort(t.allCols)
	t.allCols = slices.Clip(t.allCols)
	return t, nil
}

// rowVals holds one row image's values by column position, each in
// canonical JSON; nil is a column the image does not carry (binlog_row_image
// MINIMAL or NOBLOB).
type rowVals []json.RawMessage

// image encodes vals as a canonical JSON object (nil for no image).
func (t *table) image(vals rowVals) json.RawMessage {
	if vals == nil {
		return nil
	}
	return t.appendImage(make([]byte, 0, t.imageSize(vals)), vals)
}

// imageSize is the length of vals' image.
func (t *table) imageSize(vals rowVals) int {
	if vals == nil {
		return 0
	}
	n := 2
	for i, v := range vals {
		if v != nil {
			n += len(t.names[i]) + len(v) + 2
		}
	}
	return n
}

// appendImage appends vals' image to b.
func (t *table) appendImage(b []byte, vals rowVals) []byte {
	start := len(b)
	b = append(b, '{')
	for _, i := range t.order {
		v := vals[i]
		if v == nil {
			continue
		}
		if len(b) > start+1 {
			b = append(b, ',')
		}
		b = append(b, t.names[i]...)
		b = append(b, ':')
		b = append(b, v...)
	}
	return append(b, '}')
}

// keyOf builds the key object, members in key order.
func (t *table) keyOf(vals rowVals) (json.RawMessage, error) {
	return t.appendKey(make([]byte, 0, t.keySize(vals)), vals)
}

// keySize is the length of the key object of vals (its key columns
// present).
func (t *table) keySize(vals rowVals) int {
	n := 2
	for _, i := range t.key {
		n += len(t.names[i]) + len(vals[i]) + 2
	}
	return n
}

// appendKey appends the key object of vals to b.
func (t *table) appendKey(b []byte, vals rowVals) ([]byte, error) {
	b = append(b, '{')
	for j, i := range t.key {
		if vals[i] == nil {
			return nil, fmt.Errorf("key column %s missing from the row image (binlog_row_image = FULL avoids this)", t.cols[i].name)
		}
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, t.names[i]...)
		b = append(b, ':')
		b = append(b, vals[i]...)
	}
	return append(b, '}'), nil
}

// keyAndImages builds the key object and the images of a changed row in
// one allocation (a change's key and images live and die together); the
// three are capped, so appending to one never writes into the next.
func (t *table) keyAndImages(keySrc, before, after rowVals) (key, b, a json.RawMessage, err error) {
	buf := make([]byte, 0, t.keySize(keySrc)+t.imageSize(before)+t.imageSize(after))
	if buf, err = t.appendKey(buf, keySrc); err != nil {
		return nil, nil, nil, err
	}
	k := len(buf)
	key = buf[:k:k]
	if before != nil {
		buf = t.appendImage(buf, before)
		b = buf[k:len(buf):len(buf)]
	}
	if after != nil {
		k = len(buf)
		buf = t.appendImage(buf, after)
		a = buf[k:len(buf):len(buf)]
	}
	return key, b, a, nil
}

// changed names the columns whose values differ between the images,
// sorted, as record.ChangedFields would on the images.
func (t *table) changed(before, after rowVals) []string {
	if (before == nil) != (after == nil) {
		present := after
		if present == nil {
			present = before
		}
		if !slices.ContainsFunc(present, func(v json.RawMessage) bool { return v == nil }) {
			return t.allCols
		}
	}
	out := make([]string, 0, 4)
	for i, c := range t.cols {
		var a, b json.RawMessage
		if after != nil {
			a = after[i]
		}
		if before != nil {
			b = before[i]
		}
		if (a == nil) != (b == nil) || a != nil && !bytes.Equal(a, b) {
			out = append(out, c.name)
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return out
}
