package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/export"
	"github.com/stele/stele/projection"
)

// The web UI's end-to-end test: real headless Chromium (Debian's chromium,
// installed by .ci/run) against a real in-process `stele serve` with the
// demo's data and a PII schema, three tokens of three roles. Screenshots of
// each page go to $STELE_ARTEFACTS (else a temporary directory); with
// STELE_UI_DOCS=1 one of each is also written to docs/ui/. The render
// times are measured with the browser's performance timings and logged,
// not asserted (the machine is shared). STELE_UI_RECORDS=N appends N more
// records first, to measure rendering on a large log.

const uiCustomerSchema = `{
  "type": "object",
  "properties": {
    "id": {"type": "integer", "x-subject": true, "x-retention": "P7Y"},
    "name": {"type": "string", "x-pii": true, "x-mask": "***"},
    "email": {"type": "string", "x-pii": true, "x-searchable": true, "x-mask": "last4"},
    "city": {"type": "string"},
    "tier": {"type": "string"}
  }
}`

func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("STELE_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("STELE_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("the web UI test needs Chromium and found none: install it (Debian: apt-get install -y chromium; .ci/run does) or point STELE_CHROMIUM at its binary")
	return ""
}

type uiEnv struct {
	t         *testing.T
	base      string
	tokens    map[auth.Role]string
	artefacts string
	docs      string
	alloc     context.Context

	mu      sync.Mutex
	jsErrs  []string
	renders []string
}

