package mysql

// The MySQL flavor's paths, on events built byte for byte as MySQL 8.0
// writes them (no MySQL server is installable here): GTID events with
// their commit timestamps, a BEGIN query, rows-query events carrying a
// statement comment, a table-map event with full row metadata, rows
// events with MySQL's binary JSON, TIMESTAMP(6) and an UNSIGNED key, XID
// commits, an anonymous transaction (gtid_mode OFF) positioned by
// file:offset, and a DDL statement committed on its own. They go through
// go-mysql's parser (flavor mysql) and this package's stream, exactly as
// the binlog syncer would hand them over.

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/stele/stele/record"
)

// binlogWriter builds MySQL binlog events (header, body, no checksum).
type binlogWriter struct {
	pos uint32
	ts  uint32
}

func (w *binlogWriter) event(typ replication.EventType, body []byte) []byte {
	size := uint32(19 + len(body))
	w.pos += size
	h := make([]byte, 19, size)
	binary.LittleEndian.PutUint32(h[0:], w.ts)
	h[4] = byte(typ)
	binary.LittleEndian.PutUint32(h[5:], 1) // server id
	binary.LittleEndian.PutUint32(h[9:], size)
	binary.LittleEndian.PutUint32(h[13:], w.pos)
	return append(h, body...)
}

// formatDescription is MySQL 8.0.36's, checksums off.
func (w *binlogWriter) formatDescription() []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint16(4))
	ver := make([]byte, 50)
	copy(ver, "8.0.36")
	b.Write(ver)
	binary.Write(&b, binary.LittleEndian, uint32(0))
	b.WriteByte(19)
	lens := make([]byte, 41)
	for i := range lens {
		lens[i] = 8
	}
	lens[replication.WRITE_ROWS_EVENTv2-1], lens[replication.UPDATE_ROWS_EVENTv2-1], lens[replication.DELETE_ROWS_EVENTv2-1] = 10, 10, 10
	b.Write(lens)
	b.WriteByte(byte(replication.BINLOG_CHECKSUM_ALG_OFF))
	b.Write([]byte{0, 0, 0, 0})
	w.pos = 4
	return w.event(replication.FORMAT_DESCRIPTION_EVENT, b.Bytes())
}

func (w *binlogWriter) gtid(sid uuid.UUID, gno int64, commit time.Time) []byte {
	var b bytes.Buffer
	b.WriteByte(1)
	b.Write(sid[:])
	binary.Write(&b, binary.LittleEndian, gno)
	b.WriteByte(replication.LogicalTimestampTypeCode)
	binary.Write(&b, binary.LittleEndian, int64(0))
	binary.Write(&b, binary.LittleEndian, int64(1))
	us := uint64(commit.UnixMicro())
	for i := range 7 {
		b.WriteByte(byte(us >> (8 * i)))
	}
	b.WriteByte(0) // transaction length (lenenc 0)
	typ := replication.GTID_EVENT
	if gno == 0 {
		typ = replication.ANONYMOUS_GTID_EVENT
	}
	return w.event(typ, b.Bytes())
}

func (w *binlogWriter) query(db, q string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(7)) // thread id
	binary.Write(&b, binary.LittleEndian, uint32(0)) // exec time
	b.WriteByte(byte(len(db)))
	binary.Write(&b, binary.LittleEndian, uint16(0)) // error code
	binary.Write(&b, binary.LittleEndian, uint16(0)) // status vars
	b.WriteString(db)
	b.WriteByte(0)
	b.WriteString(q)
	return w.event(replication.QUERY_EVENT, b.Bytes())
}

func (w *binlogWriter) rowsQuery(q string) []byte {
	return w.event(replication.ROWS_QUERY_EVENT, append([]byte{byte(len(q))}, q...))
}

func (w *binlogWriter) xid(n uint64) []byte {
	return w.event(replication.XID_EVENT, binary.LittleEndian.AppendUint64(nil, n))
}

