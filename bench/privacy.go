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
	"github.com/stele/stele/capture"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

// piiSchema declares a data subject and three personal fields, as
// privacy/bench_test.go does, so the two benchmarks measure the same work.
const piiSchema = `{"type":"object","x-retention":"P7Y","properties":{
  "id":{"type":"integer","x-subject":true},
  "email":{"type":"string","x-pii":true,"x-searchable":true},
  "name":{"type":"string","x-pii":true},
  "phone":{"type":"string","x-pii":true},
  "notes":{"type":"string"}}}`

// validatedSchema has piiSchema's fields without the annotations that make
// the Guard seal: records are validated and nothing else, which separates
// the cost of validation from the cost of sealing.
const validatedSchema = `{"type":"object","properties":{
  "id":{"type":"integer"},
  "email":{"type":"string"},
  "name":{"type":"string"},
  "phone":{"type":"string"},
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
// master key and a schema registry holding the records' schema.
type privacyLayer struct {
	guard *privacy.Guard
	keys  *keystore.Store
}

func openPrivacy(ctx context.Context, dir, schemaText string) (*privacyLayer, error) {
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
		_, _, err = reg.Put(ctx, "crm.public.customers", []byte(schemaText))
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

// piiRates are the durable rates (medians of rounds) of appending the same PII records to a
// log without its index: with no sealer, through the Guard with a schema
// that only validates them, and with their three personal fields sealed.
type piiRates struct {
	plain, validated, sealed float64
	// sealedBytes is the stored size of the figure's first record sealed.
	sealedBytes int
	// sealedRatios are each round's sealed over unsealed rate.
	sealedRatios []float64
	// pipelinedPlain and pipelinedSealed are the same records appended
	// through capture's acknowledger (pipelinedAppends), and
	// pipelinedRatios each round's sealed over unsealed rate that way.
	pipelinedPlain, pipelinedSealed float64
	pipelinedRatios                 []float64
}

// piiModes are the set-ups piiAppends measures, in the order it runs them
// (as privacy's BenchmarkAppendPII does: unsealed first): the schema the
// Guard holds, or "" for a log without one.
var piiModes = [...]struct{ name, schema string }{{"plain", ""}, {"validated", validatedSchema}, {"sealed", piiSchema}}

// piiLog opens a log in dir for one of piiModes, and returns what closes
// them.
func piiLog(ctx context.Context, dir, schemaText string) (*logstore.Store, func(), error) {
	lopts := logstore.Options{Origin: "bench.stele.local/log"}
	var p *privacyLayer
	if schemaText != "" {
		var err error
		if p, err = openPrivacy(ctx, dir, schemaText); err != nil {
			return nil, nil, fmt.Errorf("privacy layer: %w", err)
		}
		lopts.Sealer = p.guard
	}
	store, err := logstore.Open(ctx, filepath.Join(dir, "log"), lopts)
	if err != nil {
		if p != nil {
			p.close()
		}
		return nil, nil, err
	}
	return store, func() {
		store.Close()
		if p != nil {
			p.close()
		}
	}, nil
}

// piiRounds is how many rounds piiAppends measures each mode in: one
// pass per mode swings with whatever else the machine does meanwhile.
const piiRounds = 3

// piiAppends measures piiRates: piiRounds rounds, each appending a third
// of the records in every mode, the modes in an order that rotates from
// round to round; the rates are the medians, and sealedRatios each round's
// sealed over unsealed rate.
func piiAppends(ctx context.Context, opts Options) (piiRates, error) {
	// 1,000 subjects, so sealing creates keys in the first batch and then
	// reuses them, as a table of customers would.
	templates := make([]record.Record, 1000)
	for i := range templates {
		templates[i] = *PIIRecord(i, i)
	}
	round := opts
	round.Throughput = max(1000, opts.Throughput/piiRounds)
	// rates[p][m] are mode m's rates from producer p: synchronous (0) or
	// pipelined (1).
	var rates [2][len(piiModes)][]float64
	var out piiRates
	for r := range piiRounds {
		var this [2][len(piiModes)]float64
		for k := range piiModes {
			m := (r + k) % len(piiModes)
			mode := piiModes[m]
			// Which producer goes first alternates by round.
			for _, p := range [...]int{r % 2, 1 - r%2} {
				if p == 1 && mode.name == "validated" {
					continue // its figure is printed for the synchronous producer only
				}
				name := mode.name + [...]string{"", "-pipelined"}[p]
				store, closeAll, err := piiLog(ctx, filepath.Join(opts.Dir, fmt.Sprintf("pii-%s-%d", name, r)), mode.schema)
				if err != nil {
					return piiRates{}, err
				}
				var elapsed time.Duration
				if p == 1 {
					elapsed, err = pipelinedAppends(ctx, round, store, templates, "pii "+name)
				} else {
					elapsed, err = timedAppends(ctx, round, store, 1, templates, "pii "+name)
				}
				closeAll()
				if err != nil {
					return piiRates{}, fmt.Errorf("%s: %w", name, err)
				}
				this[p][m] = float64(round.Throughput/1000*1000) / elapsed.Seconds()
				rates[p][m] = append(rates[p][m], this[p][m])
			}
		}
		out.sealedRatios = append(out.sealedRatios, this[0][2]/this[0][0])
		out.pipelinedRatios = append(out.pipelinedRatios, this[1][2]/this[1][0])
	}
	mid := func(v []float64) float64 { return median(v, func(x float64) float64 { return x }) }
	out.plain, out.validated, out.sealed = mid(rates[0][0]), mid(rates[0][1]), mid(rates[0][2])
	out.pipelinedPlain, out.pipelinedSealed = mid(rates[1][0]), mid(rates[1][2])
	var err error
	if out.sealedBytes, err = sealedSize(ctx, filepath.Join(opts.Dir, "pii-size")); err != nil {
		return piiRates{}, fmt.Errorf("sealed size: %w", err)
	}
	return out, nil
}

// pipelineDepth is how many appends pipelinedAppends keeps queued in the
// log (capture.AckOptions.Pipeline).
const pipelineDepth = 2

// pipelinedAppends appends opts.Throughput copies of templates (in
// batches of len(templates)) from one producer through capture's
// acknowledger, which queues the next batch in the log (AppendAsync)
// while the last is made durable, as the MariaDB source appends: sealing
// a batch then overlaps with writing the one before, where timedAppends'
// synchronous producer leaves the cores idle during each write. The
// producer builds at most one batch ahead (Queue 1).
func pipelinedAppends(ctx context.Context, opts Options, store *logstore.Store, templates []record.Record, phase string) (time.Duration, error) {
	batches := opts.Throughput / 1000
	start := time.Now()
	ack := capture.NewAcknowledger(ctx, capture.AckOptions[int]{Sink: store, BatchSize: len(templates), Queue: 1, Pipeline: pipelineDepth})
	defer ack.Stop()
	for b := range batches {
		if err := ack.Submit(ctx, batchOf(templates, b), b); err != nil {
			return 0, err
		}
		if b%20 == 0 {
			opts.Progress(phase, b, batches)
		}
	}
	if err := ack.Drain(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// sealedSize is the stored size of PIIRecord(0, 0) once sealed, as the
// log stores it (schema reference included).
func sealedSize(ctx context.Context, dir string) (int, error) {
	p, err := openPrivacy(ctx, dir, piiSchema)
	if err != nil {
		return 0, err
	}
	defer p.close()
	r := PIIRecord(0, 0)
	if err := p.guard.Seal(ctx, r); err != nil {
		return 0, err
	}
	return len(record.Encode(r)), nil
}

// eraseOne appends n sealed records that all name one subject to a log
// with its index, as serve runs it, and times that subject's erasure.
func eraseOne(ctx context.Context, opts Options, n int) (time.Duration, error) {
	dir := filepath.Join(opts.Dir, "erase")
	p, err := openPrivacy(ctx, dir, piiSchema)
	if err != nil {
		return 0, fmt.Errorf("privacy layer: %w", err)
	}
	defer p.close()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		return 0, err
	}
	defer ix.Close()
	store, err := logstore.Open(ctx, filepath.Join(dir, "log"), logstore.Options{Origin: "bench.stele.local/log", Hook: ix, Sealer: p.guard})
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
