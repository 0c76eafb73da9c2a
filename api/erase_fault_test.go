package api_test

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/internal/vfs"
	"github.com/stele/stele/logstore"
)

// TestEraseOnFaultyDisk destroys a subject's key while the keystore's disk
// fails, through the FS seam: a full disk while the erasure is recorded (a
// torn record, cut back off) and a full disk while the key's shard is
// rewritten. Each time the admin gets a 507 saying what to do, nothing
// acknowledged is lost, the retry after space is freed erases the subject
// with a receipt, and the log verifies.
func TestEraseOnFaultyDisk(t *testing.T) {
	for _, tc := range []struct{ name, match string }{
		{"torn erasure record", "DESTROYED"},
		{"shard rewrite", ".keys.tmp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			efs := vfs.NewErrorFS(nil)
			e := newGuardEnvOn(t, efs)
			seqs := e.seed(t)
			before := e.store.Size()
			erase := func() (int, string) {
				resp := e.open(t, auth.RoleAdmin, http.MethodPost, "/v1/subjects/1/erase", "application/json", `{"reason":"art. 17 request"}`)
				b := readAll(t, resp)
				return resp.StatusCode, string(b)
			}
			full := efs.Add(&vfs.Fault{Op: vfs.OpWrite, Match: tc.match, Err: syscall.ENOSPC, After: 5})
			code, body := erase()
			if code != http.StatusInsufficientStorage || !strings.Contains(body, "free space") || !strings.Contains(body, "again") {
				t.Fatalf("erase on a full disk: %d %s, want 507 saying what to do", code, body)
			}
			if full.Hits() == 0 {
				t.Fatal("the fault never fired")
			}
			if e.store.Size() != before {
				t.Fatalf("a refused erasure appended %d records (no receipt may claim it)", e.store.Size()-before)
			}
			full.Off()
			if code, body := erase(); code != http.StatusOK || !strings.Contains(body, "receipt") {
				t.Fatalf("erase after space was freed: %d %s", code, body)
			}
			// The other customer is untouched; the erased one reads as erased.
			resp := e.open(t, auth.RoleAuditor, http.MethodGet, "/v1/records?source=crm&table=customers", "", "")
			got := string(readAll(t, resp))
			if resp.StatusCode != http.StatusOK || !strings.Contains(got, "user2@example.com") || strings.Contains(got, "user1@example.com") || !strings.Contains(got, `"$erased":true`) {
				t.Fatalf("after the retried erasure (records %v): %d %s", seqs, resp.StatusCode, got)
			}
			if _, err := e.store.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			rep, err := logstore.VerifyDir(context.Background(), e.dir, logstore.VerifyOptions{})
			if err != nil {
				t.Fatalf("stele verify after the faults: %v", err)
			}
			if rep.Records != e.store.Size() {
				t.Fatalf("verified %d of %d records", rep.Records, e.store.Size())
			}
		})
	}
}
