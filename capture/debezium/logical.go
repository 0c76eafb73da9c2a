package debezium

import (
	"bytes"
	"encoding/base64"
	"math/big"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/record"
)

// Logical types: Kafka Connect's JSON converter writes a DATE as days since
// the epoch, a DECIMAL as the base64 of its unscaled two's-complement
// bytes, and so on; only the schema says which. With a schema, images are
// turned into the plain JSON a reader expects, the same values the direct
// sources store (a date "2026-01-02", a timestamp "2026-01-02T03:04:05Z",
// a decimal as a JSON number of full precision). Without a schema the
// values are kept as Debezium wrote them: there is no way to tell a date
// from a number.

// fieldSchema is one Connect schema, as the JSON converter writes it.
type fieldSchema struct {
	Type       string            `json:"type"`
	Name       string            `json:"name"`
	Field      string            `json:"field"`
	Parameters map[string]string `json:"parameters"`
	Fields     []fieldSchema     `json:"fields"`
	Items      *fieldSchema      `json:"items"`
}

type structSchema = fieldSchema

// columns maps a struct schema's fields by name (nil schema: none).
func (s *fieldSchema) columns() map[string]*fieldSchema {
	if s == nil || len(s.Fields) == 0 {
		return nil
	}
	m := make(map[string]*fieldSchema, len(s.Fields))
	for i := range s.Fields {
		m[s.Fields[i].Field] = &s.Fields[i]
	}
	return m
}

// valueSchema is what Decode needs of an envelope's schema: the columns of
// the before and after images.
type valueSchema struct {
	before, after map[string]*fieldSchema
}

func (d *Decoder) valueSchema(raw jsontext.Value) (*valueSchema, error) {
	if len(raw) == 0 || isNull(raw) {
		return &valueSchema{}, nil
	}
	if vs, ok := d.schemas[string(raw)]; ok {
		return vs, nil
	}
	var env fieldSchema
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, malformed("schema", "%v", err)
	}
	vs := &valueSchema{}
	for i := range env.Fields {
		f := &env.Fields[i]
		switch f.Field {
		case "before":
			vs.before = f.columns()
		case "after":
			vs.after = f.columns()
		}
	}
	if d.schemas == nil || len(d.schemas) >= maxCachedSchemas {
		d.schemas = map[string]*valueSchema{}
	}
	d.schemas[string(raw)] = vs
	return vs, nil
}

// image decodes an image object, converting logical-typed columns, and
// returns it canonical (nil for an absent or null image).
func image(v jsontext.Value, cols map[string]*fieldSchema, field string) ([]byte, error) {
	if isNull(v) {
		return nil, nil
	}
	if v.Kind() != '{' {
		return nil, malformed(field, "expected a JSON object, got %s", v.Kind())
	}
	if len(cols) > 0 {
		var members map[string]jsontext.Value
		if err := json.Unmarshal(v, &members); err != nil {
			return nil, malformed(field, "%v", err)
		}
		changed := false
		for name, val := range members {
			fs := cols[name]
			if fs == nil || isNull(val) {
				continue
			}
			out, ok, err := convert(val, fs)
			if err != nil {
				return nil, malformed(field+"."+name, "%v", err)
			}
			if ok {
				members[name] = out
				changed = true
			}
		}
		if changed {
			b, err := json.Marshal(members)
			if err != nil {
				return nil, malformed(field, "%v", err)
			}
			v = b
		}
	}
	c, err := record.Canonical(v)
	if err != nil {
		return nil, malformed(field, "%v", err)
	}
	return c, nil
}

type convError string

func (e convError) Error() string { return string(e) }

