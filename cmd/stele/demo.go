package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/auditor"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/internal/atomicfile"
)

const demoUsage = `[--data DIR] [--addr HOST:PORT] [--token TOKEN] [--exit]

Start Stele on DIR, ingest a sample CRM history, show it, prove a record's
inclusion, audit the server from outside, and print where to look.
Running it again stores none of the sample changes twice.

Once DIR has API tokens (stele token create --data DIR), the demo needs
one that may append (admin or service): the one of --token or
$STELE_TOKEN, or else a service token of its own, created on first need
and kept in DIR/demo.token (readable by you only; a demo directory is
not a place for secrets).`

func runDemo(ctx context.Context, args []string) error {
	fs := newFlagSet("demo", demoUsage)
	data := fs.String("data", "./stele-demo-data", "data `directory` for the demo log (kept, so you can explore it afterwards)")
	addr := fs.String("addr", "127.0.0.1:7070", "listen `address`; if it is taken, a free port is used")
	token := tokenFlag(fs)
	exit := fs.Bool("exit", false, "stop after the demonstration instead of serving until Ctrl-C")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = *data, *addr
	if ln, err := net.Listen("tcp", cfg.Addr); err != nil {
		cfg.Addr = "127.0.0.1:0"
	} else {
		ln.Close()
	}
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return err
	}
	// Before the server starts, so it knows a token the demo creates.
	tok, tokNote, err := demoToken(cfg.Data, *token, isFlagSet(fs, "token"))
	if err != nil {
		return err
	}
	addrFile := filepath.Join(cfg.Data, "demo.addr")
	os.Remove(addrFile)
	srvCtx, stop := context.WithCancel(ctx)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, logger) }()

	base, err := waitReady(ctx, addrFile, served)
	if err != nil {
		return err
	}
	d := &demo{base: base, out: os.Stdout, client: &http.Client{Timeout: 30 * time.Second}, token: tok, tokenNote: tokNote}
	if err := d.run(ctx, cfg.Data); err != nil {
		stop()
		<-served
		return err
	}
	if *exit {
		stop()
		return <-served
	}
	fmt.Fprintf(d.out, "\nStele keeps serving; the web UI is at %s/ — press Ctrl-C to stop.\n", d.base)
	return <-served
}

func waitReady(ctx context.Context, addrFile string, served <-chan error) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-served:
			return "", fmt.Errorf("server stopped: %w", err)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		b, err := os.ReadFile(addrFile)
		if err != nil {
			continue
		}
		base := "http://" + strings.TrimSpace(string(b))
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return base, nil
		}
	}
	return "", errors.New("server did not become healthy within 30 s")
}

type demo struct {
	base   string
	out    io.Writer
	client *http.Client
	// token is sent with every request when the data directory has
	// tokens; tokenNote says whose it is, for the curl lines.
	token, tokenNote string
}

// demoTokenFile keeps the demo's own token in its data directory.
const demoTokenFile = "demo.token"

// demoToken picks the token the demo sends: none while the directory has
// no tokens (the server is open), else the one given (--token, or
// $STELE_TOKEN) if it may append, else the demo's own service token,
// created the first time it is needed and kept in DIR/demo.token.
func demoToken(data, given string, explicit bool) (token, note string, err error) {
	tokens, err := auth.Open(data)
	if err != nil {
		return "", "", err
	}
	if tokens.Empty() {
		return "", "", nil
	}
	if given != "" {
		p, ok := tokens.Authenticate(given)
		from := "$STELE_TOKEN"
		if explicit {
			from = "--token"
		}
		switch {
		case !ok:
			return "", "", fmt.Errorf("the token given by %s is not one of %s's tokens (%s); pass one of them, or none to let the demo use its own", from, data, auth.TokenFile)
		case p.Role != auth.RoleAdmin && p.Role != auth.RoleService:
			return "", "", fmt.Errorf("the token given by %s (%q) has role %s, which may not append records: the demo needs an admin or service token, or none to use its own", from, p.Name, p.Role)
		}
		return given, "your token (" + from + ")", nil
	}
	path := filepath.Join(data, demoTokenFile)
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			if _, ok := tokens.Authenticate(t); ok {
				return t, "the demo's token, in " + path, nil
			}
		}
	}
	name := "stele-demo"
	for i := 2; ; i++ {
		token, err = tokens.Create(name, auth.RoleService)
		if !errors.Is(err, auth.ErrNameTaken) {
			break
		}
		name = fmt.Sprintf("stele-demo-%d", i)
	}
	if err != nil {
		return "", "", fmt.Errorf("create the demo's own token: %w", err)
	}
	if err := atomicfile.Write(path, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("keep the demo's token: %w", err)
	}
	return token, "the demo's token, in " + path, nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) do(ctx context.Context, method, path, ctype string, body []byte, want int, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	setBearer(req, d.token)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	switch v := into.(type) {
	case nil:
	case *string:
		*v = string(b)
	default:
		return json.Unmarshal(b, into)
	}
	return nil
}

