package postgres

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// TestIDSchemeMigration: a log written by the code before change ids
// (commit ids, no scheme recorded), then the new code on the same log and
// slot, which replays the old transactions (a slot copied before them
// replays exactly what a crash before the acknowledgement would): nothing
// is stored twice, the new changes get change ids, the decision is
// recorded, a second replay across both schemes stores nothing either,
// and going back to commit ids is refused.
func TestIDSchemeMigration(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := newDB(t, srv, "mig", `CREATE TABLE items (id int PRIMARY KEY, v text)`)
	ts := openStore(t, t.TempDir())

	// The old code: commit ids, nothing recorded (it had no state
	// directory for a PostgreSQL source).
	r := startReady(t, Config{Name: "mig", ConnString: url, IDScheme: IDSchemeCommit}, ts)
	execIn(t, url, `SELECT pg_copy_logical_replication_slot('stele_mig', 'stele_mig_replay')`)
	execIn(t, url, `INSERT INTO items VALUES (1, 'a'), (2, 'b')`, `UPDATE items SET v = 'a2' WHERE id = 1`)
	old := ts.records(t, 3)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	for _, rec := range old {
		if rec.ID != record.DeriveID(rec) {
			t.Fatalf("the old run's record %s has no commit id", rec.Key)
		}
	}

	// The upgrade.
	state := t.TempDir()
	execIn(t, url, `SELECT pg_copy_logical_replication_slot('stele_mig_replay', 'stele_mig_replay2')`)
	dc := &dupCounter{Sink: ts}
	cfg := Config{Name: "mig", ConnString: url, Slot: "stele_mig_replay", StateDir: state}
	r = startReady(t, cfg, dc)
	execIn(t, url, `INSERT INTO items VALUES (3, 'c')`)
	recs := ts.records(t, 4)
	waitDups(t, dc, 3)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if ts.Size() != 4 {
		t.Fatalf("the log holds %d records after the replay across the upgrade, want 4", ts.Size())
	}
	if n := recs[3]; string(n.Key) != `{"id":3}` || n.ID != record.DeriveChangeID(n) {
		t.Errorf("the new change %s: id %s is not its change id", n.Key, n.ID)
	}
	ps, err := capture.OpenPositions(filepath.Join(state, "positions"))
	if err != nil {
		t.Fatal(err)
	}
	scheme, _ := ps.Get(posKeyIDScheme)
	fromText, _ := ps.Get(posKeyIDFrom)
	from, err := pglogrepl.ParseLSN(fromText)
	if scheme != IDSchemeChange || err != nil || from == 0 {
		t.Fatalf("recorded scheme %q from %q (%v), want change from the WAL position at the upgrade", scheme, fromText, err)
	}

	// A second replay, from before the old transactions, with the
	// recorded scheme: both kinds of id are derived again.
	dc2 := &dupCounter{Sink: ts}
	cfg.Slot = "stele_mig_replay2"
	r = startReady(t, cfg, dc2)
	waitDups(t, dc2, 4)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if ts.Size() != 4 {
		t.Fatalf("the log holds %d records after the second replay, want 4", ts.Size())
	}

	cfg.IDScheme = IDSchemeCommit
	r = start(t, cfg, ts)
	if err := r.wait(t); !errors.Is(err, ErrConfig) {
		t.Errorf("going back to commit ids: %v, want ErrConfig", err)
	}
}