// convert turns one value of logical type fs into plain JSON; ok false
// leaves it as it is.
func convert(v jsontext.Value, fs *fieldSchema) (jsontext.Value, bool, error) {
	switch fs.Name {
	case "io.debezium.time.Date", "org.apache.kafka.connect.data.Date":
		n, err := integer(v)
		if err != nil {
			return nil, false, err
		}
		return quoted(time.Unix(n*86400, 0).UTC().Format(time.DateOnly)), true, nil
	case "io.debezium.time.Time", "org.apache.kafka.connect.data.Time":
		return clock(v, time.Millisecond)
	case "io.debezium.time.MicroTime":
		return clock(v, time.Microsecond)
	case "io.debezium.time.NanoTime":
		return clock(v, time.Nanosecond)
	case "io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp":
		return stamp(v, time.UnixMilli)
	case "io.debezium.time.MicroTimestamp":
		return stamp(v, time.UnixMicro)
	case "io.debezium.time.NanoTimestamp":
		return stamp(v, func(n int64) time.Time { return time.Unix(0, n) })
	case "io.debezium.time.ZonedTimestamp":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, false, convError("a ZonedTimestamp must be a string")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, false, convError("a ZonedTimestamp must be an ISO-8601 date-time with offset, got " + strconv.Quote(s))
		}
		return quoted(t.UTC().Format(time.RFC3339Nano)), true, nil
	case "org.apache.kafka.connect.data.Decimal":
		scale, err := strconv.Atoi(fs.Parameters["scale"])
		if err != nil {
			return nil, false, convError("a Decimal schema needs an integer scale parameter")
		}
		if v.Kind() != '"' {
			// decimal.handling.mode=double or string already wrote a
			// plain value.
			return nil, false, nil
		}
		return decimal(v, scale)
	case "io.debezium.data.VariableScaleDecimal":
		var vsd struct {
			Scale *int   `json:"scale"`
			Value string `json:"value"`
		}
		if err := json.Unmarshal(v, &vsd); err != nil || vsd.Scale == nil {
			return nil, false, convError("a VariableScaleDecimal must be an object {scale, value}")
		}
		b, _ := json.Marshal(vsd.Value)
		return decimal(b, *vsd.Scale)
	case "io.debezium.data.Json":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, false, nil
		}
		if !jsontext.Value(s).IsValid() {
			return nil, false, nil
		}
		return jsontext.Value(s), true, nil
	}
	if fs.Type == "array" && fs.Items != nil && fs.Items.Name != "" && v.Kind() == '[' {
		var items []jsontext.Value
		if err := json.Unmarshal(v, &items); err != nil {
			return nil, false, err
		}
		for i, it := range items {
			if isNull(it) {
				continue
			}
			out, ok, err := convert(it, fs.Items)
			if err != nil {
				return nil, false, err
			}
			if ok {
				items[i] = out
			}
		}
		b, err := json.Marshal(items)
		return b, err == nil, err
	}
	return nil, false, nil
}

func integer(v jsontext.Value) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, convError("expected an integer, got " + string(truncate(v)))
	}
	return n, nil
}

func truncate(v []byte) []byte {
	if len(v) > 40 {
		return append(bytes.Clone(v[:40]), "…"...)
	}
	return v
}

func quoted(s string) jsontext.Value {
	b, _ := json.Marshal(s)
	return b
}

// clock is a time of day counted in unit since midnight: "15:04:05.999".
func clock(v jsontext.Value, unit time.Duration) (jsontext.Value, bool, error) {
	n, err := integer(v)
	if err != nil {
		return nil, false, err
	}
	d := time.Duration(n) * unit
	if d < 0 || d > 24*time.Hour {
		return nil, false, convError("a time of day out of range: " + string(v))
	}
	t := time.Unix(0, 0).UTC().Add(d)
	s := t.Format("15:04:05.999999999")
	if d == 24*time.Hour {
		s = "24:00:00"
	}
	return quoted(s), true, nil
}

func stamp(v jsontext.Value, from func(int64) time.Time) (jsontext.Value, bool, error) {
	n, err := integer(v)
	if err != nil {
		return nil, false, err
	}
	return quoted(from(n).UTC().Format(time.RFC3339Nano)), true, nil
}

// decimal turns the base64 of a big-endian two's-complement unscaled value
// and a scale into a JSON number of full precision.
func decimal(v jsontext.Value, scale int) (jsontext.Value, bool, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, false, convError("a Decimal must be a base64 string")
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) == 0 {
		return nil, false, convError("a Decimal must be the base64 of its unscaled bytes")
	}
	if scale < 0 || scale > 1000 {
		return nil, false, convError("a Decimal scale out of range: " + strconv.Itoa(scale))
	}
	n := new(big.Int).SetBytes(raw)
	if raw[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(raw))*8))
	}
	digits := n.String()
	neg := false
	if digits[0] == '-' {
		neg, digits = true, digits[1:]
	}
	if scale > 0 {
		for len(digits) <= scale {
			digits = "0" + digits
		}
		digits = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	}
	if neg {
		digits = "-" + digits
	}
	return jsontext.Value(digits), true, nil
}
