package integration_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// apiErr is the body of an error answer.
type apiErr struct {
	Error string  `json:"error"`
	Field *string `json:"field"`
	Index *int    `json:"index"`
}

func good(id string) string {
	return fmt.Sprintf(`{"id":%q,"source":{"name":"app","table":"orders"},"op":"insert","key":{"id":1},"after":{"id":1}}`, id)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir, "--max-body-bytes", "1MiB", "--max-batch", "10")
	s.post("application/json", []byte("["+good("seed-1")+","+good("seed-2")+"]"))
	size := s.size()
	if size != 2 {
		t.Fatalf("size %d after seeding, want 2", size)
	}

	const (
		jsonCT   = "application/json"
		ndjsonCT = "application/x-ndjson"
	)
	noIndex := -1
	valid := `"source":{"name":"app","table":"orders"},"op":"insert","key":{"id":1}`
	big := bytes.Repeat([]byte(" "), 2<<20)
	copy(big, "[")
	big[len(big)-1] = ']'
	var eleven []string
	for i := range 11 {
		eleven = append(eleven, good(fmt.Sprintf("eleven-%d", i)))
	}
	cases := []struct {
		name     string
		ctype    string
		body     []byte
		chunked  bool // send without Content-Length
		status   int
		field    string // "-" when no field is expected
		index    int    // noIndex when no index is expected
		contains string // in the error message
	}{
		{"malformed JSON object", jsonCT, []byte(`{"source":{"name":"app"`), false, 400, "source", noIndex, "malformed JSON"},
		{"malformed JSON in array", jsonCT, []byte(`[` + good("a") + `,{"op":`), false, 400, "", 1, "malformed JSON"},
		{"not an object", jsonCT, []byte(`42`), false, 400, "-", noIndex, ""},
		{"op as number", jsonCT, []byte(`{"source":{"name":"app","table":"orders"},"op":5,"key":{"id":1}}`), false, 400, "op", noIndex, "string"},
		{"key as string", jsonCT, []byte(`{"source":{"name":"app","table":"orders"},"op":"insert","key":"1"}`), false, 400, "key", noIndex, ""},
		{"occurred_at not a time", jsonCT, []byte(`{` + valid + `,"occurred_at":"yesterday"}`), false, 400, "occurred_at", noIndex, ""},
		{"missing source.name", jsonCT, []byte(`{"source":{"table":"orders"},"op":"insert","key":{"id":1}}`), false, 400, "source.name", noIndex, "required"},
		{"missing source.table", jsonCT, []byte(`{"source":{"name":"app"},"op":"insert","key":{"id":1}}`), false, 400, "source.table", noIndex, "required"},
		{"missing op", jsonCT, []byte(`{"source":{"name":"app","table":"orders"},"key":{"id":1}}`), false, 400, "op", noIndex, "required"},
		{"missing key", jsonCT, []byte(`{"source":{"name":"app","table":"orders"},"op":"insert"}`), false, 400, "key", noIndex, "required"},
		{"empty key", jsonCT, []byte(`{"source":{"name":"app","table":"orders"},"op":"insert","key":{}}`), false, 400, "key", noIndex, ""},
		{"unknown op", jsonCT, []byte(`{"source":{"name":"app","table":"orders"},"op":"upsert","key":{"id":1}}`), false, 400, "op", noIndex, "upsert"},
		{"unknown top-level field", jsonCT, []byte(`{` + valid + `,"colour":"red"}`), false, 400, "colour", noIndex, "unknown"},
		{"unknown source field", jsonCT, []byte(`{"source":{"name":"app","table":"orders","colour":1},"op":"insert","key":{"id":1}}`), false, 400, "source.colour", noIndex, "unknown"},
		{"seq sent", jsonCT, []byte(`{"seq":3,` + valid + `}`), false, 400, "seq", noIndex, ""},
		{"recorded_at sent", jsonCT, []byte(`{` + valid + `,"recorded_at":"2026-01-01T00:00:00Z"}`), false, 400, "recorded_at", noIndex, ""},
		{"invalid UTF-8", jsonCT, []byte("{\"source\":{\"name\":\"app\xff\xfe\",\"table\":\"orders\"},\"op\":\"insert\",\"key\":{\"id\":1}}"), false, 400, "-", noIndex, "UTF-8"},
		{"invalid UTF-8 in NDJSON", ndjsonCT, []byte(good("u1") + "\n{\"source\":{\"name\":\"a\xc3\",\"table\":\"t\"},\"op\":\"insert\",\"key\":{\"id\":1}}\n"), false, 400, "-", noIndex, "UTF-8"},
		{"empty body", jsonCT, nil, false, 400, "-", noIndex, ""},
		{"empty array", jsonCT, []byte(`[]`), false, 400, "-", noIndex, ""},
		{"body over the limit", jsonCT, big, false, 413, "-", noIndex, "limit"},
		{"body over the limit, chunked", jsonCT, big, true, 413, "-", noIndex, "limit"},
		{"too many records", jsonCT, []byte("[" + strings.Join(eleven, ",") + "]"), false, 413, "-", noIndex, "10"},
		{"too many NDJSON records", ndjsonCT, []byte(strings.Join(eleven, "\n")), false, 413, "-", noIndex, "10"},
		{"duplicate id in a batch", jsonCT, []byte("[" + good("d1") + "," + good("d2") + "," + good("d1") + "]"), false, 400, "id", 2, "same id"},
		{"atomic batch, bad record at index 2", jsonCT, []byte("[" + good("b0") + "," + good("b1") + `,{"source":{"name":"app","table":"orders"},"key":{"id":1}},` + good("b3") + "]"), false, 400, "op", 2, "required"},
		{"atomic NDJSON batch, bad line 2", ndjsonCT, []byte(good("n0") + "\n" + good("n1") + "\n" + `{"source":{"name":"app"},"op":"insert","key":{"id":1}}` + "\n" + good("n3") + "\n"), false, 400, "source.table", 2, "required"},
		{"unsupported content type", "text/plain", []byte(good("ct")), false, 415, "-", noIndex, "Content-Type"},
		{"form content type", "application/x-www-form-urlencoded", []byte(good("ct")), false, 415, "-", noIndex, "Content-Type"},
		{"unsupported charset", "application/json; charset=latin1", []byte(good("cs")), false, 415, "-", noIndex, "charset"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rd io.Reader = bytes.NewReader(c.body)
			if c.chunked {
				rd = io.MultiReader(rd) // hides the length: sent chunked
			}
			req, err := http.NewRequest(http.MethodPost, s.URL()+"/v1/records", rd)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", c.ctype)
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, b, c.status)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			var e apiErr
			if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
				t.Fatalf("error body %q is not {\"error\": ...}: %v", b, err)
			}
			switch {
			case c.field == "-" && e.Field != nil && *e.Field != "":
				t.Errorf("field %q, want none: %s", *e.Field, b)
			case c.field != "-" && (e.Field == nil || *e.Field != c.field):
				t.Errorf("field %v, want %q: %s", e.Field, c.field, b)
			}
			switch {
			case c.index == noIndex && e.Index != nil:
				t.Errorf("index %d, want none: %s", *e.Index, b)
			case c.index != noIndex && (e.Index == nil || *e.Index != c.index):
				t.Errorf("index %v, want %d: %s", e.Index, c.index, b)
			}
			if !strings.Contains(e.Error, c.contains) {
				t.Errorf("error %q does not mention %q", e.Error, c.contains)
			}
			if got := s.with(t).size(); got != size {
				t.Fatalf("log size went from %d to %d", size, got)
			}
		})
	}

	t.Run("nothing of a refused batch was appended", func(t *testing.T) {
		s := s.with(t)
		for _, id := range []string{"b0", "b1", "b3", "n0", "n1", "n3", "d1", "d2", "u1", "eleven-0"} {
			// Had any of these been stored, resubmitting it would be a duplicate.
			got := s.post(jsonCT, []byte(good(id)))
			if got[0].Duplicate {
				t.Errorf("record %s of a refused request was stored (seq %d)", id, got[0].Seq)
			}
		}
	})

	t.Run("no method updates or deletes", func(t *testing.T) {
		s := s.with(t)
		before := s.size()
		for _, path := range []string{"/v1/records", "/v1/records/0"} {
			for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
				r := s.do(method, path, jsonCT, []byte(good("m")))
				if r.status != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %s, want 405", method, path, r)
					continue
				}
				if r.header.Get("Allow") == "" || strings.Contains(r.header.Get("Allow"), method) {
					t.Errorf("%s %s: Allow %q", method, path, r.header.Get("Allow"))
				}
				var e apiErr
				if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
					t.Errorf("%s %s: body %q is not a JSON error", method, path, r.body)
				}
			}
		}
		var rr recordResponse
		s.getJSON("/v1/records/0", &rr)
		if got := s.size(); got != before {
			t.Errorf("size went from %d to %d", before, got)
		}
	})
}
