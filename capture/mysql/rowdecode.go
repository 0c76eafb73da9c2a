package mysql

// # Rows events decoded straight to JSON
//
// go-mysql decodes each row value into an interface{} (a boxed integer, a
// string, a time.Time), and appendValue then writes that value as JSON:
// in a profile of the capture, go-mysql's decoding and the garbage it
// leaves were a fifth of the process's CPU, on the syncer's goroutine,
// which every event passes through one at a time. The syncer therefore
// only decodes a rows event's header (deferRows); the stream decodes the
// rows from the event's bytes straight into the JSON of each value
// (nativeRows) when every column of the table is of a type this file
// reads, and otherwise, or on anything unusual in a value (a zero date,
// a partial JSON update, a compressed event), lets go-mysql decode the
// whole event as before. The JSON is byte for byte what appendValue
// writes from go-mysql's value (TestNativeRowsMatchGoMySQL).

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// undecoded is what deferRows leaves as a rows event's only value: where
// the rows start in the event's body.
type undecoded struct {
	pos  int
	data []byte
}

// deferRows is the syncer's RowsEventDecodeFunc: the header only (the
// table id, flags and column bitmaps), the rows for later. go-mysql
// allocates data for each event and does not reuse it.
func deferRows(e *replication.RowsEvent, data []byte) error {
	pos, err := e.DecodeHeader(data)
	if err != nil {
		return err
	}
	e.Rows = [][]any{{&undecoded{pos: pos, data: data}}}
	return nil
}

// undecodedOf returns the rows deferRows left in e.
func undecodedOf(e *replication.RowsEvent) (*undecoded, bool) {
	if len(e.Rows) != 1 || len(e.Rows[0]) != 1 {
		return nil, false
	}
	u, ok := e.Rows[0][0].(*undecoded)
	return u, ok
}

// decodeRows has go-mysql decode the rows deferRows left in e.
func decodeRows(e *replication.RowsEvent) error {
	u, ok := undecodedOf(e)
	if !ok {
		return nil
	}
	e.Rows = nil
	return e.DecodeData(u.pos, u.data)
}

// errNotNative: a value nativeRows does not write itself; go-mysql decodes
// the event.
var errNotNative = errors.New("not decoded natively")

// nativeEvent reports whether rows events of this type are read by
// nativeRows (compressed and partial-JSON events are not).
func nativeEvent(t replication.EventType) bool {
	switch t {
	case replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2,
		replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2,
		replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2:
		return true
	}
	return false
}

// nativeColumn reports whether nativeValue reads column c's values.
func nativeColumn(c *column) bool {
	rt, _ := realType(c.typ, c.meta)
	switch c.kind {
	case kindInt, kindUint:
		return true
	case kindEnum, kindSet:
		return rt == gomysql.MYSQL_TYPE_ENUM || rt == gomysql.MYSQL_TYPE_SET
	case kindFloat, kindDouble, kindYear, kindBit, kindDecimal, kindDate, kindDatetime, kindTimestamp:
		return c.typ == nativeTypes[c.kind]
	case kindString, kindBinary, kindFixedBinary:
		switch rt {
		case gomysql.MYSQL_TYPE_VARCHAR, gomysql.MYSQL_TYPE_VAR_STRING, gomysql.MYSQL_TYPE_STRING:
			return true
		case gomysql.MYSQL_TYPE_BLOB:
			return c.meta >= 1 && c.meta <= 4
		}
	}
	return false
}

// nativeTypes is, for the kinds of column nativeValue reads in one binlog
// type only, that type (the older types — DECIMAL, DATETIME, TIMESTAMP of
// before MySQL 5.6 — go to go-mysql).
var nativeTypes = [...]byte{
	kindFloat: gomysql.MYSQL_TYPE_FLOAT, kindDouble: gomysql.MYSQL_TYPE_DOUBLE,
	kindDecimal: gomysql.MYSQL_TYPE_NEWDECIMAL, kindDate: gomysql.MYSQL_TYPE_DATE,
	kindDatetime: gomysql.MYSQL_TYPE_DATETIME2, kindTimestamp: gomysql.MYSQL_TYPE_TIMESTAMP2,
	kindYear: gomysql.MYSQL_TYPE_YEAR, kindBit: gomysql.MYSQL_TYPE_BIT,
}