// tableMap is shop.t (id INT UNSIGNED PRIMARY KEY, j JSON, ts
// TIMESTAMP(6), name VARCHAR(10) CHARSET utf8mb4) with
// binlog_row_metadata = FULL.
func (w *binlogWriter) tableMap(tableID uint64, names ...string) []byte {
	var b bytes.Buffer
	b.Write(binary.LittleEndian.AppendUint64(nil, tableID)[:6])
	binary.Write(&b, binary.LittleEndian, uint16(1))
	b.WriteByte(4)
	b.WriteString("shop\x00")
	b.WriteByte(1)
	b.WriteString("t\x00")
	b.WriteByte(4) // columns
	b.Write([]byte{gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_JSON, gomysql.MYSQL_TYPE_TIMESTAMP2, gomysql.MYSQL_TYPE_VARCHAR})
	meta := []byte{4, 6, 40, 0} // JSON length bytes, fsp, varchar max bytes (LE)
	b.WriteByte(byte(len(meta)))
	b.Write(meta)
	b.WriteByte(0x0e) // nullable: all but id
	opt := func(t byte, v []byte) {
		b.WriteByte(t)
		b.WriteByte(byte(len(v)))
		b.Write(v)
	}
	opt(replication.TABLE_MAP_OPT_META_SIGNEDNESS, []byte{0x80})
	opt(replication.TABLE_MAP_OPT_META_DEFAULT_CHARSET, []byte{255})
	var nb []byte
	for _, n := range names {
		nb = append(append(nb, byte(len(n))), n...)
	}
	opt(replication.TABLE_MAP_OPT_META_COLUMN_NAME, nb)
	opt(replication.TABLE_MAP_OPT_META_SIMPLE_PRIMARY_KEY, []byte{0})
	return w.event(replication.TABLE_MAP_EVENT, b.Bytes())
}

// jsonKV is MySQL's binary JSON of {"key1":"value1","key2":"value2"}
// (from go-mysql's recorded MySQL events).
var jsonKV = []byte("\x00\x02\x00(\x00\x12\x00\x04\x00\x16\x00\x04\x00\f\x1a\x00\f!\x00key1key2\x06value1\x06value2")

// row encodes one row image of shop.t.
func row(id uint32, ts time.Time, name string) []byte {
	var b bytes.Buffer
	b.WriteByte(0) // null bitmap
	binary.Write(&b, binary.LittleEndian, id)
	binary.Write(&b, binary.LittleEndian, uint32(len(jsonKV)))
	b.Write(jsonKV)
	binary.Write(&b, binary.BigEndian, uint32(ts.Unix()))
	us := ts.Nanosecond() / 1000
	b.Write([]byte{byte(us >> 16), byte(us >> 8), byte(us)})
	b.WriteByte(byte(len(name)))
	b.WriteString(name)
	return b.Bytes()
}

func (w *binlogWriter) rows(typ replication.EventType, tableID uint64, images ...[]byte) []byte {
	var b bytes.Buffer
	b.Write(binary.LittleEndian.AppendUint64(nil, tableID)[:6])
	binary.Write(&b, binary.LittleEndian, uint16(1)) // STMT_END_F
	binary.Write(&b, binary.LittleEndian, uint16(2)) // no extra data
	b.WriteByte(4)
	b.WriteByte(0x0f)
	if typ == replication.UPDATE_ROWS_EVENTv2 {
		b.WriteByte(0x0f)
	}
	for _, img := range images {
		b.Write(img)
	}
	return w.event(typ, b.Bytes())
}

