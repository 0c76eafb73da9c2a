package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/record"
)

func TestDDL(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})

	t.Run("EventTrigger", func(t *testing.T) {
		url := newDB(t, srv, "ddlon", `CREATE TABLE t (id int PRIMARY KEY, a text)`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{ConnString: url, CaptureDDL: true}, ts)
		execIn(t, url,
			`INSERT INTO t VALUES (1, 'x')`,
			`ALTER TABLE t ADD COLUMN b int`,
			`INSERT INTO t VALUES (2, 'y', 5)`)
		recs := ts.records(t, 3)
		if len(recs) != 3 {
			for _, r := range recs {
				t.Logf("%s %s %s", r.Op, r.Key, r.After)
			}
			t.Fatalf("got %d records, want 3", len(recs))
		}
		ddl := recs[1]
		if ddl.Op != record.OpDDL || string(ddl.Key) != `{"object":"public.t"}` || ddl.Source.Table != "t" || ddl.Source.Schema != "public" {
			t.Fatalf("ddl record: op %s key %s source %+v", ddl.Op, ddl.Key, ddl.Source)
		}
		var msg struct {
			Command   string `json:"command"`
			Statement string `json:"statement"`
			Objects   []struct {
				ObjectType string `json:"object_type"`
			} `json:"objects"`
		}
		if err := json.Unmarshal(ddl.After, &msg); err != nil {
			t.Fatal(err)
		}
		if msg.Command != "ALTER TABLE" || !strings.Contains(msg.Statement, "ADD COLUMN b int") || len(msg.Objects) != 1 || msg.Objects[0].ObjectType != "table" {
			t.Errorf("ddl after = %s", ddl.After)
		}
		if ddl.Tx == nil || *ddl.Tx.Index != 0 || ddl.ID != record.DeriveChangeID(ddl) {
			t.Errorf("ddl tx = %+v", ddl.Tx)
		}
		if got := fields(t, recs[2].After)["b"]; got != "5" {
			t.Errorf("row after the ALTER: b = %s", got)
		}
		checkVersions(t, recs[0], recs[2])
	})

	t.Run("DropNamesItsObjects", func(t *testing.T) {
		url := newDB(t, srv, "ddldrop", `CREATE TABLE t (id int PRIMARY KEY, a text)`, `CREATE TABLE u (id int PRIMARY KEY)`)
		ts := openStore(t, t.TempDir())
		run := startReady(t, Config{ConnString: url, CaptureDDL: true}, ts)
		execIn(t, url,
			`ALTER TABLE t DROP COLUMN a`,
			`DROP TABLE IF EXISTS nosuch`,
			`DROP TABLE t`,
			`INSERT INTO u VALUES (1)`)
		recs := ts.records(t, 3)
		if len(recs) != 3 {
			for _, r := range recs {
				t.Logf("%s %s %s", r.Op, r.Key, r.After)
			}
			t.Fatalf("got %d records, want 3 (ALTER, DROP, INSERT; nothing for the no-op DROP)", len(recs))
		}
		type ddlMsg struct {
			Command string `json:"command"`
			Objects []struct {
				ObjectType string `json:"object_type"`
				Identity   string `json:"identity"`
			} `json:"objects"`
		}
		var alter, drop ddlMsg
		for i, m := range []*ddlMsg{&alter, &drop} {
			if recs[i].Op != record.OpDDL {
				t.Fatalf("record %d: op %s, want ddl", i, recs[i].Op)
			}
			if err := json.Unmarshal(recs[i].After, m); err != nil {
				t.Fatal(err)
			}
		}
		if alter.Command != "ALTER TABLE" || len(alter.Objects) != 1 || alter.Objects[0].Identity != "public.t" {
			t.Errorf("alter record = %s (the dropped column belongs to ALTER, not to a DROP record)", recs[0].After)
		}
		if drop.Command != "DROP TABLE" || len(drop.Objects) == 0 || drop.Objects[0].ObjectType != "table" || drop.Objects[0].Identity != "public.t" {
			t.Fatalf("drop record after = %s", recs[1].After)
		}
		if string(recs[1].Key) != `{"object":"public.t"}` || recs[1].Source.Table != "t" || recs[1].Source.Schema != "public" {
			t.Errorf("drop record: key %s source %+v", recs[1].Key, recs[1].Source)
		}
		if recs[2].Op != record.OpInsert || recs[2].Source.Table != "u" {
			t.Errorf("record 2: %s on %s", recs[2].Op, recs[2].Source.Table)
		}
		// A restart finds its function in place and changes nothing, so
		// its own set-up leaves no ddl record.
		if err := run.stop(); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		startReady(t, Config{ConnString: url, CaptureDDL: true}, ts)
		execIn(t, url, `INSERT INTO u VALUES (2)`)
		recs = ts.records(t, 4)
		if len(recs) != 4 || recs[3].Op != record.OpInsert {
			for _, r := range recs[3:] {
				t.Logf("%s %s %s", r.Op, r.Key, r.After)
			}
			t.Fatalf("after a restart: %d records, want the insert only", len(recs))
		}
	})

	t.Run("RelationChange", func(t *testing.T) {
		url := newDB(t, srv, "ddloff", `CREATE TABLE t (id int PRIMARY KEY, a text)`)
		ts := openStore(t, t.TempDir())
		startReady(t, Config{ConnString: url}, ts)
		execIn(t, url,
			`INSERT INTO t VALUES (1, 'x')`,
			`ALTER TABLE t ADD COLUMN b varchar(10)`,
			`INSERT INTO t VALUES (2, 'y', 'z')`)
		recs := ts.records(t, 3)
		if len(recs) != 3 {
			t.Fatalf("got %d records, want 3", len(recs))
		}
		// The relation's ddl record follows the rows of its transaction.
		ddl := recs[2]
		if ddl.Op != record.OpDDL || string(ddl.Key) != `{"relation":"public.t"}` || ddl.Source.Table != "t" {
			t.Fatalf("ddl record: op %s key %s source %+v", ddl.Op, ddl.Key, ddl.Source)
		}
		want := `{"columns":[{"name":"id","type":"integer"},{"name":"a","type":"text"},{"name":"b","type":"character varying(10)"}],"version":2}`
		if string(ddl.After) != want {
			t.Errorf("ddl after = %s, want %s", ddl.After, want)
		}
		if ddl.Tx == nil || ddl.Tx.ID != recs[1].Tx.ID || *ddl.Tx.Index != 1 {
			t.Errorf("ddl tx = %+v", ddl.Tx)
		}
		if got := fields(t, recs[1].After)["b"]; got != `"z"` {
			t.Errorf("row after the ALTER: b = %s", got)
		}
		checkVersions(t, recs[0], recs[1])
	})
}

// checkVersions checks that before holds schema version 1 and after 2.
func checkVersions(t *testing.T, before, after *record.Record) {
	t.Helper()
	for i, r := range []*record.Record{before, after} {
		want := record.SchemaRef{Subject: r.Source.Name + ".public.t", Version: int64(i + 1)}
		if r.Schema == nil || *r.Schema != want {
			t.Errorf("record %s: schema %+v, want %+v", r.Key, r.Schema, want)
		}
	}
}
