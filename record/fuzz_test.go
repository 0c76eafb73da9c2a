package record_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

// ingestSeeds are client records for the fuzzers: realistic ones and edge
// cases that sit next to a validation boundary.
var ingestSeeds = []string{
	customerUpdate,
	minimal,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":"x"},"after":{"id":"x","v":[1,2,{"b":1,"a":2}]}}`,
	`{"source":{"name":"s","table":"t","kind":"dynamodb"},"op":"delete","key":{"pk":"a","sk":"b"},"before":{"pk":"a","sk":"b","n":1.50}}`,
	`{"source":{"name":"s","table":"t"},"op":"truncate","key":{"id":null},"before":null,"after":null,"actor":null,"tx":null,"cause":null,"schema":null}`,
	`{"id":"client-1","source":{"name":"s","table":"t"},"op":"event","key":{"id":1},"occurred_at":"2026-01-02T03:04:05Z"}`,
	`{"source":{"name":"s\u00e9","table":"\u6771\u4eac"},"op":"insert","key":{"\u540d":"\ud83d\ude00"},"after":{"s":"\u2028\u0000\"\\"}}`,
	`{"source":{"name":"s","table":"t"},"op":"update","key":{"a,b":"c=d%","e":1},"before":{"a":1,"b":1},"after":{"a":2,"b":1},"changed":["a"]}`,
	`{"source":{"name":"s","table":"t"},"op":"update","key":{"id":1},"after":{"a":1},"changed":["zz",""]}`,
	`{"source":{"name":"s","table":"t"},"op":"snapshot","key":{"id":12345678901234567890.123456789},"after":{"n":1E+400,"m":-0}}`,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1},"tx":{"position":"p","index":9223372036854775807,"commit_time":"9999-12-31T23:59:59.999999999Z"}}`,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1},"occurred_at":"0000-01-01T00:00:00Z","tx":{"commit_time":"0000-01-01T01:00:00+01:00"}}`,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1},"occurred_at":"0000-01-01T00:00:00+01:00"}`,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1},"occurred_at":"9999-12-31T23:30:00-01:00"}`,
	`{"source":{"name":"s","table":"t"},"op":"ddl","key":{"t":"t"},"schema":{"subject":"x","version":9223372036854775807}}`,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1}} {}`,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1}}x`,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{"id":1},"op":"update"}`,
	`{"source":{"name":"s","table":"t"},"op":"insert","key":{}}`,
	`{"seq":1}`,
	`[]`,
	``,
	"{\"source\":{\"name\":\"\xff\",\"table\":\"t\"},\"op\":\"insert\",\"key\":{\"id\":1}}",
}

func FuzzParseIngest(f *testing.F) {
	for _, s := range ingestSeeds {
		f.Add([]byte(s))
	}
	recordedAt := time.Date(2026, 7, 8, 9, 10, 11, 12, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := slices.Clone(data)
		r, err := record.ParseIngest(data, testOpts)
		if !bytes.Equal(in, data) {
			t.Fatal("ParseIngest modified its input")
		}
		if err != nil {
			if r != nil {
				t.Fatalf("record returned with error %v", err)
			}
			var fe *record.FieldError
			if !errors.Is(err, record.ErrInvalid) || !errors.As(err, &fe) || strings.TrimSpace(fe.Reason) == "" {
				t.Fatalf("error %v (%T) is not a FieldError with a reason", err, err)
			}
			return
		}
		if r.ID == "" || r.Source.Name == "" || r.Source.Table == "" || !r.Op.Valid() || len(r.Key) == 0 || r.Source.Kind == "" {
			t.Fatalf("accepted an incomplete record: %+v", r)
		}
		if _, err := record.KeyString(r.Key); err != nil {
			t.Fatalf("KeyString of an accepted key %s: %v", r.Key, err)
		}
		if len(r.Before) > 0 && len(r.After) > 0 {
			computed, err := record.ChangedFields(r.Before, r.After)
			if err != nil || !slices.Equal(computed, r.Changed) {
				t.Fatalf("changed %q, but the images differ in %q (%v)", r.Changed, computed, err)
			}
		}
		// A record sent in its stored form is its stored body.
		record.CheckIsBody(t, bytes.TrimSpace(data), r)
		r.Seq = uint64(len(data)) * 0x9E3779B97F4A7C15
		r.RecordedAt = recordedAt

		enc := record.Encode(r)
		if !json.Valid(enc[record.HeaderSize:]) {
			t.Fatalf("encoded body is not valid JSON: %q", enc[record.HeaderSize:])
		}
		dec, err := record.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(r)): %v\n%q", err, enc)
		}
		if dec.ID != r.ID {
			t.Fatalf("id %q decoded as %q", r.ID, dec.ID)
		}
		if d := diffRecords(r, dec); d != "" {
			t.Fatalf("Decode(Encode(r)) differs: %s", d)
		}
		if again := record.Encode(dec); !bytes.Equal(again, enc) {
			t.Fatalf("Encode->Decode->Encode not stable:\n%q\n%q", enc, again)
		}
		if seq, err := record.Seq(enc); err != nil || seq != r.Seq {
			t.Fatalf("Seq = %d, %v; want %d", seq, err, r.Seq)
		}
		api := record.AppendJSON(nil, r)
		body := enc[record.HeaderSize+1 : len(enc)-1] // members only
		if !json.Valid(api) || !bytes.Contains(api, body) || !bytes.HasSuffix(api, []byte(`"recorded_at":`+strconv.Quote(r.RecordedAt.UTC().Format(time.RFC3339Nano))+`}`)) {
			t.Fatalf("API JSON %q does not match the body %q", api, enc[record.HeaderSize:])
		}
	})
}

func FuzzDecode(f *testing.F) {
	for i, s := range ingestSeeds {
		r, err := record.ParseIngest([]byte(s), testOpts)
		if err != nil {
			continue
		}
		r.Seq = uint64(i)
		r.RecordedAt = fixedNow
		f.Add(record.Encode(r))
	}
	for _, r := range builtRecords() {
		f.Add(record.Encode(r))
	}
	hdr := []byte{record.FormatV1, 0, 0, 0, 0, 0, 0, 0, 5}
	for _, body := range []string{
		``,
		`{}`,
		`null`,
		`{"key":{"id":1}}`,
		`{"key":null,"before":null,"changed":null,"tx":null,"schema":null}`,
		`{"key":{"id":1},"changed":[],"tx":{},"seq":99,"unknown":1}`,
		`{"key":{"id":1},"id":"a","id":"b"}`,
		`{"key":{"id":1},"occurred_at":"2026-01-02T03:04:05.123456789123+05:00"}`,
		`{"key":{"id":1},"occurred_at":"0000-01-01T00:00:00+01:00"}`,
		`{"key":{"id":1},"recorded_at":"9999-12-31T23:30:00-01:00"}`,
		`{"key":{"id":1},"tx":{"commit_time":"9999-12-31T23:30:00-01:00","index":-5}}`,
		`{"key":  { "b" : 1 , "a" : [ 2 ] } , "before" : 1, "after": "x", "actor": [], "cause": true}`,
		"{\"key\":{\"id\":\"\xff\"},\"id\":\"\xfe\",\"changed\":[\"\xc3\"]}",
		`{"id":"\u00e9\ud800","key":{"id":1}}`,
		`{"key":{"id":1}}trailing`,
	} {
		f.Add(append(slices.Clone(hdr), body...))
	}
	f.Add([]byte{})
	f.Add([]byte{record.FormatV1})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, '{', '}'})

	f.Fuzz(func(t *testing.T, stored []byte) {
		in := slices.Clone(stored)
		r, err := record.Decode(stored)
		if !bytes.Equal(in, stored) {
			t.Fatal("Decode modified its input")
		}
		seq, seqErr := record.Seq(stored)
		if err != nil {
			if r != nil {
				t.Fatalf("record returned with error %v", err)
			}
			if !errors.Is(err, record.ErrFormat) {
				t.Fatalf("Decode error %v is not ErrFormat", err)
			}
			return
		}
		if seqErr != nil || seq != r.Seq {
			t.Fatalf("Seq = %d, %v; Decode gave seq %d", seq, seqErr, r.Seq)
		}
		record.CheckIsBody(t, stored[record.HeaderSize:], r)
		enc := record.Encode(r)
		if !json.Valid(enc[record.HeaderSize:]) {
			t.Fatalf("re-encoded body is not valid JSON: %q", enc[record.HeaderSize:])
		}
		r2, err := record.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(b))): %v\n%q", err, enc)
		}
		if d := diffRecords(r, r2); d != "" {
			t.Fatalf("re-decoded record differs: %s", d)
		}
		if again := record.Encode(r2); !bytes.Equal(again, enc) {
			t.Fatalf("encoding not stable:\n%q\n%q", enc, again)
		}
		if !json.Valid(record.AppendJSON(nil, r)) {
			t.Fatalf("API JSON of a decoded record is not valid JSON")
		}
	})
}
