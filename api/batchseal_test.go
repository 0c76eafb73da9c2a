package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stele/stele/auth"
)

// refusal reads a 400 answer naming a record of the batch: the field and
// the record's index; ok is false for any other answer.
func refusal(status int, body []byte) (field string, index int, ok bool) {
	var answer struct {
		Field string `json:"field"`
		Index *int   `json:"index"`
	}
	if status != http.StatusBadRequest || json.Unmarshal(body, &answer) != nil || answer.Index == nil {
		return "", 0, false
	}
	return answer.Field, *answer.Index, true
}

// TestBatchSealedOrRefusedByIndex: the records of an array batch, which
// the log prepares range by range as they are parsed, are each sealed
// under their table's schema; a batch with a record the sealer refuses is
// answered 400 naming that record's index and field, and stores nothing.
func TestBatchSealedOrRefusedByIndex(t *testing.T) {
	e := newGuardEnv(t)
	rec := func(i int, after string) string {
		return fmt.Sprintf(`{"id":"b-%d",%s,"op":"insert","key":{"id":%d},"after":%s}`, i, customersSource, i, after)
	}
	var ok []string
	for i := range 300 {
		ok = append(ok, rec(i, fmt.Sprintf(`{"email":"p%d@example.com","id":%d}`, i, i)))
	}
	status, b, first := e.post(t, auth.RoleService, "["+strings.Join(ok, ",")+"]")
	if status != http.StatusCreated {
		t.Fatalf("batch: %d %s", status, b)
	}
	for _, i := range []int{0, 150, 299} {
		if st := e.stored(t, first+uint64(i)); bytes.Contains(st, fmt.Appendf(nil, "p%d@example.com", i)) || !bytes.Contains(st, []byte(`"$pii":`)) {
			t.Fatalf("record %d stored in clear:\n%s", i, st)
		}
	}
	size := e.store.Size()
	for _, c := range []struct {
		name, bad, field string
	}{
		// Refused by the schema, before the log sees the record.
		{"no subject", rec(0, `{"email":"nobody@example.com"}`), "after"},
		// Refused by the log's sealer: personal data with no subject
		// to seal it under.
		{"ddl", `{` + customersSource + `,"op":"ddl","key":{"object":"public.customers"},"tx":{"position":"0/B1"},"after":{"email":"nobody@example.com"}}`, "after.id"},
	} {
		for _, bad := range []int{0, 130, 299} {
			recs := make([]string, 300)
			for i := range recs {
				recs[i] = rec(1000+i, fmt.Sprintf(`{"email":"q%d@example.com","id":%d}`, i, 1000+i))
			}
			recs[bad] = c.bad
			status, b, _ := e.post(t, auth.RoleService, "["+strings.Join(recs, ",")+"]")
			if field, index, ok := refusal(status, b); !ok || field != c.field || index != bad {
				t.Errorf("%s as record %d: %d %s, want 400 naming %s of record %d", c.name, bad, status, b, c.field, bad)
			}
		}
	}
	if e.store.Size() != size {
		t.Errorf("refused batches stored %d records", e.store.Size()-size)
	}
}

// TestRefusedBatchCreatesNoKeys: a batch refused for an id it repeats is
// refused before any of its records is sealed, so it leaves no subject
// key behind for people whose records were never stored.
func TestRefusedBatchCreatesNoKeys(t *testing.T) {
	e := newGuardEnv(t)
	batch := func(from int, dupAt int) string {
		recs := make([]string, 300)
		for i := range recs {
			id := from + i
			if i == dupAt {
				id = from + 10
			}
			recs[i] = fmt.Sprintf(`{"id":"k-%d",%s,"op":"insert","key":{"id":%d},"after":{"email":"k%d@example.com","id":%d}}`, id, customersSource, from+i, from+i, from+i)
		}
		return "[" + strings.Join(recs, ",") + "]"
	}
	before := e.keys.Len()
	for _, dupAt := range []int{11, 150, 299} {
		status, b, _ := e.post(t, auth.RoleService, batch(1000*dupAt, dupAt))
		if field, index, ok := refusal(status, b); !ok || field != "id" || index != dupAt {
			t.Fatalf("id repeated as record %d: %d %s, want 400 naming id of record %d", dupAt, status, b, dupAt)
		}
		if n := e.keys.Len(); n != before {
			t.Fatalf("id repeated as record %d: the refused batch left %d new keys", dupAt, n-before)
		}
	}
	// The count moves when records are stored: the check above can fail.
	if status, b, _ := e.post(t, auth.RoleService, batch(500000, -1)); status != http.StatusCreated {
		t.Fatalf("valid batch: %d %s", status, b)
	}
	if n := e.keys.Len(); n <= before {
		t.Fatalf("a stored batch of 300 new subjects left the key count at %d (was %d)", n, before)
	}
}

// TestHugeExponentRefusedNotFatal: a number whose exponent is beyond a
// million, under a numeric keyword of a schema the fast validator leaves
// to the library (oneOf), is answered 400 naming the record and field, in
// any range of a large batch. It used to be a nil dereference in the
// library on a prepare goroutine, which took the whole server down.
func TestHugeExponentRefusedNotFatal(t *testing.T) {
	e := newGuardEnv(t)
	if _, _, err := e.reg.Put(context.Background(), "crm.public.scores", []byte(`{"type":"object","x-retention":"P1Y","properties":{
		"id":{"type":"integer","x-subject":true},"email":{"type":"string","x-pii":true},
		"score":{"oneOf":[{"type":"number","minimum":1},{"type":"string"}]}},"required":["id"]}`)); err != nil {
		t.Fatal(err)
	}
	const source = `"source":{"name":"crm","kind":"postgres","schema":"public","table":"scores"}`
	batch := func(bad int) string {
		recs := make([]string, 3000)
		for i := range recs {
			score := "5"
			if i == bad {
				score = "1e1000001"
			}
			recs[i] = fmt.Sprintf(`{"id":"s-%d-%d",%s,"op":"insert","key":{"id":%d},"after":{"email":"s%d@example.com","id":%d,"score":%s}}`, bad, i, source, i, i, i, score)
		}
		return "[" + strings.Join(recs, ",") + "]"
	}
	size := e.store.Size()
	for _, bad := range []int{0, 1499, 2999} {
		status, b, _ := e.post(t, auth.RoleService, batch(bad))
		if field, index, ok := refusal(status, b); !ok || !strings.HasPrefix(field, "after") || index != bad {
			t.Errorf("huge exponent in record %d: %d %s, want 400 naming after of record %d", bad, status, b, bad)
		}
	}
	if e.store.Size() != size {
		t.Errorf("refused batches stored %d records", e.store.Size()-size)
	}
	if status, b, _ := e.post(t, auth.RoleService, batch(-1)); status != http.StatusCreated {
		t.Errorf("the same batch without it: %d %s", status, b)
	}
}
