package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigMySQLSources(t *testing.T) {
	yaml := `
data: /tmp/x
sources:
  - name: crm
    mysql:
      url: mysql://stele:pw@db.example:3306/crm
      flavor: mariadb
      server_id: 4242
      tables: [accounts, crm.contacts]
      exclude_tables: crm.sessions
      context_table: who
      create_context_table: true
      max_lag: 2h
      snapshot: initial
  - kind: mysql
    mysql: {url: "mysql://u@h/billing"}
`
	cfg, err := loadTest(t, yaml, nil, "--source", "mariadb://u@h:3307/hr", "--source", "mysql://u@h/ops?server_id=9")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.sourceList()
	if len(got) != 4 {
		t.Fatalf("got %d sources, want 4: %+v", len(got), got)
	}
	crm := got[0]
	mc := crm.MySQL
	if crm.Kind != "mysql" || mc.Flavor != "mariadb" || mc.ServerID != 4242 || strings.Join(mc.Tables, ",") != "accounts,crm.contacts" ||
		strings.Join(mc.ExcludeTables, ",") != "crm.sessions" || mc.ContextTable != "who" || !mc.CreateContextTable || mc.MaxLag != 2*time.Hour ||
		mc.Snapshot != "initial" || crm.mysqlConfig(nil).Snapshot != "initial" {
		t.Errorf("crm = %+v %+v", crm, mc)
	}
	for i, name := range []string{"crm", "billing", "hr", "ops"} {
		if got[i].Name != name || got[i].Kind != "mysql" {
			t.Errorf("source %d = %+v, want name %s", i, got[i], name)
		}
	}
	crm.stateDir = sourceStateDir("/data", crm.Name)
	c := crm.mysqlConfig(nil)
	if c.StateDir != filepath.Join("/data", "sources", "crm") || c.URL != mc.URL || c.ServerID != 4242 {
		t.Errorf("mysql config = %+v", c)
	}
	if d := sourceStateDir("/data", "../etc"); d != filepath.Join("/data", "sources", "_.._etc") {
		t.Errorf("state dir of a name with a path in it: %s", d)
	}
}

func TestConfigMySQLSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		wants []string
	}{
		{"no url", "sources:\n  - mysql: {flavor: mysql}\n", []string{"url: required", "mysql://"}},
		{"bad flavor", "sources:\n  - mysql: {url: 'mysql://u@h/d', flavor: oracle}\n", []string{`flavor "oracle"`}},
		{"bad server id", "sources:\n  - mysql: {url: 'mysql://u@h/d', server_id: x}\n", []string{"server_id", "not a number"}},
		{"bad max lag", "sources:\n  - mysql: {url: 'mysql://u@h/d', max_lag: soon}\n", []string{"max_lag", "duration"}},
		{"bad snapshot", "sources:\n  - mysql: {url: 'mysql://u@h/d', snapshot: always}\n", []string{"snapshot", "initial"}},
		{"unknown key", "sources:\n  - mysql: {url: 'mysql://u@h/d', slot: x}\n", []string{`unknown key "mysql.slot"`, "server_id"}},
		{"password redacted", "sources:\n  - mysql: {url: 'mysql://u:hunter2@h/d?tls=maybe'}\n", []string{"tls="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTest(t, tc.yaml, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}
