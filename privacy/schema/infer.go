package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"
)

// ColumnAnnotations is one column's entry in the annotations file given to
// InferPostgres (YAML, column name → these keys).
type ColumnAnnotations struct {
	PII        bool   `yaml:"pii"`
	Subject    bool   `yaml:"subject"`
	DataGroup  string `yaml:"data_group"`
	Retention  string `yaml:"retention"`
	Searchable bool   `yaml:"searchable"`
	Mask       string `yaml:"mask"`
}

// InferPostgres builds a JSON Schema for table schemaName.tableName from the
// PostgreSQL catalog, typed the way capture/postgres renders column values:
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
// its column.
func InferPostgres(ctx context.Context, conn *pgx.Conn, schemaName, tableName string, annotations []byte) ([]byte, error) {
	ann, err := parseAnnotations(annotations)
	if err != nil {
		return nil, err
	}
	cols, err := readColumns(ctx, conn, schemaName, tableName)
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("schema infer: table %s.%s not found or has no columns", schemaName, tableName)
	}
	props := make(map[string]any, len(cols))
	for _, c := range cols {
		p := c.schema()
		if a, ok := ann[c.name]; ok {
			a.apply(p)
			delete(ann, c.name)
		}
		props[c.name] = p
	}
	if len(ann) > 0 {
		var missing []string
		for name := range ann {
			missing = append(missing, name)
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("schema infer: annotations name columns that %s.%s does not have: %v", schemaName, tableName, missing)
	}
	doc := map[string]any{
		"$schema":    "https://json-schema.org/draft/2020-12/schema",
		"title":      schemaName + "." + tableName,
		"type":       "object",
		"properties": props,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("schema infer: %w", err)
	}
	// A placeholder subject: table names need not fit subject names, and
	// only the document is being checked.
	if _, err := Compile("infer.check.table", 1, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("schema infer: %s.%s with its annotations: %w", schemaName, tableName, err)
	}
	return buf.Bytes(), nil
}

func parseAnnotations(data []byte) (map[string]ColumnAnnotations, error) {
	out := map[string]ColumnAnnotations{}
	if len(bytes.TrimSpace(data)) == 0 {
		return out, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("schema infer: annotations: %w (want column: {pii, subject, data_group, retention, searchable, mask})", err)
	}
	return out, nil
}

func (a ColumnAnnotations) apply(p map[string]any) {
	if a.PII {
		p[kwPII] = true
	}
	if a.Subject {
		p[kwSubject] = true
	}
	if a.DataGroup != "" {
		p[kwDataGroup] = a.DataGroup
	}
	if a.Retention != "" {
		p[kwRetention] = a.Retention
	}
	if a.Searchable {
		p[kwSearchable] = true
	}
	if a.Mask != "" {
		p[kwMask] = a.Mask
	}
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
		addNull(items)
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
		addNull(p)
	}
	return p
}

func addNull(p map[string]any) {
	if enum, ok := p["enum"].([]any); ok {
		p["enum"] = append(enum, nil)
	}
	switch t := p["type"].(type) {
	case nil:
		// no type: any value, null included
	case string:
		p["type"] = []any{t, "null"}
	case []any:
		p["type"] = append(t, "null")
	}
}