func TestWebUI(t *testing.T) {
	chrome := chromiumPath(t)
	extra, _ := strconv.Atoi(os.Getenv("STELE_UI_RECORDS"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+time.Duration(extra)*time.Millisecond)
	defer cancel()

	dir := t.TempDir()
	tokens := map[auth.Role]string{}
	var err error
	schemaFile := filepath.Join(dir, "customers.json")
	if err := os.WriteFile(schemaFile, []byte(uiCustomerSchema), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = filepath.Join(dir, "data"), "127.0.0.1:0"
	cfg.Stream.Disabled = true
	cfg.Schemas = &[]SchemaFile{{Subject: "crm.public.customers", Path: schemaFile}}
	cfg.Projections = &[]projection.Definition{{Name: "orders", Filter: `record.source.table == "orders"`, Key: "string(record.key.id)", Fold: projection.FoldState}}
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		t.Fatal(err)
	}
	// Tokens live in the data directory.
	ts, err := auth.Open(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []auth.Role{auth.RoleAdmin, auth.RoleAuditor, auth.RoleAnalyst} {
		if tokens[r], err = ts.Create("ui-"+string(r), r); err != nil {
			t.Fatal(err)
		}
	}
	base := serveInProcess(ctx, t, cfg)
	e := &uiEnv{t: t, base: base, tokens: tokens, artefacts: os.Getenv("STELE_ARTEFACTS")}
	if e.artefacts == "" {
		e.artefacts = t.TempDir()
	} else if err := os.MkdirAll(e.artefacts, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("STELE_UI_DOCS") == "1" {
		e.docs = filepath.Join("..", "..", "docs", "ui")
		if err := os.MkdirAll(e.docs, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.post(ctx, demoJSON(demoRecords()))
	if extra > 0 {
		e.bulk(ctx, extra)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	e.alloc = alloc

	admin := e.tab(auth.RoleAdmin)
	e.searchWithThreeFilters(admin)
	e.keyboardPath(admin)
	e.timelineAndSlider(admin)
	e.tamperedProof(admin)
	e.tableState(admin)
	e.logConsistency(ctx, admin)
	e.causedBy(ctx, admin)
	e.lineage(admin)
	e.playground(admin)
	e.roles()
	e.erase(admin)
	e.narrow()

	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.jsErrs {
		t.Errorf("browser error: %s", m)
	}
	t.Logf("render times (ms, performance.measure stele-render; first = navigation start to rendered):\n%s", strings.Join(e.renders, "\n"))
	t.Logf("screenshots in %s", e.artefacts)
}

func (e *uiEnv) post(ctx context.Context, body []byte) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.base+"/v1/records", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	setBearer(req, e.tokens[auth.RoleAdmin])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("POST /v1/records: %d", resp.StatusCode)
	}
}

// bulk appends n small records of another source in batches of 10,000.
func (e *uiEnv) bulk(ctx context.Context, n int) {
	start := time.Now()
	for i := 0; i < n; {
		var b bytes.Buffer
		b.WriteByte('[')
		for j := 0; j < 10000 && i < n; j, i = j+1, i+1 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"bulk-%d","source":{"name":"bulk","table":"events"},"op":"insert","key":{"id":%d},"after":{"id":%d,"v":"x"},"occurred_at":"2024-01-01T00:00:00Z"}`, i, i, i)
		}
		b.WriteByte(']')
		e.post(ctx, b.Bytes())
	}
	e.t.Logf("appended %d bulk records in %v", n, time.Since(start).Round(time.Millisecond))
}

// tab opens a browser tab signed in with role's token.
func (e *uiEnv) tab(role auth.Role) context.Context {
	e.t.Helper()
	tab, cancel := chromedp.NewContext(e.alloc)
	e.t.Cleanup(cancel)
	// The first Do opens the tab, so the console is read from then on;
	// what the pages throw or log as errors fails the test.
	if err := chromedp.Do(tab); err != nil {
		e.t.Fatalf("start Chromium (%s): %v", "tab", err)
	}
	go func() {
		for m, err := range chromedp.Console(tab) {
			if err != nil {
				return
			}
			// The sign-in page's own probe of the server answers 401
			// before a token is given; that is the design, not an error.
			if strings.Contains(m.URL, "/v1/whoami") && strings.Contains(m.Text, "401") {
				continue
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				e.mu.Lock()
				e.jsErrs = append(e.jsErrs, string(m.Type)+": "+m.Text+" at "+m.URL)
				e.mu.Unlock()
			}
		}
	}()
	e.run(tab, "sign in as "+string(role),
		chromedp.Navigate(e.base+"/#/login"),
		chromedp.WaitVisible(chromedp.ID("#token")),
		chromedp.SendKeys(chromedp.ID("#token"), e.tokens[role]+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`.view[data-page="search"] table.dense`)),
	)
	var badge string
	e.run(tab, "role badge", into(chromedp.Text(chromedp.CSS(".role-badge")), &badge))
	if badge != string(role) {
		e.t.Errorf("signed in with the %s token, the page shows role %q", role, badge)
	}
	return tab
}

// run runs actions with a deadline; on failure it reports what the page
// shows, which is what one needs to know.
func (e *uiEnv) run(tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		var text, hash string
		_ = chromedp.Do(tab, evalInto(`document.getElementById('main').innerText.slice(0, 2000)`, &text), evalInto(`location.hash`, &hash))
		e.t.Fatalf("%s: %v\npage %s shows:\n%s", what, err, hash, text)
	}
}

// visit moves the app to hash and waits until it has rendered and sel
// is visible.
func (e *uiEnv) visit(tab context.Context, hash, sel string) {
	e.t.Helper()
	e.run(tab, "visit "+hash,
		jsDo(`document.body.dataset.rendered = ''; if (location.hash === `+jsString(hash)+`) dispatchEvent(new HashChangeEvent('hashchange')); else location.hash = `+jsString(hash)+`; 0`),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)),
		chromedp.WaitVisible(sel),
	)
	e.timing(tab, hash)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (e *uiEnv) timing(tab context.Context, label string) {
	var ms float64
	if err := chromedp.Do(tab, evalInto(`(performance.getEntriesByName('stele-render').at(-1) || {duration: -1}).duration`, &ms)); err == nil {
		e.mu.Lock()
		e.renders = append(e.renders, fmt.Sprintf("  %-50s %7.1f", label, ms))
		e.mu.Unlock()
	}
}

func (e *uiEnv) shot(tab context.Context, name string) {
	e.t.Helper()
	var buf []byte
	e.run(tab, "screenshot "+name, into(chromedp.FullScreenshot(100), &buf))
	if err := os.WriteFile(filepath.Join(e.artefacts, name+".png"), buf, 0o644); err != nil {
		e.t.Fatal(err)
	}
	if e.docs != "" {
		if err := os.WriteFile(filepath.Join(e.docs, name+".png"), buf, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *uiEnv) texts(tab context.Context, js string) []string {
	e.t.Helper()
	var out []string
	e.run(tab, "read "+js, evalInto(js, &out))
	return out
}

func (e *uiEnv) searchWithThreeFilters(tab context.Context) {
	t := e.t
	var first float64
	e.run(tab, "first render", evalInto(`performance.getEntriesByName('stele-route-end')[0].startTime`, &first))
	e.mu.Lock()
	e.renders = append(e.renders, fmt.Sprintf("  %-50s %7.1f", "first page (navigation start to rendered)", first))
	e.mu.Unlock()
	e.visit(tab, "#/search", `.view[data-page="search"] form.filters`)
	e.run(tab, "fill three filters",
		chromedp.SendKeys(chromedp.ID("#f-source"), "crm"),
		chromedp.SendKeys(chromedp.ID("#f-table"), "orders"),
		chromedp.SetValue(chromedp.ID("#f-op"), "update"),
		jsDo(`document.body.dataset.rendered = ''`),
		chromedp.Click(chromedp.CSS(`form.filters button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)),
		chromedp.WaitVisible(chromedp.CSS(`.chips .chip`)),
	)
	e.timing(tab, "search source+table+op")
	var hash string
	e.run(tab, "hash", evalInto(`location.hash`, &hash))
	for _, want := range []string{"source=crm", "table=orders", "op=update"} {
		if !strings.Contains(hash, want) {
			t.Errorf("the URL %q does not hold %s", hash, want)
		}
	}
	ops := e.texts(tab, `[...document.querySelectorAll('table.dense tbody tr td:nth-child(5)')].map(td => td.innerText)`)
	tables := e.texts(tab, `[...document.querySelectorAll('table.dense tbody tr td:nth-child(3)')].map(td => td.innerText)`)
	if len(ops) != 8 {
		t.Errorf("search source=crm table=orders op=update shows %d rows, want the demo's 8 shipped orders", len(ops))
	}
	for i := range ops {
		if ops[i] != "update" || tables[i] != "crm/orders" {
			t.Errorf("row %d: %s %s does not match the filters", i, tables[i], ops[i])
		}
	}
	if chips := e.texts(tab, `[...document.querySelectorAll('.chips .chip span')].map(s => s.innerText)`); len(chips) != 3 {
		t.Errorf("filter chips %q, want three", chips)
	}
	e.shot(tab, "search")
	e.exportQuery(tab)
	// Removing a chip drops its filter; the back button brings it back.
	e.run(tab, "remove the op chip",
		jsDo(`document.body.dataset.rendered = ''`),
		chromedp.Click(chromedp.CSS(`a[aria-label="Remove filter op"]`)),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)))
	if n := len(e.texts(tab, `[...document.querySelectorAll('table.dense tbody tr')].map(r => r.dataset.seq)`)); n != 16 {
		t.Errorf("without the op filter: %d rows, want 16 (8 inserts, 8 updates)", n)
	}
	e.run(tab, "back",
		jsDo(`document.body.dataset.rendered = ''; history.back(); 0`),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)))
	if n := len(e.texts(tab, `[...document.querySelectorAll('table.dense tbody tr')].map(r => r.dataset.seq)`)); n != 8 {
		t.Errorf("after the back button: %d rows, want the 8 of the three-filter query", n)
	}
	// Cursor paging: the next page continues where the first ended, and
	// the back button returns to the first.
	e.visit(tab, "#/search?source=crm&table=orders&limit=5", `.view[data-page="search"] a[rel="next"]`)
	seqs := func() string {
		return strings.Join(e.texts(tab, `[...document.querySelectorAll('table.dense tbody tr')].map(r => r.dataset.seq)`), ",")
	}
	page1 := seqs()
	e.run(tab, "next page",
		jsDo(`document.body.dataset.rendered = ''`),
		chromedp.Click(chromedp.CSS(`a[rel="next"]`)),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)))
	if page2 := seqs(); page1 != "29,28,27,26,25" || page2 != "24,23,22,21,20" {
		t.Errorf("pages of 5 orders records: %s then %s, want 29…25 then 24…20", page1, page2)
	}
	e.run(tab, "back to page 1",
		jsDo(`document.body.dataset.rendered = ''; history.back()`),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)))
	if got := seqs(); got != page1 {
		t.Errorf("back from page 2: %s, want %s", got, page1)
	}
	// A relative time range the API cannot take as typed: nothing of 2025
	// happened in the last 2 hours.
	e.visit(tab, "#/search?source=crm&since=last%202%20hours", `.view[data-page="search"] .count`)
	if rows := e.texts(tab, `[...document.querySelectorAll('table.dense tbody tr')].map(r => r.dataset.seq)`); len(rows) != 0 {
		t.Errorf("since=last 2 hours shows %d demo records of 2025", len(rows))
	}
	e.visit(tab, "#/search?source=crm&since=nonsense", `.view[data-page="search"] .error`)
}

