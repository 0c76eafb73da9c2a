package postgres

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf16"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/jackc/pglogrepl"

	"github.com/stele/stele/record"
)

// rowVals holds one tuple's column values by column position, each already
// in canonical JSON form, so an image is their concatenation in member
// order and two values are equal exactly when their bytes are. A nil entry
// is a column the tuple does not carry (the other columns of a key-only old
// tuple); an empty non-nil entry is an unchanged TOAST value PostgreSQL did
// not send.
type rowVals []json.RawMessage

func unsent(v json.RawMessage) bool { return v != nil && len(v) == 0 }

var unchangedToast = json.RawMessage(`{"$unchanged_toast":true}`)

// layout is what building records needs from a relation, worked out once
// per Relation message instead of once per row.
type layout struct {
	full   string   // schema.table
	names  [][]byte // each column's name as a canonical JSON string
	order  []int    // column positions in canonical (UTF-16) member order
	byName map[string]int
	// key holds the key columns' positions in key order (every column in
	// column order for a table without a key); -1 marks a key column the
	// relation does not publish, reported when a row needs it.
	key     []int
	keyName []string
}

func newLayout(rel *relation) (*layout, error) {
	l := &layout{full: rel.schema + "." + rel.table, byName: make(map[string]int, len(rel.cols))}
	for i, c := range rel.cols {
		q, err := jsontext.AppendQuote(nil, c.Name)
		if err != nil {
			return nil, fmt.Errorf("table %s: column name %q: %w", l.full, c.Name, err)
		}
		if q, err = record.Canonical(q); err != nil {
			return nil, fmt.Errorf("table %s: column name %q: %w", l.full, c.Name, err)
		}
		l.names = append(l.names, q)
		l.order = append(l.order, i)
		l.byName[c.Name] = i
	}
	// Canonical JSON orders members by their names' UTF-16 code units.
	units := make([][]uint16, len(rel.cols))
	for i, c := range rel.cols {
		units[i] = utf16.Encode([]rune(c.Name))
	}
	slices.SortStableFunc(l.order, func(a, b int) int { return slices.Compare(units[a], units[b]) })
	l.keyName = rel.key
	if l.keyName == nil {
		for _, c := range rel.cols {
			l.keyName = append(l.keyName, c.Name)
		}
	}
	for _, n := range l.keyName {
		i, ok := l.byName[n]
		if !ok {
			i = -1
		}
		l.key = append(l.key, i)
	}
	return l, nil
}

// layout returns rel's layout, working it out on first use.
func (rel *relation) layout() (*layout, error) {
	if rel.lay == nil {
		l, err := newLayout(rel)
		if err != nil {
			return nil, err
		}
		rel.lay = l
	}
	return rel.lay, nil
}

