// Package capturetest is the conformance suite every change-data-capture
// source runs against its real backend, modelled on litestream's
// RunWithReplicaClient: a source's test implements Harness (start the
// backend, make changes, build a source, restart the upstream) and calls
// Run, which runs the same behavioural cases for every source:
//
//   - Ops: every insert, update and delete lands once with the right key,
//     before and after images and changed fields.
//   - Types: the harness's typed fixture row lands with the expected JSON.
//   - Transactions: the records of one upstream transaction share its tx id
//     and position, are numbered in order and stored together.
//   - Actor: an actor given with a transaction is on each of its records
//     and on no other.
//   - Truncate, DDL: where the upstream has them, one record each, in order.
//   - ExactlyOnceAcrossCrashes: the source is crashed in-process at random
//     record counts (its context canceled and the store closed mid-append,
//     sometimes after part of a batch was stored), the real store reopened
//     from its directory, the source restarted; in the end every change is
//     stored exactly once and none is missing. The seed is logged, and
//     CAPTURETEST_SEED replays it.
//   - UpstreamRestart: the upstream restarts while the source streams; no
//     change is lost or stored twice.
//   - BadCredentials: a source with bad credentials ends with one clear
//     error naming the cause while a good source on the same sink keeps
//     capturing.
//   - PositionsNeverAhead: the upstream never holds an acknowledged
//     position covering a record that is not yet durable (every case checks
//     this on every append; this one slows the sink down to widen the
//     window), and the acknowledged position does reach every durable
//     record in the end.
//
// The sink is always the real store, logstore with its index (which
// recognises ids stored by an earlier commit), opened on t.TempDir(),
// behind a checking wrapper. The suite imports the store: it is test
// support, imported only by test files (imports_test.go enforces
// that), so the rule that sources never know the store still holds for
// every source itself.
//
// A harness that lacks a capability (no actor context, no DDL events)
// declares it in Unsupported with the reason; those cases are skipped
// saying so, never passed silently.
package capturetest

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/record"
)

// Capability names what a source may lack; a case needing it is skipped
// with the harness's reason.
type Capability string

// The capabilities the cases need.
const (
	// Transactions: several changes in one upstream transaction.
	Transactions Capability = "transactions"
	// Actor: an actor carried with a transaction (Tx.Actor).
	Actor Capability = "actor"
	// Truncate: Upstream.Truncate.
	Truncate Capability = "truncate"
	// DDL: Upstream.DDL.
	DDL Capability = "ddl"
	// Types: Upstream.WriteTyped.
	Types Capability = "types"
	// BadCredentials: Upstream.Source(t, true) and CheckCredentialError.
	BadCredentials Capability = "bad credentials"
	// UpstreamRestart: Upstream.Restart.
	UpstreamRestart Capability = "upstream restart"
)

// Harness adapts one kind of source to the suite.
type Harness interface {
	// Kind is the source.kind of the records ("postgres", "http").
	Kind() string
	// Unsupported maps each capability the source lacks to the reason
	// (which must not be empty).
	Unsupported() map[Capability]string
	// Start starts the backend once for the whole suite; it stops in
	// t.Cleanup.
	Start(t *testing.T)
	// Open prepares a fresh upstream for one case, isolated from every
	// other (a database of its own, say) and holding the suite's table,
	// empty: a bigint key column id and a text column v.
	Open(t *testing.T) Upstream
}

