package query_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stele/stele/bench"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// benchLog appends n records of bench.Record (one a second, 500 actors),
// as scripts/query10m builds its log, and returns them as stored.
func benchLog(t *testing.T, v *env, n int) []*record.Record {
	t.Helper()
	for b := 0; b < n; b += 1000 {
		recs := make([]*record.Record, min(1000, n-b))
		for i := range recs {
			recs[i] = bench.Record(b+i, max(n/10, 1))
		}
		v.append(t, recs...)
	}
	return v.all(t)
}

// The report of "actor + 24 h window returns 0 rows" at 20k records
// (scripts/query10m): the engine's answers equal a brute-force filter over
// the log, pages and all. A window that starts after the actor's last
// record rightly holds none: at 20k records (5.5 hours) a random start
// falls in the last 500 s, after every record of one of the 500 actors,
// one time in 40.
func TestActorTimeWindowMatchesBruteForce(t *testing.T) {
	v := newEnv(t)
	const n = 20_000
	all := benchLog(t, v, n)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	first, last := all[0].OccurredAt, all[n-1].OccurredAt
	for q := 0; q < 50; q++ {
		from := first.Add(time.Duration(rng.Int64N(int64(last.Sub(first)) + 1)))
		f := query.Filter{Actor: "user-" + strconv.Itoa(rng.IntN(500)), Since: from, Until: from.Add(24 * time.Hour)}
		if q%5 == 0 {
			f.Until = from.Add(10 * time.Minute)
		}
		for _, order := range []query.Order{query.Desc, query.Asc} {
			got := collect(t, 100, func(c string) (*query.Page, error) {
				return v.e.Records(ctx, f, query.PageRequest{Order: order, Limit: 100, Cursor: c})
			})
			if want := expected(all, f, order); !slices.Equal(seqsOf(got), want) {
				t.Fatalf("%+v order %v: got %v, want %v", f, order, seqsOf(got), want)
			}
		}
	}
	// The window's bounds: since inclusive, until exclusive, on
	// occurred_at, whatever the zone they are given in.
	at := all[7_777].OccurredAt
	east := time.FixedZone("UTC+5", 5*3600)
	f := query.Filter{Actor: all[7_777].ActorID(), Since: at.In(east), Until: at.Add(500 * time.Second).In(east)}
	p, err := v.e.Records(ctx, f, query.PageRequest{Order: query.Asc})
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(p.Records); !slices.Equal(got, []uint64{7_777}) {
		t.Fatalf("window [seq 7777's time, +500 s) of its actor: got %v, want [7777]", got)
	}
}

// A time window far back in a long log: its first page holds the window's
// newest records. A scan of the log (or of a table's list) from its end
// used to spend the page's budget of index entries (100,000) before
// reaching the window, and answered an empty page with a cursor.
func TestTimeWindowFarBackFillsTheFirstPage(t *testing.T) {
	v := newEnv(t)
	all := benchLog(t, v, 104_000)
	ctx := context.Background()
	since := all[1_000].OccurredAt
	for _, f := range []query.Filter{
		{Since: since, Until: since.Add(10 * time.Minute)},
		{Source: "crm", Table: "customers", Since: since, Until: since.Add(10 * time.Minute)},
		{Actor: "user-7", Since: since, Until: since.Add(24 * time.Hour)},
		{Until: all[150].OccurredAt},
	} {
		for _, order := range []query.Order{query.Desc, query.Asc} {
			p, err := v.e.Records(ctx, f, query.PageRequest{Order: order, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			want := expected(all, f, order)
			if len(want) > 100 {
				want = want[:100]
			}
			if !slices.Equal(seqsOf(p.Records), want) {
				t.Fatalf("%+v order %v: first page %v, want %v", f, order, seqsOf(p.Records), want)
			}
		}
	}
}

// Random windows, alone and with an actor or a table, over a log whose
// occurred_at is only roughly in log order (jitter, and a few records of
// long ago, as snapshots carry): every page equals a brute-force filter
// over the log, in both orders.
func TestTimeWindowsMatchBruteForce(t *testing.T) {
	v := newEnv(t)
	const n = 9_000
	rng := rand.New(rand.NewPCG(3, 5))
	for b := 0; b < n; b += 1000 {
		recs := make([]*record.Record, 1000)
		for i := range recs {
			r := bench.Record(b+i, 3000)
			r.Source.Table = []string{"customers", "orders"}[rng.IntN(2)]
			r.OccurredAt = r.OccurredAt.Add(time.Duration(rng.IntN(600)-300) * time.Second)
			if rng.IntN(50) == 0 {
				r.OccurredAt = r.OccurredAt.AddDate(0, -rng.IntN(24), 0)
			}
			recs[i] = r
		}
		v.append(t, recs...)
	}
	all := v.all(t)
	ctx := context.Background()
	first, last := bench.Record(0, 1).OccurredAt.AddDate(-2, 0, 0), bench.Record(n, 1).OccurredAt
	for q := 0; q < 20; q++ {
		since := first.Add(time.Duration(rng.Int64N(int64(last.Sub(first)))))
		if q < 10 { // half the windows in the recent, dense part of the log
			since = last.Add(-time.Duration(rng.Int64N(int64(n+600)) * int64(time.Second)))
		}
		window := []time.Duration{time.Second, 10 * time.Minute, time.Hour, 24 * time.Hour, 90 * 24 * time.Hour}[rng.IntN(5)]
		f := query.Filter{Since: since, Until: since.Add(window)}
		switch q % 5 {
		case 1:
			f.Actor = "user-" + strconv.Itoa(rng.IntN(500))
		case 2:
			f.Source, f.Table = "crm", "orders"
		case 3:
			f.Since = time.Time{}
		case 4:
			f.Until = time.Time{}
		}
		for _, order := range []query.Order{query.Desc, query.Asc} {
			want := expected(all, f, order)
			got := collect(t, 100, func(c string) (*query.Page, error) {
				return v.e.Records(ctx, f, query.PageRequest{Order: order, Limit: 100, Cursor: c})
			})
			if !slices.Equal(seqsOf(got), want) {
				t.Fatalf("%+v order %v: got %d records, want %d\n got  %v\n want %v", f, order, len(got), len(want), seqsOf(got), want)
			}
		}
	}
}
