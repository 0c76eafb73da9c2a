package main

import (
	"strings"
	"testing"
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
	if shop.Name != "shop" || shop.Kind != "postgres" || shop.Slot != "shop_slot" || shop.Publication != "shop_pub" ||
		strings.Join(shop.Tables, ",") != "public.orders,customers" || strings.Join(shop.ExcludeTables, ",") != "public.sessions" ||
		shop.ReplicaIdentity != "full" {
		t.Errorf("shop = %+v", shop)
	}
	pc := shop.postgresConfig(nil)
	if !pc.ReplicaIdentityFull || !pc.SkipSetup || pc.ConnString != shop.URL {
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
		{name: "flag unknown kind", args: []string{"--source", "mysql://u:topsecret@h/db"}, wants: []string{"--source", `unknown source kind "mysql"`}},
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
