package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"github.com/stele/stele/capture/postgres"
	"github.com/stele/stele/schema"
)

func schemaPutFlags() (*flag.FlagSet, *string, *string) {
	fs := newFlagSet("schema put", "[--url URL] [--token TOKEN] SUBJECT FILE")
	return fs, fs.String("url", defaultURL, "`URL` of the running stele server"), tokenFlag(fs)
}

func schemaGetFlags() (*flag.FlagSet, *string, *string, *int) {
	fs := newFlagSet("schema get", "[--url URL] [--token TOKEN] [--version N] SUBJECT")
	base, token := fs.String("url", defaultURL, "`URL` of the running stele server"), tokenFlag(fs)
	return fs, base, token, fs.Int("version", 0, "print version `N` instead of the latest")
}

func schemaInferFlags() (*flag.FlagSet, *string, *string, *string) {
	fs := newFlagSet("schema infer", "--pg CONNSTRING --table SCHEMA.TABLE [--annotations FILE]")
	pg := fs.String("pg", "", "PostgreSQL connection `string`, e.g. postgres://user@host:5432/db")
	table := fs.String("table", "", "`schema.table` to describe (public.orders)")
	annFile := fs.String("annotations", "", "YAML `file`: column → {pii, subject, data_group, retention, searchable, mask}")
	return fs, pg, table, annFile
}

// runSchema dispatches `stele schema put|get|infer`.
func runSchema(ctx context.Context, args []string) error {
	return verbCommand{
		name: "schema",
		verbs: []verbSpec{
			{"put", "register FILE (- for stdin) as SUBJECT's next version",
				func() *flag.FlagSet { fs, _, _ := schemaPutFlags(); return fs },
				func(args []string) error { return runSchemaPut(ctx, args, os.Stdout) }},
			{"get", "print SUBJECT's latest (or N-th) schema",
				func() *flag.FlagSet { fs, _, _, _ := schemaGetFlags(); return fs },
				func(args []string) error { return runSchemaGet(ctx, args, os.Stdout) }},
			{"infer", "print a schema inferred from a PostgreSQL table",
				func() *flag.FlagSet { fs, _, _, _ := schemaInferFlags(); return fs },
				func(args []string) error { return runSchemaInfer(ctx, args, os.Stdout) }},
		},
		about: "SUBJECT is <source>.<table> or <source>.<schema>.<table>, e.g. crm.public.customers.",
	}.run(args)
}

