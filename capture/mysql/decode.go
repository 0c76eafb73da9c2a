package mysql

// # Column values
//
// Each value becomes canonical JSON, the same whether it came from a row
// event or from a snapshot read:
//
//	TINYINT … BIGINT, signed or UNSIGNED   JSON number, every digit kept
//	DECIMAL                                JSON number with the column's scale ("12.50")
//	FLOAT, DOUBLE                          JSON number, shortest form that reads back the same
//	BIT(n)                                 JSON number (the bits as an unsigned integer)
//	YEAR                                   JSON number
//	DATE                                   "2006-01-02"
//	TIME                                   the server's text ("-838:59:59.000000")
//	DATETIME                               RFC 3339 string, the wall time read as UTC (as the
//	                                       PostgreSQL source writes timestamp without time zone)
//	TIMESTAMP                              RFC 3339 string in UTC (the instant; the session's
//	                                       time zone does not matter)
//	zero or partial dates                  the server's text ("0000-00-00 00:00:00")
//	CHAR, VARCHAR, TEXT, ENUM labels       string, decoded from the column's character set
//	                                       (latin1 is cp1252, as in MySQL); bytes a character set
//	                                       cannot decode become {"$charset": name, "$base64": …}
//	BINARY(n)                              base64 of the n bytes (zero padding restored)
//	VARBINARY, BLOB                        base64 string (standard encoding)
//	ENUM                                   the label
//	SET                                    array of the labels, in definition order
//	JSON (MySQL), JSON (MariaDB)           the JSON value (canonical); MariaDB text that does
//	                                       not parse stays a string
//	GEOMETRY, POINT, …                     GeoJSON geometry, with "srid" when not 0
//	VECTOR                                 array of numbers
//	NULL                                   null

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/twpayne/go-geom/encoding/geojson"
	"github.com/twpayne/go-geom/encoding/wkb"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"

	"github.com/stele/stele/record"
)

// appendValue appends the JSON of value v, decoded by go-mysql from a row
// event, of column c.
func appendValue(dst []byte, c *column, v any) ([]byte, error) {
	if v == nil {
		return append(dst, "null"...), nil
	}
	switch c.kind {
	case kindInt, kindUint, kindYear:
		return appendInteger(dst, c, v)
	case kindBit:
		switch n := v.(type) {
		case int64:
			return strconv.AppendUint(dst, uint64(n), 10), nil
		case uint64:
			return strconv.AppendUint(dst, n, 10), nil
		}
	case kindDecimal:
		s := asString(v)
		if !isNumber(s) {
			return nil, fmt.Errorf("decimal value %q is not a number", s)
		}
		return append(dst, s...), nil
	case kindFloat:
		switch f := v.(type) {
		case float32:
			return appendFloat(dst, float64(f), 32), nil
		case float64:
			return appendFloat(dst, f, 32), nil
		}
	case kindDouble:
		switch f := v.(type) {
		case float64:
			return appendFloat(dst, f, 64), nil
		case float32:
			return appendFloat(dst, float64(f), 64), nil
		}
	case kindDate:
		return appendQuote(dst, asString(v)), nil
	case kindTime:
		s := asString(v)
		if c.typ == gomysql.MYSQL_TYPE_TIME2 {
			s = timeWithFraction(s, int(c.meta))
		}
		return appendQuote(dst, s), nil
	case kindDatetime, kindTimestamp:
		if t, ok := v.(time.Time); ok {
			// The stream's parser hands over time.Time (ParseTime): go-mysql's
			// text for it goes through fmt.Sprintf, a sixth of its decoding.
			dst = append(dst, '"')
			dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
			return append(dst, '"'), nil
		}
		return appendDatetime(dst, asString(v)), nil
	case kindString:
		return appendText(dst, c.charset, asBytes(v)), nil
	case kindBinary:
		return appendBase64(dst, asBytes(v)), nil
	case kindFixedBinary:
		b := asBytes(v)
		if len(b) < c.fixedLen {
			b = append(bytes.Clone(b), make([]byte, c.fixedLen-len(b))...)
		}
		return appendBase64(dst, b), nil
	case kindEnum:
		switch n := v.(type) {
		case int64:
			return appendEnum(dst, c, n), nil
		case string:
			return appendText(dst, c.charset, []byte(n)), nil
		}
	case kindSet:
		switch n := v.(type) {
		case int64:
			return appendSet(dst, c, uint64(n)), nil
		case string:
			return appendSetText(dst, c.charset, []byte(n)), nil
		}
	case kindJSON:
		if !isStringish(v) {
			// a partial JSON update (binlog_row_value_options = PARTIAL_JSON)
			return append(appendQuote(append(dst, `{"$json_diff":`...), fmt.Sprint(v)), '}'), nil
		}
		b := asBytes(v)
		if len(b) == 0 {
			return append(dst, "null"...), nil
		}
		canon, err := record.Canonical(b)
		if err != nil {
			return nil, fmt.Errorf("json value is not valid JSON: %w", err)
		}
		return append(dst, canon...), nil
	case kindTextJSON:
		b := asBytes(v)
		if canon, err := record.Canonical(b); err == nil {
			return append(dst, canon...), nil
		}
		return appendText(dst, c.charset, b), nil
	case kindGeometry:
		return appendGeometry(dst, asBytes(v))
	case kindVector:
		b := asBytes(v)
		dst = append(dst, '[')
		for i := 0; i+4 <= len(b); i += 4 {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendFloat(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))), 32)
		}
		return append(dst, ']'), nil
	case kindNull:
		return append(dst, "null"...), nil
	}
	return nil, fmt.Errorf("value %T of a %s column is not decodable", v, typeName(c))
}

