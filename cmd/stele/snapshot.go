package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stele/stele/api"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

const snapshotUsage = `(--url URL [--token TOKEN] | --data DIR) --source S --table T [--at TIME] --out FILE

Write every unit (row, entity) of one table as it was at TIME (RFC 3339,
default now) to FILE as JSON Lines, one {"key","state","seq","occurred_at"}
object a line — the lines GET /v1/tables/{source}/{table}/state serves.
--url asks a running server (with the token of --token or $STELE_TOKEN if
it requires one); --data reads a stopped server's data directory (refused
while a server holds it), showing personal data as a service token sees
it: sealed, and {"$erased":true} where the subject was erased. FILE "-" is
standard output; any other FILE appears only once complete. Progress (a
count of units and their rate) goes to stderr.`

func runSnapshot(ctx context.Context, args []string) error {
	fs := newFlagSet("snapshot", snapshotUsage)
	baseURL := fs.String("url", "", "base `URL` of a running server")
	token := tokenFlag(fs)
	data := fs.String("data", "", "data `DIR` of a stopped server")
	source := fs.String("source", "", "source `name`")
	table := fs.String("table", "", "table `name`")
	atFlag := fs.String("at", "", "the instant, RFC 3339 (default now)")
	out := fs.String("out", "", "output `FILE` (- for standard output)")
	cf := addConfigFlags(fs, "master_key_file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*baseURL == "") == (*data == "") {
		return usagef("give exactly one of --url and --data")
	}
	for _, f := range []struct{ name, v string }{{"source", *source}, {"table", *table}, {"out", *out}} {
		if f.v == "" {
			return usagef("--%s is required", f.name)
		}
	}
	at := time.Now().UTC()
	if *atFlag != "" {
		t, err := time.Parse(time.RFC3339Nano, *atFlag)
		if err != nil {
			return usagef("--at: %q is not an RFC 3339 timestamp (like 2026-01-02T15:04:05Z)", *atFlag)
		}
		at = t
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	cfg.Data = *data
	var n int
	// The number of units is known only at the end: no bar, a count.
	pr := stderrProgress("snapshot of "+*source+"/"+*table, "units", 1)
	err = writeOutput(*out, func(w io.Writer) error {
		w = &unitCounter{w: w, pr: pr}
		var err error
		if *baseURL != "" {
			n, err = snapshotURL(ctx, *baseURL, *token, *source, *table, at, w)
		} else {
			n, err = snapshotData(ctx, cfg, *source, *table, at, w)
		}
		return err
	})
	pr.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %d units of %s/%s at %s to %s\n", n, *source, *table, at.Format(time.RFC3339Nano), *out)
	return nil
}

// writeOutput runs write against path through a temporary file renamed
// into place on success, so a failed snapshot never leaves a plausible but
// partial file.
func writeOutput(path string, write func(io.Writer) error) error {
	if path == "-" {
		bw := bufio.NewWriterSize(os.Stdout, 64<<10)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	bw := bufio.NewWriterSize(tmp, 256<<10)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

func snapshotURL(ctx context.Context, base, token, source, table string, at time.Time, w io.Writer) (int, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, usagef("--url: %q is not an http(s) URL", base)
	}
	u = u.JoinPath("v1", "tables", source, table, "state")
	u.RawQuery = url.Values{"at": {at.Format(time.RFC3339Nano)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	setBearer(req, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("ask %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, answerError("snapshot", resp.StatusCode, body, token)
	}
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	n := 0
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			// A unit line starts with "key"; the server ends a stream that
			// failed midway with an error line instead.
			if !bytes.HasPrefix(line, []byte(`{"key":`)) {
				return n, fmt.Errorf("the server's stream failed after %d units: %s", n, bytes.TrimSpace(line))
			}
			if line[len(line)-1] != '\n' {
				return n, fmt.Errorf("the server's stream was cut after %d units", n)
			}
			if _, werr := w.Write(line); werr != nil {
				return n, werr
			}
			n++
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read the server's stream after %d units: %w", n, err)
		}
	}
}

func snapshotData(ctx context.Context, cfg Config, source, table string, at time.Time, w io.Writer) (int, error) {
	d, release, err := openStopped(ctx, cfg, slog.New(slog.DiscardHandler), "use --url to ask the running server instead")
	if err != nil {
		return 0, err
	}
	defer release()
	store, ix := d.store, d.ix
	if d.guard != nil {
		// As a service token sees them, like the server's answer to one:
		// sealed fields stay sealed, an erased subject's show
		// {"$erased":true}.
		ctx = query.WithReadHook(ctx, func(ctx context.Context, r *record.Record) error {
			_, err := d.guard.Reveal(ctx, auth.RoleService, r)
			return err
		})
	}
	n := 0
	var line []byte
	err = query.New(store, ix).TableStateAt(ctx, source, table, at, func(u query.Unit) error {
		line = append(api.AppendUnitJSON(line[:0], u), '\n')
		n++
		_, err := w.Write(line)
		return err
	})
	return n, err
}

// unitCounter reports the units written through it (one a Write, a line
// each) as progress.
type unitCounter struct {
	w  io.Writer
	n  int64
	pr *progress
}

func (u *unitCounter) Write(p []byte) (int, error) {
	u.n++
	u.pr.update(u.n, 0)
	return u.w.Write(p)
}
