package privacy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

// TestFormat1RecordsStayReadable opens a data directory written by the
// Stele before the compact form (testdata/format1, made at commit aab27f6
// by the program kept beside it as generator.txt: four records with per-field
// {"$sealed":…} envelopes, subjects 7 and 8), reads it by role, appends
// compact records beside it, erases subject 7, and verifies the log
// before and after.
func TestFormat1RecordsStayReadable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/format1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "master.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	master, err := keystore.FileMaster(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.Open(ctx, filepath.Join(dir, "keystore"), master, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	reg, err := schema.Open(filepath.Join(dir, "schemas"))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	g, err := New(ctx, keys, reg, Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	logDir := filepath.Join(dir, "log")
	st, err := logstore.Open(ctx, logDir, logstore.Options{Origin: "format1.stele.test/log", Hook: ix, Sealer: g})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	verify := func(when string) {
		t.Helper()
		if _, err := st.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := logstore.VerifyDir(ctx, logDir, logstore.VerifyOptions{}); err != nil {
			t.Fatalf("%s: the log does not verify: %v", when, err)
		}
	}
	verify("as written by format 1")

	want := readExpected(t, "testdata/format1/expected.jsonl")
	stored := make([][]byte, st.Size())
	for seq := range st.Size() {
		raw, err := st.ReadRaw(seq)
		if err != nil {
			t.Fatal(err)
		}
		stored[seq] = raw
		r, err := st.Read(seq)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(raw, sealedMarker) || bytes.Contains(raw, compactMarker) {
			t.Fatalf("seq %d is not in format 1", seq)
		}
		if err := g.Unseal(ctx, r); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		exp := want[r.ID]
		if !jsonEqual(r.Key, exp["key"]) || !jsonEqual(r.Before, exp["before"]) || !jsonEqual(r.After, exp["after"]) {
			t.Fatalf("%s unsealed:\n key %s\n before %s\n after %s\nwant %s", r.ID, r.Key, r.Before, r.After, exp)
		}
	}
	analyst := readAll(t, st, g, auth.RoleAnalyst)
	if a := string(analyst[0].After); !strings.Contains(a, `"email":"***.com"`) || !strings.Contains(a, `"born":"1990"`) || !strings.Contains(a, `"score":null`) || strings.Contains(a, "alice") {
		t.Fatalf("analyst's view of a format 1 record: %s", a)
	}

	// A compact record of the same subject beside them; the blind index,
	// rebuilt from format 1 records, finds all of subject 7's.
	later := customer(t, "7", alice, clock.Add(-time.Hour))
	if _, err := st.Append(ctx, []*record.Record{later}); err != nil {
		t.Fatal(err)
	}
	if err := st.WaitIndexed(ctx, st.Size()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(later.After, compactMarker) {
		t.Fatalf("new record not in the compact form: %s", later.After)
	}
	if n, err := ix.SubjectCount(g.subjectName("default", "7")); err != nil || n != 3 {
		t.Fatalf("subject 7 is named by %d records (%v), want 2 in format 1 and 1 compact", n, err)
	}
	if _, err := NewLedger(g, st, ix).Erase(ctx, EraseRequest{Subject: "7", By: auth.Principal{Name: "dpo", Role: auth.RoleAdmin}}); err != nil {
		t.Fatal(err)
	}
	verify("after erasing subject 7")
	for seq, raw := range stored {
		if now, err := st.ReadRaw(uint64(seq)); err != nil || !bytes.Equal(now, raw) {
			t.Fatalf("seq %d changed on erasure: %v", seq, err)
		}
	}
	auditor := readAll(t, st, g, auth.RoleAuditor)
	for _, i := range []int{0, 2, 4} {
		r := auditor[i]
		if strings.Contains(string(r.After), "alice") || !strings.Contains(string(r.After), `"email":{"$erased":true}`) || !strings.Contains(string(r.After), `"street":{"$erased":true}`) {
			t.Fatalf("seq %d after erasure: %s", i, r.After)
		}
	}
	if a := string(auditor[1].After); !strings.Contains(a, `"email":"bob@example.com"`) {
		t.Fatalf("subject 8 was erased too: %s", a)
	}
}

func readExpected(t *testing.T, path string) map[string]map[string]json.RawMessage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]json.RawMessage{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		var id string
		_ = json.Unmarshal(m["id"], &id)
		out[id] = m
	}
	return out
}

func jsonEqual(got, want json.RawMessage) bool {
	if len(got) == 0 {
		got = json.RawMessage("null")
	}
	var a, b any
	return json.Unmarshal(got, &a) == nil && json.Unmarshal(want, &b) == nil && jsonText(a) == jsonText(b)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
