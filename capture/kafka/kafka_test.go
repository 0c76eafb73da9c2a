package kafka

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/stele/stele/capture"
)

func TestAuthErrors(t *testing.T) {
	s, err := New(Config{Name: "k", Brokers: []string{"b:9092"}, Topics: []string{"t"}, SASL: SASL{Mechanism: "PLAIN", User: "u", Password: "pw-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []error{kerr.SaslAuthenticationFailed, kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed} {
		got := s.classify(fmt.Errorf("fetch: %w", e))
		if !capture.IsPermanent(got) || !errors.Is(got, ErrAuth) {
			t.Errorf("%v: classified %v, want a permanent ErrAuth", e, got)
		}
		if strings.Contains(got.Error(), "pw-secret") {
			t.Errorf("the error reveals the password: %v", got)
		}
	}
	if got := s.classify(kerr.NotLeaderForPartition); capture.IsPermanent(got) {
		t.Errorf("a leader change is permanent: %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{Brokers: []string{"b"}, Topics: []string{"t"}}, "name"},
		{Config{Name: "k", Topics: []string{"t"}}, "brokers"},
		{Config{Name: "k", Brokers: []string{"b"}}, "topics"},
		{Config{Name: "k", Brokers: []string{"b"}, Topics: []string{"("}, TopicRegex: true}, "topics"},
		{Config{Name: "k", Brokers: []string{"b"}, Topics: []string{"t"}, SASL: SASL{Mechanism: "GSSAPI"}}, "sasl.mechanism"},
	} {
		_, err := New(tc.cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("%+v: err %v, want ErrConfig naming %s", tc.cfg, err, tc.field)
		}
	}
}
