package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/schema"
)

func TestInferSchema(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	srv := pgtest.Start(t, pgtest.Options{WALLevel: "replica"})
	srv.Exec(t,
		`CREATE TYPE tier AS ENUM ('gold', 'silver')`,
		`CREATE DOMAIN email AS text`,
		`CREATE SCHEMA crm`,
		`CREATE TABLE crm.customers (
			id bigint PRIMARY KEY,
			small smallint NOT NULL,
			n int,
			price numeric(10,2) NOT NULL,
			ratio double precision,
			active boolean NOT NULL,
			name text NOT NULL,
			code varchar(8),
			mail email,
			created timestamptz NOT NULL,
			seen timestamp,
			born date,
			ref uuid,
			doc jsonb,
			raw bytea,
			level tier,
			tags text[],
			scores int[] NOT NULL,
			dropped int
		)`,
		`ALTER TABLE crm.customers DROP COLUMN dropped`,
	)
	conn := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ann := []byte(`
id: {subject: true, retention: P7Y}
mail: {pii: true, searchable: true}
born: {pii: true, mask: year}
`)
	out, err := InferSchema(ctx, conn, "crm", "customers", ann)
	if err != nil {
		t.Fatalf("InferPostgres: %v", err)
	}
	var doc struct {
		Type       string                    `json:"type"`
		Required   []string                  `json:"required"`
		Properties map[string]map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	want := map[string]map[string]any{
		"id":      {"type": "integer", "x-subject": true, "x-retention": "P7Y"},
		"small":   {"type": "integer"},
		"n":       {"type": []any{"integer", "null"}},
		"price":   {"type": []any{"number", "string"}, "pattern": "^(NaN|-?Infinity)$"},
		"ratio":   {"type": []any{"number", "string", "null"}, "pattern": "^(NaN|-?Infinity)$"},
		"active":  {"type": "boolean"},
		"name":    {"type": "string"},
		"code":    {"type": []any{"string", "null"}, "maxLength": float64(8)},
		"mail":    {"type": []any{"string", "null"}, "x-pii": true, "x-searchable": true},
		"created": {"type": "string", "format": "date-time"},
		"seen":    {"type": []any{"string", "null"}, "format": "date-time"},
		"born":    {"type": []any{"string", "null"}, "format": "date", "x-pii": true, "x-mask": "year"},
		"ref":     {"type": []any{"string", "null"}, "format": "uuid"},
		"doc":     {},
		"raw":     {"type": []any{"string", "null"}, "contentEncoding": "base64"},
		"level":   {"type": []any{"string", "null"}, "enum": []any{"gold", "silver", nil}},
		"tags":    {"type": []any{"array", "null"}, "items": map[string]any{"type": []any{"string", "null"}}},
		"scores":  {"type": "array", "items": map[string]any{"type": []any{"integer", "null"}}},
	}
	for name, w := range want {
		if got := doc.Properties[name]; !reflect.DeepEqual(got, w) {
			t.Errorf("column %s: got %v, want %v", name, got, w)
		}
	}
	if len(doc.Properties) != len(want) {
		t.Errorf("%d properties, want %d (dropped columns must not appear): %s", len(doc.Properties), len(want), out)
	}
	if doc.Type != "object" || doc.Required != nil {
		t.Errorf("type %q required %v; want object and no required list", doc.Type, doc.Required)
	}

	// The inferred schema registers, and validates what capture writes.
	s, err := schema.Compile("crm.crm.customers", 1, out)
	if err != nil {
		t.Fatalf("inferred schema does not compile: %v", err)
	}
	g, _ := s.Group(schema.DefaultGroup)
	if g.SubjectField.String() != "id" || g.Retention != (schema.Duration{Years: 7}) || len(g.PII) != 2 {
		t.Errorf("group = %+v", g)
	}
	img := `{"id": 1, "small": 2, "n": null, "price": "NaN", "ratio": 1.5, "active": true, "name": "x", "code": "abc",
		"mail": "a@b.c", "created": "2025-01-02T03:04:05Z", "born": "1990-05-06", "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"doc": {"k": [1]}, "raw": "AAE=", "level": "gold", "tags": ["a", null], "scores": [1, 2]}`
	if err := s.Validate([]byte(img)); err != nil {
		t.Errorf("captured image rejected: %v", err)
	}
	var ve *schema.ValidationError
	if err := s.Validate([]byte(`{"created": "yesterday"}`)); !errors.As(err, &ve) || ve.Field != "/created" {
		t.Errorf("bad timestamp: %v, want an error at /created", err)
	}
	if err := s.Validate([]byte(`{"level": "bronze"}`)); !errors.As(err, &ve) || ve.Field != "/level" {
		t.Errorf("bad enum: %v, want an error at /level", err)
	}

	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			table, ann, want string
		}{
			{"nosuch", "", "crm.nosuch not found"},
			{"customers", "nosuch: {pii: true}", "does not have: [nosuch]"},
			{"customers", "mail: {pii: yes-please}", "annotations"},
			{"customers", "mail: {private: true}", "private"},
			{"customers", "mail: {pii: true}", `no x-subject field`},
			{"customers", "id: {subject: true, retention: 7y}", "/properties/id/x-retention"},
		}
		for _, c := range cases {
			_, err := InferSchema(ctx, conn, "crm", c.table, []byte(c.ann))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("table %s annotations %q: %v, want an error containing %q", c.table, c.ann, err, c.want)
			}
		}
	})
}
