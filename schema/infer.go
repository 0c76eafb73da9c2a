package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"gopkg.in/yaml.v3"
)

// ColumnAnnotations is one column's entry in the annotations file given to
// Infer (YAML, column name → these keys).
type ColumnAnnotations struct {
	PII        bool   `yaml:"pii"`
	Subject    bool   `yaml:"subject"`
	DataGroup  string `yaml:"data_group"`
	Retention  string `yaml:"retention"`
	Searchable bool   `yaml:"searchable"`
	Mask       string `yaml:"mask"`
}

// Column is one column of a table whose schema a source infers from its
// database's catalog: its name and the JSON Schema of the values the source
// renders for it.
type Column struct {
	Name   string
	Schema map[string]any
}

// Infer builds the JSON Schema document of a table from its columns, as a
// source reads them from its database's catalog, and the annotations file
// (YAML, may be empty) mapping column names to ColumnAnnotations; naming a
// column the table does not have is an error. Columns are not listed as
// required: capture images may lack columns (a key-only before image, an
// unchanged TOAST value), and additional properties stay allowed so that a
// column added by DDL does not stop capture before the schema is updated.
// The result is checked like a Put would check it, so a bad annotation
// fails here, naming its column.
func Infer(title string, cols []Column, annotations []byte) ([]byte, error) {
	ann, err := parseAnnotations(annotations)
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("schema infer: table %s not found or has no columns", title)
	}
	props := make(map[string]any, len(cols))
	for _, c := range cols {
		p := c.Schema
		if a, ok := ann[c.Name]; ok {
			a.apply(p)
			delete(ann, c.Name)
		}
		props[c.Name] = p
	}
	if len(ann) > 0 {
		var missing []string
		for name := range ann {
			missing = append(missing, name)
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("schema infer: annotations name columns that %s does not have: %v", title, missing)
	}
	doc := map[string]any{
		"$schema":    "https://json-schema.org/draft/2020-12/schema",
		"title":      title,
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
		return nil, fmt.Errorf("schema infer: %s with its annotations: %w", title, err)
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

// Nullable lets a column's schema p also accept null.
func Nullable(p map[string]any) map[string]any {
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
	return p
}