// Upstream is one case's upstream and the sources reading it.
type Upstream interface {
	// Name is the source.name its records carry.
	Name() string
	// Table is the source.table of the suite's table.
	Table() string
	// Source builds a new source of this upstream, as a restarted
	// process would (no state kept in memory from an earlier one); with
	// bad, its credentials are wrong. Records must carry full before
	// images (REPLICA IDENTITY FULL or the upstream's equivalent).
	Source(t *testing.T, bad bool) capture.Source
	// Ready returns once the source just started (with good
	// credentials) captures every change made from now on.
	Ready(t *testing.T)
	// Apply makes tx's changes upstream, in one upstream transaction,
	// committed when it returns (or, for an upstream that sends
	// asynchronously, queued in order). Safe for concurrent use.
	Apply(ctx context.Context, tx Tx) error
	// Acknowledged reports the position the upstream now holds as
	// acknowledged by the source (a replication slot's confirmed flush
	// position, the positions a source saved, the batches a client saw
	// answered): covers(r) is true when the upstream will never send r
	// again, so r must be durable already.
	Acknowledged(ctx context.Context) (covers func(*record.Record) bool, err error)
	// Restart restarts the upstream (the server, the client's
	// connections) while a source runs.
	Restart(t *testing.T)
	// Truncate empties the suite's table in one transaction.
	Truncate(ctx context.Context) error
	// DDL changes the suite's table's definition (adds a nullable
	// column; later images may carry it).
	DDL(ctx context.Context) error
	// WriteTyped writes the harness's typed fixture row and says what to
	// expect of it.
	WriteTyped(ctx context.Context) (TypedRow, error)
	// CheckCredentialError checks the error Run of a bad-credentials
	// source returned: that it names the cause and the fix and reveals
	// no secret.
	CheckCredentialError(t *testing.T, err error)
}

// Tx is one upstream transaction of changes to the suite's table.
type Tx struct {
	Changes []Change
	// Actor, when set, is the transaction's actor (an object of strings).
	Actor map[string]string
}

// Change is one row change in the suite's table.
type Change struct {
	// Op is record.OpInsert, OpUpdate or OpDelete.
	Op record.Op
	// ID is the row's key.
	ID int64
	// V is column v's new value (insert and update).
	V string
}

// TypedRow is what WriteTyped wrote: the record of Table keyed Key
// (canonical JSON) must have after[column] == Want[column] (canonical
// JSON) for every column, and no other column.
type TypedRow struct {
	Table string
	Key   string
	Want  map[string]string
}

// Timeouts of the suite.
const (
	waitRecords = 30 * time.Second
	waitStop    = 30 * time.Second
)

// SeedEnv names the environment variable that replays a run's seed.
const SeedEnv = "CAPTURETEST_SEED"

type testCase struct {
	name  string
	needs []Capability
	run   func(e *env)
}

var cases = []testCase{
	{"Ops", nil, testOps},
	{"Types", []Capability{Types}, testTypes},
	{"Transactions", []Capability{Transactions}, testTransactions},
	{"Actor", []Capability{Actor}, testActor},
	{"Truncate", []Capability{Truncate}, testTruncate},
	{"DDL", []Capability{DDL}, testDDL},
	{"ExactlyOnceAcrossCrashes", nil, testExactlyOnce},
	{"UpstreamRestart", []Capability{UpstreamRestart}, testUpstreamRestart},
	{"BadCredentials", []Capability{BadCredentials}, testBadCredentials},
	{"PositionsNeverAhead", nil, testPositionsNeverAhead},
}

// Run runs the conformance suite against h, one subtest per case.
func Run(t *testing.T, h Harness) {
	unsupported := h.Unsupported()
	for c, reason := range unsupported {
		if reason == "" {
			t.Fatalf("harness declares %q unsupported without a reason", c)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(SeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", SeedEnv, s)
		}
		seed = n
	}
	t.Logf("capturetest seed %d (replay with %s=%d)", seed, SeedEnv, seed)
	h.Start(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, need := range c.needs {
				if reason, ok := unsupported[need]; ok {
					t.Skipf("source kind %s lacks %s: %s", h.Kind(), need, reason)
				}
			}
			e := newEnv(t, h, unsupported, rand.New(rand.NewPCG(seed, uint64(i))))
			c.run(e)
		})
	}
}

// canonicalActor is the JSON an actor must be stored as.
func canonicalActor(a map[string]string) string {
	if a == nil {
		return ""
	}
	b, _ := json.Marshal(a) // map keys sorted
	return string(b)
}

// sortedKeys is the sorted member names of a JSON object.
func sortedKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
