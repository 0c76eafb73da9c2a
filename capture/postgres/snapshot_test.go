package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/record"
)

// lookupStore is the real store whose index answers IDLookup.
type lookupStore struct{ *testStore }

func (l lookupStore) HasID(ctx context.Context, id string) (bool, error) {
	if err := l.WaitIndexed(ctx, l.Size()); err != nil {
		return false, err
	}
	_, ok, err := l.ix.LookupID(id)
	return ok, err
}

func TestSnapshot(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})

	t.Run("TypesMatchStream", func(t *testing.T) {
		const row = `-5, 9223372036854775807, 12345678901234567890.123456789012345678901234567890,
			true, 'héllo "q" <x>', '2026-01-02 03:04:05.123456+02', '2026-01-02',
			'{"b": 2, "a": [1, "x"]}', '{"b": 2, "a": [1, "x"]}', '{1,2,NULL}', '{"a","b c"}',
			'\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL, 1.5::float8`
		url := newDB(t, srv, "snaptypes", `CREATE TABLE typed (
			id int PRIMARY KEY, i2 int2, i8 int8, n numeric, b bool, t text, ts timestamptz, d date,
			j json, jb jsonb, ia int[], ta text[], by bytea, u uuid, nul text, f float8)`,
			`INSERT INTO typed VALUES (1, `+row+`)`,
			`CREATE TABLE nopk (a int, b text)`,
			`INSERT INTO nopk VALUES (2, 'y'), (1, 'x')`)
		ts := openStore(t, t.TempDir())
		cfg := Config{ConnString: url, Snapshot: SnapshotInitial}
		startReady(t, cfg, lookupStore{ts})
		execIn(t, url, `INSERT INTO typed VALUES (2, `+row+`)`)
		recs := ts.records(t, 5)
		if len(recs) != 5 {
			t.Fatalf("got %d records, want 5", len(recs))
		}
		// Tables in schema.table order: nopk (by full row), then typed;
		// then the marker, then the streamed insert.
		wantKeys := []string{`{"a":1,"b":"x"}`, `{"a":2,"b":"y"}`, `{"id":1}`, `{"$snapshot":"complete"}`, `{"id":2}`}
		for i, r := range recs {
			if string(r.Key) != wantKeys[i] {
				t.Errorf("record %d key %s, want %s", i, r.Key, wantKeys[i])
			}
		}
		pos := recs[0].Tx.Position
		for i, r := range recs[:3] {
			if r.Op != record.OpSnapshot || r.Tx == nil || r.Tx.Position != pos || *r.Tx.Index != int64(i) || r.ID != record.DeriveChangeID(r) || r.Before != nil {
				t.Errorf("snapshot record %d: op %s tx %+v", i, r.Op, r.Tx)
			}
		}
		if recs[3].Op != record.OpSnapshot || recs[3].Source.Table != "$snapshot" {
			t.Errorf("marker = %+v", recs[3])
		}
		snap, ins := fields(t, recs[2].After), fields(t, recs[4].After)
		if recs[4].Op != record.OpInsert || len(snap) != 16 {
			t.Fatalf("insert op %s; snapshot image %v", recs[4].Op, snap)
		}
		for k, v := range snap {
			if k != "id" && ins[k] != v {
				t.Errorf("column %s: snapshot %s, streamed %s", k, v, ins[k])
			}
		}
		for _, r := range []*record.Record{recs[2], recs[4]} {
			if r.Schema == nil || *r.Schema != (record.SchemaRef{Subject: "snaptypes.public.typed", Version: 1}) {
				t.Errorf("%s record: schema %+v", r.Op, r.Schema)
			}
		}
		if snap["ts"] != `"2026-01-02T01:04:05.123456Z"` || snap["by"] != `"3q2+7w=="` || snap["ia"] != "[1,2,null]" {
			t.Errorf("snapshot types: %v", snap)
		}
		// The streamed insert is written at or after the consistent point
		// (at it, when it is the first WAL record after the slot's
		// creation: its id still differs, a snapshot row's hashes that).
		p0, _ := parseLSN(pos)
		p1, _ := parseLSN(recs[4].Tx.Position)
		if p1 < p0 {
			t.Errorf("streamed position %s before the consistent point %s", recs[4].Tx.Position, pos)
		}
	})

	t.Run("ConcurrentWriter", func(t *testing.T) {
		const initial = 10000
		url := newDB(t, srv, "snapconc", `CREATE TABLE c (id int PRIMARY KEY, v int NOT NULL)`,
			fmt.Sprintf(`INSERT INTO c SELECT g, 0 FROM generate_series(1, %d) g`, initial))
		ts := openStore(t, t.TempDir())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		var werr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(context.Background(), url)
			if err != nil {
				werr = err
				return
			}
			defer conn.Close(context.Background())
			next := initial + 1
			rnd := rand.New(rand.NewPCG(1, 2))
			for ctx.Err() == nil {
				var q string
				if rnd.IntN(2) == 0 {
					q = fmt.Sprintf(`INSERT INTO c VALUES (%d, 0)`, next)
					next++
				} else {
					q = fmt.Sprintf(`UPDATE c SET v = v + 1 WHERE id = %d`, 1+rnd.IntN(next-1))
				}
				if _, err := conn.Exec(context.Background(), q); err != nil {
					werr = err
					return
				}
			}
		}()
		time.Sleep(100 * time.Millisecond)
		cfg := Config{ConnString: url, Snapshot: SnapshotInitial}
		startReady(t, cfg, lookupStore{ts})
		time.Sleep(300 * time.Millisecond)
		cancel()
		wg.Wait()
		if werr != nil {
			t.Fatalf("writer: %v", werr)
		}
		// Ground truth, then wait for the log to catch up with it: the
		// marker makes the count one larger than the key count.
		truth, err := pgxQuery(url, `SELECT id, v FROM c`)
		if err != nil {
			t.Fatal(err)
		}
		var updates int
		for _, v := range truth {
			updates += v
		}
		var inserted int
		for id := range truth {
			if id > initial {
				inserted++
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			recs := ts.records(t, 0)
			state := map[int]int{}
			seen := map[int][]string{}
			for _, r := range recs {
				if r.Source.Table != "c" {
					continue
				}
				var k struct{ ID int }
				var a struct{ V int }
				if json.Unmarshal(r.Key, &k) != nil || json.Unmarshal(r.After, &a) != nil {
					t.Fatalf("record %s %s", r.Key, r.After)
				}
				prev, had := state[k.ID]
				switch {
				case r.Op == record.OpSnapshot || r.Op == record.OpInsert:
					if had {
						t.Fatalf("key %d captured twice (%s after %v)", k.ID, r.Op, seen[k.ID])
					}
				case r.Op == record.OpUpdate:
					if !had || a.V != prev+1 {
						t.Fatalf("key %d: update to v=%d after %v (v=%d): gap or double", k.ID, a.V, seen[k.ID], prev)
					}
				}
				state[k.ID] = a.V
				seen[k.ID] = append(seen[k.ID], string(r.Op)+"="+strconv.Itoa(a.V))
			}
			equal := len(state) == len(truth)
			for id, v := range truth {
				if state[id] != v {
					equal = false
				}
			}
			if equal {
				var streamed int
				for _, r := range recs {
					if r.Op == record.OpInsert || r.Op == record.OpUpdate {
						streamed++
					}
				}
				if streamed == 0 {
					t.Fatalf("no change was streamed after the snapshot")
				}
				t.Logf("%d records: %d streamed changes after the snapshot; %d inserts and %d updates in all", len(recs), streamed, inserted, updates)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("log state (%d keys) never matched the table (%d keys)", len(state), len(truth))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("IncompleteSnapshotRedone", func(t *testing.T) {
		url := newDB(t, srv, "snapredo", `CREATE TABLE r (id int PRIMARY KEY)`,
			`INSERT INTO r VALUES (1), (2)`,
			`CREATE PUBLICATION stele_snapredo FOR ALL TABLES`,
			// A slot left by a snapshot that never completed.
			`SELECT pg_create_logical_replication_slot('stele_snapredo', 'pgoutput')`)
		ts := openStore(t, t.TempDir())
		cfg := Config{ConnString: url, Snapshot: SnapshotInitial}
		r := startReady(t, cfg, lookupStore{ts})
		recs := ts.records(t, 3)
		if recs[0].Op != record.OpSnapshot || recs[2].Source.Table != "$snapshot" {
			t.Fatalf("records %s %s", recs[0].Op, recs[2].Key)
		}
		r.stop()
		// A restart after the complete snapshot streams on.
		startReady(t, cfg, lookupStore{ts})
		execIn(t, url, `INSERT INTO r VALUES (3)`)
		recs = ts.records(t, 4)
		if len(recs) != 4 || recs[3].Op != record.OpInsert {
			t.Fatalf("after restart: %d records, last %s", len(recs), recs[len(recs)-1].Op)
		}
	})
}

func parseLSN(s string) (uint64, error) {
	var hi, lo uint64
	_, err := fmt.Sscanf(s, "%X/%X", &hi, &lo)
	return hi<<32 | lo, err
}
