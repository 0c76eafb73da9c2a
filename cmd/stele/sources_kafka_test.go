package main

import (
	"strings"
	"testing"
	"time"
)

func TestConfigKafkaSources(t *testing.T) {
	yaml := `
data: /tmp/x
sources:
  - name: shop
    kafka:
      brokers: [k1:9092, k2:9092]
      topics: ['^dbserver1\.public\..*']
      topic_regex: true
      transaction_topic: dbserver1.transaction
      sasl_mechanism: scram-sha-512
      sasl_user: stele
      sasl_password: pw
`
	cfg, err := loadTest(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.sourceList()
	if len(got) != 1 || got[0].Kind != "kafka" || got[0].Name != "shop" {
		t.Fatalf("sources %+v", got)
	}
	kc, err := got[0].kafkaConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(kc.Brokers, ",") != "k1:9092,k2:9092" || !kc.TopicRegex || kc.TransactionTopic != "dbserver1.transaction" ||
		kc.SASL.Mechanism != "SCRAM-SHA-512" || kc.SASL.User != "stele" || kc.SASL.Password != "pw" || kc.Name != "shop" {
		t.Errorf("kafka config %+v", kc)
	}
}

func TestConfigKafkaSourceErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sources:\n  - name: s\n    kafka: {topics: [t]}\n", "brokers:"},
		{"sources:\n  - name: s\n    kafka: {brokers: [b:1]}\n", "topics:"},
		{"sources:\n  - kafka: {brokers: [b:1], topics: [t]}\n", "name:"},
		{"sources:\n  - name: s\n    kafka: {brokers: [b:1], topics: [t], sasl_mechanism: gssapi}\n", "sasl.mechanism:"},
		{"sources:\n  - name: s\n    kafka: {brokers: [b:1], topics: [t], bogus: 1}\n", "bogus"},
	} {
		_, err := loadTest(t, "data: /tmp/x\n"+tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want it to name %s", tc.yaml, err, tc.want)
		}
	}
}

func TestConfigNATSSources(t *testing.T) {
	cfg, err := loadTest(t, "data: /tmp/x\nsources:\n  - name: shop\n    nats: {url: 'nats://n:4222', stream: DBZ, subjects: [dbserver1.>], tx_subject: dbserver1.transaction, ack_wait: 10s}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.sourceList()
	if len(got) != 1 || got[0].Kind != "nats" {
		t.Fatalf("sources %+v", got)
	}
	nc := got[0].natsConfig(nil)
	if nc.URL != "nats://n:4222" || nc.Stream != "DBZ" || nc.TxSubject != "dbserver1.transaction" || len(nc.Subjects) != 1 || nc.AckWait != 10*time.Second {
		t.Errorf("nats config %+v", nc)
	}
	if _, err := loadTest(t, "data: /tmp/x\nsources:\n  - name: s\n    nats: {url: 'nats://n:4222'}\n", nil); err == nil || !strings.Contains(err.Error(), "stream:") {
		t.Errorf("no stream: err %v", err)
	}
}

// TestKafkaInstanceID: a kafka source is a static group member, under an
// id that is the same for every start on one data directory (so a
// restarted process replaces its dead predecessor) and different for
// another data directory; instance_id overrides it.
func TestKafkaInstanceID(t *testing.T) {
	cfg, err := loadTest(t, "data: /tmp/x\nsources:\n  - name: shop\n    kafka: {brokers: [b:1], topics: [t]}\n  - name: pinned\n    kafka: {brokers: [b:1], topics: [t], instance_id: node-7}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	srcs := cfg.sourceList()
	id := func(sc SourceConfig, data string) string {
		t.Helper()
		sc.stateDir = sourceStateDir(data, sc.Name)
		kc, err := sc.kafkaConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		return kc.InstanceID
	}
	a, again, other := id(srcs[0], "/data/a"), id(srcs[0], "/data/a"), id(srcs[0], "/data/b")
	if a == "" || a != again || a == other || !strings.HasPrefix(a, "stele-shop-") {
		t.Errorf("derived instance ids %q, %q (same dir), %q (other dir): want stable per data directory, distinct across them", a, again, other)
	}
	if got := id(srcs[1], "/data/a"); got != "node-7" {
		t.Errorf("instance_id node-7 gave %q", got)
	}
}
