package export_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/export"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

// TestRealSealedRecords exports records sealed by the real privacy layer
// on the append path: the envelopes leave as stored, and the export
// verifies.
func TestRealSealedRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	master, err := keystore.FileMaster(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.Open(ctx, filepath.Join(dir, "keys"), master, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	reg, err := schema.Open(filepath.Join(dir, "schemas"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Put(ctx, "crm.public.customers", []byte(`{"type":"object","x-retention":"P1Y","properties":{
		"id":{"type":"integer","x-subject":true},"email":{"type":"string","x-pii":true},"plan":{"type":"string"}},"required":["id"]}`)); err != nil {
		t.Fatal(err)
	}
	guard, err := privacy.New(ctx, keys, reg, privacy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := logstore.Open(ctx, filepath.Join(dir, "log"), logstore.Options{Origin: "sealed.test/log", Sealer: guard})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var recs []*record.Record
	for i := range 6 {
		r, err := record.ParseIngest(fmt.Appendf(nil,
			`{"source":{"name":"crm","kind":"postgres","schema":"public","table":"customers"},"op":"insert","key":{"id":%d},"after":{"id":%d,"email":"user%d@example.com","plan":"gold"}}`,
			i, i, i), record.IngestOptions{Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if _, err := store.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cp, err := store.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ex := export.New(store, nil)
	for _, format := range export.Formats {
		for _, f := range []query.Filter{{}, {Source: "crm", Op: record.OpInsert}} {
			var data, proof bytes.Buffer
			if _, err := ex.Write(ctx, export.Options{Format: format, Filter: f, Size: cp.Size, Checkpoint: cp,
				VerifierKey: store.Keys().VerifierKey}, &data, &proof); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data.Bytes(), []byte("@example.com")) {
				t.Fatalf("%s: a sealed field left in clear", format)
			}
			if format != export.Parquet && !bytes.Contains(data.Bytes(), []byte("$pii")) {
				t.Fatalf("%s: no sealed envelope in the export:\n%s", format, data.Bytes())
			}
			rep, err := export.Verify(ctx, bytes.NewReader(data.Bytes()), int64(data.Len()), &proof, export.VerifyOptions{VerifierKey: store.Keys().VerifierKey})
			if err != nil || rep.Records != 6 {
				t.Fatalf("%s %+v: %v (%+v)", format, f, err, rep)
			}
		}
	}

	// Options.Reveal: the rows show personal data in clear, the proof is
	// the same (it covers the records as stored), and the rows no longer
	// verify against it.
	opts := export.Options{Format: export.JSONL, Size: cp.Size, Checkpoint: cp, VerifierKey: store.Keys().VerifierKey}
	var storedProof, clearData, clearProof bytes.Buffer
	if _, err := ex.Write(ctx, opts, io.Discard, &storedProof); err != nil {
		t.Fatal(err)
	}
	opts.Reveal = func(ctx context.Context, r *record.Record) error {
		_, err := guard.Reveal(ctx, auth.RoleAuditor, r)
		return err
	}
	if _, err := ex.Write(ctx, opts, &clearData, &clearProof); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(clearData.Bytes(), []byte("@example.com")); n != 6 || bytes.Contains(clearData.Bytes(), []byte(`"$pii":`)) {
		t.Fatalf("revealed export shows %d emails:\n%s", n, clearData.Bytes())
	}
	if !bytes.Equal(storedProof.Bytes(), clearProof.Bytes()) {
		t.Fatal("revealing the rows changed the proof")
	}
	if _, err := export.Verify(ctx, bytes.NewReader(clearData.Bytes()), int64(clearData.Len()), &clearProof, export.VerifyOptions{VerifierKey: store.Keys().VerifierKey}); err == nil {
		t.Fatal("a revealed export verified against the proof of the stored records")
	}
}
