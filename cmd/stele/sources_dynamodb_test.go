package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDynamoDBSources(t *testing.T) {
	yaml := `
data: /tmp/x
sources:
  - name: orders
    dynamodb:
      tables: [Orders, "arn:aws:dynamodb:eu-west-1:123456789012:table/Lines/stream/2026-01-01T00:00:00.000"]
      region: eu-west-1
      endpoint: http://localhost:8000
      concurrency: 4
      poll_min: 100ms
      poll_max: 3s
      list_interval: 30s
      allow_partial_images: true
  - dynamodb: {tables: Carts}
`
	cfg, err := loadTest(t, yaml, nil, "--source", "dynamodb://Users,Sessions?region=us-west-2&endpoint=http://127.0.0.1:8000")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.sourceList()
	if len(got) != 3 {
		t.Fatalf("got %d sources, want 3: %+v", len(got), got)
	}
	for i, name := range []string{"orders", "Carts", "Users"} {
		if got[i].Name != name || got[i].Kind != "dynamodb" {
			t.Errorf("source %d = %+v, want name %s kind dynamodb", i, got[i], name)
		}
	}
	o := got[0]
	o.stateDir = sourceStateDir("/data", o.Name)
	c, err := o.dynamodbConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != filepath.Join("/data", "sources", "orders") || len(c.Tables) != 2 || c.Region != "eu-west-1" || c.Endpoint != "http://localhost:8000" ||
		c.Concurrency != 4 || c.PollMin != 100*time.Millisecond || c.PollMax != 3*time.Second || c.ListInterval != 30*time.Second || !c.AllowPartialImages {
		t.Errorf("orders config = %+v", c)
	}
	u, err := got[2].dynamodbConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(u.Tables, ",") != "Users,Sessions" || u.Region != "us-west-2" || u.Endpoint != "http://127.0.0.1:8000" {
		t.Errorf("--source config = %+v", u)
	}
}

func TestConfigDynamoDBSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		flags []string
		wants []string
	}{
		{"no tables", "sources:\n  - dynamodb: {region: eu-west-1}\n", nil, []string{"tables: required", "dynamodb://"}},
		{"bad arn", "sources:\n  - dynamodb: {tables: ['arn:aws:s3:::bucket']}\n", nil, []string{"tables[0]", "stream ARN"}},
		{"bad endpoint", "sources:\n  - dynamodb: {tables: [T], endpoint: 'localhost:8000'}\n", nil, []string{"endpoint", "http://host:port"}},
		{"bad duration", "sources:\n  - dynamodb: {tables: [T], poll_max: often}\n", nil, []string{"poll_max", "duration"}},
		{"bad flag", "sources:\n  - dynamodb: {tables: [T], allow_partial_images: maybe}\n", nil, []string{"allow_partial_images", "true or false"}},
		{"bad concurrency", "sources:\n  - dynamodb: {tables: [T], concurrency: 0}\n", nil, []string{"concurrency", "1 to 1000"}},
		{"unknown key", "sources:\n  - dynamodb: {tables: [T], url: x}\n", nil, []string{`unknown key "dynamodb.url"`, "list_interval"}},
		{"unknown URL parameter", "", []string{"--source", "dynamodb://T?profile=x"}, []string{`parameter "profile" is unknown`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTest(t, tc.yaml, nil, tc.flags...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