// exportQuery downloads the three-filter query as CSV with its proof from
// the page, and checks the pair offline as a recipient would.
func (e *uiEnv) exportQuery(tab context.Context) {
	t := e.t
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(tab, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
		t.Fatalf("allow downloads: %v", err)
	}
	var status string
	e.run(tab, "export CSV",
		chromedp.Click(chromedp.CSS(`.export button:nth-of-type(2)`)),
		into(chromedp.Poll[bool](`document.querySelector('.export [role=status]').textContent.startsWith('exported')`), new(bool)),
		into(chromedp.Text(chromedp.CSS(`.export [role=status]`)), &status))
	var csv, proof string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && (csv == "" || proof == ""); time.Sleep(50 * time.Millisecond) {
		csv, proof = "", ""
		files, _ := filepath.Glob(filepath.Join(dir, "stele-export-*"))
		for _, f := range files {
			switch {
			case strings.HasSuffix(f, ".csv"):
				csv = f
			case strings.HasSuffix(f, ".csv.proof.json"):
				proof = f
			}
		}
	}
	if csv == "" || proof == "" {
		t.Fatalf("the export buttons (%q) left no CSV and proof in the download folder", status)
	}
	key := e.getText("/v1/log/key")
	rep, err := export.VerifyFile(context.Background(), csv, export.VerifyOptions{VerifierKey: strings.TrimSpace(key)})
	if err != nil {
		t.Fatalf("the CSV export downloaded from the page does not verify: %v", err)
	}
	if rep.Records != 8 {
		t.Errorf("the export of source=crm table=orders op=update holds %d records, want 8", rep.Records)
	}
}