type demoRecord struct {
	Seq        uint64                             `json:"seq"`
	Op         string                             `json:"op"`
	Source     struct{ Table string }             `json:"source"`
	Changed    []string                           `json:"changed"`
	Before     json.RawMessage                    `json:"before"`
	After      json.RawMessage                    `json:"after"`
	Actor      struct{ ID, App string }           `json:"actor"`
	Cause      struct{ Type, Description string } `json:"cause"`
	OccurredAt time.Time                          `json:"occurred_at"`
}

func (d *demo) run(ctx context.Context, dataDir string) error {
	d.say("Stele is running at %s (data in %s)\n", d.base, dataDir)

	// 1. Ingest: half as a JSON array, half as NDJSON.
	recs := demoRecords()
	half := len(recs) / 2
	var nd bytes.Buffer
	for _, r := range recs[half:] {
		b, _ := json.Marshal(r)
		nd.Write(b)
		nd.WriteByte('\n')
	}
	var r1, r2 struct {
		Records []stele.Appended `json:"records"`
	}
	if err := d.do(ctx, "POST", "/v1/records", "application/json", demoJSON(recs[:half]), http.StatusCreated, &r1); err != nil {
		return err
	}
	if err := d.do(ctx, "POST", "/v1/records", "application/x-ndjson", nd.Bytes(), http.StatusCreated, &r2); err != nil {
		return err
	}
	all := append(r1.Records, r2.Records...)
	dups := 0
	for _, a := range all {
		if a.Duplicate {
			dups++
		}
	}
	d.say("1. Ingested %d changes (a JSON array and an NDJSON batch), each fsync'd before the 201.", len(all))
	if dups > 0 {
		d.say("   %d of them were already in the log from an earlier run: same source position, same id, stored once.", dups)
	}

	// 2. Who changed customer 7, when, through what, and what was it before?
	var hist struct {
		Records []demoRecord `json:"records"`
	}
	if err := d.do(ctx, "GET", "/v1/entities/crm/customers/7/history", "", nil, http.StatusOK, &hist); err != nil {
		return err
	}
	d.say("\n2. History of crm/customers/7 — who changed what, when, through what:")
	var cityChange uint64
	for _, r := range hist.Records {
		line := fmt.Sprintf("   seq %-3d %s  %-6s by %-12s via %-12s", r.Seq, r.OccurredAt.Format("2006-01-02 15:04"), r.Op, r.Actor.ID, r.Actor.App)
		if r.Op == "update" {
			line += " changed " + strings.Join(r.Changed, ",") + ": " + fieldDiff(r.Before, r.After, r.Changed)
			if strings.Join(r.Changed, ",") == "city" {
				cityChange = r.Seq
			}
		}
		if r.Cause.Type != "" {
			line += fmt.Sprintf("  (cause: %s)", r.Cause.Type)
		}
		d.say("%s", line)
	}

	// 3. State at an instant.
	var st struct {
		State json.RawMessage `json:"state"`
	}
	if err := d.do(ctx, "GET", "/v1/entities/crm/customers/7/state?at=2025-04-01T00:00:00Z", "", nil, http.StatusOK, &st); err != nil {
		return err
	}
	d.say("\n3. Customer 7 as it was on 2025-04-01: %s", st.State)
	if err := d.do(ctx, "GET", "/v1/entities/crm/customers/8/state?at=2025-12-31T00:00:00Z", "", nil, http.StatusNotFound, nil); err != nil {
		return err
	}
	d.say("   Customer 8 on 2025-12-31: not found (deleted on 2025-09-09 after an erasure request).")

	// 4. Search.
	var byActor struct {
		Records []demoRecord `json:"records"`
	}
	if err := d.do(ctx, "GET", "/v1/records?actor=warehouse-bot&limit=100", "", nil, http.StatusOK, &byActor); err != nil {
		return err
	}
	d.say("\n4. Changes made by warehouse-bot: %d (GET /v1/records?actor=warehouse-bot)", len(byActor.Records))

	// 5. Prove one record's inclusion, checking the proof here like any outsider.
	if err := d.proveInclusion(ctx, cityChange); err != nil {
		return err
	}

	// 6. Audit the running server from the outside.
	var vkey string
	if err := d.do(ctx, "GET", "/v1/log/key", "", nil, http.StatusOK, &vkey); err != nil {
		return err
	}
	vkey = strings.TrimSpace(vkey)
	rep, err := auditor.Check(ctx, auditor.Options{URL: d.base, VerifierKey: vkey, StatePath: filepath.Join(dataDir, "demo-audit-state.json"), SpotChecks: 8, Token: d.token})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	d.say("\n6. Outside audit (stele verify --url): %s", rep.Summary())

	d.say("\nWhere to look:")
	d.say("   Open %s/ in a browser: search, timelines, state at an instant, proofs checked in the page.", d.base)
	if d.token != "" {
		d.say("   It asks for a token; %s may read.", d.tokenNote)
	}
	curl := "curl"
	if d.token != "" {
		d.say("   # this server requires a token; these lines send %s:", d.tokenNote)
		if strings.HasPrefix(d.tokenNote, "the demo's") {
			d.say("   export STELE_TOKEN=$(cat %s)", filepath.Join(dataDir, demoTokenFile))
		}
		curl = `curl -H "Authorization: Bearer $STELE_TOKEN"`
	}
	d.say("   %s %s/v1/entities/crm/customers/7/history", curl, d.base)
	d.say("   %s '%s/v1/entities/crm/customers/7/state?at=2025-04-01T00:00:00Z'", curl, d.base)
	d.say("   %s '%s/v1/records?source=crm&table=orders&op=update'", curl, d.base)
	d.say("   %s %s/v1/records/%d          # record + inclusion proof", curl, d.base, cityChange)
	d.say("   curl %s/v1/checkpoint           # signed checkpoint", d.base)
	d.say("   stele verify --url %s --key '%s'", d.base, vkey)
	d.say("   stele verify --data %s          # offline, after stopping the server", dataDir)
	return nil
}

