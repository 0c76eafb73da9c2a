package sysrecord

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/record"
)

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestAccessRecordNamesReaderAndRecords(t *testing.T) {
	r, err := Access(auth.Principal{Name: "carol", Role: auth.RoleAuditor}, "GET /v1/records", []uint64{3, 9}, 4, at)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSystem(r.Source) || r.Source.Table != AccessTable || r.Op != record.OpEvent || !strings.HasPrefix(r.ID, "access-") {
		t.Fatalf("access record %+v", r)
	}
	var after struct {
		Endpoint string   `json:"endpoint"`
		Records  []uint64 `json:"records"`
		Fields   int      `json:"fields_in_clear"`
	}
	if err := json.Unmarshal(r.After, &after); err != nil {
		t.Fatal(err)
	}
	if after.Endpoint != "GET /v1/records" || !slices.Equal(after.Records, []uint64{3, 9}) || after.Fields != 4 {
		t.Fatalf("after %s", r.After)
	}
	if !bytes.Contains(r.Actor, []byte(`"role":"auditor"`)) || IsReceipt(r) {
		t.Fatalf("actor %s, receipt %v", r.Actor, IsReceipt(r))
	}
	if c, err := record.Canonical(r.After); err != nil || !bytes.Equal(c, r.After) {
		t.Fatalf("after not canonical: %s (%v)", r.After, err)
	}
}

func TestAdminRecordKeepsActionAndDetail(t *testing.T) {
	r, err := Admin(auth.Principal{Name: "root", Role: auth.RoleAdmin}, "schema put", map[string]any{"subject": "crm.customers"}, at)
	if err != nil {
		t.Fatal(err)
	}
	if r.Source.Table != AdminTable || !bytes.Equal(r.After, []byte(`{"action":"schema put","subject":"crm.customers"}`)) {
		t.Fatalf("admin record %s %s", r.Source.Table, r.After)
	}
}

func TestReceiptRecordIsSignedAndNamesSubjects(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n := uint64(2)
	rc := Receipt{Type: "erasure", Subjects: []SubjectRef{{Group: "default", Ref: "s1"}}, Records: &n, KeysDestroyed: 1}
	cp := &stele.Checkpoint{Size: 10, Root: make([]byte, 32), Note: []byte("cp\n")}
	r, signed, err := ReceiptRecord(&rc, cp, signer, nil, []string{"s1"}, at)
	if err != nil {
		t.Fatal(err)
	}
	if !IsReceipt(r) || rc.Version != ReceiptVersion || rc.ID == "" || rc.Checkpoint.Size != 10 || r.Derived == nil || !slices.Equal(r.Derived.Erased, []string{"s1"}) {
		t.Fatalf("receipt %+v record %+v", rc, r)
	}
	if _, err := note.Open([]byte(signed), note.VerifierList(verifier)); err != nil {
		t.Fatalf("signed receipt does not verify: %v", err)
	}
	got, err := ReceiptSubjects(r.After)
	if err != nil || !slices.Equal(got, []string{"s1"}) {
		t.Fatalf("subjects %v, %v", got, err)
	}
	if _, err := ReceiptSubjects([]byte(`{"receipt":`)); err == nil {
		t.Fatal("a truncated receipt was read")
	}
}
