package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// PostgreSQL sends an unchanged TOAST value ('u') only for a value stored
// out of line before the change, and it moves values out of line only when
// a row version exceeds TOAST_TUPLE_THRESHOLD (a quarter of a block, 2,032
// bytes on the default 8 kB block). So a row version seen in full and
// certainly below that size can never be the source of a 'u' value, and
// the image cache (imageCache) need not keep it: most rows of most tables
// are small, and keeping every image cost a fifth of decoding.

// toastThreshold is TOAST_TUPLE_THRESHOLD of the server: MaximumBytesPerTuple(4),
// from its block size.
func toastThreshold(ctx context.Context, conn *pgx.Conn) (int, error) {
	var s string
	if err := conn.QueryRow(ctx, "SHOW block_size").Scan(&s); err != nil {
		return 0, fmt.Errorf("read block_size: %w", classify(err))
	}
	block, err := strconv.Atoi(s)
	if err != nil || block <= 0 {
		return 0, fmt.Errorf("read block_size: %q is not a size", s)
	}
	const pageHeader = 24 + 4*4 // SizeOfPageHeaderData + 4 item ids, MAXALIGNed
	return (block - pageHeader) / 4 &^ 7, nil
}

// tupleHeader bounds a heap tuple's header with its null bitmap for up to
// 64 columns; wider rows add their bitmap bytes.
const tupleHeader = 32

// mayBeToasted reports whether PostgreSQL may have stored part of this row
// version out of line: it holds an unchanged TOAST value, a type whose
// stored size the text form does not bound, or an upper estimate of its
// stored size exceeds threshold.
func (rel *relation) mayBeToasted(t []tupleCol, threshold int) bool {
	size := tupleHeader + len(rel.cols)/8
	for i, c := range t {
		switch c.kind {
		case pglogrepl.TupleDataTypeNull:
			continue
		case pglogrepl.TupleDataTypeToast:
			return true
		}
		n, ok := storedSizeBound(rel.cols[i].DataType, len(c.data))
		if !ok {
			return true
		}
		size += n
		if size > threshold {
			return true
		}
	}
	return false
}

// storedSizeBound bounds the bytes a value of type oid whose text form is
// textLen bytes long takes in a heap tuple, alignment padding included;
// ok is false for types whose stored form may be larger than their text
// (jsonb, arrays, ranges, composite and user types, …).
func storedSizeBound(oid uint32, textLen int) (n int, ok bool) {
	switch oid {
	case pgtype.BoolOID, pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID,
		pgtype.Float4OID, pgtype.Float8OID, pgtype.DateOID, pgtype.TimeOID, pgtype.TimetzOID,
		pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.IntervalOID, pgtype.UUIDOID,
		pgtype.XIDOID, pgtype.CIDOID, pgtype.QCharOID:
		return 16, true // fixed sizes of at most 16 bytes, 8-aligned
	case pgtype.NameOID:
		return 64, true
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.JSONOID, pgtype.XMLOID,
		pgtype.ByteaOID, pgtype.NumericOID:
		// Stored as the text itself (bytea: half its hex text; numeric:
		// two bytes per four digits after an 8-byte header), behind a
		// varlena header of at most 4 bytes, padded to 8.
		return textLen + 16, true
	}
	return 0, false
}
