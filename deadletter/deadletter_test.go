package deadletter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/deadletter"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

const customers = `{"type":"object","properties":{
  "id":{"type":"string","x-subject":true},
  "email":{"type":"string","x-pii":true}}}`

type env struct {
	reg    *schema.Registry
	dir    string
	guard  *privacy.Guard
	log    *logstore.Store
	ledger *privacy.Ledger
	dead   *deadletter.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	master, err := keystore.FileMaster(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.Open(ctx, filepath.Join(dir, "keystore"), master, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := schema.Open(filepath.Join(dir, "schemas"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Put(ctx, "crm.public.customers", []byte(customers)); err != nil {
		t.Fatal(err)
	}
	g, err := privacy.New(ctx, keys, reg, privacy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := logstore.Open(ctx, filepath.Join(dir, "log"), logstore.Options{Hook: ix, Sealer: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); ix.Close(); keys.Close() })
	dead := deadletter.Open(filepath.Join(dir, "deadletter", "records.jsonl"), g, g, nil)
	ledger := privacy.NewLedger(g, st, ix)
	ledger.PurgeCopiesWith(dead)
	return &env{reg: reg, dir: dir, guard: g, log: st, ledger: ledger, dead: dead}
}

func customer(id int, subject, email string) *record.Record {
	idx := int64(0)
	r := &record.Record{
		Source:     record.Source{Name: "crm", Kind: "postgres", Schema: "public", Table: "customers"},
		Op:         record.OpInsert,
		Key:        json.RawMessage(`{"id":"` + subject + `"}`),
		After:      json.RawMessage(`{"email":` + email + `,"id":"` + subject + `"}`),
		Actor:      json.RawMessage(`{"id":"app"}`),
		OccurredAt: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		Tx:         &record.Tx{ID: "1", Position: fmt.Sprintf("0/%X", 100+id), Index: &idx},
	}
	r.ID = record.DeriveID(r)
	return r
}

func TestParkedRecordsAreKeptAndErasedWithTheirSubject(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	// Alice and Bob each send one good and one bad row (email not a string).
	recs := []*record.Record{
		customer(1, "alice", `"alice@example.com"`),
		customer(2, "alice", `4155550100`),
		customer(3, "bob", `"bob@example.com"`),
		customer(4, "bob", `4155550199`),
	}
	badAlice, badBob := recs[1].ID, recs[3].ID
	res, err := e.dead.AppendOrPark(ctx, e.log, recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || e.log.Size() != 2 {
		t.Fatalf("appended %d (log size %d), want the 2 valid records", len(res), e.log.Size())
	}
	entries, err := e.dead.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].ID != badAlice || entries[1].ID != badBob {
		t.Fatalf("parked %+v, want alice's and bob's bad rows", entries)
	}
	for _, en := range entries {
		if en.Field != "after.email" || !strings.Contains(en.Reason, "schema") || en.Source != "crm.public.customers" || len(en.Subjects) != 1 {
			t.Errorf("entry %+v: want field after.email, a schema reason, the source and one subject", en)
		}
	}
	if entries[0].Subjects[0] == entries[1].Subjects[0] {
		t.Fatal("alice and bob have the same subject name")
	}
	file := filepath.Join(e.dir, "deadletter", "records.jsonl")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"4155550100", "4155550199", "alice", "bob"} {
		if bytes.Contains(data, []byte(plain)) {
			t.Errorf("the dead-letter file holds %q in clear", plain)
		}
	}

	rc, err := e.ledger.Erase(ctx, privacy.EraseRequest{Subject: "alice", By: auth.Principal{Name: "dpo", Role: auth.RoleAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Receipt.CopiesRemoved != 1 || rc.Receipt.Records == nil || *rc.Receipt.Records != 1 {
		t.Errorf("receipt: copies removed %d, records %v; want 1 and 1", rc.Receipt.CopiesRemoved, rc.Receipt.Records)
	}
	entries, err = e.dead.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].ID != badBob {
		t.Fatalf("after erasing alice, parked %+v; want bob's row only", entries)
	}
	data, err = os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(badAlice)) {
		t.Error("the dead-letter file still holds alice's parked record")
	}
	if matches, _ := filepath.Glob(filepath.Join(e.dir, "deadletter", ".records-*")); len(matches) != 0 {
		t.Errorf("temp files left behind: %v", matches)
	}
	// A second erasure of alice finds nothing more to remove.
	if rc, err = e.ledger.Erase(ctx, privacy.EraseRequest{Subject: "alice", By: auth.Principal{Name: "dpo", Role: auth.RoleAdmin}}); err != nil || rc.Receipt.CopiesRemoved != 0 {
		t.Fatalf("second erasure: copies removed %d, err %v", rc.Receipt.CopiesRemoved, err)
	}
}

type failingLog struct{ err error }

func (f failingLog) Append(context.Context, []*record.Record) ([]stele.Appended, error) {
	return nil, f.err
}

func TestOtherAppendErrorsAreNotParked(t *testing.T) {
	e := newEnv(t)
	boom := errors.New("disk full")
	_, err := e.dead.AppendOrPark(context.Background(), failingLog{boom}, []*record.Record{customer(1, "alice", `5`)})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the log's error", err)
	}
	if entries, err := e.dead.Entries(); err != nil || len(entries) != 0 {
		t.Fatalf("parked %d records (%v) on a failure that is not the record's", len(entries), err)
	}
}

func TestDamagedFileIsReportedWithItsLine(t *testing.T) {
	e := newEnv(t)
	if _, err := e.dead.AppendOrPark(context.Background(), e.log, []*record.Record{customer(1, "alice", `5`)}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(e.dir, "deadletter", "records.jsonl")
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{not json\n")
	f.Close()
	if _, err := e.dead.Entries(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v, want one naming line 2", err)
	}
	// Erasure must not silently drop what it cannot read.
	if _, err := e.dead.PurgeSubjects(context.Background(), []string{"x"}); err == nil {
		t.Fatal("purge over a damaged file succeeded")
	}
}

// TestReplayAfterTheSchemaIsFixed: parked records go back to the log once
// they fit the schema, sealed like any other; those that still do not stay
// parked with today's reason; a record the log already holds (a replay cut
// short before the rewrite) counts as a duplicate and is stored once.
func TestReplayAfterTheSchemaIsFixed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	fixable := customer(1, "alice", `4155550100`)
	broken := customer(2, "bob", `{"nested":true}`)
	if _, err := e.dead.AppendOrPark(ctx, e.log, []*record.Record{fixable, broken}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := e.dead.Entries(); len(entries) != 2 || e.log.Size() != 0 {
		t.Fatalf("parked %d, log %d; want both parked", len(entries), e.log.Size())
	}
	// Nothing fits yet: both stay, the file is unchanged in content.
	res, err := e.dead.Replay(ctx, e.log, e.guard)
	if err != nil || res.Appended != 0 || len(res.StillParked) != 2 || e.log.Size() != 0 {
		t.Fatalf("replay before the fix: %+v, %v", res, err)
	}
	if res.StillParked[0].Record != "" {
		t.Fatal("the replay result carries the sealed record")
	}
	// Phone-number emails become acceptable in version 2.
	wider := strings.Replace(customers, `"email":{"type":"string"`, `"email":{"type":["string","integer"]`, 1)
	if _, _, err := e.reg.Put(ctx, "crm.public.customers", []byte(wider)); err != nil {
		t.Fatal(err)
	}
	res, err = e.dead.Replay(ctx, e.log, e.guard)
	if err != nil || res.Appended != 1 || res.Duplicates != 0 || len(res.StillParked) != 1 || res.StillParked[0].ID != broken.ID {
		t.Fatalf("replay after the fix: %+v, %v", res, err)
	}
	if !strings.Contains(res.StillParked[0].Reason, "version 2") {
		t.Errorf("the still-parked reason %q is not today's (version 2)", res.StillParked[0].Reason)
	}
	r, err := e.log.Read(0)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != fixable.ID || bytes.Contains(r.After, []byte("4155550100")) || !bytes.Contains(r.After, []byte(`"$pii":`)) {
		t.Fatalf("replayed record %s: after %s; want it sealed", r.ID, r.After)
	}
	entries, err := e.dead.Entries()
	if err != nil || len(entries) != 1 || entries[0].ID != broken.ID {
		t.Fatalf("left parked: %+v (%v)", entries, err)
	}

	// A replay cut short: the record reached the log but the file was not
	// rewritten. Park it again by hand and replay.
	again := customer(3, "carol", `4155550111`)
	if _, err := e.log.Append(ctx, []*record.Record{customer(3, "carol", `4155550111`)}); err != nil {
		t.Fatal(err)
	}
	if err := e.dead.Park(ctx, again, &record.FieldError{Field: "after.email", Reason: "was wrong once"}); err != nil {
		t.Fatal(err)
	}
	size := e.log.Size()
	res, err = e.dead.Replay(ctx, e.log, e.guard)
	if err != nil || res.Appended != 1 || res.Duplicates != 1 || e.log.Size() != size {
		t.Fatalf("replay of a record already in the log: %+v, %v (log %d → %d)", res, err, size, e.log.Size())
	}
}

func TestReplayStopsOnTheLogsOwnFailure(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.dead.AppendOrPark(ctx, e.log, []*record.Record{customer(1, "alice", `5`), customer(2, "bob", `6`)}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	res, err := e.dead.Replay(ctx, failingLog{boom}, e.guard)
	if !errors.Is(err, boom) || res.Appended != 0 {
		t.Fatalf("replay into a failing log: %+v, %v", res, err)
	}
	if entries, _ := e.dead.Entries(); len(entries) != 2 {
		t.Fatalf("%d parked after a failed replay, want both kept", len(entries))
	}
}

// TestAppendAsyncOrParkParksBeforeQueueing: a batch queued with the
// pipelined path parks its records that break their schema, as
// AppendOrPark does, and queues the rest in the log.
func TestAppendAsyncOrParkParksBeforeQueueing(t *testing.T) {
	ctx, e := context.Background(), newEnv(t)
	// The second breaks the schema: its email is not a string.
	recs := []*record.Record{customer(1, "alice", `"alice@example.com"`), customer(2, "alice", `4155550100`), customer(3, "bob", `"bob@example.com"`)}
	wait, failed, err := e.dead.AppendAsyncOrPark(ctx, e.log, recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := wait(ctx)
	if err != nil || len(res) != 2 || e.log.Size() != 2 || failed() {
		t.Fatalf("appended %d (%v, failed %v), log size %d: want the 2 valid records", len(res), err, failed(), e.log.Size())
	}
	entries, err := e.dead.Entries()
	if err != nil || len(entries) != 1 || entries[0].ID != recs[1].ID {
		t.Fatalf("parked %+v (%v), want alice's bad row", entries, err)
	}
	// A batch of nothing but bad rows queues nothing.
	wait, _, err = e.dead.AppendAsyncOrPark(ctx, e.log, []*record.Record{customer(4, "bob", `5`)}, failed)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := wait(ctx); err != nil || len(res) != 0 || e.log.Size() != 2 {
		t.Fatalf("all-bad batch: %d appended (%v), log size %d", len(res), err, e.log.Size())
	}
	// A log that cannot queue is appended at once.
	_, _, err = e.dead.AppendAsyncOrPark(ctx, failingLog{errors.New("boom")}, []*record.Record{customer(5, "carol", `"c@example.com"`)}, nil)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("through a log without AppendAsync: %v, want its error", err)
	}
}
