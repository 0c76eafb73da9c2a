package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/index"
	steleLog "github.com/stele/stele/log"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/privacy/schema"
	"github.com/stele/stele/record"
)

// piiSchema declares a data subject and three personal fields, as
// privacy/bench_test.go does, so the two benchmarks measure the same work.
const piiSchema = `{"type":"object","x-retention":"P7Y","properties":{
  "id":{"type":"integer","x-subject":true},
  "email":{"type":"string","x-pii":true,"x-searchable":true},
  "name":{"type":"string","x-pii":true},
  "phone":{"type":"string","x-pii":true},
  "notes":{"type":"string"}}}`

// PIIRecord returns the i-th record of the sealing figures: an insert of
// customer subject with three personal fields, about 512 bytes stored
// unsealed.
func PIIRecord(i, subject int) *record.Record {
	after := fmt.Sprintf(`{"email":"user%d@example.com","id":%d,"name":"User Number %d","notes":%q,"phone":"+44 20 7946 %04d"}`,
		subject, subject, subject, strings.Repeat("x", 103), subject%10000)
	return &record.Record{
		ID:         "pii-" + strconv.Itoa(i),
		Source:     record.Source{Name: "crm", Kind: "postgres", Schema: "public", Table: "customers"},
		Op:         record.OpInsert,
		Key:        json.RawMessage(`{"id":` + strconv.Itoa(subject) + `}`),
		After:      json.RawMessage(after),
		Changed:    []string{"email", "id", "name", "notes", "phone"},
		Actor:      json.RawMessage(`{"app":"crm","id":"user-` + strconv.Itoa(i%500) + `"}`),
		Tx:         &record.Tx{ID: fmt.Sprint(1000 + i/10), Position: fmt.Sprintf("0/%X", 0x1000000+i*600)},
		OccurredAt: time.Unix(1767225600+int64(i), 0).UTC(),
	}
}

// privacyLayer is the sealing set-up serve wires: a key store under a file
// master key and a schema registry holding piiSchema.
type privacyLayer struct {
	guard *privacy.Guard
	keys  *keystore.Store
}

func openPrivacy(ctx context.Context, dir string) (*privacyLayer, error) {
	master, err := keystore.FileMaster(filepath.Join(dir, "master.key"))
	if err != nil {
		return nil, err
	}
	keys, err := keystore.Open(ctx, filepath.Join(dir, "keystore"), master, keystore.Options{})
	if err != nil {
		return nil, err
	}
	reg, err := schema.Open(filepath.Join(dir, "schemas"))
	if err == nil {
		_, _, err = reg.Put(ctx, "crm.public.customers", []byte(piiSchema))
	}
	var g *privacy.Guard
	if err == nil {
		g, err = privacy.New(ctx, keys, reg, privacy.Options{})
	}
	if err != nil {
		keys.Close()
		return nil, err
	}
	return &privacyLayer{guard: g, keys: keys}, nil
}

func (p *privacyLayer) close() { p.keys.Close() }

// piiAppends returns the durable rate of appending the same PII records to
// a log without its index, unsealed and then with their three personal
// fields sealed, in that order (as privacy's BenchmarkAppendPII does).
func piiAppends(ctx context.Context, opts Options) (plain, sealed float64, err error) {
	// 1,000 subjects, so sealing creates keys in the first batch and then
	// reuses them, as a table of customers would.
	templates := make([]record.Record, 1000)
	for i := range templates {
		templates[i] = *PIIRecord(i, i)
	}
	for _, seal := range []bool{false, true} {
		dir := filepath.Join(opts.Dir, fmt.Sprintf("pii-sealed-%v", seal))
		lopts := steleLog.Options{Origin: "bench.stele.local/log"}
		if seal {
			p, err := openPrivacy(ctx, dir)
			if err != nil {
				return 0, 0, fmt.Errorf("privacy layer: %w", err)
			}
			defer p.close()
			lopts.Sealer = p.guard
		}
		store, err := steleLog.Open(ctx, filepath.Join(dir, "log"), lopts)
		if err != nil {
			return 0, 0, err
		}
		elapsed, err := timedAppends(ctx, opts, store, 1, templates, "pii")
		store.Close()
		if err != nil {
			return 0, 0, err
		}
		rate := float64(opts.Throughput/1000*1000) / elapsed.Seconds()
		if seal {
			sealed = rate
		} else {
			plain = rate
		}
	}
	return plain, sealed, nil
}

// eraseOne appends n sealed records that all name one subject to a log
// with its index, as serve runs it, and times that subject's erasure.
func eraseOne(ctx context.Context, opts Options, n int) (time.Duration, error) {
	dir := filepath.Join(opts.Dir, "erase")
	p, err := openPrivacy(ctx, dir)
	if err != nil {
		return 0, fmt.Errorf("privacy layer: %w", err)
	}
	defer p.close()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		return 0, err
	}
	defer ix.Close()
	store, err := steleLog.Open(ctx, filepath.Join(dir, "log"), steleLog.Options{Origin: "bench.stele.local/log", Hook: ix, Sealer: p.guard})
	if err != nil {
		return 0, err
	}
	defer store.Close()
	const subject = 4242
	tmpl := PIIRecord(0, subject)
	for b := 0; b < n; b += 1000 {
		recs := make([]*record.Record, min(1000, n-b))
		for i := range recs {
			c := *tmpl
			c.ID = "pii-" + strconv.Itoa(b+i)
			c.After = slices.Clone(tmpl.After)
			recs[i] = &c
		}
		if _, err := store.Append(ctx, recs); err != nil {
			return 0, err
		}
		if b%20_000 == 0 {
			opts.Progress("erase: append", b, n)
		}
	}
	// Erasure counts the subject's records from the index.
	if err := store.WaitIndexed(ctx, store.Size()); err != nil {
		return 0, err
	}
	ledger := privacy.NewLedger(p.guard, store, ix)
	start := time.Now()
	res, err := ledger.Erase(ctx, privacy.EraseRequest{Subject: strconv.Itoa(subject), By: auth.Principal{Name: "bench", Role: auth.RoleAdmin}, Reason: "bench"})
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	if got := res.Receipt.Records; got == nil || *got != uint64(n) {
		return 0, fmt.Errorf("erasure receipt counts %v records, want %d", got, n)
	}
	return elapsed, nil
}
