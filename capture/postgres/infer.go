package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/schema"
)

// InferSchema builds a JSON Schema for table schemaName.tableName from the
// PostgreSQL catalog, typed the way this package renders column values:
//
//	int2, int4, int8, oid          integer
//	numeric, float4, float8        number (or the strings NaN, ±Infinity)
//	bool                           boolean
//	text, varchar(n), char, name   string (varchar(n): maxLength n)
//	timestamp, timestamptz         string, format date-time
//	date                           string, format date
//	uuid                           string, format uuid
//	bytea                          string, contentEncoding base64
//	json, jsonb                    any value
//	enum types                     string, enum of the labels
//	arrays                         array of the element type (elements may be null)
//	anything else                  string (the server's text form)
//
// A nullable column also accepts null. Columns are not listed as required:
// capture images may lack columns (a key-only before image, an unchanged
// TOAST value), and additional properties stay allowed so that a column
// added by DDL does not stop capture before the schema is updated.
//
// annotations (YAML, may be empty) maps column names to ColumnAnnotations;
// naming a column the table does not have is an error. The result is
// checked like a Put would check it, so a bad annotation fails here, naming
func InferSchema(ctx context.Context, conn *pgx.Conn, schemaName, tableName string, annotations []byte) ([]byte, error) {
	cols, err := readColumns(ctx, conn, schemaName, tableName)
	if err != nil {
		return nil, err
	}
	out := make([]schema.Column, len(cols))
	for i, c := range cols {
		out[i] = schema.Column{Name: c.name, Schema: c.schema()}
	}
	return schema.Infer(schemaName+"."+tableName, out, annotations)
}

type column struct {
	name     string
	notNull  bool
	typ      string // base type name (domains resolved)
	category string // pg_type.typcategory of the base type
	elem     string // element type name for arrays
	elemCat  string
	maxLen   int // varchar(n) / char(n) length, 0 when unbounded
	labels   []string
	elemLbls []string
}

const columnsQuery = `
SELECT a.attname, a.attnotnull, t.typname, t.typcategory,
       COALESCE(et.typname, ''), COALESCE(et.typcategory, ''),
       CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 ELSE 0 END,
       COALESCE((SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '{}'),
       COALESCE((SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = et.oid), '{}')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t0 ON t0.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN t0.typtype = 'd' THEN t0.typbasetype ELSE t0.oid END
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

func readColumns(ctx context.Context, conn *pgx.Conn, schemaName, tableName string) ([]column, error) {
	rows, err := conn.Query(ctx, columnsQuery, schemaName, tableName)
	if err != nil {
		return nil, fmt.Errorf("schema infer: read columns of %s.%s: %w", schemaName, tableName, err)
	}
	cols, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (column, error) {
		var c column
		var maxLen int32
		err := row.Scan(&c.name, &c.notNull, &c.typ, &c.category, &c.elem, &c.elemCat, &maxLen, &c.labels, &c.elemLbls)
		c.maxLen = int(maxLen)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("schema infer: read columns of %s.%s: %w", schemaName, tableName, err)
	}
	return cols, nil
}

func (c column) schema() map[string]any {
	if c.category == "A" {
		items := scalarSchema(c.elem, c.elemLbls, 0)
		schema.Nullable(items)
		return withNull(map[string]any{"type": "array", "items": items}, !c.notNull)
	}
	return withNull(scalarSchema(c.typ, c.labels, c.maxLen), !c.notNull)
}

func scalarSchema(typ string, labels []string, maxLen int) map[string]any {
	if len(labels) > 0 {
		enum := make([]any, len(labels))
		for i, l := range labels {
			enum[i] = l
		}
		return map[string]any{"type": "string", "enum": enum}
	}
	switch typ {
	case "int2", "int4", "int8", "oid":
		return map[string]any{"type": "integer"}
	case "numeric", "float4", "float8":
		// capture/postgres writes NaN and ±Infinity as strings; pattern
		// applies to strings only, so every number stays valid.
		return map[string]any{"type": []any{"number", "string"}, "pattern": "^(NaN|-?Infinity)$"}
	case "bool":
		return map[string]any{"type": "boolean"}
	case "timestamp", "timestamptz":
		return map[string]any{"type": "string", "format": "date-time"}
	case "date":
		return map[string]any{"type": "string", "format": "date"}
	case "uuid":
		return map[string]any{"type": "string", "format": "uuid"}
	case "bytea":
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case "json", "jsonb":
		return map[string]any{}
	case "varchar", "bpchar":
		if maxLen > 0 {
			return map[string]any{"type": "string", "maxLength": maxLen}
		}
	}
	return map[string]any{"type": "string"}
}

// withNull lets a nullable column hold null.
func withNull(p map[string]any, nullable bool) map[string]any {
	if nullable {
		schema.Nullable(p)
	}
	return p
}