// parseMixed parses flags that may come before or after the positional
// arguments (`put app.orders f.json --url …`), which flag.Parse alone
// stops at, and checks the number of positional arguments (none when want
// is negative).
func parseMixed(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for {
		if err := parseArgs(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if want >= 0 && len(pos) != want {
		return nil, usagef("want %d arguments, got %d (%s)", want, len(pos), strings.Join(pos, " "))
	}
	return pos, nil
}

const defaultURL = "http://127.0.0.1:7070"

func runSchemaPut(ctx context.Context, args []string, out io.Writer) error {
	fs, base, token := schemaPutFlags()
	pos, err := parseMixed(fs, args, 2)
	if err != nil {
		return err
	}
	subject, file := pos[0], pos[1]
	var doc []byte
	if file == "-" {
		doc, err = io.ReadAll(os.Stdin)
	} else {
		doc, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	u := strings.TrimRight(*base, "/") + "/v1/schemas/" + url.PathEscape(subject)
	body, code, err := schemaRequest(ctx, http.MethodPut, u, doc, *token)
	if err != nil {
		return err
	}
	var res struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("PUT %s: unexpected answer %q", u, body)
	}
	if code == http.StatusCreated {
		fmt.Fprintf(out, "registered %s version %d\n", subject, res.Version)
	} else {
		fmt.Fprintf(out, "unchanged: %s is already version %d\n", subject, res.Version)
	}
	return nil
}

func runSchemaGet(ctx context.Context, args []string, out io.Writer) error {
	fs, base, token, version := schemaGetFlags()
	pos, err := parseMixed(fs, args, 1)
	if err != nil {
		return err
	}
	if *version < 0 {
		return usagef("--version %d: want a positive version", *version)
	}
	u := strings.TrimRight(*base, "/") + "/v1/schemas/" + url.PathEscape(pos[0])
	if *version > 0 {
		u += "/versions/" + strconv.Itoa(*version)
	}
	body, _, err := schemaRequest(ctx, http.MethodGet, u, nil, *token)
	if err != nil {
		return err
	}
	var res struct {
		Subject string          `json:"subject"`
		Version int             `json:"version"`
		Schema  json.RawMessage `json:"schema"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("GET %s: unexpected answer: %w", u, err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, res.Schema, "", "  "); err != nil {
		return fmt.Errorf("GET %s: schema is not JSON: %w", u, err)
	}
	fmt.Fprintf(os.Stderr, "%s version %d\n", res.Subject, res.Version)
	pretty.WriteByte('\n')
	_, err = out.Write(pretty.Bytes())
	return err
}

// schemaRequest sends one request and turns an error answer into an error
// naming the status, the reason and the schema field at fault.
func schemaRequest(ctx context.Context, method, u string, body []byte, token string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/schema+json")
	}
	setBearer(req, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w (is `stele serve` running there?)", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if resp.StatusCode >= 300 {
		return nil, resp.StatusCode, answerError(method+" "+u, resp.StatusCode, b, token)
	}
	return b, resp.StatusCode, nil
}

func runSchemaInfer(ctx context.Context, args []string, out io.Writer) error {
	fs, pg, table, annFile := schemaInferFlags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *pg == "" {
		return usagef("--pg is required")
	}
	schemaName, tableName, ok := strings.Cut(*table, ".")
	if !ok || schemaName == "" || tableName == "" {
		return usagef("--table %q: want schema.table, e.g. public.orders", *table)
	}
	var ann []byte
	if *annFile != "" {
		var err error
		if ann, err = os.ReadFile(*annFile); err != nil {
			return fmt.Errorf("read annotations: %w", err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, *pg)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	doc, err := postgres.InferSchema(cctx, conn, schemaName, tableName, ann)
	if err != nil {
		return err
	}
	_, err = out.Write(doc)
	return err
}

// SchemaFile is one entry of the config file's schemas: mapping, loaded
// into the registry when serve starts.
type SchemaFile struct {
	Subject string
	Path    string
}

// parseSchemasYAML reads `schemas:` as a mapping of subject to file path;
// relative paths are taken from the config file's directory.
func parseSchemasYAML(path string, v *yaml.Node) ([]SchemaFile, error) {
	if v.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: line %d: schemas: want a mapping of subject: file", path, v.Line)
	}
	var out []SchemaFile
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if err := schema.ValidSubject(k.Value); err != nil {
			return nil, fmt.Errorf("config file %s: line %d: schemas: %w", path, k.Line, err)
		}
		if seen[k.Value] {
			return nil, fmt.Errorf("config file %s: line %d: schemas: subject %q given twice", path, k.Line, k.Value)
		}
		seen[k.Value] = true
		if val.Kind != yaml.ScalarNode || val.Value == "" {
			return nil, fmt.Errorf("config file %s: line %d: schemas: %s: want a file path", path, val.Line, k.Value)
		}
		p := val.Value
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		out = append(out, SchemaFile{Subject: k.Value, Path: p})
	}
	return out, nil
}

// openSchemas opens the registry under <data>/schemas and registers the
// configured schema files; one already registered is left as it is (Put is
// idempotent), one that changed becomes a new version if compatible.
func openSchemas(ctx context.Context, data string, files []SchemaFile, logger *slog.Logger) (*schema.Registry, error) {
	reg, err := schema.Open(filepath.Join(data, "schemas"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		doc, err := os.ReadFile(f.Path)
		if err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", f.Subject, err)
		}
		v, created, err := reg.Put(ctx, f.Subject, doc)
		if err != nil {
			return nil, fmt.Errorf("schemas: %s from %s: %w", f.Subject, f.Path, err)
		}
		if created {
			logger.Info("schema registered from the config file", "subject", f.Subject, "version", v, "file", f.Path)
		}
	}
	return reg, nil
}
