package debezium

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stele/stele/record"
)

func load(t testing.TB, name string) (key, value []byte) {
	t.Helper()
	value, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	key, err = os.ReadFile(filepath.Join("testdata", name+".key.json"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return key, value
}

func idx(n int64) *int64 { return &n }

// TestDecodeShapes decodes real Debezium output shapes of the PostgreSQL
// and MySQL connectors, with and without schemas.
func TestDecodeShapes(t *testing.T) {
	for _, tc := range []struct {
		file     string
		source   record.Source
		op       record.Op
		key      string
		before   string
		after    string
		changed  []string
		txID     string
		position string
		index    *int64
		occurred string
	}{
		{
			file: "pg_insert_schema", op: record.OpInsert,
			source: record.Source{Name: "shop", Kind: "postgres", Database: "postgres", Schema: "public", Table: "customers"},
			key:    `{"id":1004}`,
			after: `{"attrs":{"a":[1,"x"],"b":2},"born":"2026-01-01","email":"annek@noanswer.org","id":1004,"n":123.456,` +
				`"paid_at":"2026-01-02T01:04:05.123456Z","price":2.26,"raw":"3q2+7w==","seen":"2026-01-02T03:04:05.123456Z",` +
				`"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","wake":"07:30:15.123456"}`,
			changed: []string{"attrs", "born", "email", "id", "n", "paid_at", "price", "raw", "seen", "u", "wake"},
			txID:    "555:24023128", position: "555:24023128", index: idx(1),
			occurred: "2026-01-02T03:04:05.123Z",
		},
		{
			file: "pg_update_noschema", op: record.OpUpdate,
			source:  record.Source{Name: "shop", Kind: "postgres", Database: "postgres", Schema: "public", Table: "customers"},
			key:     `{"id":1004}`,
			before:  `{"email":"annek@noanswer.org","first_name":"Anne","id":1004}`,
			after:   `{"email":"annek@noanswer.org","first_name":"Anne Marie","id":1004}`,
			changed: []string{"first_name"},
			txID:    "556", position: `0/16E91F8 key {"id":1004}`,
			occurred: "2026-01-02T03:04:06Z",
		},
		{
			file: "pg_delete_noschema", op: record.OpDelete,
			source:  record.Source{Name: "shop", Kind: "postgres", Database: "postgres", Schema: "public", Table: "customers"},
			key:     `{"id":1004}`,
			before:  `{"email":"annek@noanswer.org","first_name":"Anne Marie","id":1004}`,
			changed: []string{"email", "first_name", "id"},
			txID:    "557", position: `0/16E9398 key {"id":1004}`,
			occurred: "2026-01-02T03:04:07Z",
		},
		{
			file: "pg_snapshot_noschema", op: record.OpSnapshot,
			source:  record.Source{Name: "shop", Kind: "postgres", Database: "postgres", Schema: "public", Table: "customers"},
			key:     `{"id":1001}`,
			after:   `{"email":"sally.thomas@acme.com","first_name":"Sally","id":1001}`,
			changed: []string{"email", "first_name", "id"},
			txID:    "550", position: `0/16E8420 key {"id":1001}`,
			occurred: "2026-01-02T03:03:20Z",
		},
		{
			file: "pg_truncate_noschema", op: record.OpTruncate,
			source: record.Source{Name: "shop", Kind: "postgres", Database: "postgres", Schema: "public", Table: "customers"},
			key:    `{"table":"public.customers"}`,
			txID:   "558", position: `0/16E9538 key {"table":"public.customers"}`,
			occurred: "2026-01-02T03:04:08Z",
		},
		{
			file: "pg_message", op: record.OpEvent,
			source:  record.Source{Name: "shop", Kind: "postgres", Database: "postgres", Table: "$message"},
			key:     `{"table":"$message"}`,
			after:   `{"content":"aGVsbG8=","prefix":"audit"}`,
			changed: []string{"content", "prefix"},
			txID:    "559", position: `0/16E97A8 key {"table":"$message"}`,
			occurred: "2026-01-02T03:04:08.9Z",
		},
		{
			file: "mysql_insert_schema", op: record.OpInsert,
			source: record.Source{Name: "shop", Kind: "mysql", Database: "inventory", Table: "products"},
			key:    `{"id":111}`,
			after: `{"id":111,"made":"2026-01-01","name":"scooter","nts":"2026-01-02T03:04:05.123456789Z","opens":"09:00:00",` +
				`"stocked":"2026-01-02T03:04:05.123Z","updated":"2026-01-02T03:04:05Z","weight":-0.0121,"yr":2026}`,
			changed: []string{"id", "made", "name", "nts", "opens", "stocked", "updated", "weight", "yr"},
			txID:    "3e11fa47-71ca-11e1-9e33-c80aa9429562:23", position: "3e11fa47-71ca-11e1-9e33-c80aa9429562:23", index: idx(0),
			occurred: "2026-01-02T03:04:05Z",
		},
		{
			file: "mysql_update_noschema", op: record.OpUpdate,
			source:   record.Source{Name: "shop", Kind: "mysql", Database: "inventory", Table: "products"},
			key:      `{"id":111}`,
			before:   `{"id":111,"name":"scooter"}`,
			after:    `{"id":111,"name":"e-scooter"}`,
			changed:  []string{"name"},
			position: `mysql-bin.000003:484 row 1 key {"id":111}`,
			occurred: "2026-01-02T03:04:10Z",
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			key, value := load(t, tc.file)
			d := &Decoder{SourceName: "shop"}
			ev, err := d.Decode(key, value)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != Change {
				t.Fatalf("kind %d, want Change", ev.Kind)
			}
			r := ev.Record
			if r.Source != tc.source {
				t.Errorf("source %+v, want %+v", r.Source, tc.source)
			}
			if r.Op != tc.op {
				t.Errorf("op %s, want %s", r.Op, tc.op)
			}
			for _, f := range []struct{ name, got, want string }{
				{"key", string(r.Key), tc.key}, {"before", string(r.Before), tc.before}, {"after", string(r.After), tc.after},
				{"tx.id", r.Tx.ID, tc.txID}, {"tx.position", r.Tx.Position, tc.position},
				{"occurred_at", r.OccurredAt.Format(time.RFC3339Nano), tc.occurred},
			} {
				if f.got != f.want {
					t.Errorf("%s:\n got %s\nwant %s", f.name, f.got, f.want)
				}
			}
			if !slices.Equal(r.Changed, tc.changed) {
				t.Errorf("changed %v, want %v", r.Changed, tc.changed)
			}
			if (r.Tx.Index == nil) != (tc.index == nil) || (r.Tx.Index != nil && *r.Tx.Index != *tc.index) {
				t.Errorf("tx.index %v, want %v", r.Tx.Index, tc.index)
			}
			if r.ID != record.DeriveID(r) {
				t.Errorf("id %s, want DeriveID %s", r.ID, record.DeriveID(r))
			}
			// The same message again (Debezium re-sending after its own
			// crash) is the same record.
			again, err := (&Decoder{SourceName: "shop"}).Decode(key, value)
			if err != nil || again.Record.ID != r.ID {
				t.Errorf("re-sent message: id %v (%v), want %s", again.Record, err, r.ID)
			}
		})
	}
}

func TestTombstoneAndTxMetadata(t *testing.T) {
	d := &Decoder{SourceName: "shop"}
	for _, v := range []string{"", "null", "  "} {
		ev, err := d.Decode([]byte(`{"id":1004}`), []byte(v))
		if err != nil || ev.Kind != Tombstone {
			t.Errorf("value %q: %+v, %v; want a tombstone", v, ev, err)
		}
	}
	ev, err := d.Decode([]byte(`{"schema":null,"payload":{"id":1}}`), []byte(`{"schema":{"type":"struct"},"payload":null}`))
	if err != nil || ev.Kind != Tombstone {
		t.Errorf("payload null: %+v, %v; want a tombstone", ev, err)
	}
	_, begin := load(t, "tx_begin")
	ev, err = d.Decode(nil, begin)
	if err != nil || ev.Kind != TxBegin || ev.TxID != "571:53195829" {
		t.Errorf("BEGIN: %+v, %v", ev, err)
	}
	_, end := load(t, "tx_end_schema")
	ev, err = d.Decode(nil, end)
	if err != nil || ev.Kind != TxEnd || ev.TxID != "571:53195829" || ev.EventCount != 2 {
		t.Errorf("END: %+v, %v", ev, err)
	}
}

// TestDistinctPositions: changes that share a database position (the rows
// of one snapshot, one multi-row WAL record) get distinct ids by their key.
func TestDistinctPositions(t *testing.T) {
	_, v := load(t, "pg_snapshot_noschema")
	d := &Decoder{SourceName: "shop"}
	a, err := d.Decode([]byte(`{"id":1001}`), v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Decode([]byte(`{"id":1002}`), []byte(strings.Replace(string(v), `"id":1001`, `"id":1002`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if a.Record.ID == b.Record.ID {
		t.Errorf("two snapshot rows share the id %s", a.Record.ID)
	}
}

func TestDecodeErrors(t *testing.T) {
	_, good := load(t, "pg_update_noschema")
	for _, tc := range []struct {
		name, value, field string
	}{
		{"not json", `{"before":`, "value"},
		{"unknown op", strings.Replace(string(good), `"op":"u"`, `"op":"x"`, 1), "payload.op"},
		{"no source", `{"op":"c","after":{"id":1},"ts_ms":1}`, "payload.source"},
		{"no connector", strings.Replace(string(good), `"connector":"postgresql",`, ``, 1), "payload.source.connector"},
		{"no lsn", strings.Replace(string(good), `"lsn":24023544,`, ``, 1), "payload.source.lsn"},
		{"update without after", strings.Replace(string(good), `"after":{"id":1004,"first_name":"Anne Marie","email":"annek@noanswer.org"}`, `"after":null`, 1), "payload.after"},
		{"image not an object", strings.Replace(string(good), `"before":{"id":1004,"first_name":"Anne","email":"annek@noanswer.org"}`, `"before":[1]`, 1), "payload.before"},
		{"bad total_order", strings.Replace(string(good), `"transaction":null`, `"transaction":{"id":"1","total_order":0}`, 1), "payload.transaction.total_order"},
		{"END without count", `{"status":"END","id":"1:2"}`, "payload.event_count"},
		{"bad status", `{"status":"MIDDLE","id":"1:2"}`, "payload.status"},
		{"bad decimal", `{"schema":{"type":"struct","fields":[{"field":"after","type":"struct","fields":[{"field":"p","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}}]}]},` +
			`"payload":{"after":{"p":"!!"},"op":"c","source":{"connector":"postgresql","db":"d","schema":"s","table":"t","lsn":1,"ts_ms":1}}}`, "payload.after.p"},
		{"bad date", `{"schema":{"type":"struct","fields":[{"field":"after","type":"struct","fields":[{"field":"d","type":"int32","name":"io.debezium.time.Date"}]}]},` +
			`"payload":{"after":{"d":"x"},"op":"c","source":{"connector":"postgresql","db":"d","schema":"s","table":"t","lsn":1,"ts_ms":1}}}`, "payload.after.d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Decoder{SourceName: "shop"}).Decode([]byte(`{"id":1004}`), []byte(tc.value))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Field != tc.field {
				t.Errorf("err %v names field %q, want %q", err, e.Field, tc.field)
			}
		})
	}
}

func TestMySQLConventionMatchesDirectCapture(t *testing.T) {
	// capture/mysql gives a GTID transaction's records position = the GTID
	// text and index = ordinal in the transaction (capture/mysql/stream.go); a Debezium
	// MySQL event with transaction metadata carries both.
	key, value := load(t, "mysql_insert_schema")
	ev, err := (&Decoder{SourceName: "shop"}).Decode(key, value)
	if err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	direct := &record.Record{Source: record.Source{Name: "shop", Kind: "mysql", Database: "inventory", Table: "products"},
		Tx: &record.Tx{ID: "3e11fa47-71ca-11e1-9e33-c80aa9429562:23", Position: "3e11fa47-71ca-11e1-9e33-c80aa9429562:23", Index: &zero}}
	if got, want := ev.Record.ID, record.DeriveID(direct); got != want {
		t.Errorf("id %s, the direct capture's %s", got, want)
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"pg_insert_schema", "pg_update_noschema"} {
		b.Run(name, func(b *testing.B) {
			key, value := load(b, name)
			d := &Decoder{SourceName: "shop"}
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			// On a shared machine wall time per op is mostly the other
			// processes'; the CPU time the process spent is steadier.
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := d.Decode(key, value); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

func TestAssembler(t *testing.T) {
	d := &Decoder{SourceName: "shop"}
	change := func(total int64, id int) Event {
		v := fmt.Sprintf(`{"after":{"id":%d},"op":"c","source":{"connector":"postgresql","db":"d","schema":"s","table":"t","lsn":%d,"txId":5,"ts_ms":1},"transaction":{"id":"5:9","total_order":%d}}`, id, 100+id, total)
		ev, err := d.Decode(nil, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	end := Event{Kind: TxEnd, TxID: "5:9", EventCount: 2}
	var a Assembler[int]
	if _, ok := a.Add(change(2, 2), 1); ok {
		t.Fatal("released before the transaction is whole")
	}
	if _, ok := a.Add(end, 2); ok {
		t.Fatal("released with one of two events")
	}
	var held []int
	a.Held(func(r int) { held = append(held, r) })
	if len(held) != 2 {
		t.Errorf("held %v, want 2 refs", held)
	}
	// A duplicate of an event counts once.
	if _, ok := a.Add(change(2, 2), 3); ok {
		t.Fatal("a duplicate completed the transaction")
	}
	done, ok := a.Add(change(1, 1), 4)
	if !ok || len(done.Records) != 2 || *done.Records[0].Tx.Index != 0 || len(done.Refs) != 4 {
		t.Fatalf("done %+v %v", done, ok)
	}
	// The transaction re-sent after it completed is released at once.
	if d, ok := a.Add(change(1, 1), 5); !ok || len(d.Records) != 1 {
		t.Errorf("re-sent change of a completed transaction: %+v %v", d, ok)
	}
	if d, ok := a.Add(end, 6); !ok || len(d.Records) != 0 || a.Pending() != 0 {
		t.Errorf("re-sent END: %+v %v, pending %d", d, ok, a.Pending())
	}
}

// Under change ids two events of one transaction can share an id (equal
// rows of a key-less table in one multi-row WAL record): both count towards
// the END's event_count, or the transaction would be held for ever.
func TestAssemblerCountsPlacesNotIDs(t *testing.T) {
	d := &Decoder{SourceName: "shop", ChangeIDs: true}
	change := func(total int64) Event {
		v := fmt.Sprintf(`{"after":{"v":"same"},"op":"c","source":{"connector":"postgresql","db":"d","schema":"s","table":"t","lsn":100,"txId":5,"ts_ms":1},"transaction":{"id":"5:9","total_order":%d}}`, total)
		ev, err := d.Decode(nil, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	a, b := change(1), change(2)
	if a.Record.ID != b.Record.ID || a.Record.Tx.Position != "0/64" {
		t.Fatalf("ids %s %s at %s: the case under test needs one id", a.Record.ID, b.Record.ID, a.Record.Tx.Position)
	}
	var asm Assembler[int]
	asm.Add(a, 1)
	asm.Add(b, 2)
	done, ok := asm.Add(Event{Kind: TxEnd, TxID: "5:9", EventCount: 2}, 3)
	if !ok || len(done.Records) != 2 || asm.Pending() != 0 {
		t.Fatalf("released %v with %d records, %d pending; want the transaction whole", ok, len(done.Records), asm.Pending())
	}
}

// A snapshot row and a change at the same LSN and key are two records; a
// change decodes to the id capture/postgres derives for it.
func TestChangeIDs(t *testing.T) {
	d := &Decoder{SourceName: "crm", ChangeIDs: true}
	ev := func(op string) *record.Record {
		v := fmt.Sprintf(`{"after":{"id":7,"v":"x"},"op":%q,"source":{"connector":"postgresql","db":"crm","schema":"public","table":"items","lsn":26506856,"txId":729,"ts_ms":1}}`, op)
		e, err := d.Decode([]byte(`{"id":7}`), []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return e.Record
	}
	ins, snap := ev("c"), ev("r")
	direct := &record.Record{Source: record.Source{Name: "crm", Kind: "postgres", Database: "crm", Schema: "public", Table: "items"},
		Op: record.OpInsert, Key: []byte(`{"id":7}`), Tx: &record.Tx{Position: "0/1947668"}}
	if ins.Tx.Position != "0/1947668" || ins.Tx.ID != "729" || ins.ID != record.DeriveChangeID(direct) {
		t.Errorf("insert: tx %+v id %s, want the direct source's %s", ins.Tx, ins.ID, record.DeriveChangeID(direct))
	}
	if snap.ID == ins.ID {
		t.Error("a snapshot row has the id of a change at its LSN")
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