func fieldDiff(before, after json.RawMessage, fields []string) string {
	var b, a map[string]json.RawMessage
	_ = json.Unmarshal(before, &b)
	_ = json.Unmarshal(after, &a)
	var parts []string
	for _, f := range fields {
		parts = append(parts, fmt.Sprintf("%s → %s", b[f], a[f]))
	}
	return strings.Join(parts, "; ")
}

func (d *demo) proveInclusion(ctx context.Context, seq uint64) error {
	var vkey string
	if err := d.do(ctx, "GET", "/v1/log/key", "", nil, http.StatusOK, &vkey); err != nil {
		return err
	}
	var resp struct {
		Leaf       string `json:"leaf"`
		Checkpoint string `json:"checkpoint"`
		Proof      struct {
			LeafIndex uint64   `json:"leaf_index"`
			TreeSize  uint64   `json:"tree_size"`
			Hashes    []string `json:"hashes"`
		} `json:"proof"`
	}
	if err := d.do(ctx, "GET", "/v1/records/"+url.PathEscape(fmt.Sprint(seq)), "", nil, http.StatusOK, &resp); err != nil {
		return err
	}
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return err
	}
	cp, err := stele.OpenCheckpoint([]byte(resp.Checkpoint), v)
	if err != nil {
		return err
	}
	leaf, err := base64.StdEncoding.DecodeString(resp.Leaf)
	if err != nil {
		return err
	}
	hashes := make([][]byte, len(resp.Proof.Hashes))
	for i, h := range resp.Proof.Hashes {
		if hashes[i], err = base64.StdEncoding.DecodeString(h); err != nil {
			return err
		}
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, resp.Proof.TreeSize, rfc6962.DefaultHasher.HashLeaf(leaf), hashes, cp.Root); err != nil {
		return fmt.Errorf("inclusion proof for seq %d: %w", seq, err)
	}
	d.say("\n5. Record %d (the city change) is in the signed tree of size %d: inclusion proof of %d hashes verified here against the checkpoint signed by %s.",
		seq, cp.Size, len(hashes), cp.Origin)
	return nil
}