func (e *uiEnv) getText(path string) string {
	e.t.Helper()
	resp, err := http.Get(e.base + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// keyboardPath goes from search to a timeline to a verified proof with
// the keyboard alone.
func (e *uiEnv) keyboardPath(tab context.Context) {
	e.visit(tab, "#/search?source=crm&table=customers&key=7", `.view[data-page="search"] table.dense tbody tr`)
	e.run(tab, "keyboard: row, Enter",
		chromedp.Focus(chromedp.CSS(`table.dense tbody tr`)),
		chromedp.KeyEvent(kb.ArrowDown),
		jsDo(`document.body.dataset.rendered = ''`),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)),
		chromedp.WaitVisible(chromedp.CSS(`.view[data-page="entity"] .timeline`)),
	)
	// Tab from the top of the page until a change's proof link has the
	// focus: every control on the way is reachable, none traps it.
	var active string
	e.run(tab, "keyboard: start at the top", jsDo(`document.activeElement.blur(); document.getElementById('main').focus()`))
	for i := 0; i < 80 && active != "proof-link"; i++ {
		e.run(tab, "keyboard: Tab", chromedp.KeyEvent(kb.Tab), evalInto(`document.activeElement.className`, &active))
	}
	if active != "proof-link" {
		e.t.Fatalf("80 presses of Tab from the top of the timeline never reach a proof link (focus on %q)", active)
	}
	e.run(tab, "keyboard: open the proof",
		jsDo(`document.body.dataset.rendered = ''`),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)),
		chromedp.WaitVisible(chromedp.CSS(`#proof-steps[data-verdict="verified"]`)))
}

func (e *uiEnv) timelineAndSlider(tab context.Context) {
	t := e.t
	e.visit(tab, "#/entity/crm/customers/7", `.view[data-page="entity"] .timeline`)
	// The city change: London → Paris, highlighted.
	rows := e.texts(tab, `[...document.querySelectorAll('.change tr.changed')].map(r => r.innerText.replace(/\s+/g, ' ').trim())`)
	found := false
	for _, r := range rows {
		if strings.HasPrefix(r, "city London Paris") {
			found = true
		}
	}
	if !found {
		t.Errorf("no highlighted city London → Paris row in the timeline's diffs: %q", rows)
	}
	if n := len(e.texts(tab, `[...document.querySelectorAll('.change')].map(c => c.id)`)); n != 4 {
		t.Errorf("timeline of customer 7 has %d changes, want 4", n)
	}
	e.shot(tab, "timeline")
	state := func() string {
		var s string
		e.run(tab, "state", into(chromedp.Text(chromedp.ID("#state-out")), &s))
		return s
	}
	if s := state(); !strings.Contains(s, "gold") || !strings.Contains(s, "Paris") {
		t.Errorf("state now: %q, want tier gold in Paris", s)
	}
	// Keyboard: Home moves the slider to the first change, the insert.
	e.run(tab, "slider home",
		chromedp.Focus(chromedp.ID("#at-slider")),
		chromedp.KeyEvent(kb.Home),
		chromedp.WaitVisible(chromedp.CSS(`#state-out[data-at="2025-01-10T15:00:00Z"]`)),
	)
	if s := state(); !strings.Contains(s, "London") || strings.Contains(s, "Paris") || !strings.Contains(s, "standard") {
		t.Errorf("state at the first change: %q, want London, tier standard", s)
	}
	e.shot(tab, "timeline-slider")
}

