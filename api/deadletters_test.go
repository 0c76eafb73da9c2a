package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stele/stele/api"
	"github.com/stele/stele/deadletter"
)

// parkedLetters stands in for the dead-letter file at the API's boundary;
// deadletter's own tests replay real records through a real log.
type parkedLetters struct {
	entries  []deadletter.Entry
	replayed int
	fail     error
}

func (p *parkedLetters) Entries() ([]deadletter.Entry, error) {
	return append([]deadletter.Entry(nil), p.entries...), nil
}

func (p *parkedLetters) Replay(context.Context) (*deadletter.ReplayResult, error) {
	p.replayed++
	if p.fail != nil {
		return nil, p.fail
	}
	return &deadletter.ReplayResult{Appended: 1, StillParked: []deadletter.Entry{{ID: "r2", Field: "after.email", Reason: "is not a string"}}}, nil
}

func TestDeadLetterEndpoints(t *testing.T) {
	pl := &parkedLetters{entries: []deadletter.Entry{
		{ID: "r1", Source: "crm.public.customers", Field: "after.email", Reason: "is not a string", Subjects: []string{"s1"}, Record: "c2VhbGVk"},
	}}
	e := newEnv(t, func(c *api.Config) {
		c.Auth = roleTokens{}
		c.DeadLetters = pl
	})
	for _, role := range []string{"auditor", "analyst", "service"} {
		if r := e.as(t, role, "GET", "/v1/deadletters", ""); r.status != http.StatusForbidden {
			t.Errorf("%s listing dead letters: %d %s", role, r.status, r.body)
		}
		if r := e.as(t, role, "POST", "/v1/deadletters/replay", ""); r.status != http.StatusForbidden {
			t.Errorf("%s replaying dead letters: %d %s", role, r.status, r.body)
		}
	}
	if pl.replayed != 0 {
		t.Fatal("a refused request replayed")
	}
	r := e.as(t, "admin", "GET", "/v1/deadletters", "")
	if r.status != http.StatusOK || strings.Contains(string(r.body), "c2VhbGVk") || !strings.Contains(string(r.body), `"reason":"is not a string"`) {
		t.Fatalf("admin list: %d %s (want the reason, never the sealed record)", r.status, r.body)
	}
	size := e.store.Size()
	r = e.as(t, "admin", "POST", "/v1/deadletters/replay", "")
	var res deadletter.ReplayResult
	if r.status != http.StatusOK || json.Unmarshal(r.body, &res) != nil || res.Appended != 1 || len(res.StillParked) != 1 {
		t.Fatalf("admin replay: %d %s", r.status, r.body)
	}
	if e.store.Size() != size+1 {
		t.Fatalf("the replay was not recorded as an admin action (log %d → %d)", size, e.store.Size())
	}
	if rec, err := e.store.Read(size); err != nil || !strings.Contains(string(rec.After), "deadletters.replay") {
		t.Fatalf("admin record: %+v, %v", rec, err)
	}
	pl.fail = errors.New("keystore unavailable: /secret/path")
	if r := e.as(t, "admin", "POST", "/v1/deadletters/replay", ""); r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "/secret/path") {
		t.Fatalf("failed replay: %d %s", r.status, r.body)
	}
	if r := e.as(t, "admin", "DELETE", "/v1/deadletters", ""); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE: %d", r.status)
	}
}