// image encodes vals as a canonical JSON object (nil for no image).
func (l *layout) image(vals rowVals) json.RawMessage {
	if vals == nil {
		return nil
	}
	n := 2
	for i, v := range vals {
		if v != nil {
			n += len(l.names[i]) + len(v) + 2
		}
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for _, i := range l.order {
		v := vals[i]
		if v == nil {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, l.names[i]...)
		b = append(b, ':')
		b = append(b, v...)
	}
	return append(b, '}')
}

// keyOf builds the key object, members in key order.
func (l *layout) keyOf(vals rowVals) (json.RawMessage, error) {
	n := 2
	for j, i := range l.key {
		if i < 0 || vals[i] == nil || unsent(vals[i]) {
			return nil, fmt.Errorf("key column %s missing from the row", l.keyName[j])
		}
		n += len(l.names[i]) + len(vals[i]) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for j, i := range l.key {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, l.names[i]...)
		b = append(b, ':')
		b = append(b, vals[i]...)
	}
	return append(b, '}'), nil
}

// changed names the columns whose values differ between the two images
// (present in one only, or with different canonical bytes), sorted, as
// record.ChangedFields would on the images.
func (rel *relation) changed(before, after rowVals) []string {
	present := after
	if present == nil {
		present = before
	}
	if (before == nil) != (after == nil) && complete(present, len(rel.cols)) {
		// An insert or a delete: every column, the same list each time.
		if rel.allCols == nil {
			for _, c := range rel.cols {
				rel.allCols = append(rel.allCols, c.Name)
			}
			slices.Sort(rel.allCols)
			rel.allCols = slices.Clip(rel.allCols)
		}
		return rel.allCols
	}
	out := make([]string, 0, len(rel.cols))
	for i, c := range rel.cols {
		var a, b json.RawMessage
		if after != nil {
			a = after[i]
		}
		if before != nil {
			b = before[i]
		}
		if (a == nil) != (b == nil) || a != nil && !bytes.Equal(a, b) {
			out = append(out, c.Name)
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return out
}

// complete reports whether v holds all n columns.
func complete(v rowVals, n int) bool {
	if len(v) < n {
		return false
	}
	for _, c := range v[:n] {
		if c == nil {
			return false
		}
	}
	return true
}

// tupleCol is one column of a pgoutput TupleData: its kind ('n' null, 'u'
// unchanged TOAST, 't' text, 'b' binary) and its bytes.
type tupleCol struct {
	kind byte
	data []byte
}

// parseTuple reads a pgoutput TupleData from b into cols (reused), returning
// the bytes after it. Column data alias b: the caller owns b and keeps it
// as long as the values built from it.
func parseTuple(b []byte, cols []tupleCol) ([]tupleCol, []byte, error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("tuple data: truncated column count")
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	cols = cols[:0]
	for i := 0; i < n; i++ {
		if len(b) < 1 {
			return nil, nil, fmt.Errorf("tuple data: column %d: truncated", i)
		}
		c := tupleCol{kind: b[0]}
		b = b[1:]
		switch c.kind {
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			if len(b) < 4 {
				return nil, nil, fmt.Errorf("tuple data: column %d: truncated length", i)
			}
			size := binary.BigEndian.Uint32(b)
			b = b[4:]
			if uint64(size) > uint64(len(b)) {
				return nil, nil, fmt.Errorf("tuple data: column %d: %d bytes announced, %d left", i, size, len(b))
			}
			c.data = b[:size:size]
			b = b[size:]
		}
		cols = append(cols, c)
	}
	return cols, b, nil
}

// rowMessage is an Insert, Update or Delete message of pgoutput (protocol
// 2, not streamed), parsed without copying its column values.
type rowMessage struct {
	relID   uint32
	oldType byte // 'K' key only, 'O' full old row, 0 none
	old     []tupleCol
	new     []tupleCol
	hasOld  bool
	hasNew  bool
}

// parseRowMessage parses data (an 'I', 'U' or 'D' message, owned by the
// caller) into m, reusing m's column slices.
func parseRowMessage(data []byte, m *rowMessage) error {
	kind := data[0]
	b := data[1:]
	if len(b) < 5 {
		return fmt.Errorf("%c message: truncated", kind)
	}
	m.relID = binary.BigEndian.Uint32(b)
	b = b[4:]
	m.oldType, m.hasOld, m.hasNew = 0, false, false
	var err error
	if kind != 'I' && (b[0] == 'K' || b[0] == 'O') {
		m.oldType, m.hasOld = b[0], true
		if m.old, b, err = parseTuple(b[1:], m.old); err != nil {
			return fmt.Errorf("%c message: old %w", kind, err)
		}
	}
	if kind == 'D' {
		if !m.hasOld {
			return fmt.Errorf("delete message (D) has no old tuple")
		}
		return nil
	}
	if len(b) < 1 || b[0] != 'N' {
		return fmt.Errorf("%c message: no new tuple", kind)
	}
	if m.new, _, err = parseTuple(b[1:], m.new); err != nil {
		return fmt.Errorf("%c message: new %w", kind, err)
	}
	m.hasNew = true
	return nil
}