func isStringish(v any) bool {
	switch v.(type) {
	case string, []byte:
		return true
	}
	return false
}

func appendInteger(dst []byte, c *column, v any) ([]byte, error) {
	// Without binlog_row_metadata the binlog does not say which columns
	// are UNSIGNED and go-mysql decodes them signed; c.unsigned then comes
	// from information_schema and the bits are read again.
	switch n := v.(type) {
	case int8:
		if c.unsigned {
			return strconv.AppendUint(dst, uint64(uint8(n)), 10), nil
		}
		return strconv.AppendInt(dst, int64(n), 10), nil
	case int16:
		if c.unsigned {
			return strconv.AppendUint(dst, uint64(uint16(n)), 10), nil
		}
		return strconv.AppendInt(dst, int64(n), 10), nil
	case int32:
		if c.unsigned {
			if c.typ == 9 /* INT24 */ && n < 0 {
				return strconv.AppendUint(dst, uint64(n)&0xFFFFFF, 10), nil
			}
			return strconv.AppendUint(dst, uint64(uint32(n)), 10), nil
		}
		return strconv.AppendInt(dst, int64(n), 10), nil
	case int64:
		if c.unsigned {
			return strconv.AppendUint(dst, uint64(n), 10), nil
		}
		return strconv.AppendInt(dst, n, 10), nil
	case int:
		return strconv.AppendInt(dst, int64(n), 10), nil
	case uint8:
		return strconv.AppendUint(dst, uint64(n), 10), nil
	case uint16:
		return strconv.AppendUint(dst, uint64(n), 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(n), 10), nil
	case uint64:
		return strconv.AppendUint(dst, n, 10), nil
	}
	return nil, fmt.Errorf("integer value of type %T", v)
}

func asString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return fmt.Sprint(v)
}

// asBytes is v's bytes, to be read and not kept: a string's are its own
// (go-mysql decodes VARCHAR and TEXT as strings, and copying each value
// was one and a half allocations per row).
func asBytes(v any) []byte {
	switch s := v.(type) {
	case []byte:
		return s
	case string:
		return unsafe.Slice(unsafe.StringData(s), len(s))
	case fmt.Stringer:
		return []byte(s.String())
	}
	return []byte(fmt.Sprint(v))
}

// timeWithFraction writes a TIME's fraction with the column's fsp digits,
// as the server does (go-mysql leaves out a zero fraction).
func timeWithFraction(s string, fsp int) string {
	whole, frac, _ := strings.Cut(s, ".")
	if fsp <= 0 || fsp > 6 {
		return whole
	}
	frac = (frac + "000000")[:fsp]
	return whole + "." + frac
}

