package kafka

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/capture/debezium"
	"github.com/stele/stele/capture/debezium/dbztest"
	"github.com/stele/stele/capture/postgres"
	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"
)

// walChange is one change as the server reports it through a second
// logical slot (test_decoding): its own LSN, its transaction and what it
// did — the facts a Debezium PostgreSQL connector puts in source.lsn and
// source.txId.
type walChange struct {
	lsn      pglogrepl.LSN
	xid      int64
	op       string // c, u, d
	id       int64
	txLSN    pglogrepl.LSN // the BEGIN's LSN: Debezium's transaction id is "txId:lsn"
	order    int           // place in the transaction, from 1
	txEvents int
}

var tdRow = regexp.MustCompile(`^table public\.items: (INSERT|UPDATE|DELETE): id\[integer\]:(\d+)`)

// walChanges reads slot's changes (without consuming them) after from.
func walChanges(t *testing.T, conn *pgx.Conn, slot string, from pglogrepl.LSN) []walChange {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_peek_changes($1, NULL, NULL)`, slot)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out, tx []walChange
	var begin pglogrepl.LSN
	for rows.Next() {
		var lsnText, data string
		var xid int64
		if err := rows.Scan(&lsnText, &xid, &data); err != nil {
			t.Fatal(err)
		}
		lsn, err := pglogrepl.ParseLSN(lsnText)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(data, "BEGIN"):
			begin, tx = lsn, nil
		case strings.HasPrefix(data, "COMMIT"):
			for i := range tx {
				tx[i].txEvents = len(tx)
			}
			if begin >= from {
				out = append(out, tx...)
			}
		default:
			m := tdRow.FindStringSubmatch(data)
			if m == nil {
				t.Fatalf("test_decoding row %q", data)
			}
			id, _ := strconv.ParseInt(m[2], 10, 64)
			op := map[string]string{"INSERT": "c", "UPDATE": "u", "DELETE": "d"}[m[1]]
			tx = append(tx, walChange{lsn: lsn, xid: xid, op: op, id: id, txLSN: begin, order: len(tx) + 1})
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// debeziumMessages are the messages a Debezium PostgreSQL connector
// (JSON converter without schemas, provide.transaction.metadata=true)
// publishes for changes: BEGIN and END on the transaction topic, each
// change keyed by its primary key, a tombstone after a delete. values
// gives each row's column v after the change.
func debeziumMessages(prefix string, changes []walChange, values map[int64]string) []msg {
	var out []msg
	txTopic, topic := prefix+".transaction", prefix+".public.items"
	var last pglogrepl.LSN
	for i, c := range changes {
		txID := fmt.Sprintf("%d:%d", c.xid, uint64(c.txLSN))
		ts := time.Now().UnixMilli()
		if c.order == 1 {
			out = append(out, msg{Topic: txTopic, Key: dbztest.MustJSON(map[string]any{"id": txID}),
				Value: dbztest.MustJSON(map[string]any{"status": "BEGIN", "id": txID, "event_count": nil, "data_collections": nil, "ts_ms": ts})})
		}
		src := map[string]any{"version": "2.7.3.Final", "connector": "postgresql", "name": prefix, "ts_ms": ts,
			"snapshot": "false", "db": "crm", "sequence": fmt.Sprintf(`["%d","%d"]`, uint64(last), uint64(c.lsn)),
			"schema": "public", "table": "items", "txId": c.xid, "lsn": uint64(c.lsn), "xmin": nil}
		ev := map[string]any{"op": c.op, "source": src, "ts_ms": ts,
			"transaction": map[string]any{"id": txID, "total_order": c.order, "data_collection_order": c.order}}
		switch c.op {
		case "d":
			// Default replica identity: the key columns, the rest null.
			ev["before"], ev["after"] = map[string]any{"id": c.id, "v": nil}, nil
		default:
			ev["before"], ev["after"] = nil, map[string]any{"id": c.id, "v": values[c.id]}
		}
		key := dbztest.MustJSON(map[string]any{"id": c.id})
		out = append(out, msg{Topic: topic, Key: key, Value: dbztest.MustJSON(ev)})
		if c.op == "d" {
			out = append(out, msg{Topic: topic, Key: key, Value: nil})
		}
		if c.order == c.txEvents {
			out = append(out, msg{Topic: txTopic, Key: dbztest.MustJSON(map[string]any{"id": txID}),
				Value: dbztest.MustJSON(map[string]any{"status": "END", "id": txID, "event_count": c.txEvents,
					"data_collections": []any{map[string]any{"data_collection": "public.items", "event_count": c.txEvents}}, "ts_ms": ts})})
			last = changes[i].lsn
		}
	}
	return out
}

// TestMirroredPostgresIsOneRecord: the same PostgreSQL changes captured
// directly (capture/postgres) and as a Debezium PostgreSQL connector's
// messages on Kafka (kfake), built from the LSNs and transaction ids the
// server itself reports, into one log: each change is one record,
// whichever path brings it first — including the rows of one COPY, which
// share one WAL record's LSN.
func TestMirroredPostgresIsOneRecord(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	ctx := context.Background()
	srv.Exec(t, "CREATE DATABASE crm")
	if err := srv.ExecIn(ctx, "crm", `CREATE TABLE items (id int PRIMARY KEY, v text)`,
		`SELECT pg_create_logical_replication_slot('dbz', 'test_decoding')`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, srv.URL("crm"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	st := openStore(t)
	pgCfg := postgres.Config{Name: "crm", ConnString: srv.URL("crm"), StateDir: t.TempDir(),
		Heartbeat: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	direct := runPostgres(t, pgCfg, st)
	waitActive(t, conn, "stele_crm")

	values := map[int64]string{}
	exec := func(stmts ...string) {
		t.Helper()
		if err := srv.ExecIn(ctx, "crm", stmts...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`BEGIN; INSERT INTO items VALUES (1, 'a'), (2, 'b'); UPDATE items SET v = 'a2' WHERE id = 1; COMMIT`)
	values[1], values[2] = "a2", "b"
	// COPY writes its rows as one multi-insert WAL record: one LSN.
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "v"},
		pgx.CopyFromRows([][]any{{int32(10), "x"}, {int32(11), "y"}, {int32(12), "z"}})); err != nil {
		t.Fatal(err)
	}
	values[10], values[11], values[12] = "x", "y", "z"
	exec(`DELETE FROM items WHERE id = 2`)
	const directChanges = 7
	waitRecords(t, st, directChanges)
	direct()

	// One more change while the direct source is stopped: Kafka brings it
	// first, and the direct source's replay of it must store nothing.
	exec(`UPDATE items SET v = 'late' WHERE id = 11`)
	values[11] = "late"

	// The test server commits asynchronously: the slot sees the last
	// commit once the WAL writer flushed it.
	var changes []walChange
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if changes = walChanges(t, conn, "dbz", 0); len(changes) > directChanges || time.Now().After(deadline) {
			break
		}
	}
	if len(changes) != directChanges+1 {
		t.Fatalf("the server reports %d changes, want %d: %+v", len(changes), directChanges+1, changes)
	}
	shared := map[pglogrepl.LSN]int{}
	for _, c := range changes {
		shared[c.lsn]++
	}
	if len(shared) >= len(changes) {
		t.Fatalf("no two changes share an LSN: the COPY was not one multi-insert record, so the key's part in the id is untested (%+v)", changes)
	}

	b := startBroker(t)
	for _, topic := range []string{"dbserver1.public.items", "dbserver1.transaction"} {
		if err := b.cluster().CreateTopic(topic, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	msgs := debeziumMessages("dbserver1", changes, values)
	u := &debeziumTopics{b: b, prod: b.producer(t), offset: map[string]int64{}}
	if err := u.produce(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	// Every Debezium event decodes to the id the direct source stored.
	dec := debezium.Decoder{SourceName: "crm", ChangeIDs: true}
	stored := map[string]*record.Record{}
	for _, r := range allRecords(t, st) {
		stored[r.ID] = r
	}
	matched := 0
	for _, m := range msgs {
		ev, err := dec.Decode(m.Key, m.Value)
		if err != nil {
			t.Fatalf("decode %s: %v", m.Value, err)
		}
		if ev.Kind != debezium.Change {
			continue
		}
		if r, ok := stored[ev.Record.ID]; ok {
			matched++
			if r.Tx.Position != ev.Record.Tx.Position || string(r.Key) != string(ev.Record.Key) || r.Op != ev.Record.Op {
				t.Errorf("id %s: direct %s %s at %s, Debezium %s %s at %s", r.ID, r.Op, r.Key, r.Tx.Position, ev.Record.Op, ev.Record.Key, ev.Record.Tx.Position)
			}
		}
	}
	if matched != directChanges {
		t.Fatalf("%d of the %d directly captured changes have the id of their Debezium event", matched, directChanges)
	}

	kcfg := Config{Name: "crm-kafka", Mirrors: "crm", Brokers: []string{b.addr()}, Topics: []string{"dbserver1.public.items"},
		TransactionTopic: "dbserver1.transaction",
		SASL:             SASL{Mechanism: "PLAIN", User: saslUser, Password: saslPass},
		MinBackoff:       20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, SessionTimeout: 3 * time.Second}
	stopKafka := runSource(t, kcfg, st)
	waitRecords(t, st, directChanges+1)
	stopKafka()

	// The direct source resumes from its slot and sends the late update
	// again: stored already, under the same id.
	var end string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&end); err != nil {
		t.Fatal(err)
	}
	direct = runPostgres(t, pgCfg, st)
	waitConfirmed(t, conn, "stele_crm", end)
	direct()

	recs := allRecords(t, st)
	if len(recs) != directChanges+1 {
		for _, r := range recs {
			t.Logf("  %s %s %s %s %s", r.Source.Name, r.Op, r.Key, r.Tx.Position, r.ID)
		}
		t.Fatalf("the log holds %d records, want %d: a change captured both ways was stored twice", len(recs), directChanges+1)
	}
	late := recs[len(recs)-1]
	if late.Source.Name != "crm" || late.Op != record.OpUpdate || string(late.Key) != `{"id":11}` {
		t.Errorf("the Kafka-first record: source %s op %s key %s", late.Source.Name, late.Op, late.Key)
	}
}

func runPostgres(t *testing.T, cfg postgres.Config, st *logstore.Store) (stop func()) {
	t.Helper()
	src, err := postgres.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, st) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("postgres source: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitActive(t *testing.T, conn *pgx.Conn, slot string) {
	t.Helper()
	waitPG(t, conn, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active)`, slot)
}

func waitConfirmed(t *testing.T, conn *pgx.Conn, slot, lsn string) {
	t.Helper()
	waitPG(t, conn, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::pg_lsn)`, slot, lsn)
}

func waitPG(t *testing.T, conn *pgx.Conn, q string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		if err := conn.QueryRow(context.Background(), q, args...).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %v: still false after 30s", q, args)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