func (e *uiEnv) tamperedProof(tab context.Context) {
	e.visit(tab, "#/record/20", `#proof-steps[data-verdict="verified"]`)
	e.run(tab, "tamper", chromedp.Click(chromedp.ID("#tamper")), chromedp.WaitVisible(chromedp.CSS(`#tamper-steps[data-verdict="rejected"]`)))
	var cp string
	e.run(tab, "checkpoint line", into(chromedp.Text(chromedp.CSS(".in-checkpoint")), &cp))
	if !strings.Contains(cp, "In checkpoint of tree size") {
		e.t.Errorf("record page says %q, not which checkpoint holds it", cp)
	}
	e.shot(tab, "proof")
}

func (e *uiEnv) tableState(tab context.Context) {
	e.visit(tab, "#/table/crm/customers", `#table-out table`)
	keysNow := e.texts(tab, `[...document.querySelectorAll('#table-out tbody tr td:first-child')].map(td => td.innerText)`)
	e.visit(tab, "#/table/crm/customers?at=2025-05-01T00:00:00Z", `#table-out table`)
	keysThen := e.texts(tab, `[...document.querySelectorAll('#table-out tbody tr td:first-child')].map(td => td.innerText)`)
	if len(keysNow) != 11 || len(keysThen) != 12 {
		e.t.Errorf("table state: %d units now (want 11, customer 8 deleted), %d on 2025-05-01 (want 12)", len(keysNow), len(keysThen))
	}
	e.shot(tab, "table")
}