// rowImages are the images of one rows event: each value's JSON in buf,
// image i's value j ending at ends[i*cols+j] (-1: not in the image).
type rowImages struct {
	buf  []byte
	ends []int
	pad  []byte // scratch for BINARY(n)'s zero padding
}

// decode reads every image of the event's rows from data at pos.
func (r *rowImages) decode(t *table, e *replication.RowsEvent, data []byte, pos int, update bool) (err error) {
	// A value shorter than its column says is a damaged event: go-mysql
	// reports it, and so does the fallback.
	defer func() {
		if recover() != nil {
			err = errNotNative
		}
	}()
	r.buf, r.ends = r.buf[:0], r.ends[:0]
	n := int(e.ColumnCount)
	if n != len(t.cols) {
		return errNotNative
	}
	for pos < len(data) {
		row := pos
		if pos, err = r.image(t, data, pos, e.ColumnBitmap1); err != nil {
			return err
		}
		if update {
			if pos, err = r.image(t, data, pos, e.ColumnBitmap2); err != nil {
				return err
			}
		}
		if pos == row {
			// Images of no column take no bytes: the rows would never
			// end (go-mysql's own loop would not either).
			return errNoColumns
		}
	}
	return nil
}

// errNoColumns: a rows event whose images hold no column, yet has bytes
// for rows; no server writes one.
var errNoColumns = errors.New("damaged rows event: its row images hold no column")

// image reads one row image, as go-mysql's decodeImage does.
func (r *rowImages) image(t *table, data []byte, pos int, bitmap []byte) (int, error) {
	present := 0
	for i := range t.cols {
		if bitSet(bitmap, i) {
			present++
		}
	}
	nulls := data[pos : pos+(present+7)/8]
	pos += len(nulls)
	nullIdx := 0
	for i := range t.cols {
		if !bitSet(bitmap, i) {
			r.ends = append(r.ends, -1)
			continue
		}
		isNull := bitSet(nulls, nullIdx)
		nullIdx++
		if isNull {
			r.buf = append(r.buf, "null"...)
			r.ends = append(r.ends, len(r.buf))
			continue
		}
		var n int
		var err error
		if r.buf, n, err = r.value(r.buf, &t.cols[i], data[pos:]); err != nil {
			return 0, err
		}
		pos += n
		r.ends = append(r.ends, len(r.buf))
	}
	return pos, nil
}

func bitSet(bitmap []byte, i int) bool { return bitmap[i>>3]&(1<<(uint(i)&7)) != 0 }

