package mysql

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// BenchmarkStreamTransaction is the source's own work per row of the
// binlog (go-mysql's parsing excluded, it is done once up front): a
// transaction of 100 inserted rows — its GTID, table-map, rows and XID
// events — turned into stamped records. Per op: one row.
func BenchmarkStreamTransaction(b *testing.B) {
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	ts := time.Date(2026, 1, 2, 3, 4, 5, 654321000, time.UTC)
	w := &binlogWriter{ts: uint32(ts.Unix())}
	images := make([][]byte, 100)
	for i := range images {
		images[i] = row(uint32(i), ts, "payment")
	}
	p := replication.NewBinlogParser()
	p.SetFlavor(gomysql.MySQLFlavor)
	p.SetTimestampStringLocation(time.UTC)
	p.SetRenderJSONAsMySQLText(true)
	p.SetParseTime(true)
	var evs []*replication.BinlogEvent
	for i, data := range [][]byte{
		w.formatDescription(), w.gtid(sid, 42, ts), w.query("shop", "BEGIN"),
		w.tableMap(90, "id", "j", "ts", "name"), w.rows(replication.WRITE_ROWS_EVENTv2, 90, images...), w.xid(9),
	} {
		ev, err := p.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			evs = append(evs, ev)
		}
	}
	x := newTestStream(b, FlavorMySQL, sid.String()+":1-41")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		for _, ev := range evs {
			if err := x.handle(ctx, ev); err != nil {
				b.Fatal(err)
			}
		}
		x.pend, x.pendDirty = x.pend[:0], false
	}
}
