package postgres

import (
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
)

func TestMayBeToasted(t *testing.T) {
	col := func(oid uint32) *pglogrepl.RelationMessageColumn {
		return &pglogrepl.RelationMessageColumn{DataType: oid}
	}
	text := func(n int) tupleCol { return tupleCol{kind: pglogrepl.TupleDataTypeText, data: make([]byte, n)} }
	null := tupleCol{kind: pglogrepl.TupleDataTypeNull}
	rel := &relation{cols: []*pglogrepl.RelationMessageColumn{col(pgtype.Int8OID), col(pgtype.TextOID), col(pgtype.TimestamptzOID)}}
	for _, tc := range []struct {
		name string
		rel  *relation
		t    []tupleCol
		want bool
	}{
		{"small row", rel, []tupleCol{text(3), text(40), text(29)}, false},
		{"nulls", rel, []tupleCol{text(3), null, null}, false},
		{"big text", rel, []tupleCol{text(3), text(1990), text(29)}, true},
		{"unchanged toast value", rel, []tupleCol{text(3), {kind: pglogrepl.TupleDataTypeToast}, text(29)}, true},
		{"jsonb, whose stored form may outgrow its text", &relation{cols: []*pglogrepl.RelationMessageColumn{col(pgtype.JSONBOID)}}, []tupleCol{text(2)}, true},
		{"array", &relation{cols: []*pglogrepl.RelationMessageColumn{col(pgtype.Int4ArrayOID)}}, []tupleCol{text(5)}, true},
	} {
		if got := tc.rel.mayBeToasted(tc.t, 2032); got != tc.want {
			t.Errorf("%s: mayBeToasted = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Without a known threshold every image is kept.
	if !rel.mayBeToasted([]tupleCol{text(1), null, null}, 0) {
		t.Error("threshold 0 must keep every image")
	}
}