// value appends the JSON of the value of column c at the start of data
// and returns how many bytes it took.
func (r *rowImages) value(dst []byte, c *column, data []byte) ([]byte, int, error) {
	switch c.kind {
	case kindInt, kindUint:
		return appendBinaryInt(dst, c, data)
	case kindFloat:
		return appendFloat(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(data))), 32), 4, nil
	case kindDouble:
		return appendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(data)), 64), 8, nil
	case kindDecimal:
		return appendBinaryDecimal(dst, data, int(c.meta>>8), int(c.meta&0xFF))
	case kindDate:
		v := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16
		if v == 0 {
			return nil, 0, errNotNative
		}
		dst = append(dst, '"')
		dst = appendPadded(dst, int(v/(16*32)), 4)
		dst = append(dst, '-')
		dst = appendPadded(dst, int(v/32%16), 2)
		dst = append(dst, '-')
		dst = appendPadded(dst, int(v%32), 2)
		return append(dst, '"'), 3, nil
	case kindYear:
		if data[0] == 0 {
			return append(dst, '0'), 1, nil
		}
		return strconv.AppendInt(dst, int64(data[0])+1900, 10), 1, nil
	case kindBit:
		// go-mysql's decodeBit: big-endian, in whole bytes
		n := (int(c.meta>>8)*8 + int(c.meta&0xFF) + 7) / 8
		if n < 1 || n > 8 {
			return nil, 0, errNotNative
		}
		var v uint64
		for _, b := range data[:n] {
			v = v<<8 | uint64(b)
		}
		return strconv.AppendUint(dst, v, 10), n, nil
	case kindEnum, kindSet:
		// the index (ENUM) or bits (SET) in meta's low byte of bytes,
		// little-endian
		n := int(c.meta & 0xFF)
		if n < 1 || n > 8 || c.kind == kindEnum && n > 2 {
			return nil, 0, errNotNative
		}
		var v uint64
		for i := n - 1; i >= 0; i-- {
			v = v<<8 | uint64(data[i])
		}
		if c.kind == kindEnum {
			return appendEnum(dst, c, int64(v)), n, nil
		}
		return appendSet(dst, c, v), n, nil
	case kindDatetime:
		return appendDatetime2(dst, data, int(c.meta))
	case kindTimestamp:
		return appendTimestamp2(dst, data, int(c.meta))
	}
	// character and binary strings
	rt, length := realType(c.typ, c.meta)
	var b []byte
	var n int
	switch rt {
	case gomysql.MYSQL_TYPE_VARCHAR, gomysql.MYSQL_TYPE_VAR_STRING:
		length = int(c.meta)
		fallthrough
	case gomysql.MYSQL_TYPE_STRING:
		if length < 256 {
			n = int(data[0]) + 1
			b = data[1:n]
		} else {
			n = int(binary.LittleEndian.Uint16(data)) + 2
			b = data[2:n]
		}
	case gomysql.MYSQL_TYPE_BLOB:
		p := int(c.meta)
		l := 0
		for i := p - 1; i >= 0; i-- {
			l = l<<8 | int(data[i])
		}
		n = p + l
		b = data[p:n]
	default:
		return nil, 0, errNotNative
	}
	switch c.kind {
	case kindString:
		return appendText(dst, c.charset, b), n, nil
	case kindFixedBinary:
		if len(b) < c.fixedLen {
			r.pad = append(append(r.pad[:0], b...), make([]byte, c.fixedLen-len(b))...)
			b = r.pad
		}
	}
	return appendBase64(dst, b), n, nil
}

// appendBinaryInt reads an integer of the column's width, as UNSIGNED
// when the column is (appendInteger's reading of go-mysql's value).
func appendBinaryInt(dst []byte, c *column, data []byte) ([]byte, int, error) {
	var u uint64
	var n int
	switch c.typ {
	case gomysql.MYSQL_TYPE_TINY:
		u, n = uint64(data[0]), 1
	case gomysql.MYSQL_TYPE_SHORT:
		u, n = uint64(binary.LittleEndian.Uint16(data)), 2
	case gomysql.MYSQL_TYPE_INT24:
		u, n = uint64(data[0])|uint64(data[1])<<8|uint64(data[2])<<16, 3
	case gomysql.MYSQL_TYPE_LONG:
		u, n = uint64(binary.LittleEndian.Uint32(data)), 4
	case gomysql.MYSQL_TYPE_LONGLONG:
		u, n = binary.LittleEndian.Uint64(data), 8
	default:
		return nil, 0, errNotNative
	}
	if c.unsigned {
		return strconv.AppendUint(dst, u, 10), n, nil
	}
	// sign-extend from n bytes
	shift := 64 - 8*uint(n)
	return strconv.AppendInt(dst, int64(u<<shift)>>shift, 10), n, nil
}

var decimalBytes = [10]int{0, 1, 1, 2, 2, 3, 3, 4, 4, 4}