func (e *uiEnv) logConsistency(ctx context.Context, tab context.Context) {
	e.visit(tab, "#/log", `#cp-verdict[data-verdict="verified"]`)
	e.post(ctx, []byte(`{"source":{"name":"app","table":"orders"},"op":"insert","key":{"id":1},"after":{"id":1}}`))
	e.run(tab, "reload log", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#consistency[data-verdict="verified"]`)))
	var s string
	e.run(tab, "consistency", into(chromedp.Text(chromedp.ID("#consistency")), &s))
	if !strings.Contains(s, "consistent with size") {
		e.t.Errorf("log page after growth: %q, want a checked consistency proof", s)
	}
	var witnesses, cosigners string
	e.run(tab, "witnesses", into(chromedp.Text(chromedp.ID("#cp-witnesses")), &witnesses))
	if !strings.Contains(witnesses, "No witness cosigned") {
		e.t.Errorf("log page of a server without witnesses: %q", witnesses)
	}
	// A cosignature line by another key names its witness; the log's own
	// signature still decides.
	e.run(tab, "cosigners", into(chromedp.Evaluate[string](`(async () => {
		const v = await import('/ui/js/verify.js');
		const key = await v.parseVerifierKey(await (await fetch('/v1/log/key')).text());
		const note = await (await fetch('/v1/checkpoint')).text();
		const cosig = v.b64encode(new Uint8Array(76));
		const cp = await v.openCheckpoint(note + '\u2014 witness.example ' + cosig + '\n', key);
		return cp.cosigners.join(',');
	})()`, chromedp.EvalAwaitPromise), &cosigners))
	if cosigners != "witness.example" {
		e.t.Errorf("cosigners of a note with one witness line: %q, want witness.example", cosigners)
	}
	e.shot(tab, "log")

	// The page's verifier on forged inputs, with what the server served:
	// a checkpoint whose root was changed after signing, a consistency
	// proof with one hash flipped, and the two roots swapped.
	var got map[string]string
	e.run(tab, "forgeries", into(chromedp.Evaluate[map[string]string](`(async () => {
		const v = await import('/ui/js/verify.js');
		const key = await v.parseVerifierKey(await (await fetch('/v1/log/key')).text());
		const note = await (await fetch('/v1/checkpoint')).text();
		const out = {};
		const attempt = async (name, f) => { try { await f(); out[name] = 'accepted'; } catch (e) { out[name] = 'rejected: ' + e.message; } };
		await attempt('genuine checkpoint', () => v.openCheckpoint(note, key));
		const lines = note.split(String.fromCharCode(10));
		const root = v.b64decode(lines[2]); root[0] ^= 1; lines[2] = v.b64encode(root);
		await attempt('checkpoint with another root', () => v.openCheckpoint(lines.join(String.fromCharCode(10)), key));
		const hist = JSON.parse(localStorage.getItem('stele.checkpoints.' + key.name));
		const [a, b] = hist.slice(-2);
		const pr = await (await fetch('/v1/proof/consistency?from=' + a.size + '&to=' + b.size)).json();
		const path = pr.hashes.map(v.b64decode);
		await attempt('genuine consistency', () => v.verifyConsistency(BigInt(a.size), BigInt(b.size), v.b64decode(a.root), v.b64decode(b.root), path));
		const bad = path.map((x) => x.slice()); bad[0][5] ^= 1;
		await attempt('consistency with a flipped hash', () => v.verifyConsistency(BigInt(a.size), BigInt(b.size), v.b64decode(a.root), v.b64decode(b.root), bad));
		await attempt('consistency with the roots swapped', () => v.verifyConsistency(BigInt(a.size), BigInt(b.size), v.b64decode(b.root), v.b64decode(a.root), path));
		return out;
	})()`, chromedp.EvalAwaitPromise), &got))
	for name, want := range map[string]string{
		"genuine checkpoint": "accepted", "checkpoint with another root": "rejected",
		"genuine consistency": "accepted", "consistency with a flipped hash": "rejected", "consistency with the roots swapped": "rejected",
	} {
		if !strings.HasPrefix(got[name], want) {
			e.t.Errorf("the page's verifier on a %s: %q, want %s", name, got[name], want)
		}
	}
}

// causedBy: an event's record page links to the changes it caused (the
// API's cause filter), and a change's to its event's other changes.
func (e *uiEnv) causedBy(ctx context.Context, tab context.Context) {
	e.post(ctx, []byte(`[{"id":"ui-ev-1","source":{"name":"app","table":"outbox"},"op":"event","key":{"id":"ev-1"},"after":{"type":"OrderPlaced"}},`+
		`{"id":"ui-ch-1","source":{"name":"app","table":"shipments"},"op":"insert","key":{"id":1},"after":{"id":1},"cause":{"type":"OrderPlaced","record_id":"ui-ev-1"}},`+
		`{"id":"ui-ch-2","source":{"name":"app","table":"shipments"},"op":"insert","key":{"id":2},"after":{"id":2},"cause":{"type":"OrderPlaced","record_id":"ui-ev-1"}}]`))
	var page struct {
		Records []struct {
			Seq uint64 `json:"seq"`
		} `json:"records"`
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/v1/records?source=app&table=outbox", nil)
	setBearer(req, e.tokens[auth.RoleAdmin])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || len(page.Records) != 1 {
		e.t.Fatalf("the event record: %v (%d found)", err, len(page.Records))
	}
	e.visit(tab, fmt.Sprintf("#/record/%d", page.Records[0].Seq), `#caused`)
	e.run(tab, "follow caused", chromedp.Click(chromedp.ID("#caused")),
		chromedp.WaitVisible(chromedp.CSS(`.view[data-page="search"] table.dense tbody tr`)))
	keys := e.texts(tab, `[...document.querySelectorAll('.view[data-page="search"] table.dense tbody tr')].map(tr => tr.innerText)`)
	if len(keys) != 2 || !strings.Contains(strings.Join(keys, " "), "shipments") {
		e.t.Errorf("the changes the event caused: %q, want its two shipments", keys)
	}
}

func (e *uiEnv) lineage(tab context.Context) {
	e.visit(tab, "#/lineage", `#lineage-tables`)
	rows := e.texts(tab, `[...document.querySelectorAll('#lineage-tables tbody tr')].map(r => r.innerText.replace(/\s+/g, ' ').trim())`)
	want := map[string]bool{"crm customers 17": false, "crm orders 16": false}
	for _, r := range rows {
		for w := range want {
			if strings.HasPrefix(r, w+" ") {
				want[w] = true
			}
		}
		if strings.HasPrefix(r, "stele ") {
			e.t.Errorf("lineage lists Stele's own records without being asked: %q", r)
		}
	}
	for w, ok := range want {
		if !ok {
			e.t.Errorf("lineage table has no row %q: %q", w, rows)
		}
	}
	nodes := e.texts(tab, `[...document.querySelectorAll('svg.lineage .node text:first-of-type')].map(t => t.textContent)`)
	if !strings.Contains(strings.Join(nodes, "|"), "orders") {
		t := e.t
		t.Errorf("the lineage graph shows no node for the orders projection: %q", nodes)
	}
	e.shot(tab, "lineage")
	e.visit(tab, "#/lineage?depth=1", `#lineage-tables`)
	sources := map[string]bool{}
	for _, s := range e.texts(tab, `[...document.querySelectorAll('#lineage-tables tbody tr td:first-child')].map(td => td.innerText)`) {
		sources[s] = true
	}
	if n := len(e.texts(tab, `[...document.querySelectorAll('svg.lineage .node')].map(n => n.className.baseVal)`)); n != len(sources) || !sources["crm"] || !sources["app"] {
		e.t.Errorf("lineage at depth 1 shows %d nodes, want one per source (%v)", n, sources)
	}
}

// playground runs a query from the embedded page with the tab's token.
func (e *uiEnv) playground(tab context.Context) {
	var out string
	var done bool
	e.run(tab, "playground",
		chromedp.Navigate(e.base+"/graphql/playground"),
		chromedp.WaitVisible(chromedp.ID("pg-run")),
		chromedp.Click(chromedp.ID("pg-run")),
		chromedp.WaitVisible(chromedp.CSS(`#pg-result:not(:empty)`)),
		into(chromedp.Poll[bool](`document.getElementById('pg-result').textContent.includes('HTTP ')`), &done),
		into(chromedp.Text(chromedp.ID("pg-result")), &out))
	if !strings.Contains(out, "HTTP 200") || !strings.Contains(out, `"rootHash"`) || !strings.Contains(out, `"keyString"`) {
		e.t.Errorf("the playground's query answered:\n%.600s", out)
	}
	e.run(tab, "playground schema", chromedp.Click(chromedp.ID("pg-schema")), chromedp.WaitVisible(chromedp.CSS(`#pg-docs dl`)))
	e.shot(tab, "playground")
	e.run(tab, "back to the app", chromedp.Navigate(e.base+"/#/search"), chromedp.WaitVisible(chromedp.CSS(`.view[data-page="search"] table.dense`)))
}

// roles: an analyst sees masks, an auditor clear values and the access
// record of that read.
func (e *uiEnv) roles() {
	t := e.t
	an := e.tab(auth.RoleAnalyst)
	e.visit(an, "#/entity/crm/customers/7", `.view[data-page="entity"] .timeline`)
	masked := e.texts(an, `[...document.querySelectorAll('#state-out .v-masked')].map(s => s.innerText)`)
	clearText := e.texts(an, `[document.getElementById('main').innerText]`)
	if len(masked) != 2 {
		t.Errorf("analyst: %d masked fields in the state, want name and email: %q", len(masked), masked)
	}
	if strings.Contains(clearText[0], "frances.allen@example.org") || strings.Contains(clearText[0], "Frances Allen") {
		t.Error("analyst sees customer 7's name or email in clear")
	}
	e.shot(an, "timeline-analyst")
	e.visit(an, "#/table/crm/customers", `#table-out table`)
	if n := len(e.texts(an, `[...document.querySelectorAll('#table-out .v-masked')].map(s => s.innerText)`)); n != 22 {
		t.Errorf("analyst's table state: %d masked values, want name and email of 11 customers", n)
	}
	e.visit(an, "#/search", `.view[data-page="search"] form.filters`)
	if n := len(e.texts(an, `[...document.querySelectorAll('#f-piivalue')].map(x => x.id)`)); n != 0 {
		t.Error("the analyst is offered the personal-data search, which the API refuses that role")
	}
	e.visit(an, "#/privacy", `#access`)
	if n := len(e.texts(an, `[...document.querySelectorAll('#erase-start')].map(x => x.id)`)); n != 0 {
		t.Error("the analyst is offered the erase form")
	}

	au := e.tab(auth.RoleAuditor)
	e.visit(au, "#/entity/crm/customers/7", `.view[data-page="entity"] .timeline`)
	text := e.texts(au, `[document.getElementById('main').innerText]`)[0]
	if !strings.Contains(text, "frances.allen@example.org") {
		t.Error("auditor does not see customer 7's email in clear")
	}
	// The personal-data search, through the blind index.
	e.visit(au, "#/search", `#f-piivalue`)
	e.run(au, "pii search",
		chromedp.SendKeys(chromedp.ID("f-piifield"), "email"),
		chromedp.SendKeys(chromedp.ID("f-piivalue"), "frances.allen@example.org"),
		jsDo(`document.body.dataset.rendered = ''`),
		chromedp.Click(chromedp.CSS(`form.filters button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-rendered=""])`)),
		chromedp.WaitVisible(chromedp.CSS(`.chips .chip`)))
	keys := e.texts(au, `[...document.querySelectorAll('table.dense tbody tr td:nth-child(4)')].map(td => td.innerText)`)
	if len(keys) != 2 || keys[0] != "7" || keys[1] != "7" {
		t.Errorf("pii.email search for customer 7's new address: keys %q, want the two records holding it (7, 7)", keys)
	}
	e.visit(au, "#/privacy", `#access-table`)
	who := e.texts(au, `[...document.querySelectorAll('#access-table tbody tr')].map(r => r.innerText.replace(/\s+/g, ' '))`)
	seen := false
	for _, w := range who {
		if strings.Contains(w, "ui-auditor") && strings.Contains(w, "history") {
			seen = true
		}
	}
	if !seen {
		t.Errorf("the access log shows no history read by ui-auditor: %q", who)
	}
}

func (e *uiEnv) erase(tab context.Context) {
	e.visit(tab, "#/privacy", `#erase-start`)
	e.shot(tab, "privacy")
	e.run(tab, "erase with confirmation",
		chromedp.SendKeys(chromedp.ID("#erase-subject"), "7"),
		chromedp.SendKeys(chromedp.ID("#erase-reason"), "ticket-ui-1"),
		chromedp.Click(chromedp.ID("#erase-start")),
		chromedp.WaitVisible(chromedp.ID("#erase-dialog")),
		chromedp.SendKeys(chromedp.ID("#erase-confirm"), "8"),
		chromedp.Click(chromedp.ID("#erase-go")),
		chromedp.WaitVisible(chromedp.ID("#erase-confirm-help")))
	var msg string
	e.run(tab, "mismatch", into(chromedp.Text(chromedp.ID("#erase-confirm-help")), &msg))
	if !strings.Contains(msg, "does not match") {
		e.t.Errorf("a mistyped confirmation says %q", msg)
	}
	e.run(tab, "confirm",
		chromedp.SetValue(chromedp.ID("#erase-confirm"), "7"),
		chromedp.Click(chromedp.ID("#erase-go")),
		chromedp.WaitVisible(chromedp.ID("#erase-result")))
	e.shot(tab, "erased")
	e.visit(tab, "#/entity/crm/customers/7", `.view[data-page="entity"] .timeline`)
	erased := e.texts(tab, `[...document.querySelectorAll('#state-out .v-erased')].map(s => s.innerText)`)
	if len(erased) != 2 {
		e.t.Errorf("after erasure the state shows %d erased fields, want name and email", len(erased))
	}
	e.visit(tab, "#/entity/crm/customers/3", `.view[data-page="entity"] .timeline`)
	if n := len(e.texts(tab, `[...document.querySelectorAll('#state-out .v-erased')].map(s => s.innerText)`)); n != 0 {
		e.t.Errorf("erasing customer 7 erased %d fields of customer 3", n)
	}
}

// narrow renders the main pages at a phone's width: nothing may widen
// the page past the screen (wide tables scroll inside their box).
func (e *uiEnv) narrow() {
	tab := e.tab(auth.RoleAdmin)
	e.run(tab, "390 px", chromedp.EmulateViewport(390, 844))
	for _, p := range []struct{ hash, sel, name string }{
		{"#/search?source=crm", `table.dense tbody tr`, "search-390"},
		{"#/entity/crm/customers/3", `.timeline`, "timeline-390"},
		{"#/record/5", `#proof-steps`, "proof-390"},
	} {
		e.visit(tab, p.hash, p.sel)
		var w int
		e.run(tab, "width", evalInto(`document.documentElement.scrollWidth`, &w))
		if w > 390 {
			e.t.Errorf("%s at 390 px is %d px wide", p.hash, w)
		}
		e.shot(tab, p.name)
	}
}

// into runs a and stores its value in dst.
func into[T any](a chromedp.Action[T], dst *T) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, t)
		if err == nil {
			*dst = v
		}
		return chromedp.Void{}, err
	}
}

func evalInto[T any](expr string, dst *T) chromedp.Action[chromedp.Void] {
	return into(chromedp.Evaluate[T](expr), dst)
}

// jsDo runs a statement for its effect; it must end in an expression
// with a value (undefined is an error of Evaluate).
func jsDo(expr string) chromedp.Action[chromedp.Void] {
	var v any
	return evalInto("(() => { "+expr+"; return 0 })()", &v)
}
