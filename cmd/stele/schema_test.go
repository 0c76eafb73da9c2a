package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/schema"
)

const cliOrders = `{"type": "object", "properties": {"id": {"type": "integer", "x-subject": true}, "email": {"type": "string", "x-pii": true}}}`

// TestSchemaServeAndCLI registers a schema from the config file at serve
// start, then uses `stele schema put` and `get` against the server.
func TestSchemaServeAndCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "orders.json"), []byte(cliOrders), 0o644); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "stele.yaml")
	conf := "addr: 127.0.0.1:0\nschemas:\n  app.orders: orders.json\n"
	cfg := defaultConfig()
	if err := applyYAML(&cfg, confPath, []byte(conf)); err != nil {
		t.Fatal(err)
	}
	cfg.Data = filepath.Join(dir, "data")
	addrFile := filepath.Join(dir, "addr")
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	base, err := waitReady(ctx, addrFile, served)
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := runSchemaGet(ctx, []string{"--url", base, "app.orders"}, &out); err != nil {
		t.Fatalf("schema get: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got["properties"] == nil {
		t.Fatalf("schema get printed %q: %v", out.String(), err)
	}

	// Same file again: unchanged. A compatible change: version 2, with the
	// flag after the positional arguments.
	out.Reset()
	if err := runSchemaPut(ctx, []string{"--url", base, "app.orders", filepath.Join(dir, "orders.json")}, &out); err != nil || !strings.Contains(out.String(), "unchanged: app.orders is already version 1") {
		t.Fatalf("schema put identical: %v, %q", err, out.String())
	}
	v2 := strings.Replace(cliOrders, `"email"`, `"note": {"type": "string"}, "email"`, 1)
	v2Path := filepath.Join(dir, "v2.json")
	if err := os.WriteFile(v2Path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runSchemaPut(ctx, []string{"app.orders", v2Path, "--url", base}, &out); err != nil || out.String() != "registered app.orders version 2\n" {
		t.Fatalf("schema put v2: %v, %q", err, out.String())
	}
	out.Reset()
	if err := runSchemaGet(ctx, []string{"--url", base, "--version", "1", "app.orders"}, &out); err != nil || strings.Contains(out.String(), "note") {
		t.Fatalf("schema get --version 1: %v, %q", err, out.String())
	}

	// Dropping x-pii is refused, and the error names the field.
	weak := strings.Replace(v2, `, "x-pii": true`, ``, 1)
	weakPath := filepath.Join(dir, "weak.json")
	if err := os.WriteFile(weakPath, []byte(weak), 0o644); err != nil {
		t.Fatal(err)
	}
	err = runSchemaPut(ctx, []string{"--url", base, "app.orders", weakPath}, &out)
	if err == nil || !strings.Contains(err.Error(), "/properties/email") || !strings.Contains(err.Error(), "409") {
		t.Fatalf("schema put weakening PII: %v, want a 409 naming /properties/email", err)
	}
	if err := runSchemaGet(ctx, []string{"--url", base, "app.none"}, &out); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("schema get unknown: %v", err)
	}
	if err := runSchemaPut(ctx, []string{"--url", base, "app.orders"}, &out); err == nil {
		t.Error("schema put without FILE succeeded")
	}

	// The registry persisted under the data directory.
	stop()
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	served <- nil
	reg, err := schema.Open(filepath.Join(cfg.Data, "schemas"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := reg.Latest("app.orders"); err != nil || s.Version != 2 {
		t.Errorf("persisted registry: %v, %v", s, err)
	}
}

func TestSchemasConfigErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{"schemas: [a.b]", "want a mapping of subject: file"},
		{"schemas:\n  orders: x.json", "invalid subject name"},
		{"schemas:\n  app.orders: {}", "want a file path"},
		{"schemas:\n  app.orders: x.json\n  app.orders: y.json", "given twice"},
	} {
		cfg := defaultConfig()
		err := applyYAML(&cfg, "/etc/stele.yaml", []byte(c.conf))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error containing %q", c.conf, err, c.want)
		}
	}
	cfg := defaultConfig()
	if err := applyYAML(&cfg, "/etc/stele/stele.yaml", []byte("schemas:\n  app.orders: s/orders.json\n  crm.public.c: /abs/c.json")); err != nil {
		t.Fatal(err)
	}
	want := []SchemaFile{{"app.orders", "/etc/stele/s/orders.json"}, {"crm.public.c", "/abs/c.json"}}
	if cfg.Schemas == nil || len(*cfg.Schemas) != 2 || (*cfg.Schemas)[0] != want[0] || (*cfg.Schemas)[1] != want[1] {
		t.Errorf("schemas = %v, want %v", cfg.Schemas, want)
	}
}

func TestSchemaInferCLI(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{WALLevel: "replica"})
	srv.Exec(t, `CREATE TABLE public.people (id int PRIMARY KEY, email text)`)
	ann := filepath.Join(t.TempDir(), "ann.yaml")
	if err := os.WriteFile(ann, []byte("id: {subject: true}\nemail: {pii: true, mask: last4}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runSchemaInfer(context.Background(), []string{"--pg", srv.URL("postgres"), "--table", "public.people", "--annotations", ann}, &out); err != nil {
		t.Fatalf("schema infer: %v", err)
	}
	s, err := schema.Compile("pg.public.people", 1, out.Bytes())
	if err != nil {
		t.Fatalf("inferred schema: %v\n%s", err, out.String())
	}
	if f, _, ok := s.PIIField(schema.Path{"email"}); !ok || f.Mask != "last4" {
		t.Errorf("email = %+v, %v", f, ok)
	}
	if err := runSchemaInfer(context.Background(), []string{"--pg", srv.URL("postgres"), "--table", "people"}, &out); err == nil || !strings.Contains(err.Error(), "schema.table") {
		t.Errorf("bad --table: %v", err)
	}
}