// isNumber reports whether s is a JSON number. DECIMAL text is
// -?digits(.digits)?, checked by hand; anything else goes to the JSON
// parser.
func isNumber(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	if s[0] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i, n = i+1, n+1
		}
		return n
	}
	lead := i
	if n := digits(); n > 0 && (n == 1 || s[lead] != '0') {
		if i == len(s) {
			return true
		}
		if s[i] == '.' {
			i++
			if digits() > 0 && i == len(s) {
				return true
			}
		}
	}
	return json.Valid([]byte(s)) && (s[0] == '-' || s[0] >= '0' && s[0] <= '9')
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendQuote(dst, strconv.FormatFloat(f, 'g', -1, bits))
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

func appendQuote(dst []byte, s string) []byte {
	b, _ := jsontext.AppendQuote(dst, s)
	return b
}

func appendBase64(dst []byte, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// appendDatetime writes "2006-01-02 15:04:05[.ffffff]" as RFC 3339 in UTC,
// a zero or partial date as the server wrote it.
func appendDatetime(dst []byte, s string) []byte {
	if out, ok := appendDatetimeFast(dst, s); ok {
		return out
	}
	return appendDatetimeSlow(dst, s)
}

// appendDatetimeFast rewrites go-mysql's "YYYY-MM-DD hh:mm:ss[.f…]" as
// appendDatetimeSlow would, without parsing into a time.Time (a fifth of
// the stream's own CPU on a table with one DATETIME column); anything
// unusual (ok false) takes the slow path.
func appendDatetimeFast(dst []byte, s string) ([]byte, bool) {
	if len(s) < 19 || len(s) == 20 || len(s) > 29 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return dst, false
	}
	num := func(lo, hi int) (int, bool) {
		n := 0
		for i := lo; i < hi; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || year == 0 || month < 1 || month > 12 || day < 1 ||
		day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return dst, false
	}
	frac := ""
	if len(s) > 19 {
		if s[19] != '.' {
			return dst, false
		}
		if _, ok := num(20, len(s)); !ok {
			return dst, false
		}
		frac = strings.TrimRight(s[19:], "0")
		if frac == "." {
			frac = ""
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s[:10]...)
	dst = append(dst, 'T')
	dst = append(dst, s[11:19]...)
	dst = append(dst, frac...)
	return append(dst, `Z"`...), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func appendDatetimeSlow(dst []byte, s string) []byte {
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", s, time.UTC)
	if err != nil || t.Year() == 0 {
		return appendQuote(dst, s)
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

func appendEnum(dst []byte, c *column, n int64) []byte {
	if n <= 0 || int(n) > len(c.labels) {
		if n == 0 {
			return append(dst, `""`...) // the error value of an invalid ENUM
		}
		return strconv.AppendInt(dst, n, 10)
	}
	return appendQuote(dst, c.labels[n-1])
}

func appendSet(dst []byte, c *column, bits uint64) []byte {
	dst = append(dst, '[')
	first := true
	for i, l := range c.labels {
		if i < 64 && bits&(1<<uint(i)) != 0 {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendQuote(dst, l)
		}
	}
	return append(dst, ']')
}

// appendSetText writes a SET's text ("a,c") as the array of its labels.
func appendSetText(dst []byte, charset string, b []byte) []byte {
	dst = append(dst, '[')
	if len(b) > 0 {
		for i, part := range bytes.Split(b, []byte{','}) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendText(dst, charset, part)
		}
	}
	return append(dst, ']')
}

// appendGeometry writes MySQL's geometry (a 4-byte little-endian SRID,
// then WKB) as GeoJSON.
func appendGeometry(dst []byte, b []byte) ([]byte, error) {
	if len(b) < 5 {
		return nil, fmt.Errorf("geometry value of %d bytes", len(b))
	}
	srid := binary.LittleEndian.Uint32(b)
	g, err := wkb.Unmarshal(b[4:])
	if err != nil {
		return nil, fmt.Errorf("geometry value: %w", err)
	}
	gj, err := geojson.Encode(g)
	if err != nil {
		return nil, fmt.Errorf("geometry value: %w", err)
	}
	js, err := json.Marshal(gj)
	if err != nil {
		return nil, fmt.Errorf("geometry value: %w", err)
	}
	if srid != 0 && len(js) > 1 && js[0] == '{' {
		js = append([]byte(`{"srid":`+strconv.FormatUint(uint64(srid), 10)+`,`), js[1:]...)
	}
	canon, err := record.Canonical(js)
	if err != nil {
		return nil, fmt.Errorf("geometry value: %w", err)
	}
	return append(dst, canon...), nil
}

// appendText decodes b from charset and writes it as a JSON string.
func appendText(dst []byte, charset string, b []byte) []byte {
	switch charset {
	case "", "utf8mb4", "utf8mb3", "utf8", "ascii", "binary":
		if utf8.Valid(b) {
			b, _ := jsontext.AppendQuote(dst, b)
			return b
		}
	default:
		if enc := charsetEncoding(charset); enc != nil {
			if s, err := enc.NewDecoder().Bytes(b); err == nil {
				b, _ := jsontext.AppendQuote(dst, s)
				return b
			}
		} else if utf8.Valid(b) {
			b, _ := jsontext.AppendQuote(dst, b)
			return b
		}
	}
	dst = append(dst, `{"$base64":`...)
	dst = appendBase64(dst, b)
	dst = append(dst, `,"$charset":`...)
	dst = appendQuote(dst, charset)
	return append(dst, '}')
}

// charsetEncoding is the decoder of a MySQL character set (nil: unknown,
// or UTF-8).
func charsetEncoding(name string) encoding.Encoding {
	switch strings.ToLower(name) {
	case "latin1":
		return charmap.Windows1252 // MySQL's latin1 is cp1252
	case "latin2":
		return charmap.ISO8859_2
	case "latin5":
		return charmap.ISO8859_9
	case "latin7":
		return charmap.ISO8859_13
	case "greek":
		return charmap.ISO8859_7
	case "hebrew":
		return charmap.ISO8859_8
	case "cp1250":
		return charmap.Windows1250
	case "cp1251":
		return charmap.Windows1251
	case "cp1256":
		return charmap.Windows1256
	case "cp1257":
		return charmap.Windows1257
	case "cp850":
		return charmap.CodePage850
	case "cp852":
		return charmap.CodePage852
	case "cp866":
		return charmap.CodePage866
	case "koi8r":
		return charmap.KOI8R
	case "koi8u":
		return charmap.KOI8U
	case "macroman":
		return charmap.Macintosh
	case "tis620":
		return charmap.Windows874
	case "sjis", "cp932":
		return japanese.ShiftJIS
	case "ujis", "eucjpms":
		return japanese.EUCJP
	case "euckr":
		return korean.EUCKR
	case "gb2312", "gbk":
		return simplifiedchinese.GBK
	case "gb18030":
		return simplifiedchinese.GB18030
	case "big5":
		return traditionalchinese.Big5
	case "ucs2", "utf16":
		return unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM)
	case "utf16le":
		return unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM)
	case "utf32":
		return utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM)
	}
	return nil
}

// builtinCollations name the character set of the collations every server
// has, for when information_schema.COLLATIONS cannot be read.
var builtinCollations = map[uint64]string{
	8: "latin1", 11: "ascii", 33: "utf8mb3", 45: "utf8mb4", 46: "utf8mb4", 47: "latin1",
	48: "latin1", 63: "binary", 65: "ascii", 83: "utf8mb3", 192: "utf8mb3", 224: "utf8mb4",
	246: "utf8mb4", 255: "utf8mb4", 309: "utf8mb4",
}

// charsetOf names the character set of a collation id (0: not a
// character column).
func charsetOf(server map[uint64]string, collation uint64) string {
	if collation == 0 {
		return ""
	}
	if cs, ok := server[collation]; ok {
		return cs
	}
	if cs, ok := builtinCollations[collation]; ok {
		return cs
	}
	return "utf8mb4"
}
