package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stele/stele/capture/nats"
)

// NATSSourceConfig is the nats: section of a source: Debezium change
// events from a JetStream stream (Debezium Server's NATS JetStream sink).
//
//	sources:
//	  - name: shop
//	    nats:
//	      url: nats://nats1:4222
//	      stream: DEBEZIUM
//	      subjects: [dbserver1.public.>]   # default: the whole stream
//	      durable: stele-shop              # default stele-<name>
//	      tx_subject: dbserver1.transaction
//	      outbox: public.outbox            # outbox rows → event records, cause of their transaction (also outbox_table)
//	      mirrors: shop                    # the direct source of the same database (see the kafka section)
//	      user: stele                      # or token:
//	      password: secret                 # or STELE_NATS_PASSWORD
//	      ack_wait: 30s                    # how soon the server redelivers an unacked message (default 30s)
type NATSSourceConfig struct {
	URL         string
	Stream      string
	Subjects    []string
	Durable     string
	TxSubject   string
	OutboxTable string
	Mirrors     string
	User        string
	Password    string
	Token       string
	AckWait     time.Duration
}

var natsKeys = []string{"url", "stream", "subjects", "durable", "tx_subject", "outbox_table", "outbox", "mirrors", "user", "password", "token", "ack_wait"}

func parseNATSKey(sc *SourceConfig, where, k string, val *yaml.Node) error {
	if sc.NATS == nil {
		sc.NATS = &NATSSourceConfig{}
	}
	nc := sc.NATS
	if k == "subjects" {
		var err error
		nc.Subjects, err = stringList(where, k, val, "a list of subjects")
		return err
	}
	if val.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: %s: want a single value", where, k)
	}
	switch k {
	case "url":
		nc.URL = val.Value
	case "stream":
		nc.Stream = val.Value
	case "durable":
		nc.Durable = val.Value
	case "tx_subject":
		nc.TxSubject = val.Value
	case "outbox_table", "outbox":
		nc.OutboxTable = val.Value
	case "mirrors":
		nc.Mirrors = val.Value
	case "user":
		nc.User = val.Value
	case "password":
		nc.Password = val.Value
	case "token":
		nc.Token = val.Value
	case "ack_wait":
		d, err := time.ParseDuration(val.Value)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s: ack_wait: %q is not a duration such as 30s", where, val.Value)
		}
		nc.AckWait = d
	}
	return nil
}

func checkNATS(sc SourceConfig) (string, error) {
	if sc.NATS == nil {
		return "", errors.New("nats: the section is required (url, stream)")
	}
	if sc.Name == "" {
		return "", errors.New("name: required for a nats source (records carry it as source.name)")
	}
	src, err := nats.New(sc.natsConfig(nil))
	if err != nil {
		return "", err
	}
	return src.Name(), nil
}

func (sc SourceConfig) natsConfig(logger *slog.Logger) nats.Config {
	nc := sc.NATS
	if nc == nil {
		nc = &NATSSourceConfig{}
	}
	cfg := nats.Config{Name: sc.Name, URL: nc.URL, Stream: nc.Stream, Subjects: nc.Subjects, Durable: nc.Durable,
		TxSubject: nc.TxSubject, OutboxTable: nc.OutboxTable, Mirrors: nc.Mirrors, User: nc.User, Password: nc.Password, Token: nc.Token, AckWait: nc.AckWait, DeadLetter: sc.park, Logger: logger}
	if cfg.Password == "" {
		cfg.Password = os.Getenv("STELE_NATS_PASSWORD")
	}
	return cfg
}