// appendBinaryDecimal writes MySQL's binary DECIMAL(prec, scale) as
// go-mysql's decodeDecimal writes its text.
func appendBinaryDecimal(dst []byte, data []byte, prec, scale int) ([]byte, int, error) {
	const perWord = 9
	integral := prec - scale
	wholeInt, wholeFrac := integral/perWord, scale/perWord
	partInt, partFrac := integral-wholeInt*perWord, scale-wholeFrac*perWord
	size := wholeInt*4 + decimalBytes[partInt] + wholeFrac*4 + decimalBytes[partFrac]
	if size == 0 || len(data) < size {
		return nil, 0, errNotNative
	}
	var mask uint32
	if data[0]&0x80 == 0 {
		mask = math.MaxUint32
		dst = append(dst, '-')
	}
	// word reads a big-endian group of k bytes, the sign bit flipped in
	// the first byte of the value.
	first := true
	word := func(at, k int) uint32 {
		var v uint32
		for i := range k {
			b := data[at+i]
			if first {
				b ^= 0x80
				first = false
			}
			v = v<<8 | uint32(b^byte(mask))
		}
		return v
	}
	pos := 0
	leading := true
	if k := decimalBytes[partInt]; k > 0 {
		if v := word(pos, k); v != 0 {
			leading = false
			dst = strconv.AppendUint(dst, uint64(v), 10)
		}
		pos += k
	}
	for range wholeInt {
		v := word(pos, 4)
		pos += 4
		switch {
		case !leading:
			dst = appendPadded(dst, int(v), perWord)
		case v != 0:
			leading = false
			dst = strconv.AppendUint(dst, uint64(v), 10)
		}
	}
	if leading {
		dst = append(dst, '0')
	}
	if pos < size {
		dst = append(dst, '.')
		for range wholeFrac {
			dst = appendPadded(dst, int(word(pos, 4)), perWord)
			pos += 4
		}
		if k := decimalBytes[partFrac]; k > 0 {
			dst = appendPadded(dst, int(word(pos, k)), partFrac)
			pos += k
		}
	}
	return dst, size, nil
}

// appendPadded writes v with at least width digits, zeros first.
func appendPadded(dst []byte, v, width int) []byte {
	var digits [20]byte
	s := strconv.AppendInt(digits[:0], int64(v), 10)
	for range width - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// fraction reads DATETIME2's and TIMESTAMP2's fractional part, dec
// digits in (dec+1)/2 bytes, as microseconds.
func fraction(data []byte, dec int) int64 {
	switch dec {
	case 1, 2:
		return int64(data[0]) * 10000
	case 3, 4:
		return int64(binary.BigEndian.Uint16(data)) * 100
	case 5, 6:
		return int64(data[0])<<16 | int64(data[1])<<8 | int64(data[2])
	}
	return 0
}

// appendDatetime2 writes a DATETIME2 from 1970 on with a real month and
// day (go-mysql's time.Time with ParseTime); other dates take go-mysql's
// text.
func appendDatetime2(dst []byte, data []byte, dec int) ([]byte, int, error) {
	if dec < 0 || dec > 6 {
		return nil, 0, errNotNative
	}
	n := 5 + (dec+1)/2
	var hi int64
	for _, b := range data[:5] {
		hi = hi<<8 | int64(b)
	}
	intPart := hi - 0x8000000000
	frac := fraction(data[5:], dec)
	// 107420450816 is 1970-01-01 00:00:00 (go-mysql's decodeDatetime2).
	if intPart < 107420450816 {
		return nil, 0, errNotNative
	}
	ymd, hms := intPart>>17, intPart%(1<<17)
	day, month, year := int(ymd%(1<<5)), int((ymd>>5)%13), int((ymd>>5)/13)
	if month == 0 || day == 0 {
		return nil, 0, errNotNative
	}
	t := time.Date(year, time.Month(month), day, int(hms>>12), int((hms>>6)%(1<<6)), int(hms%(1<<6)), int(frac*1000), time.UTC)
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), n, nil
}

// appendTimestamp2 writes a TIMESTAMP2 other than zero as the instant in
// UTC.
func appendTimestamp2(dst []byte, data []byte, dec int) ([]byte, int, error) {
	if dec < 0 || dec > 6 {
		return nil, 0, errNotNative
	}
	n := 4 + (dec+1)/2
	sec := int64(binary.BigEndian.Uint32(data))
	if sec == 0 {
		return nil, 0, errNotNative
	}
	t := time.Unix(sec, fraction(data[4:], dec)*1000).UTC()
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), n, nil
}
