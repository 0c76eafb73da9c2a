package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stele/stele/capture/kafka"
)

// KafkaSourceConfig is the kafka: section of a source: Debezium change
// events from Kafka topics.
//
//	sources:
//	  - name: shop-kafka
//	    kafka:
//	      brokers: [kafka1:9092, kafka2:9092]
//	      topics: ['^dbserver1\.public\..*']
//	      topic_regex: true          # topics are regular expressions (default false)
//	      group: stele-shop          # default stele-<name>
//	      transaction_topic: dbserver1.transaction   # Debezium's metadata topic (default: none)
//	      outbox: public.outbox      # Debezium outbox rows → event records, cause of their transaction (also outbox_table)
//	      mirrors: shop              # the postgres/mysql source of the same database: records carry its name and ids, so a change read both ways is one record
//	      tls: true                  # default false
//	      tls_ca_file: /etc/ssl/kafka-ca.pem         # default: the system roots
//	      sasl_mechanism: SCRAM-SHA-512              # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
//	      sasl_user: stele
//	      sasl_password: secret      # or STELE_KAFKA_PASSWORD
//	      session_timeout: 45s       # how soon a dead member's partitions move (default 45s)
//	      instance_id: shop-node1    # static group membership (default: derived from the host and data directory)
type KafkaSourceConfig struct {
	Brokers          []string
	Topics           []string
	TopicRegex       bool
	Group            string
	TransactionTopic string
	OutboxTable      string
	Mirrors          string
	TLS              bool
	TLSCAFile        string
	SASLMechanism    string
	SASLUser         string
	SASLPassword     string
	SessionTimeout   time.Duration
	InstanceID       string
}

var kafkaKeys = []string{"brokers", "topics", "topic_regex", "group", "transaction_topic", "outbox_table", "outbox", "mirrors", "tls", "tls_ca_file", "sasl_mechanism", "sasl_user", "sasl_password", "session_timeout", "instance_id"}

func parseKafkaKey(sc *SourceConfig, where, k string, val *yaml.Node) error {
	if sc.Kafka == nil {
		sc.Kafka = &KafkaSourceConfig{}
	}
	kc := sc.Kafka
	switch k {
	case "brokers", "topics":
		list, err := stringList(where, k, val, "a list of strings")
		if err != nil {
			return err
		}
		if k == "brokers" {
			kc.Brokers = list
		} else {
			kc.Topics = list
		}
		return nil
	}
	if val.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: %s: want a single value", where, k)
	}
	switch k {
	case "topic_regex", "tls":
		var b bool
		if err := val.Decode(&b); err != nil {
			return fmt.Errorf("%s: %s: want true or false: %w", where, k, err)
		}
		if k == "tls" {
			kc.TLS = b
		} else {
			kc.TopicRegex = b
		}
	case "group":
		kc.Group = val.Value
	case "transaction_topic":
		kc.TransactionTopic = val.Value
	case "outbox_table", "outbox":
		kc.OutboxTable = val.Value
	case "mirrors":
		kc.Mirrors = val.Value
	case "tls_ca_file":
		kc.TLSCAFile = val.Value
	case "sasl_mechanism":
		kc.SASLMechanism = strings.ToUpper(val.Value)
	case "sasl_user":
		kc.SASLUser = val.Value
	case "sasl_password":
		kc.SASLPassword = val.Value
	case "instance_id":
		kc.InstanceID = val.Value
	case "session_timeout":
		d, err := time.ParseDuration(val.Value)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s: session_timeout: %q is not a duration such as 45s", where, val.Value)
		}
		kc.SessionTimeout = d
	}
	return nil
}

func checkKafka(sc SourceConfig) (string, error) {
	if sc.Kafka == nil {
		return "", errors.New("kafka: the section is required (brokers, topics)")
	}
	if sc.Name == "" {
		return "", errors.New("name: required for a kafka source (records carry it as source.name)")
	}
	cfg, err := sc.kafkaConfig(nil)
	if err != nil {
		return "", err
	}
	src, err := kafka.New(cfg)
	if err != nil {
		return "", err
	}
	return src.Name(), nil
}

func (sc SourceConfig) kafkaConfig(logger *slog.Logger) (kafka.Config, error) {
	kc := sc.Kafka
	if kc == nil {
		kc = &KafkaSourceConfig{}
	}
	cfg := kafka.Config{
		Name: sc.Name, Brokers: kc.Brokers, Topics: kc.Topics, TopicRegex: kc.TopicRegex,
		Group: kc.Group, TransactionTopic: kc.TransactionTopic, OutboxTable: kc.OutboxTable, Mirrors: kc.Mirrors,
		SASL:       kafka.SASL{Mechanism: kc.SASLMechanism, User: kc.SASLUser, Password: kc.SASLPassword},
		DeadLetter: sc.park, Logger: logger, SessionTimeout: kc.SessionTimeout,
	}
	if cfg.SASL.Password == "" {
		cfg.SASL.Password = os.Getenv("STELE_KAFKA_PASSWORD")
	}
	cfg.InstanceID = kc.InstanceID
	if cfg.InstanceID == "" && sc.stateDir != "" {
		cfg.InstanceID = defaultInstanceID(sc.Name, sc.stateDir)
	}
	if kc.TLS || kc.TLSCAFile != "" {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if kc.TLSCAFile != "" {
			pem, err := os.ReadFile(kc.TLSCAFile)
			if err != nil {
				return cfg, fmt.Errorf("tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return cfg, fmt.Errorf("tls_ca_file: %s holds no PEM certificate", kc.TLSCAFile)
			}
			cfg.TLS.RootCAs = pool
		}
	}
	return cfg, nil
}

// defaultInstanceID names this process in the consumer group, the same
// across restarts on one data directory and different for another data
// directory or host: a stele restarted after kill -9 takes its dead
// predecessor's place at once instead of leaving it in the group, holding
// partitions, until its session times out.
func defaultInstanceID(name, stateDir string) string {
	host, _ := os.Hostname()
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	sum := sha256.Sum256([]byte(host + "\x00" + stateDir))
	return "stele-" + name + "-" + hex.EncodeToString(sum[:6])
}