// newTestStream is a stream over no connection, fed events by hand.
func newTestStream(t testing.TB, flavor string, gtid string) *stream {
	t.Helper()
	src, err := New(Config{URL: "mysql://u@h/shop", StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := src.openState()
	if err != nil {
		t.Fatal(err)
	}
	x := &stream{src: src, st: st, info: &serverInfo{flavor: flavor, rowMetadata: true, statements: true, collations: map[uint64]string{}},
		file: "binlog.000007", tables: map[uint64]*table{}, live: map[string][]liveColumn{}}
	if gtid != "" || flavor == FlavorMySQL {
		x.gtidMode = gtid != ""
		if x.gtidMode {
			if x.gset, err = parseGTIDSet(flavor, gtid); err != nil {
				t.Fatal(err)
			}
		}
	}
	return x
}

// parsers keeps each test stream's parser: it must see the format
// description event first, as on a real stream.
var parsers = map[*stream]*replication.BinlogParser{}

func feed(t *testing.T, x *stream, events ...[]byte) {
	t.Helper()
	p := parsers[x]
	if p == nil {
		p = replication.NewBinlogParser()
		p.SetFlavor(gomysql.MySQLFlavor)
		p.SetTimestampStringLocation(time.UTC)
		p.SetRenderJSONAsMySQLText(true)
		parsers[x] = p
	}
	for _, data := range events {
		ev, err := p.Parse(data)
		if err != nil {
			t.Fatalf("parse %v: %v", replication.EventType(data[4]), err)
		}
		if err := x.handle(context.Background(), ev); err != nil {
			t.Fatalf("handle %T: %v", ev.Event, err)
		}
	}
}

func TestMySQLFlavorEvents(t *testing.T) {
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	commit := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	ts := time.Date(2026, 1, 2, 3, 4, 5, 654321000, time.UTC)
	x := newTestStream(t, FlavorMySQL, sid.String()+":1-41")
	w := &binlogWriter{ts: uint32(commit.Unix())}
	feed(t, x,
		w.formatDescription(),
		w.gtid(sid, 42, commit),
		w.query("shop", "BEGIN"),
		w.rowsQuery(`/* stele {"actor":{"id":"alice"}} */ INSERT INTO t VALUES (4294967295, …)`),
		w.tableMap(90, "id", "j", "ts", "name"),
		w.rows(replication.WRITE_ROWS_EVENTv2, 90, row(4294967295, ts, "héllo")),
		w.rowsQuery(`UPDATE t SET name = 'x'`),
		w.tableMap(90, "id", "j", "ts", "name"),
		w.rows(replication.UPDATE_ROWS_EVENTv2, 90, row(4294967295, ts, "héllo"), row(4294967295, ts, "x")),
		w.xid(9),
	)
	if x.tx != nil || len(x.pend) != 2 {
		t.Fatalf("after the XID: tx %v, %d pending records", x.tx, len(x.pend))
	}
	wantGTID := sid.String() + ":42"
	ins, upd := x.pend[0], x.pend[1]
	for i, r := range x.pend {
		if r.Tx.ID != wantGTID || r.Tx.Position != wantGTID || *r.Tx.Index != int64(i) || !r.Tx.CommitTime.Equal(commit) || !r.OccurredAt.Equal(commit) {
			t.Errorf("record %d tx = %+v occurred %v", i, r.Tx, r.OccurredAt)
		}
		if r.ID != record.DeriveID(r) {
			t.Errorf("record %d id not derived", i)
		}
	}
	if string(ins.After) != `{"id":4294967295,"j":{"key1":"value1","key2":"value2"},"name":"héllo","ts":"2026-01-02T03:04:05.654321Z"}` {
		t.Errorf("insert after = %s", ins.After)
	}
	if string(ins.Key) != `{"id":4294967295}` || ins.Op != record.OpInsert || ins.Source != (record.Source{Name: "shop", Kind: "mysql", Database: "shop", Table: "t"}) {
		t.Errorf("insert key %s op %s source %+v", ins.Key, ins.Op, ins.Source)
	}
	if string(ins.Actor) != `{"id":"alice"}` || string(upd.Actor) != `{"id":"unknown","type":"unknown"}` {
		t.Errorf("actors: insert %s update %s (the comment belongs to its statement only)", ins.Actor, upd.Actor)
	}
	if upd.Op != record.OpUpdate || len(upd.Changed) != 1 || upd.Changed[0] != "name" {
		t.Errorf("update op %s changed %v", upd.Op, upd.Changed)
	}
	if !x.pendDirty || x.pendPos.GTID != sid.String()+":1-42" || x.pendPos.File != "binlog.000007" || x.pendPos.Offset != w.pos {
		t.Errorf("position after the transaction = %+v (writer at %d)", x.pendPos, w.pos)
	}

	// A DDL statement is a transaction of its own: GTID, then the query,
	// no BEGIN and no XID.
	x.pend = nil
	feed(t, x, w.gtid(sid, 43, commit), w.query("shop", "ALTER TABLE t RENAME COLUMN name TO title"))
	if x.tx != nil || len(x.pend) != 1 || x.pend[0].Op != record.OpDDL || x.pend[0].Tx.ID != sid.String()+":43" {
		t.Fatalf("DDL: tx %v, pending %v", x.tx, x.pend)
	}
	if x.pendPos.GTID != sid.String()+":1-43" {
		t.Errorf("position after the DDL = %s", x.pendPos.GTID)
	}
	// The next table map has the new name: a new schema version, and its
	// ddl record after the transaction's row.
	x.pend = nil
	feed(t, x,
		w.gtid(sid, 44, commit), w.query("shop", "BEGIN"),
		w.tableMap(91, "id", "j", "ts", "title"),
		w.rows(replication.DELETE_ROWS_EVENTv2, 91, row(7, ts, "gone")),
		w.xid(10))
	if len(x.pend) != 2 || x.pend[0].Op != record.OpDelete || x.pend[1].Op != record.OpDDL {
		t.Fatalf("after the ALTER: %v", ops(x.pend))
	}
	if x.pend[0].Schema.Version != 2 || fields(t, x.pend[0].Before)["title"] != `"gone"` {
		t.Errorf("delete schema %+v before %s", x.pend[0].Schema, x.pend[0].Before)
	}
	if string(x.pend[1].Key) != `{"relation":"shop.t"}` || !strings.Contains(string(x.pend[1].After), `"version":2`) || !strings.Contains(string(x.pend[1].After), `{"name":"title","type":"varchar(40 bytes) character set utf8mb4"}`) {
		t.Errorf("relation record %s %s", x.pend[1].Key, x.pend[1].After)
	}
}

// TestMySQLWithoutGTIDs: with gtid_mode OFF, MySQL writes anonymous GTID
// events; transactions are then positioned by the file:offset of their
// first event, and the source's position is file:offset.
func TestMySQLWithoutGTIDs(t *testing.T) {
	x := newTestStream(t, FlavorMySQL, "")
	commit := time.Unix(1790000000, 0).UTC()
	w := &binlogWriter{ts: uint32(commit.Unix())}
	fd := w.formatDescription()
	start := w.pos
	feed(t, x, fd,
		w.gtid(uuid.UUID{}, 0, commit), w.query("shop", "BEGIN"),
		w.tableMap(5, "id", "j", "ts", "name"),
		w.rows(replication.WRITE_ROWS_EVENTv2, 5, row(1, commit, "a")),
		w.xid(1))
	if len(x.pend) != 1 {
		t.Fatalf("%d records", len(x.pend))
	}
	r := x.pend[0]
	want := "binlog.000007:" + itoa(start)
	if r.Tx.ID != "" || r.Tx.Position != want {
		t.Errorf("tx = %+v, want position %s", r.Tx, want)
	}
	if x.pendPos.GTIDMode || x.pendPos.String() != "binlog.000007:"+itoa(w.pos) {
		t.Errorf("position = %+v", x.pendPos)
	}
	p := x.pendPos.positions(FlavorMySQL)
	if _, ok := p[posKeyGTID]; ok || p[posKeyBinlog] != x.pendPos.binlog() {
		t.Errorf("stored positions = %v", p)
	}
	back, ok, err := positionFrom(p)
	if err != nil || !ok || back != x.pendPos {
		t.Errorf("positions round trip: %+v %v %v", back, ok, err)
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func TestGTIDSets(t *testing.T) {
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	other := uuid.MustParse("4e11fa47-71ca-11e1-9e33-c80aa9429563")
	s, err := parseGTIDSet(FlavorMySQL, sid.String()+":1-5")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []txGTID{{text: "x", sid: sid, gno: 6}, {text: "y", sid: other, gno: 1}, {text: "z", sid: sid, gno: 8}} {
		if err := s.add(g); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := s.String(), sid.String()+":1-6:8,"+other.String()+":1"; got != want {
		t.Errorf("MySQL set = %s, want %s", got, want)
	}
	tagged := txGTID{sid: sid, tag: gomysql.NewTag("batch"), gno: 1}
	tagged.text = "t"
	if err := s.add(tagged); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.String(), ":batch:1") {
		t.Errorf("tagged GTID missing from %s", s)
	}
	ev := &replication.GTIDEvent{SID: sid[:], GNO: 9}
	g, err := mysqlTxGTID(ev, gomysql.Tag{})
	if err != nil || g.text != sid.String()+":9" {
		t.Errorf("GTID text %q %v", g.text, err)
	}
	if g, _ := mysqlTxGTID(&replication.GTIDEvent{SID: make([]byte, 16)}, gomysql.Tag{}); g.text != "" {
		t.Errorf("anonymous GTID text %q", g.text)
	}

	m, err := parseGTIDSet(FlavorMariaDB, "0-1-5,1-2-9")
	if err != nil {
		t.Fatal(err)
	}
	mg := mariadbTxGTID(&replication.MariadbGTIDEvent{GTID: gomysql.MariadbGTID{DomainID: 0, ServerID: 3, SequenceNumber: 6}})
	if mg.text != "0-3-6" {
		t.Errorf("MariaDB GTID text %s", mg.text)
	}
	if err := m.add(mg); err != nil {
		t.Fatal(err)
	}
	if got := m.String(); got != "0-3-6,1-2-9" {
		t.Errorf("MariaDB set = %s", got)
	}
	if _, err := parseGTIDSet(FlavorMySQL, "not a set"); err == nil {
		t.Error("a bad MySQL set parsed")
	}
}
