package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/record"
)

// pgCapture is a throwaway PostgreSQL under a continuous write workload
// that one node of the fixture captures. Each transaction inserts a row
// and increments v of an earlier one, so the table is its own ground
// truth: row id was inserted once and updated v times.
type pgCapture struct {
	f    *fixture
	url  string
	node int // the node whose configuration names the source

	stop atomic.Bool
	wg   sync.WaitGroup
	err  error
	txs  int64
}

// pgSource is the source's name (the database's): the records' source
// name, the replication slot's suffix.
const pgSource = "shop"

// newPostgres starts the server with its database and table; the source
// it returns goes to newFixture for node (then set c.f).
func newPostgres(t *testing.T, node int) (*pgCapture, nodeArgs) {
	t.Helper()
	srv := pgtest.Start(t, pgtest.Options{})
	srv.Exec(t, "CREATE DATABASE "+pgSource)
	c := &pgCapture{node: node, url: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", srv.Port, pgSource)}
	if err := c.exec(`CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	return c, nodeArgs{node, []string{"--source", c.url}}
}

// withConn runs fn on a new connection to the database.
func (c *pgCapture) withConn(fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return fn(ctx, conn)
}

func (c *pgCapture) exec(q string) error {
	return c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, q)
		return err
	})
}

func (c *pgCapture) query(q string, dst ...any) error {
	return c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, q).Scan(dst...)
	})
}

// start waits until the node holds the replication slot, then commits
// transactions one after another (a few hundred a second: the point is
// kills under load, not throughput) until end.
func (c *pgCapture) start() {
	t := c.f.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var active bool
		err := c.query(`SELECT active FROM pg_replication_slots WHERE slot_name = 'stele_`+pgSource+`'`, &active)
		if err == nil && active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d never took the replication slot (%v)", c.node, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.wg.Go(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, c.url)
		if err != nil {
			c.err = err
			return
		}
		defer conn.Close(ctx)
		for n := int64(1); !c.stop.Load(); n++ {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO items (id) VALUES ($1)`, n); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE items SET v = v + 1 WHERE id = $1`, 1+rand.Int64N(n))
				return err
			})
			if err != nil {
				c.err = err
				return
			}
			c.txs = n
			time.Sleep(2 * time.Millisecond)
		}
	})
}

// end stops the workload, commits a last row (id 0) and waits until the
// capturing node's index has it: the source appends in commit order, so
// that node's copy then holds every committed change. It returns the
// size of that node's checkpoint then, for fixture.settle.
func (c *pgCapture) end() uint64 {
	t := c.f.t
	t.Helper()
	c.stop.Store(true)
	c.wg.Wait()
	if c.err != nil {
		t.Fatalf("workload: %v", c.err)
	}
	if err := c.exec(`INSERT INTO items (id) VALUES (0)`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if c.has0() {
			return c.f.checkpoint(c.node).size
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d's log never got the last committed row", c.node)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *pgCapture) has0() bool {
	resp, err := http.Get("http://" + c.f.nodes[c.node].Addr() + "/v1/entities/" + pgSource + "/items/0/history")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var page struct {
		Records []json.RawMessage `json:"records"`
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && json.Unmarshal(b, &page) == nil && len(page.Records) > 0
}

// check compares the log's captured records with the table, row by row:
// one insert each and as many updates as v says, nothing else.
func (c *pgCapture) check(recs []*record.Record) {
	t := c.f.t
	t.Helper()
	truth := map[int64]int{}
	err := c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT id, v FROM items`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			var v int
			if err := rows.Scan(&id, &v); err != nil {
				return err
			}
			truth[id] = v
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("read the table: %v", err)
	}
	inserts, updates := map[int64]int{}, map[int64]int{}
	captured := 0
	for _, r := range recs {
		if r.Source.Name != pgSource || r.Source.Table != "items" {
			continue
		}
		captured++
		var key struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(r.Key, &key); err != nil {
			t.Fatalf("seq %d: key %s: %v", r.Seq, r.Key, err)
		}
		switch r.Op {
		case record.OpInsert:
			inserts[key.ID]++
		case record.OpUpdate:
			updates[key.ID]++
		default:
			t.Fatalf("seq %d: unexpected op %s on items", r.Seq, r.Op)
		}
	}
	want := 0
	for id, v := range truth {
		want += 1 + v
		if inserts[id] != 1 || updates[id] != v {
			t.Errorf("row %d: %d inserts and %d updates in the log, want 1 and %d", id, inserts[id], updates[id], v)
		}
	}
	if len(inserts) != len(truth) || captured != want {
		t.Errorf("log holds %d captured changes of %d rows; the table has %d rows and %d changes", captured, len(inserts), len(truth), want)
	}
	t.Logf("%d committed transactions, %d captured changes, each in the log once", len(truth)-1, captured)
}
