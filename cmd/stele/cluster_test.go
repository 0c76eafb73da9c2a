package main

import (
	"strings"
	"testing"
	"time"
)

// cluster: is read as a mapping or as the URLs alone, through the same
// setters as --cluster and STELE_CLUSTER*, and mistakes name the key.
func TestClusterConfig(t *testing.T) {
	cfg, err := loadTest(t, "cluster:\n  nats: nats://a:4222,nats://b:4222\n  node: a\n  lease_ttl: 3s\n  ack_timeout: 4s\n  log: billing\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ClusterConfig{URLs: "nats://a:4222,nats://b:4222", Node: "a", LeaseTTL: 3 * time.Second, AckTimeout: 4 * time.Second, Log: "billing"}
	if cfg.Cluster != want {
		t.Fatalf("cluster: mapping gave %+v, want %+v", cfg.Cluster, want)
	}
	cfg, err = loadTest(t, "cluster: nats://a:4222\n", map[string]string{"STELE_CLUSTER_NODE": "b"}, "--cluster-lease-ttl", "1s")
	if err != nil {
		t.Fatal(err)
	}
	if want := (ClusterConfig{URLs: "nats://a:4222", Node: "b", LeaseTTL: time.Second}); cfg.Cluster != want {
		t.Fatalf("cluster: scalar gave %+v, want %+v", cfg.Cluster, want)
	}
	// A cluster's keys live on its NATS servers unless configured
	// otherwise; a data directory's own keystore cannot serve one.
	if cfg.Keystore.Kind != "nats" || cfg.Keystore.NATSURL != "nats://a:4222" {
		t.Fatalf("cluster without keystore settings: keystore %+v, want the KV bucket on the cluster's servers", cfg.Keystore)
	}
	cfg, err = loadTest(t, "cluster: nats://a:4222\nkeystore: {kind: nats, nats_url: nats://k:4222, bucket: KEYS}\n", nil)
	if err != nil || cfg.Keystore.NATSURL != "nats://k:4222" || cfg.Keystore.Bucket != "KEYS" {
		t.Fatalf("cluster with its own keystore settings: %+v, %v", cfg.Keystore, err)
	}
	if _, err := loadTest(t, "cluster: nats://a:4222\nkeystore: {kind: file}\n", nil); err == nil || !strings.Contains(err.Error(), "keystore_kind: file cannot serve a cluster") {
		t.Fatalf("a file keystore in a cluster: %v, want a refusal naming keystore_kind", err)
	}
	if cfg, _ := loadTest(t, "", nil); cfg.Cluster != (ClusterConfig{}) || cfg.Keystore.Kind == "nats" {
		t.Fatalf("no cluster configured, got %+v: one machine must stay the default", cfg.Cluster)
	}
	for _, tc := range []struct {
		yaml  string
		args  []string
		wants []string
	}{
		{yaml: "cluster:\n  nats: http://a:80\n", wants: []string{"cluster.nats", "nats://"}},
		{yaml: "cluster:\n  brokers: x\n", wants: []string{`unknown key "brokers"`, "ack_timeout, lease_ttl, log, nats, node"}},
		{yaml: "cluster:\n  log: Billing\n", wants: []string{"cluster.log", "a-z, 0-9 and _"}},
		{args: []string{"--cluster-log", "billing.eu"}, wants: []string{"--cluster-log", "a-z, 0-9 and _"}},
		{yaml: "cluster:\n  lease_ttl: 0s\n", wants: []string{"cluster.lease_ttl", "positive"}},
		{args: []string{"--cluster", "a:4222"}, wants: []string{"--cluster", "nats://"}},
	} {
		_, err := loadTest(t, tc.yaml, nil, tc.args...)
		if err == nil {
			t.Fatalf("%q %v: no error", tc.yaml, tc.args)
		}
		for _, w := range tc.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	}
}
