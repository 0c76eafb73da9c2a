package main

import (
	"context"
	"encoding/json"
	"errors"
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

	"github.com/stele/stele/api"
	"github.com/stele/stele/export"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

const exportUsage = `(--data DIR | --url URL [--token TOKEN]) --out FILE [--format jsonl|csv|parquet]
       [--source S] [--table T] [--key K] [--actor A] [--op OP] [--since T] [--until T]

Write the records a filter selects (every record without one) to FILE, in
ascending seq, as stored: sealed personal-data fields stay sealed. Next to it,
FILE.proof.json holds the signed checkpoint and the proofs that let anyone
check the export offline with 'stele verify --export FILE --key VKEY'.

--data reads a data directory directly; no server may be running on it.
--url asks a running server (GET /v1/export and /v1/export/proof), with the
bearer token of --token (default $STELE_TOKEN) if the server requires one.
The format defaults to FILE's extension (.jsonl, .csv, .parquet). The filter
flags mean what the query parameters of GET /v1/records mean; --since is
inclusive and --until exclusive on occurred_at (RFC 3339).`

type exportFlags struct {
	data, url, out, format                      string
	source, table, key, actor, op, since, until string
}

func runExport(ctx context.Context, args []string) error {
	fs := newFlagSet("export", exportUsage)
	var ef exportFlags
	fs.StringVar(&ef.data, "data", "", "data `directory` to export from (no server may be running on it)")
	fs.StringVar(&ef.url, "url", "", "base `URL` of a running server to export from")
	token := tokenFlag(fs)
	fs.StringVar(&ef.out, "out", "", "output `file`; its proof is written to FILE.proof.json")
	fs.StringVar(&ef.format, "format", "", "jsonl, csv or parquet (default: from --out's extension)")
	cf := addConfigFlags(fs, "master_key_file")
	for _, p := range []struct {
		dst  *string
		name string
		help string
	}{
		{&ef.source, "source", "only records of this source `name`"},
		{&ef.table, "table", "only records of this `table`"},
		{&ef.key, "key", "only records of this entity `key` (needs --source and --table)"},
		{&ef.actor, "actor", "only records by this actor `id`"},
		{&ef.op, "op", "only records with this `op`"},
		{&ef.since, "since", "only records that occurred at or after this `time` (RFC 3339)"},
		{&ef.until, "until", "only records that occurred before this `time` (RFC 3339)"},
	} {
		fs.StringVar(p.dst, p.name, "", p.help)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (ef.data == "") == (ef.url == "") {
		return usagef("give exactly one of --data and --url")
	}
	if ef.out == "" {
		return usagef("--out is required")
	}
	format, err := exportFormat(ef.format, ef.out)
	if err != nil {
		return err
	}
	f, err := ef.filter()
	if err != nil {
		return err
	}
	start := time.Now()
	var sum string
	if ef.data != "" {
		var cfg Config
		if cfg, err = cf.load(os.Getenv); err != nil {
			return usagef("%v", err)
		}
		cfg.Data = ef.data
		pr := stderrProgress("exporting", "records", 1)
		sum, err = exportFromDir(ctx, cfg, ef.out, format, f, pr)
		pr.finish()
	} else {
		pr := stderrProgress("downloading", "MB", 1e6)
		sum, err = exportFromURL(ctx, ef.url, *token, ef.out, format, ef.query(format), pr)
		pr.finish()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "%s in %s\nwrote %s and %s\n", sum, time.Since(start).Round(time.Millisecond), ef.out, ef.out+export.ProofSuffix)
	return nil
}

func exportFormat(flagValue, out string) (export.Format, error) {
	name := flagValue
	if name == "" {
		name = strings.TrimPrefix(filepath.Ext(out), ".")
		if name == "" {
			return "", usagef("--format is required when --out has no .jsonl, .csv or .parquet extension")
		}
	}
	f, err := export.ParseFormat(name)
	if err != nil {
		if flagValue == "" {
			return "", usagef("--out %s: extension .%s is not jsonl, csv or parquet; pass --format", out, name)
		}
		return "", usagef("--format: %v", err)
	}
	return f, nil
}

// filter checks the filter flags as GET /v1/records checks its parameters.
func (ef *exportFlags) filter() (query.Filter, error) {
	f := query.Filter{Source: ef.source, Table: ef.table, Key: ef.key, Actor: ef.actor, Op: record.Op(ef.op)}
	for _, t := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", ef.since, &f.Since}, {"until", ef.until, &f.Until}} {
		if t.v == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.v)
		if err != nil {
			return f, usagef("--%s: %q is not an RFC 3339 timestamp (like 2026-01-02T15:04:05Z)", t.name, t.v)
		}
		*t.dst = v
	}
	if err := export.CheckFilter(f); err != nil {
		var fe *record.FieldError
		if errors.As(err, &fe) {
			return f, usagef("--%s: %s", fe.Field, fe.Reason)
		}
		return f, usagef("%v", err)
	}
	return f, nil
}

