package main

// The tests of issue 18, "A newcomer's first hour, without a stumble", one
// (or more) per numbered item, against the real binary.

import (
	"context"
	"encoding/json"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/privacy/keystore"
)

// Item 1: the demo keeps working once its data directory has tokens, with
// a token of its own or the one given.
func TestDemoWithTokens(t *testing.T) {
	data := filepath.Join(t.TempDir(), "demo")
	demo := func(want int, env ...string) result {
		t.Helper()
		return cli(t, want, env, "demo", "--data", data, "--addr", "127.0.0.1:0", "--exit")
	}
	if r := demo(0); strings.Contains(r.stdout, "Authorization") {
		t.Errorf("a demo on an open server sends a token:\n%s", r)
	} else if !strings.Contains(r.stdout, "/ in a browser") || strings.Contains(r.stdout, "It asks for a token") {
		t.Errorf("the open demo's closing message does not point to the web UI:\n%s", r)
	}
	admin := lastLine(cli(t, 0, nil, "token", "create", "--data", data, "--role", "admin", "--name", "me").stdout)

	// No token given: the demo's own, created once and reused.
	r := demo(0)
	if !strings.Contains(r.stdout, "inclusion proof") || !strings.Contains(r.stdout, demoTokenFile) || !strings.Contains(r.stdout, "Authorization: Bearer") ||
		!strings.Contains(r.stdout, "/ in a browser") || !strings.Contains(r.stdout, "It asks for a token") {
		t.Errorf("demo on a directory with tokens:\n%s", r)
	}
	own, err := os.ReadFile(filepath.Join(data, demoTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(data, demoTokenFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", demoTokenFile, fi.Mode().Perm())
	}
	demo(0)
	if again, _ := os.ReadFile(filepath.Join(data, demoTokenFile)); string(again) != string(own) {
		t.Error("a second demo run made another token")
	}
	if list := cli(t, 0, nil, "token", "list", "--data", data).stdout; strings.Count(list, "\n") != 2 || !strings.Contains(list, "stele-demo\tservice") {
		t.Errorf("token list after the demo runs:\n%s", list)
	}

	// The one given, in the environment or as a flag.
	if r := demo(0, "STELE_TOKEN="+admin); !strings.Contains(r.stdout, "your token ($STELE_TOKEN)") {
		t.Errorf("demo with STELE_TOKEN:\n%s", r)
	}
	if r := cli(t, 0, nil, "demo", "--data", data, "--addr", "127.0.0.1:0", "--exit", "--token", admin); !strings.Contains(r.stdout, "your token (--token)") {
		t.Errorf("demo with --token:\n%s", r)
	}
	// A token that is not the directory's: refused up front, saying so.
	if r := demo(exitFailure, "STELE_TOKEN=stele_bogus"); !strings.Contains(r.stderr, "$STELE_TOKEN is not one of") {
		t.Errorf("demo with a bogus token:\n%s", r)
	}
	auditor := lastLine(cli(t, 0, nil, "token", "create", "--data", data, "--role", "auditor", "--name", "aud").stdout)
	if r := demo(exitFailure, "STELE_TOKEN="+auditor); !strings.Contains(r.stderr, "role auditor, which may not append") {
		t.Errorf("demo with an auditor token:\n%s", r)
	}
	cli(t, 0, nil, "verify", "--data", data)
}

// Item 2: flags before and after the verb, for every command with verbs.
func TestFlagsBeforeAndAfterTheVerb(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	fillDir(t, data, 3)

	// token
	cli(t, 0, nil, "token", "--data", data, "create", "--role", "admin", "--name", "before")
	cli(t, 0, nil, "token", "create", "--data", data, "--role", "service", "--name", "after")
	cli(t, 0, nil, "token", "--role=analyst", "create", "--name", "mixed", "--data", data)
	for _, args := range [][]string{{"token", "--data", data, "list"}, {"token", "list", "--data", data}} {
		if out := cli(t, 0, nil, args...).stdout; out != "after\tservice\nbefore\tadmin\nmixed\tanalyst\n" {
			t.Errorf("%v printed %q", args, out)
		}
	}

	// keys
	keysDir := t.TempDir()
	ks, err := keystore.Open(ctx, filepath.Join(keysDir, "keystore"), mustFileMaster(t, filepath.Join(keysDir, "master.key")), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ks.Close()
	k1, k2 := filepath.Join(t.TempDir(), "k1"), filepath.Join(t.TempDir(), "k2")
	cli(t, 0, nil, "keys", "--data", keysDir, "rotate", "--to-key-file", k1)
	cli(t, 0, nil, "keys", "rotate", "--data", keysDir, "--master-key-file", k1, "--to-key-file", k2)

	// projections
	conf := filepath.Join(t.TempDir(), "stele.yaml")
	if err := os.WriteFile(conf, []byte(projectionsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"projections", "--config", conf, "--data", data, "list"},
		{"projections", "list", "--config", conf, "--data", data},
	} {
		if out := cli(t, 0, nil, args...).stdout; !strings.Contains(out, "per-actor") {
			t.Errorf("%v printed %q", args, out)
		}
	}
	for _, args := range [][]string{
		{"projections", "--config", conf, "--data", data, "rebuild", "orders"},
		{"projections", "rebuild", "--data", data, "orders", "--config", conf},
	} {
		if out := cli(t, 0, nil, args...).stdout; !strings.Contains(out, "rebuilt projection orders: 3 records") {
			t.Errorf("%v printed %q", args, out)
		}
	}

	// schema and deadletters, against a running server
	srvData := t.TempDir()
	base, stop := serveDir(t, ctx, srvData)
	defer stop()
	schemaFile := filepath.Join(t.TempDir(), "orders.json")
	if err := os.WriteFile(schemaFile, []byte(cliOrders), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := cli(t, 0, nil, "schema", "--url", base, "put", "app.orders", schemaFile).stdout; out != "registered app.orders version 1\n" {
		t.Errorf("schema --url U put: %q", out)
	}
	if out := cli(t, 0, nil, "schema", "put", "app.orders", schemaFile, "--url", base).stdout; !strings.Contains(out, "unchanged") {
		t.Errorf("schema put … --url U: %q", out)
	}
	cli(t, 0, nil, "schema", "--url", base, "get", "app.orders")
	cli(t, 0, nil, "schema", "get", "--version", "1", "app.orders", "--url", base)
	for _, args := range [][]string{
		{"deadletters", "--url", base, "list"},
		{"deadletters", "list", "--url", base},
		{"deadletters", "--url", base, "replay"},
	} {
		cli(t, 0, nil, args...)
	}
	// What is still refused: no verb, an unknown one, a stray argument.
	for _, args := range [][]string{
		{"deadletters", "--url", base},
		{"deadletters", "--url", base, "purge"},
		{"token", "list", "extra", "--data", data},
	} {
		cli(t, exitUsage, nil, args...)
	}
}

func mustFileMaster(t *testing.T, path string) keystore.MasterKey {
	t.Helper()
	m, err := keystore.FileMaster(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// clientCommands are the commands that talk to a running server.
var clientCommands = [][]string{
	{"schema", "put"}, {"schema", "get"}, {"export"}, {"snapshot"}, {"status"},
	{"verify"}, {"erase"}, {"deadletters", "list"}, {"deadletters", "replay"}, {"demo"},
}

// Item 3: every client command takes --token and says $STELE_TOKEN in its
// help; a 401 tells "no token sent" from "your token was refused".
func TestClientCommandsTakeAToken(t *testing.T) {
	for _, c := range clientCommands {
		r := cli(t, 0, []string{"STELE_TOKEN=stele_secret"}, append(c, "-h")...)
		if strings.Contains(r.stdout+r.stderr, "stele_secret") {
			t.Errorf("stele %s -h shows the token of $STELE_TOKEN:\n%s", strings.Join(c, " "), r)
		}
		if !strings.Contains(r.stdout, "-token") || !strings.Contains(r.stdout, "STELE_TOKEN") {
			t.Errorf("stele %s -h does not offer --token with $STELE_TOKEN:\n%s", strings.Join(c, " "), r)
		}
	}

	ctx := context.Background()
	data := t.TempDir()
	admin := lastLine(cli(t, 0, nil, "token", "create", "--data", data, "--role", "admin", "--name", "ops").stdout)
	base, stop := serveDir(t, ctx, data)
	defer stop()
	// The "tokens in force" record must be under a checkpoint, so that
	// verify --url has a record to spot-check.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, cp, _ := get(t, base+"/v1/checkpoint")
		if lines := strings.Split(cp, "\n"); len(lines) > 1 && lines[1] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covers the tokens record")
		}
	}
	out := filepath.Join(t.TempDir(), "x.jsonl")
	for _, args := range [][]string{
		{"deadletters", "list", "--url", base},
		{"schema", "get", "--url", base, "app.orders"},
		{"export", "--url", base, "--out", out},
		{"snapshot", "--url", base, "--source", "crm", "--table", "t", "--out", out},
		{"erase", "--url", base, "7"},
		{"verify", "--url", base, "--key", verifierKeyOf(t, base), "--state", "none"},
	} {
		if r := cli(t, exitFailure, nil, args...); !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "no token was sent") ||
			!strings.Contains(r.stderr, "--token") || strings.Contains(r.stderr, "was refused") {
			t.Errorf("%v without a token:\n%s", args, r)
		}
		for _, how := range []struct {
			env  []string
			flag []string
		}{{[]string{"STELE_TOKEN=stele_wrong"}, nil}, {nil, []string{"--token", "stele_wrong"}}} {
			r := cli(t, exitFailure, how.env, append(args, how.flag...)...)
			if !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "was refused") || strings.Contains(r.stderr, "no token was sent") {
				t.Errorf("%v with a wrong token (%v %v):\n%s", args, how.env, how.flag, r)
			}
		}
	}
	cli(t, 0, nil, "deadletters", "list", "--url", base, "--token", admin)
	cli(t, 0, []string{"STELE_TOKEN=" + admin}, "deadletters", "list", "--url", base)
	cli(t, 0, nil, "status", "--url", base, "--token", admin)
}

func verifierKeyOf(t *testing.T, base string) string {
	t.Helper()
	_, body, _ := get(t, base+"/v1/log/key")
	return strings.TrimSpace(body)
}

// Item 4: help exits 0 for every command; no silent success on a missing
// data directory; nothing created before a refusal.
func TestHelpAndRefusals(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			r := cli(t, 0, nil, args...)
			if !strings.Contains(r.stdout, "stele "+c.name) || strings.Contains(r.stdout+r.stderr, "Run 'stele") {
				t.Errorf("stele %s: not the command's help:\n%s", strings.Join(args, " "), r)
			}
		}
	}
	for _, args := range [][]string{{"token", "create", "-h"}, {"token", "list", "--help"}, {"keys", "rotate", "-h"},
		{"schema", "infer", "-h"}, {"projections", "rebuild", "-h"}, {"deadletters", "replay", "-h"}} {
		if r := cli(t, 0, nil, args...); !strings.Contains(r.stdout, "Usage: stele "+args[0]+" "+args[1]) {
			t.Errorf("stele %s: not the verb's help:\n%s", strings.Join(args, " "), r)
		}
	}

	dir := t.TempDir()
	for _, args := range [][]string{
		{"token", "list"},
		{"token", "list", "--data", "elsewhere"},
		{"keys", "rotate", "--to-key-file", filepath.Join(t.TempDir(), "k")},
		{"projections", "list"},
	} {
		r := cliRun(t, dir, nil, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "no data directory") {
			t.Errorf("stele %s without a data directory:\n%s", strings.Join(args, " "), r)
		}
	}
	if r := cliRun(t, dir, nil, "token", "create", "--role", "root", "--name", "x"); r.code != exitUsage || !strings.Contains(r.stderr, `unknown role "root"`) {
		t.Errorf("token create --role root:\n%s", r)
	}
	if r := cliRun(t, dir, nil, "token", "create", "--role", "admin", "--name", ""); r.code != exitUsage {
		t.Errorf("token create --name '':\n%s", r)
	}
	if r := cliRun(t, dir, nil, "serve", "--addr", "0.0.0.0:0"); r.code != exitFailure || !strings.Contains(r.stderr, "not loopback") {
		t.Errorf("serve on 0.0.0.0 without tokens:\n%s", r)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if r := cliRun(t, dir, nil, "serve", "--data", empty, "--addr", "0.0.0.0:0"); r.code != exitFailure {
		t.Errorf("serve on 0.0.0.0 without tokens:\n%s", r)
	}
	// A listen failure after the log was created: the fresh directory goes too.
	if r := cliRun(t, dir, nil, "serve", "--data", "fresh", "--addr", "127.0.0.1:99999", "--stream-listen", "none"); r.code != exitFailure {
		t.Errorf("serve on a bad port:\n%s", r)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "empty" {
		t.Errorf("refusals left %v in the working directory", ents)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("a refused serve left %v in an existing empty directory", ents)
	}
}

// Item 5: the open-server warning names the bound address.
func TestOpenServerWarningNamesBoundAddress(t *testing.T) {
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(steleBin(t), "serve", "--data", filepath.Join(dir, "data"), "--addr", "127.0.0.1:0", "--addr-file", addrFile, "--stream-listen", "none")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	warning := make(chan string, 1)
	go func() {
		buf := make([]byte, 0, 64<<10)
		chunk := make([]byte, 4096)
		for {
			n, err := stderr.Read(chunk)
			buf = append(buf, chunk[:n]...)
			for _, line := range strings.Split(string(buf), "\n") {
				if strings.Contains(line, "NO API TOKENS") {
					warning <- line
					return
				}
			}
			if err != nil {
				warning <- "(no warning; stderr: " + string(buf) + ")"
				return
			}
		}
	}()
	var line string
	select {
	case line = <-warning:
	case <-time.After(60 * time.Second):
		t.Fatal("no warning within 60 s")
	}
	addr, err := os.ReadFile(addrFile)
	if err != nil {
		t.Fatal(err)
	}
	bound := strings.TrimSpace(string(addr))
	if !strings.Contains(line, "reach "+bound+" ") || strings.Contains(line, ":0 ") {
		t.Errorf("the warning does not name the bound address %s: %s", bound, line)
	}
}

// Item 5: the default data directories are ignored by git.
func TestDefaultDataDirsAreGitIgnored(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	for _, dir := range []string{defaultConfig().Data, "./stele-demo-data"} {
		path := filepath.ToSlash(filepath.Join("..", "..", dir, "x"))
		cmd := exec.Command("git", "check-ignore", "-q", path)
		if err := cmd.Run(); err != nil {
			t.Errorf("git does not ignore %s (git check-ignore: %v)", path, err)
		}
	}
}

// Item 6: the main help's columns align; keys rotate lists only its own
// flags; the package doc names every command; every command in the
// README's table has a help that exits 0.
func TestHelpTexts(t *testing.T) {
	r := cli(t, 0, nil, "help")
	col := -1
	for _, c := range append(commands(), command{name: "help"}) {
		m := regexp.MustCompile(`(?m)^  ` + c.name + `( +)\S`).FindStringSubmatchIndex(r.stdout)
		if m == nil {
			t.Fatalf("help lacks %s:\n%s", c.name, r.stdout)
		}
		if at := m[3] - m[0]; col == -1 {
			col = at
		} else if at != col {
			t.Errorf("help: %s's summary starts at column %d, the others at %d:\n%s", c.name, at, col, r.stdout)
		}
	}

	keys := cli(t, 0, nil, "keys", "rotate", "-h").stdout
	if m := regexp.MustCompile(`(?m)^  -(addr|source|origin|stream-\w+|max-batch|checkpoint-\w+|log-level) `).FindString(keys); m != "" {
		t.Errorf("keys rotate -h lists %s, a serve flag:\n%s", m, keys)
	}

	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	for _, c := range commands() {
		if !strings.Contains(doc, c.name+":") {
			t.Errorf("main.go's package doc does not name %s", c.name)
		}
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(readme), "## Commands")
	table, _, _ = strings.Cut(table, "\n\n## ")
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `stele ([a-z]+)((?: [a-z]+(?:\\\\?\\|[a-z]+)*)?)").FindAllStringSubmatch(table, -1) {
		runs := [][]string{{m[1], "-h"}}
		for _, verb := range strings.Split(strings.ReplaceAll(strings.TrimSpace(m[2]), `\|`, "|"), "|") {
			if verb != "" {
				runs = append(runs, []string{m[1], verb, "-h"})
			}
		}
		for _, args := range runs {
			if r := cliRun(t, "", nil, args...); r.code != 0 || r.stdout == "" {
				t.Errorf("README command stele %s: %s", strings.Join(args, " "), r)
			}
		}
		seen[m[1]] = true
	}
	for _, c := range commands() {
		if !seen[c.name] {
			t.Errorf("the README's table of commands lacks stele %s", c.name)
		}
	}
}

// Item 7: an offline snapshot shows an erased subject's fields as the
// server does, {"$erased":true}, not as sealed envelopes.
func TestOfflineSnapshotShowsErased(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	base, stop := serveDir(t, ctx, data)
	put := func(method, path, ctype, body string, want int) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	put("PUT", "/v1/schemas/crm.public.customers", "application/json", `{"type":"object","properties":{"id":{"type":"integer","x-subject":true},"email":{"type":"string","x-pii":true}},"required":["id"]}`, http.StatusCreated)
	put("POST", "/v1/records", "application/x-ndjson",
		`{"source":{"name":"crm","schema":"public","table":"customers"},"op":"insert","key":{"id":7},"after":{"id":7,"email":"a@x.org"}}`+"\n"+
			`{"source":{"name":"crm","schema":"public","table":"customers"},"op":"insert","key":{"id":8},"after":{"id":8,"email":"b@x.org"}}`+"\n", http.StatusCreated)
	put("POST", "/v1/subjects/7/erase", "application/json", `{}`, http.StatusOK)
	_, served, _ := get(t, base+"/v1/tables/crm/customers/state")
	stop()
	if !strings.Contains(served, `"email":{"$erased":true}`) {
		t.Fatalf("the server's table state:\n%s", served)
	}
	r := cli(t, 0, nil, "snapshot", "--data", data, "--source", "crm", "--table", "customers", "--out", "-")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `{"key":"7"`) || !strings.Contains(lines[0], `"email":{"$erased":true}`) ||
		!strings.Contains(lines[1], `"$pii":{"email`) || strings.Contains(r.stdout, "b@x.org") {
		t.Errorf("offline snapshot:\n%s", r)
	}
}
