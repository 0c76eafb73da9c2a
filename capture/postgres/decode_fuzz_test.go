package postgres

import (
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// FuzzColumnJSON: a column value arrives from the replication stream in
// the server's text form. Whatever its bytes, for every type the decoder
// knows, the result is valid JSON or an error naming the problem — never a
// panic and never broken JSON in a record.
func FuzzColumnJSON(f *testing.F) {
	oids := []uint32{pgtype.TextOID, pgtype.Int4OID, pgtype.Int8OID, pgtype.NumericOID, pgtype.Float8OID, pgtype.BoolOID,
		pgtype.JSONOID, pgtype.JSONBOID, pgtype.ByteaOID, pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID,
		pgtype.UUIDOID, pgtype.Int4ArrayOID, pgtype.TextArrayOID, pgtype.IntervalOID, 0}
	for i, seed := range []string{"hello", "42", "-1.5e10", "NaN", "t", `{"a":[1,2]}`, `\x0102ff`, "2026-01-02 03:04:05.123456+01",
		"2026-01-02 03:04:05", "2026-01-02", "0b7f5c0e-0000-4000-8000-000000000000", "{1,2,NULL}", `{"a b","c\"d"}`, "1 day 02:00:00", "infinity"} {
		f.Add(uint(i), []byte(seed))
	}
	m := pgtype.NewMap()
	f.Fuzz(func(t *testing.T, pick uint, data []byte) {
		oid := oids[pick%uint(len(oids))]
		out, err := columnJSON(m, oid, data)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("type %d, input %q: invalid JSON %q", oid, data, out)
		}
	})
}
