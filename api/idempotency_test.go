package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// postKeyed posts body with an Idempotency-Key header.
func (e *env) postKeyed(t *testing.T, key, body string) response {
	t.Helper()
	return e.doWith(t, http.MethodPost, "/v1/records", map[string]string{"Content-Type": "application/json", "Idempotency-Key": key}, []byte(body))
}

func (r response) appended(t *testing.T) appendedJSON {
	t.Helper()
	if r.status != http.StatusCreated {
		t.Fatalf("POST: status %d, body %s", r.status, r.body)
	}
	var a appendedJSON
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// Records without ids sent with an Idempotency-Key are stored once however
// often the batch is resent; the same records in another batch are other
// records.
func TestIdempotencyKeyMakesRetriesSafeWithoutIDs(t *testing.T) {
	e := newEnv(t)
	batch := "[" + rec(1, "") + "," + rec(1, "") + "," + rec(2, `"id":"own-id"`) + "," + rec(3, `"tx":{"position":"0/1","index":0}`) + "]"
	first := e.postKeyed(t, "5f0c6a7e-batch-1", batch).appended(t).Records
	for i, a := range first {
		if a.Duplicate {
			t.Fatalf("first post: record %d duplicate: %+v", i, a)
		}
	}
	if first[0].ID == first[1].ID || !strings.HasPrefix(first[0].ID, "k") || first[2].ID != "own-id" || !strings.HasPrefix(first[3].ID, "p") {
		t.Fatalf("ids %+v: want two distinct k… ids, the client's id, a position id", first)
	}
	size := e.store.Size()
	// The quoted form of the IETF draft names the same key.
	again := e.postKeyed(t, `"5f0c6a7e-batch-1"`, batch).appended(t).Records
	for i, a := range again {
		if !a.Duplicate || a.Seq != first[i].Seq || a.ID != first[i].ID {
			t.Fatalf("resent record %d answered %+v, want a duplicate of %+v", i, a, first[i])
		}
	}
	if e.store.Size() != size {
		t.Fatalf("resending grew the log from %d to %d", size, e.store.Size())
	}
	// Another batch holding the same two records: other changes, stored.
	other := e.postKeyed(t, "5f0c6a7e-batch-2", "["+rec(1, "")+","+rec(1, "")+"]").appended(t).Records
	if other[0].Duplicate || other[1].Duplicate || e.store.Size() != size+2 {
		t.Fatalf("a second batch of equal records: %+v, log size %d, want %d", other, e.store.Size(), size+2)
	}
	// Without a key nothing recognises a resent record: stored twice, as
	// docs/api.md warns.
	plain := mustAppend(t, e, "application/json", rec(9, ""))
	if again := mustAppend(t, e, "application/json", rec(9, "")); again[0].ID == plain[0].ID || again[0].Duplicate {
		t.Fatalf("without a key: %+v then %+v", plain, again)
	}
}

func TestIdempotencyKeyRefusedWhenMalformed(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ key, want string }{
		{"", "Idempotency-Key header: must be 1 to 200 characters, got 0"},
		{`""`, "Idempotency-Key header: must be 1 to 200 characters, got 0"},
		{strings.Repeat("k", 201), "must be 1 to 200 characters, got 201"},
		{"a\\b", "character 1 is not allowed"},
		{"caf\u00e9", "character 3 is not allowed"},
	} {
		r := e.postKeyed(t, c.key, rec(1, ""))
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), c.want) {
			t.Errorf("key %q: %d %s, want 400 saying %q", c.key, r.status, r.body, c.want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/records", strings.NewReader(rec(1, "")))
	req.Header.Add("Idempotency-Key", "a")
	req.Header.Add("Idempotency-Key", "b")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("two keys: status %d, want 400", resp.StatusCode)
	}
	if e.store.Size() != 0 {
		t.Fatalf("refused posts stored %d records", e.store.Size())
	}
}
