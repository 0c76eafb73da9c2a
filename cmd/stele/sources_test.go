package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stele/stele/capture/dynamodb"
	"github.com/stele/stele/capture/postgres"
)

func TestConfigSources(t *testing.T) {
	yaml := `
data: /tmp/x
sources:
  - name: shop
    kind: postgres
    url: postgres://stele:pw@db.example:5432/shop
    slot: shop_slot
    publication: shop_pub
    tables: [public.orders, customers]
    exclude_tables: public.sessions
    replica_identity: full
    setup: skip
  - url: postgres://stele@db.example/crm
`
	cfg, err := loadTest(t, yaml, nil, "--source", "postgresql://u@h:5433/billing", "--source", "postgres://u@h/hr")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.sourceList()
	if len(got) != 4 {
		t.Fatalf("got %d sources, want 4: %+v", len(got), got)
	}
	shop := got[0]
	if pg := shop.Postgres; shop.Name != "shop" || shop.Kind != "postgres" || pg.Slot != "shop_slot" || pg.Publication != "shop_pub" ||
		strings.Join(pg.Tables, ",") != "public.orders,customers" || strings.Join(pg.ExcludeTables, ",") != "public.sessions" ||
		pg.ReplicaIdentity != "full" {
		t.Errorf("shop = %+v", shop)
	}
	pc := shop.postgresConfig(nil)
	if !pc.ReplicaIdentityFull || !pc.SkipSetup || pc.ConnString != shop.Postgres.URL {
		t.Errorf("postgres config = %+v", pc)
	}
	for i, name := range []string{"shop", "crm", "billing", "hr"} {
		if got[i].Name != name || got[i].Kind != "postgres" {
			t.Errorf("source %d = %+v, want name %s (default: the database name)", i, got[i], name)
		}
	}
	// Without sources, Config stays comparable and equal to the defaults.
	cfg, err = loadTest(t, "", nil)
	if err != nil || cfg != defaultConfig() {
		t.Fatalf("no sources: %+v, %v", cfg, err)
	}
}

func TestConfigSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		args  []string
		wants []string
	}{
		{name: "unknown source key", yaml: "sources:\n  - url: postgres://h/db\n    host: x\n", wants: []string{`unknown key "host"`, "sources[0]", "line 2"}},
		{name: "unknown kind", yaml: "sources:\n  - kind: oracle\n    url: oracle://h/db\n", wants: []string{`unknown source kind "oracle"`, "sources[0]"}},
		{name: "missing url", yaml: "sources:\n  - name: x\n", wants: []string{"url", "required"}},
		{name: "not a list", yaml: "sources: postgres://h/db\n", wants: []string{"sources", "list"}},
		{name: "bad replica identity", yaml: "sources:\n  - url: postgres://h/db\n    replica_identity: some\n", wants: []string{"replica_identity", "full or default"}},
		{name: "bad setup", yaml: "sources:\n  - url: postgres://h/db\n    setup: never\n", wants: []string{"setup", "auto or skip"}},
		{name: "duplicate names", yaml: "sources:\n  - url: postgres://h/db\n  - url: postgres://other/db\n", wants: []string{`two sources are named "db"`}},
		{name: "sources twice", yaml: "sources: []\nsources: []\n", wants: []string{`"sources" given twice`}},
		{name: "flag unknown kind", args: []string{"--source", "oracle://u:topsecret@h/db"}, wants: []string{"--source", `unknown source kind "oracle"`}},
		{name: "flag not a url", args: []string{"--source", "dbname"}, wants: []string{"--source", "postgres://"}},
		{name: "flag duplicates file", yaml: "sources:\n  - url: postgres://h/db\n", args: []string{"--source", "postgres://h2/db"}, wants: []string{"--source", `named "db"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTest(t, tc.yaml, nil, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("error reveals a password: %v", err)
			}
		})
	}
}

func TestSourceCollector(t *testing.T) {
	// A real source, constructed but never connected: its Stats say it is
	// connecting, with nothing captured.
	src, err := postgres.New(postgres.Config{Name: "shop", ConnString: "postgres://stele:topsecret@127.0.0.1:1/shop"})
	if err != nil {
		t.Fatal(err)
	}
	// A dynamodb source adds its gap counter.
	ddb, err := dynamodb.New(dynamodb.Config{Name: "orders", Tables: []string{"Orders"}, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&sourceCollector{sources: []statsSource{src, ddb}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += "," + l.GetName() + "=" + l.GetValue()
			}
			v := m.GetGauge().GetValue()
			if mf.GetType() == dto.MetricType_COUNTER {
				v = m.GetCounter().GetValue()
			}
			got[mf.GetName()+labels] = v
		}
	}
	for key, want := range map[string]float64{
		"stele_source_lag_bytes,source=shop":           0,
		"stele_source_lag_seconds,source=shop":         0,
		"stele_source_records_total,source=shop":       0,
		"stele_source_up,source=shop,state=connecting": 1,
		"stele_source_up,source=shop,state=streaming":  0,
		"stele_source_up,source=shop,state=retrying":   0,
		"stele_source_up,source=shop,state=failed":     0,
		"stele_source_gaps_total,source=orders":        0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v; all: %v", key, v, ok, want, got)
		}
	}
	if _, ok := got["stele_source_gaps_total,source=shop"]; ok {
		t.Error("a postgres source exports a gap counter it does not keep")
	}
	for _, mf := range mfs {
		if mf.GetName() == "stele_source_records_total" && mf.GetType() != dto.MetricType_COUNTER {
			t.Errorf("stele_source_records_total is a %v, want a counter", mf.GetType())
		}
	}
}

// The server's sink must offer the id lookup capture sources use to detect
// an interrupted initial snapshot.
var _ postgres.IDLookup = indexedSink{}

func TestIndexedSinkHasID(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ix, err := index.Open(filepath.Join(dir, "index"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	store, err := logstore.Open(ctx, dir, logstore.Options{Hook: ix})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sink := indexedSink{Store: store, log: store, ix: ix}
	r := &record.Record{ID: "marker-1", Source: record.Source{Name: "s", Kind: "postgres", Table: "t"},
		Op: record.OpSnapshot, Key: json.RawMessage(`{"k":1}`), OccurredAt: time.Now()}
	if _, err := sink.Append(ctx, []*record.Record{r}); err != nil {
		t.Fatal(err)
	}
	// Right after the acknowledgement, before the index has necessarily
	// caught up: HasID must still see it.
	if ok, err := sink.HasID(ctx, "marker-1"); err != nil || !ok {
		t.Fatalf("HasID(stored id) = %v, %v", ok, err)
	}
	if ok, err := sink.HasID(ctx, "marker-2"); err != nil || ok {
		t.Fatalf("HasID(unknown id) = %v, %v", ok, err)
	}
}

// Each kind has its own section; the flat keys of older configurations
// still load to the same configuration.
func TestConfigSourceSections(t *testing.T) {
	sectioned := `
sources:
  - name: shop
    kind: postgres
    postgres:
      url: postgres://stele@db.example:5432/shop
      slot: shop_slot
      tables: [public.orders]
      replica_identity: full
  - postgres:
      url: postgres://stele@db.example/crm
`
	flat := `
sources:
  - name: shop
    url: postgres://stele@db.example:5432/shop
    slot: shop_slot
    tables: [public.orders]
    replica_identity: full
  - url: postgres://stele@db.example/crm
`
	a, err := loadTest(t, sectioned, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadTest(t, flat, nil)
	if err != nil {
		t.Fatal(err)
	}
	ga, gb := a.sourceList(), b.sourceList()
	if len(ga) != 2 || len(gb) != 2 {
		t.Fatalf("sources: %+v / %+v", ga, gb)
	}
	for i := range ga {
		if ga[i].Name != gb[i].Name || ga[i].Kind != "postgres" || gb[i].Kind != "postgres" {
			t.Errorf("source %d: %+v vs %+v", i, ga[i], gb[i])
		}
		if pa, pb := ga[i].postgresConfig(nil), gb[i].postgresConfig(nil); pa.ConnString != pb.ConnString || pa.Slot != pb.Slot ||
			pa.ReplicaIdentityFull != pb.ReplicaIdentityFull || strings.Join(pa.Tables, ",") != strings.Join(pb.Tables, ",") {
			t.Errorf("source %d: sectioned %+v, flat %+v", i, pa, pb)
		}
	}
	if ga[1].Name != "crm" {
		t.Errorf("kind and name defaults: %+v", ga[1])
	}
}

func TestConfigSourceSectionErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		wants []string
	}{
		{name: "unknown key in section", yaml: "sources:\n  - name: shop\n    postgres:\n      url: postgres://h/db\n      host: x\n",
			wants: []string{`unknown key "postgres.host"`, `source "shop"`, "known keys: url"}},
		{name: "missing url in section", yaml: "sources:\n  - name: shop\n    postgres: {slot: s}\n",
			wants: []string{`source "shop"`, "postgres section", "url: required"}},
		{name: "bad value in section", yaml: "sources:\n  - name: shop\n    postgres: {url: postgres://h/db, setup: never}\n",
			wants: []string{`source "shop"`, "setup", "auto or skip"}},
		{name: "unknown kind beside a section", yaml: "sources:\n  - name: shop\n    kind: oracle\n    postgres: {url: postgres://h/db}\n",
			wants: []string{`source "shop"`, `unknown source kind "oracle"`, "known: dynamodb, kafka, mysql, nats, postgres"}},
		{name: "section of another kind", yaml: "sources:\n  - name: shop\n    kind: mysql\n    postgres: {url: postgres://h/db}\n",
			wants: []string{`source "shop"`, "section postgres does not match kind mysql"}},
		{name: "flat key beside section", yaml: "sources:\n  - name: shop\n    slot: s\n    postgres: {url: postgres://h/db}\n",
			wants: []string{`source "shop"`, `key "slot" beside the postgres: section`, "move it into the section"}},
		{name: "section not a mapping", yaml: "sources:\n  - name: shop\n    postgres: postgres://h/db\n",
			wants: []string{`source "shop"`, "postgres: want a mapping"}},
		{name: "password not shown", yaml: "sources:\n  - name: shop\n    postgres: {url: 'postgres://u:topsecret@h/db', snapshot: always}\n",
			wants: []string{`source "shop"`, "snapshot"}},
		{name: "bad id scheme", yaml: "sources:\n  - name: shop\n    postgres: {url: postgres://h/db, id_scheme: lsn}\n",
			wants: []string{`source "shop"`, "id_scheme", `"change", "commit"`}},
		{name: "mirrors nothing", yaml: "sources:\n  - name: shop-kafka\n    kafka: {brokers: [k:9092], topics: [t], mirrors: shop}\n",
			wants: []string{`source "shop-kafka"`, "kafka.mirrors", `no source is named "shop"`}},
		{name: "mirrors a kafka source", yaml: "sources:\n  - name: a\n    kafka: {brokers: [k:9092], topics: [t]}\n  - name: b\n    nats: {url: 'nats://n:4222', stream: s, mirrors: a}\n",
			wants: []string{`source "b"`, "nats.mirrors", "kind kafka", "postgres or mysql"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTest(t, tc.yaml, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("error reveals a password: %v", err)
			}
		})
	}
}

// A Debezium source mirroring a direct one, and outbox tables on each kind.
func TestConfigMirrorsAndOutbox(t *testing.T) {
	c, err := loadTest(t, `
sources:
  - name: shop
    postgres: {url: postgres://stele@db/shop, outbox: public.outbox, id_scheme: change}
  - name: crm
    mysql: {url: mysql://stele@db:3306/crm, outbox: crm.outbox}
  - name: shop-kafka
    kafka: {brokers: [k:9092], topics: [t], mirrors: shop, transaction_topic: tx, outbox: public.outbox}
  - name: shop-nats
    nats: {url: 'nats://n:4222', stream: s, mirrors: shop}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	ss := c.sourceList()
	pc, mc := ss[0].postgresConfig(nil), ss[1].mysqlConfig(nil)
	kc, err := ss[2].kafkaConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	nc := ss[3].natsConfig(nil)
	if pc.Outbox != "public.outbox" || pc.IDScheme != "change" || mc.Outbox != "crm.outbox" ||
		kc.Mirrors != "shop" || kc.OutboxTable != "public.outbox" || nc.Mirrors != "shop" {
		t.Errorf("postgres %q %q, mysql %q, kafka %q %q, nats %q", pc.Outbox, pc.IDScheme, mc.Outbox, kc.Mirrors, kc.OutboxTable, nc.Mirrors)
	}
}