func (ef *exportFlags) query(format export.Format) url.Values {
	q := url.Values{"format": {string(format)}}
	for name, v := range map[string]string{"source": ef.source, "table": ef.table, "key": ef.key, "actor": ef.actor,
		"op": ef.op, "since": ef.since, "until": ef.until} {
		if v != "" {
			q.Set(name, v)
		}
	}
	return q
}

// outputs creates the export's two files under temporary names; commit
// renames them into place, so an interrupted export never leaves a file
// that looks complete.
type outputs struct {
	out       string
	data, prf *os.File
	committed bool
}

func createOutputs(out string) (*outputs, error) {
	o := &outputs{out: out}
	var err error
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	if o.data, err = os.CreateTemp(dir, "."+base+".tmp-*"); err != nil {
		return nil, fmt.Errorf("create %s: %w", out, err)
	}
	if o.prf, err = os.CreateTemp(dir, "."+base+export.ProofSuffix+".tmp-*"); err != nil {
		o.abort()
		return nil, fmt.Errorf("create %s%s: %w", out, export.ProofSuffix, err)
	}
	return o, nil
}

func (o *outputs) abort() {
	if o.committed {
		return
	}
	for _, f := range []*os.File{o.data, o.prf} {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

func (o *outputs) commit() error {
	for _, f := range []*os.File{o.data, o.prf} {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", f.Name(), err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", f.Name(), err)
		}
	}
	// The proof goes last: a data file without its proof is visibly
	// incomplete, an old proof next to a new file would only mislead.
	if err := os.Rename(o.data.Name(), o.out); err != nil {
		return fmt.Errorf("rename into %s: %w", o.out, err)
	}
	if err := os.Rename(o.prf.Name(), o.out+export.ProofSuffix); err != nil {
		return fmt.Errorf("rename into %s%s: %w", o.out, export.ProofSuffix, err)
	}
	o.committed = true
	return nil
}

// exportFromDir exports straight from a stopped server's data directory,
// taking its lock so no server starts on it meanwhile.
func exportFromDir(ctx context.Context, cfg Config, out string, format export.Format, f query.Filter, pr *progress) (string, error) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, release, err := openStopped(ctx, cfg, logger, "export from a running server with --url instead")
	if err != nil {
		return "", err
	}
	defer release()
	store, ix, vkey := d.store, d.ix, d.vkey
	cp, err := store.Checkpoint(ctx)
	if err != nil {
		return "", err
	}
	o, err := createOutputs(out)
	if err != nil {
		return "", err
	}
	defer o.abort()
	sum, err := export.New(store, query.New(store, ix)).Write(ctx,
		export.Options{Format: format, Filter: f, Size: cp.Size, Checkpoint: cp, VerifierKey: vkey,
			Progress: func(seq, size uint64) { pr.update(int64(seq), int64(size)) }}, o.data, o.prf)
	if err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	if err := o.commit(); err != nil {
		return "", err
	}
	return fmt.Sprintf("exported %d of %d records (%s)", sum.Records, sum.Size, format), nil
}

// exportFromURL downloads the data file, then its proof for the very tree
// size the data response names, so both cover the same records even while
// the server keeps appending.
func exportFromURL(ctx context.Context, base, token, out string, format export.Format, q url.Values, pr *progress) (string, error) {
	base = strings.TrimRight(base, "/")
	o, err := createOutputs(out)
	if err != nil {
		return "", err
	}
	defer o.abort()
	client := &http.Client{}
	hdr, err := download(ctx, client, token, base+"/v1/export?"+q.Encode(), &countingWriter{w: o.data, pr: pr})
	if err != nil {
		return "", err
	}
	size := hdr.Get(api.TreeSizeHeader)
	if _, err := strconv.ParseUint(size, 10, 64); err != nil {
		return "", fmt.Errorf("%s/v1/export: response header %s is %q, not a tree size", base, api.TreeSizeHeader, size)
	}
	q.Set("tree_size", size)
	if _, err := download(ctx, client, token, base+"/v1/export/proof?"+q.Encode(), o.prf); err != nil {
		return "", err
	}
	if err := o.commit(); err != nil {
		return "", err
	}
	return fmt.Sprintf("exported the records below tree size %s (%s) from %s", size, format, base), nil
}

func download(ctx context.Context, client *http.Client, token, u string, dst io.Writer) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	setBearer(req, token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusBadRequest {
			return nil, usagef("%s: %s: %s", req.URL.Path, resp.Status, msg)
		}
		return nil, answerError(req.URL.Path, resp.StatusCode, body, token)
	}
	if _, err := io.Copy(dst, resp.Body); err != nil {
		return nil, fmt.Errorf("%s: transfer broken off: %w", req.URL.Path, err)
	}
	return resp.Header, nil
}

// countingWriter reports the bytes written through it as progress (the
// size of a streamed answer is known only at its end).
type countingWriter struct {
	w  io.Writer
	n  int64
	pr *progress
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.pr.update(c.n, 0)
	return n, err
}