func waitDups(t *testing.T, dc *dupCounter, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for dc.dups.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d duplicates reported, want %d: the replay did not happen", dc.dups.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutbox: a transaction that inserts an outbox row of Debezium's
// layout, changes two rows and deletes the outbox row becomes one event and
// two changes caused by it, found by the cause filter.
func TestOutbox(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := newDB(t, srv, "obx",
		`CREATE TABLE orders (id int PRIMARY KEY, total numeric)`,
		`CREATE TABLE lines (id int PRIMARY KEY, order_id int, sku text)`,
		`CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype text, aggregateid text, type text, payload jsonb)`)
	ts := openStore(t, t.TempDir())
	startReady(t, Config{Name: "obx", ConnString: url, Outbox: "outbox", StateDir: t.TempDir()}, ts)
	execIn(t, url, `BEGIN;
		INSERT INTO orders VALUES (7, 12.50);
		INSERT INTO outbox VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'order', '7', 'OrderPlaced', '{"total": 12.5}');
		INSERT INTO lines VALUES (70, 7, 'sku-1');
		DELETE FROM outbox;
		COMMIT`)
	recs := ts.records(t, 3)
	ev := capturetest.CheckOutbox(t, recs, "OrderPlaced", query.New(ts.Store, ts.ix))
	if ev.Source.Table != "outbox" || ev.ID != record.DeriveChangeID(ev) {
		t.Errorf("event %s.%s id %s: want the outbox row's change id", ev.Source.Schema, ev.Source.Table, ev.ID)
	}
}

// TestStreamedChangesCarryTheirLSN checks on a real server what change ids
// rely on should streaming of in-progress transactions (protocol v2,
// streaming 'on', which Stele does not ask for today) ever be used: each
// change streamed before its transaction commits arrives with the WALStart
// of its own WAL record, the LSN a non-streaming reader (test_decoding
// here, Debezium's source.lsn) reports for it.
func TestStreamedChangesCarryTheirLSN(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := newDB(t, srv, "strm", `CREATE TABLE big (id int PRIMARY KEY, pad text)`, `CREATE PUBLICATION strm FOR TABLE big`,
		`SELECT pg_create_logical_replication_slot('strm_td', 'test_decoding')`,
		`SELECT pg_create_logical_replication_slot('strm_po', 'pgoutput')`)
	const rows = 2000
	execIn(t, url, fmt.Sprintf(`INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, %d) g`, rows))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The reference: each row's LSN from test_decoding.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	want := map[string]pglogrepl.LSN{}
	for deadline := time.Now().Add(10 * time.Second); len(want) < rows && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		res, err := conn.Query(ctx, `SELECT lsn::text, data FROM pg_logical_slot_peek_changes('strm_td', NULL, NULL)`)
		if err != nil {
			t.Fatal(err)
		}
		for res.Next() {
			var lsn, data string
			if err := res.Scan(&lsn, &data); err != nil {
				t.Fatal(err)
			}
			if m := regexp.MustCompile(`^table public\.big: INSERT: id\[integer\]:(\d+)`).FindStringSubmatch(data); m != nil {
				want[m[1]], _ = pglogrepl.ParseLSN(lsn)
			}
		}
		res.Close()
	}
	if len(want) != rows {
		t.Fatalf("test_decoding reports %d rows, want %d", len(want), rows)
	}

	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	// The smallest memory a transaction may use before it is streamed.
	cfg.RuntimeParams["logical_decoding_work_mem"] = "64kB"
	repl, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	if err := pglogrepl.StartReplication(ctx, repl, "strm_po", 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '2'", "publication_names 'strm'", "streaming 'on'"}}); err != nil {
		t.Fatal(err)
	}
	inStream, streamed, checked := false, 0, 0
	for checked < rows {
		raw, err := repl.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("after %d rows: %v", checked, err)
		}
		cd, ok := raw.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatal(err)
		}
		msg, err := pglogrepl.ParseV2(xld.WALData, inStream)
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pglogrepl.StreamStartMessageV2:
			inStream = true
		case *pglogrepl.StreamStopMessageV2:
			inStream = false
		case *pglogrepl.InsertMessageV2:
			id := string(m.Tuple.Columns[0].Data)
			if xld.WALStart != want[id] {
				t.Fatalf("row %s (in a stream: %v): WALStart %s, test_decoding %s", id, inStream, xld.WALStart, want[id])
			}
			if inStream {
				streamed++
			}
			checked++
		}
	}
	if streamed == 0 {
		t.Fatal("no change was streamed before its commit: the test checks nothing")
	}
	t.Logf("%d rows, %d of them streamed in progress, each with its own LSN as WALStart", checked, streamed)
}
