package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/deadletter"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/dynamodb"
	"github.com/stele/stele/capture/kafka"
	"github.com/stele/stele/capture/mysql"
	"github.com/stele/stele/capture/nats"
	"github.com/stele/stele/capture/postgres"
)

// SourceConfig is one change-data-capture source, from the config file's
// sources: list or a --source flag. Each kind has its own typed section,
// named like the kind:
//
//	sources:
//	  - name: shop                 # default: the database name
//	    kind: postgres             # default: the kind of the section given (else postgres)
//	    postgres:
//	      url: postgres://stele@db:5432/shop
//	      slot: stele_shop           # default stele_<name>
//	      publication: stele_shop    # default stele_<name>
//	      tables: [public.orders]    # default: all tables
//	      exclude_tables: [public.sessions]
//	      replica_identity: full     # full | default (default: default)
//	      setup: skip                # auto | skip: skip creating publication/slot (default auto)
//	      snapshot: initial          # snapshot existing rows when the slot is created (default: none)
//	      capture_ddl: true          # install a DDL event trigger (needs a superuser; default false)
//	      id_scheme: change          # change | commit (default: change; a source that ran before switches at a recorded boundary)
//	      outbox: public.outbox      # Debezium's outbox layout: its rows → event records, the cause of their transaction's changes
//	  - name: crm
//	    mysql:                       # MySQL or MariaDB, from the row-based binlog
//	      url: mysql://stele:pw@db:3306/crm   # or mariadb://…; the database is optional (default: all)
//	      flavor: mariadb            # mysql | mariadb (default: read from the server)
//	      server_id: 1234            # the replica id to register with (default: derived from the name)
//	      tables: [crm.accounts]     # database.table or table (default: all tables)
//	      exclude_tables: [crm.sessions]
//	      context_table: stele_context        # the actor/cause table (default stele_context)
//	      create_context_table: true # create it in the URL's database (default false)
//	      max_lag: 24h               # binlog retention must be at least this (default 24h)
//	      outbox: crm.outbox         # Debezium's outbox layout (database.table or table)
//	  - name: orders
//	    dynamodb:                    # DynamoDB Streams (view type NEW_AND_OLD_IMAGES)
//	      tables: [Orders, "arn:aws:dynamodb:eu-west-1:123456789012:table/Lines/stream/2026-01-01T00:00:00.000"]
//	      region: eu-west-1          # default: the AWS SDK's chain (AWS_REGION, shared config)
//	      endpoint: http://localhost:8000  # DynamoDB Local or a VPC endpoint (default: AWS's)
//	      concurrency: 8             # GetRecords calls in flight (default 8)
//	      poll_min: 250ms            # an idle shard's first wait; doubles up to poll_max (default 2s)
//	      poll_max: 2s
//	      list_interval: 1m          # how often every shard is listed (default 1m)
//	      allow_partial_images: true # accept a view type other than NEW_AND_OLD_IMAGES (default false)
//
// Credentials of a dynamodb source come from the AWS SDK's standard chain
// (AWS_ACCESS_KEY_ID…, shared files, SSO, role). --source
// dynamodb://Orders,Lines?region=eu-west-1&endpoint=http://localhost:8000
// is the same in one flag.
//
// For configurations written before kinds had sections, a postgres
// source's keys may also stand directly in the entry (url: … next to
// name:), as long as the entry has no section.
type SourceConfig struct {
	Name string
	Kind string
	// Postgres is the section of a kind: postgres source.
	Postgres *PostgresSourceConfig
	// MySQL is the section of a kind: mysql source (MySQL or MariaDB).
	MySQL *MySQLSourceConfig
	// DynamoDB is the section of a kind: dynamodb source.
	DynamoDB *DynamoDBSourceConfig
	// Kafka is the section of a kind: kafka source (Debezium events).
	Kafka *KafkaSourceConfig
	// NATS is the section of a kind: nats source (Debezium events).
	NATS *NATSSourceConfig
	// park puts a message a source cannot decode in the dead letters;
	// set when the server starts the source.
	park func(ctx context.Context, r *record.Record, fe *record.FieldError) error
	// stateDir is where a source keeps its own durable state (the mysql
	// source's position and schema history): <data>/sources/<name>, set
	// when the server starts the source.
	stateDir string
}

// MySQLSourceConfig is the mysql: section of a source.
type MySQLSourceConfig struct {
	URL                string
	Flavor             string
	ServerID           uint32
	Tables             []string
	ExcludeTables      []string
	Snapshot           string
	ContextTable       string
	CreateContextTable bool
	MaxLag             time.Duration
	Outbox             string
}

// DynamoDBSourceConfig is the dynamodb: section of a source.
type DynamoDBSourceConfig struct {
	// URL is a --source dynamodb://Table1,Table2?region=…&endpoint=… value,
	// read into the fields below when the section is checked.
	URL                string
	Tables             []string
	Region             string
	Endpoint           string
	Concurrency        int
	PollMin, PollMax   time.Duration
	ListInterval       time.Duration
	AllowPartialImages bool
}

// PostgresSourceConfig is the postgres: section of a source.
type PostgresSourceConfig struct {
	URL             string
	Slot            string
	Publication     string
	Tables          []string
	ExcludeTables   []string
	ReplicaIdentity string
	Setup           string
	Snapshot        string
	CaptureDDL      bool
	IDScheme        string
	Outbox          string
}

// runnableSource is what the server runs and reports on.
type runnableSource interface {
	capture.Source
	Stats() capture.Stats
}

// sourceKind is one kind of source in the table of kinds: how its section
// is read, checked and turned into a running source. Adding a kind is one
// entry here and one capture/<kind> package.
type sourceKind struct {
	// schemes are the URL schemes of --source values of this kind.
	schemes []string
	// keys are the keys of the kind's section.
	keys []string
	// parse reads the section's key k (value v) into sc; where names the
	// entry and section for errors.
	parse func(sc *SourceConfig, where, k string, v *yaml.Node) error
	// fromURL makes the section of a --source URL.
	fromURL func(sc *SourceConfig, url string)
	// check validates the section beyond single values (required keys,
	// the adapter's own validation) and returns the source's name, the
	// default filled in.
	check func(sc SourceConfig) (name string, err error)
	// build makes the source.
	build func(sc SourceConfig, logger *slog.Logger) (runnableSource, error)
}

// sourceKinds is the table of kinds. It is a function, not a package
// variable, so nothing at package level is mutable.
func sourceKinds() map[string]sourceKind {
	return map[string]sourceKind{
		"postgres": {
			schemes: []string{"postgres", "postgresql"},
			keys:    []string{"url", "slot", "publication", "tables", "exclude_tables", "replica_identity", "setup", "snapshot", "capture_ddl", "id_scheme", "outbox"},
			parse:   parsePostgresKey,
			fromURL: func(sc *SourceConfig, url string) { sc.Postgres = &PostgresSourceConfig{URL: url} },
			check:   checkPostgres,
			build: func(sc SourceConfig, logger *slog.Logger) (runnableSource, error) {
				return postgres.New(sc.postgresConfig(logger))
			},
		},
		"mysql": {
			schemes: []string{"mysql", "mariadb"},
			keys:    []string{"url", "flavor", "server_id", "tables", "exclude_tables", "snapshot", "context_table", "create_context_table", "max_lag", "outbox"},
			parse:   parseMySQLKey,
			fromURL: func(sc *SourceConfig, url string) { sc.MySQL = &MySQLSourceConfig{URL: url} },
			check:   checkMySQL,
			build: func(sc SourceConfig, logger *slog.Logger) (runnableSource, error) {
				return mysql.New(sc.mysqlConfig(logger))
			},
		},
		"dynamodb": {
			schemes: []string{"dynamodb"},
			keys:    []string{"tables", "region", "endpoint", "concurrency", "poll_min", "poll_max", "list_interval", "allow_partial_images"},
			parse:   parseDynamoDBKey,
			fromURL: func(sc *SourceConfig, url string) { sc.DynamoDB = &DynamoDBSourceConfig{URL: url} },
			check:   checkDynamoDB,
			build: func(sc SourceConfig, logger *slog.Logger) (runnableSource, error) {
				cfg, err := sc.dynamodbConfig(logger)
				if err != nil {
					return nil, err
				}
				return dynamodb.New(cfg)
			},
		},
		"kafka": {
			keys:    kafkaKeys,
			parse:   parseKafkaKey,
			fromURL: func(*SourceConfig, string) {},
			check:   checkKafka,
			build: func(sc SourceConfig, logger *slog.Logger) (runnableSource, error) {
				cfg, err := sc.kafkaConfig(logger)
				if err != nil {
					return nil, err
				}
				return kafka.New(cfg)
			},
		},
		"nats": {
			keys:    natsKeys,
			parse:   parseNATSKey,
			fromURL: func(*SourceConfig, string) {},
			check:   checkNATS,
			build: func(sc SourceConfig, logger *slog.Logger) (runnableSource, error) {
				return nats.New(sc.natsConfig(logger))
			},
		},
	}
}

// stringList reads a key that takes one string or a list of them; what
// names the list in the error.
func stringList(where, k string, val *yaml.Node, what string) ([]string, error) {
	if val.Kind == yaml.ScalarNode {
		return []string{val.Value}, nil
	}
	var list []string
	if err := val.Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %s: want %s: %w", where, k, what, err)
	}
	return list, nil
}

// parseDynamoDBKey reads one key of a dynamodb: section.
func parseDynamoDBKey(sc *SourceConfig, where, k string, val *yaml.Node) error {
	if sc.DynamoDB == nil {
		sc.DynamoDB = &DynamoDBSourceConfig{}
	}
	dc := sc.DynamoDB
	if k == "tables" {
		var err error
		dc.Tables, err = stringList(where, k, val, "a list of table names or stream ARNs")
		return err
	}
	if val.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: %s: want a single value", where, k)
	}
	duration := func(dst *time.Duration) error {
		d, err := time.ParseDuration(val.Value)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s: %s: %q is not a duration such as 2s", where, k, val.Value)
		}
		*dst = d
		return nil
	}
	switch k {
	case "region":
		dc.Region = val.Value
	case "endpoint":
		dc.Endpoint = val.Value
	case "concurrency":
		n, err := strconv.Atoi(val.Value)
		if err != nil || n <= 0 || n > 1000 {
			return fmt.Errorf("%s: concurrency: %q is not a number from 1 to 1000", where, val.Value)
		}
		dc.Concurrency = n
	case "poll_min":
		return duration(&dc.PollMin)
	case "poll_max":
		return duration(&dc.PollMax)
	case "list_interval":
		return duration(&dc.ListInterval)
	case "allow_partial_images":
		if err := val.Decode(&dc.AllowPartialImages); err != nil {
			return fmt.Errorf("%s: allow_partial_images: want true or false: %w", where, err)
		}
	}
	return nil
}

// checkDynamoDB validates a dynamodb section by building its adapter.
func checkDynamoDB(sc SourceConfig) (string, error) {
	cfg, err := sc.dynamodbConfig(nil)
	if err != nil {
		return "", err
	}
	cfg.StateDir = "(checked at start)"
	src, err := dynamodb.New(cfg)
	if err != nil {
		return "", err
	}
	return src.Name(), nil
}

// dynamodbConfig builds the adapter's configuration, reading a --source
// URL first.
func (sc SourceConfig) dynamodbConfig(logger *slog.Logger) (dynamodb.Config, error) {
	dc := sc.DynamoDB
	if dc == nil {
		dc = &DynamoDBSourceConfig{}
	}
	cfg := dynamodb.Config{
		Name: sc.Name, Tables: slices.Clone(dc.Tables), Region: dc.Region, Endpoint: dc.Endpoint,
		StateDir: sc.stateDir, Concurrency: dc.Concurrency, PollMin: dc.PollMin, PollMax: dc.PollMax,
		ListInterval: dc.ListInterval, AllowPartialImages: dc.AllowPartialImages, Logger: logger,
	}
	if dc.URL != "" {
		u, err := url.Parse(dc.URL)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", dc.URL, err)
		}
		for _, t := range strings.Split(u.Host+u.Path, ",") {
			if t = strings.Trim(t, "/"); t != "" {
				cfg.Tables = append(cfg.Tables, t)
			}
		}
		for k, v := range u.Query() {
			switch k {
			case "region":
				cfg.Region = v[0]
			case "endpoint":
				cfg.Endpoint = v[0]
			default:
				return cfg, fmt.Errorf("%s: URL parameter %q is unknown (known: region, endpoint)", dc.URL, k)
			}
		}
	}
	if len(cfg.Tables) == 0 {
		return cfg, fmt.Errorf("tables: required, e.g. tables: [Orders] or --source dynamodb://Orders?region=eu-west-1")
	}
	return cfg, nil
}

// parseMySQLKey reads one key of a mysql: section.
func parseMySQLKey(sc *SourceConfig, where, k string, val *yaml.Node) error {
	if sc.MySQL == nil {
		sc.MySQL = &MySQLSourceConfig{}
	}
	mc := sc.MySQL
	if k == "tables" || k == "exclude_tables" {
		list, err := stringList(where, k, val, "a list of table names (database.table)")
		if err != nil {
			return err
		}
		if k == "tables" {
			mc.Tables = list
		} else {
			mc.ExcludeTables = list
		}
		return nil
	}
	if val.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: %s: want a single value", where, k)
	}
	switch k {
	case "url":
		mc.URL = val.Value
	case "flavor":
		mc.Flavor = val.Value
	case "server_id":
		n, err := strconv.ParseUint(val.Value, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("%s: server_id: %q is not a number from 1 to 4294967295", where, val.Value)
		}
		mc.ServerID = uint32(n)
	case "snapshot":
		mc.Snapshot = val.Value
	case "context_table":
		mc.ContextTable = val.Value
	case "create_context_table":
		if err := val.Decode(&mc.CreateContextTable); err != nil {
			return fmt.Errorf("%s: create_context_table: want true or false: %w", where, err)
		}
	case "max_lag":
		d, err := time.ParseDuration(val.Value)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s: max_lag: %q is not a duration such as 24h", where, val.Value)
		}
		mc.MaxLag = d
	case "outbox":
		mc.Outbox = val.Value
	}
	return nil
}

// checkMySQL validates a mysql section by building its adapter.
func checkMySQL(sc SourceConfig) (string, error) {
	mc := sc.MySQL
	if mc == nil || mc.URL == "" {
		return "", fmt.Errorf("url: required, e.g. mysql://user:password@host:3306/dbname")
	}
	cfg := sc.mysqlConfig(nil)
	cfg.StateDir = "(checked at start)"
	src, err := mysql.New(cfg)
	if err != nil {
		return "", fmt.Errorf("%s: %w", redactURL(mc.URL), err)
	}
	return src.Name(), nil
}

// mysqlConfig builds the adapter's configuration.
func (sc SourceConfig) mysqlConfig(logger *slog.Logger) mysql.Config {
	mc := sc.MySQL
	if mc == nil {
		mc = &MySQLSourceConfig{}
	}
	return mysql.Config{
		Name:               sc.Name,
		URL:                mc.URL,
		Flavor:             mc.Flavor,
		ServerID:           mc.ServerID,
		StateDir:           sc.stateDir,
		Tables:             mc.Tables,
		ExcludeTables:      mc.ExcludeTables,
		Snapshot:           mc.Snapshot,
		ContextTable:       mc.ContextTable,
		CreateContextTable: mc.CreateContextTable,
		Outbox:             mc.Outbox,
		MaxLag:             mc.MaxLag,
		Logger:             logger,
	}
}

// knownKinds lists the kinds, sorted, for error messages.
func knownKinds() string {
	return strings.Join(slices.Sorted(maps.Keys(sourceKinds())), ", ")
}

// parsePostgresKey reads one key of a postgres: section.
func parsePostgresKey(sc *SourceConfig, where, k string, val *yaml.Node) error {
	if sc.Postgres == nil {
		sc.Postgres = &PostgresSourceConfig{}
	}
	pc := sc.Postgres
	if k == "tables" || k == "exclude_tables" {
		list, err := stringList(where, k, val, "a list of table names (schema.table)")
		if err != nil {
			return err
		}
		if k == "tables" {
			pc.Tables = list
		} else {
			pc.ExcludeTables = list
		}
		return nil
	}
	if val.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: %s: want a single value", where, k)
	}
	switch k {
	case "url":
		pc.URL = val.Value
	case "slot":
		pc.Slot = val.Value
	case "publication":
		pc.Publication = val.Value
	case "replica_identity":
		pc.ReplicaIdentity = val.Value
	case "setup":
		pc.Setup = val.Value
	case "snapshot":
		pc.Snapshot = val.Value
	case "capture_ddl":
		if err := val.Decode(&pc.CaptureDDL); err != nil {
			return fmt.Errorf("%s: capture_ddl: want true or false: %w", where, err)
		}
	case "id_scheme":
		pc.IDScheme = val.Value
	case "outbox":
		pc.Outbox = val.Value
	}
	return nil
}

// checkPostgres validates a postgres section by building its adapter.
func checkPostgres(sc SourceConfig) (string, error) {
	pc := sc.Postgres
	if pc == nil || pc.URL == "" {
		return "", fmt.Errorf("url: required, e.g. postgres://user@host:5432/dbname")
	}
	switch pc.ReplicaIdentity {
	case "", "default", "full":
	default:
		return "", fmt.Errorf("replica_identity: %q is not full or default", pc.ReplicaIdentity)
	}
	switch pc.Setup {
	case "", "auto", "skip":
	default:
		return "", fmt.Errorf("setup: %q is not auto or skip", pc.Setup)
	}
	src, err := postgres.New(sc.postgresConfig(nil))
	if err != nil {
		return "", fmt.Errorf("%s: %w", redactURL(pc.URL), err)
	}
	return src.Name(), nil
}

// postgresConfig builds the adapter's configuration.
func (sc SourceConfig) postgresConfig(logger *slog.Logger) postgres.Config {
	pc := sc.Postgres
	if pc == nil {
		pc = &PostgresSourceConfig{}
	}
	return postgres.Config{
		Name:                sc.Name,
		ConnString:          pc.URL,
		Slot:                pc.Slot,
		Publication:         pc.Publication,
		Tables:              pc.Tables,
		ExcludeTables:       pc.ExcludeTables,
		ReplicaIdentityFull: pc.ReplicaIdentity == "full",
		SkipSetup:           pc.Setup == "skip",
		Snapshot:            pc.Snapshot,
		CaptureDDL:          pc.CaptureDDL,
		IDScheme:            pc.IDScheme,
		StateDir:            sc.stateDir,
		Outbox:              pc.Outbox,
		Logger:              logger,
	}
}

// redactURL hides a password in a connection URL for error messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if err != nil {
			return "(unparsable URL)"
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String()
}

// sourceFromURL turns a --source value into a source; the URL scheme gives
// the kind.
func sourceFromURL(raw string) (SourceConfig, error) {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return SourceConfig{}, fmt.Errorf("%s: want a URL such as postgres://user@host:5432/dbname", redactURL(raw))
	}
	for name, k := range sourceKinds() {
		if slices.Contains(k.schemes, scheme) {
			sc := SourceConfig{Kind: name}
			k.fromURL(&sc, raw)
			return sc, nil
		}
	}
	return SourceConfig{}, fmt.Errorf("%s: unknown source kind %q (known: %s)", redactURL(raw), scheme, knownKinds())
}

// parseSourcesYAML reads the sources: list.
func parseSourcesYAML(path string, v *yaml.Node) ([]SourceConfig, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("config file %s: line %d: sources: want a list of sources", path, v.Line)
	}
	kinds := sourceKinds()
	var out []SourceConfig
	for i, item := range v.Content {
		where := fmt.Sprintf("config file %s: line %d: sources[%d]", path, item.Line, i)
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: want a mapping with name, kind and the kind's section", where)
		}
		sc, err := parseSourceEntry(kinds, where, item)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

// parseSourceEntry reads one entry of sources: in either form, the typed
// section (postgres: {url: …}) or the flat keys of before sections.
func parseSourceEntry(kinds map[string]sourceKind, where string, item *yaml.Node) (SourceConfig, error) {
	sc := SourceConfig{}
	// The name and kind first, so every later error names the source.
	var section, flat *yaml.Node
	var sectionKind, firstFlat string
	for j := 0; j+1 < len(item.Content); j += 2 {
		if k, val := item.Content[j], item.Content[j+1]; k.Value == "name" && val.Kind == yaml.ScalarNode && val.Value != "" {
			where += fmt.Sprintf(" (source %q)", val.Value)
			break
		}
	}
	seen := map[string]bool{}
	for j := 0; j+1 < len(item.Content); j += 2 {
		k, val := item.Content[j], item.Content[j+1]
		if seen[k.Value] {
			return sc, fmt.Errorf("%s: key %q given twice", where, k.Value)
		}
		seen[k.Value] = true
		switch {
		case k.Value == "name" || k.Value == "kind":
			if val.Kind != yaml.ScalarNode {
				return sc, fmt.Errorf("%s: %s: want a single value", where, k.Value)
			}
			if k.Value == "name" {
				sc.Name = val.Value
			} else {
				sc.Kind = val.Value
			}
		case kinds[k.Value].parse != nil:
			if section != nil {
				return sc, fmt.Errorf("%s: sections %s and %s: a source has one kind; split it into two sources", where, sectionKind, k.Value)
			}
			if val.Kind != yaml.MappingNode {
				return sc, fmt.Errorf("%s: %s: want a mapping of the %s source's settings, e.g. %s: {url: …}", where, k.Value, k.Value, k.Value)
			}
			section, sectionKind = val, k.Value
		default:
			if flat == nil {
				flat = &yaml.Node{Kind: yaml.MappingNode}
				firstFlat = k.Value
			}
			flat.Content = append(flat.Content, k, val)
		}
	}
	switch {
	case sc.Kind == "" && section != nil:
		sc.Kind = sectionKind
	case sc.Kind == "":
		sc.Kind = "postgres" // the only kind before kinds had sections
	}
	kind, ok := kinds[sc.Kind]
	if !ok {
		return sc, fmt.Errorf("%s: kind: unknown source kind %q (known: %s)", where, sc.Kind, knownKinds())
	}
	if section != nil && sectionKind != sc.Kind {
		return sc, fmt.Errorf("%s: section %s does not match kind %s; name the section like the kind", where, sectionKind, sc.Kind)
	}
	if section != nil && flat != nil {
		return sc, fmt.Errorf("%s: key %q beside the %s: section: move it into the section (known keys there: %s)", where, firstFlat, sc.Kind, strings.Join(kind.keys, ", "))
	}
	body, prefix := section, sc.Kind+"."
	if section == nil {
		body, prefix = flat, ""
	}
	if body != nil {
		seen := map[string]bool{}
		for j := 0; j+1 < len(body.Content); j += 2 {
			k, val := body.Content[j], body.Content[j+1]
			if !slices.Contains(kind.keys, k.Value) {
				known := kind.keys
				if section == nil {
					known = append([]string{"name", "kind", sc.Kind}, kind.keys...)
				}
				return sc, fmt.Errorf("%s: unknown key %q%s (known keys: %s)", where, prefix+k.Value, inSection(prefix), strings.Join(known, ", "))
			}
			if seen[k.Value] {
				return sc, fmt.Errorf("%s: key %q given twice", where, prefix+k.Value)
			}
			seen[k.Value] = true
			if err := kind.parse(&sc, where+inSection(prefix), k.Value, val); err != nil {
				return sc, err
			}
		}
	}
	if err := sc.validate(); err != nil {
		return sc, fmt.Errorf("%s%s: %w", where, inSection(prefix), err)
	}
	return sc, nil
}

func inSection(prefix string) string {
	if prefix == "" {
		return ""
	}
	return " in the " + strings.TrimSuffix(prefix, ".") + " section"
}

// validate fills the kind and the name and checks the entry by building
// its adapter.
func (sc *SourceConfig) validate() error {
	if sc.Kind == "" {
		sc.Kind = "postgres"
	}
	kind, ok := sourceKinds()[sc.Kind]
	if !ok {
		return fmt.Errorf("kind: unknown source kind %q (known: %s)", sc.Kind, knownKinds())
	}
	name, err := kind.check(*sc)
	if err != nil {
		return err
	}
	sc.Name = name
	return nil
}

// checkSourceNames refuses two sources with the same name: they would share
// a slot and their records' ids.
func checkSourceNames(sources []SourceConfig) error {
	seen := map[string]bool{}
	for _, sc := range sources {
		if seen[sc.Name] {
			return fmt.Errorf("two sources are named %q; give each a distinct name", sc.Name)
		}
		seen[sc.Name] = true
	}
	kinds := map[string]string{}
	for _, sc := range sources {
		kinds[sc.Name] = sc.Kind
	}
	for _, sc := range sources {
		m := sc.mirrors()
		if m == "" {
			continue
		}
		switch k, ok := kinds[m]; {
		case !ok:
			return fmt.Errorf("source %q: %s.mirrors: no source is named %q; name the postgres or mysql source whose database the Debezium connector reads", sc.Name, sc.Kind, m)
		case k != "postgres" && k != "mysql":
			return fmt.Errorf("source %q: %s.mirrors: source %q is of kind %s; want a postgres or mysql source", sc.Name, sc.Kind, m, k)
		}
	}
	return nil
}

// mirrors is the direct source a Debezium-reading source mirrors ("": none).
func (sc SourceConfig) mirrors() string {
	switch {
	case sc.Kafka != nil:
		return sc.Kafka.Mirrors
	case sc.NATS != nil:
		return sc.NATS.Mirrors
	}
	return ""
}

// sourceFlag collects repeated --source values.
type sourceFlag []string

func (f *sourceFlag) String() string { return strings.Join(*f, ",") }

func (f *sourceFlag) Set(v string) error {
	*f = append(*f, v)
	return nil
}

// sourceList returns the configured sources.
func (c Config) sourceList() []SourceConfig {
	if c.Sources == nil {
		return nil
	}
	return *c.Sources
}

// addSources appends sources to c, keeping names distinct.
func (c *Config) addSources(more []SourceConfig) error {
	if len(more) == 0 {
		return nil
	}
	all := append(slices.Clone(c.sourceList()), more...)
	if err := checkSourceNames(all); err != nil {
		return err
	}
	c.Sources = &all
	return nil
}

// startSources runs every configured source with sink as its sink, each in
// its own goroutine. A source that fails permanently is logged at Error
// level; the others and the server keep running. The returned function
// stops them and waits; call it before closing the sink.
func startSources(ctx context.Context, cfg Config, sink capture.Sink, reg prometheus.Registerer, logger *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	coll := &sourceCollector{}
	kinds := sourceKinds()
	for _, sc := range cfg.sourceList() {
		kind, ok := kinds[sc.Kind]
		if !ok {
			logger.Error("capture source not started: unknown kind", "source", sc.Name, "kind", sc.Kind, "known", knownKinds())
			continue
		}
		sc.stateDir = sourceStateDir(cfg.Data, sc.Name)
		if p, ok := sink.(interface {
			Park(context.Context, *record.Record, *record.FieldError) error
		}); ok {
			sc.park = p.Park
		}
		src, err := kind.build(sc, logger)
		if err != nil {
			logger.Error("capture source not started", "source", sc.Name, "kind", sc.Kind, "err", err)
			continue
		}
		coll.sources = append(coll.sources, src)
		wg.Go(func() {
			attrs := []any{"source", src.Name(), "kind", sc.Kind}
			if r, ok := src.(interface{ Redacted() string }); ok {
				attrs = append(attrs, "conn", r.Redacted())
			}
			logger.Info("capture source starting", attrs...)
			if err := src.Run(ctx, sink); err != nil {
				logger.Error("capture source stopped; other sources and the server keep running", "source", src.Name(), "err", err)
			}
		})
	}
	if len(coll.sources) > 0 {
		if err := reg.Register(coll); err != nil {
			logger.Warn("capture source metrics not exported", "err", err)
		}
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// sourceStateDir is the directory of a source's own durable state:
// <data>/sources/<name>, the name made safe as one path element.
func sourceStateDir(data, name string) string {
	safe := []byte(name)
	for i, c := range safe {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			safe[i] = '_'
		}
	}
	if s := string(safe); s == "" || strings.Trim(s, ".") == "" || strings.HasPrefix(s, ".") {
		safe = append([]byte("_"), safe...)
	}
	return filepath.Join(data, "sources", string(safe))
}

// sourceCollector exports the running sources' Stats as Prometheus metrics,
// read at scrape time.
type sourceCollector struct {
	sources []statsSource
}

// statsSource is what the collector reads: any kind's capture.Stats.
type statsSource interface {
	Name() string
	Stats() capture.Stats
}

var (
	sourceLagBytesDesc = prometheus.NewDesc("stele_source_lag_bytes",
		"How far the source's upstream is past the position acknowledged as durable in the log, in its offset unit (WAL bytes for PostgreSQL, binlog bytes for MySQL, messages for Kafka: high watermarks minus the group's committed offsets).", []string{"source"}, nil)
	sourcePartitionLagDesc = prometheus.NewDesc("stele_source_partition_lag",
		"Consumer lag of one partition a Kafka source reads, in messages: its high watermark minus the group's committed offset.", []string{"source", "partition"}, nil)
	sourceLagSecondsDesc = prometheus.NewDesc("stele_source_lag_seconds",
		"Age of the oldest transaction committed at the source but not yet appended to the log (0 when caught up).", []string{"source"}, nil)
	sourceRecordsDesc = prometheus.NewDesc("stele_source_records_total",
		"Records the source appended to the log since the server started.", []string{"source"}, nil)
	sourceGapsDesc = prometheus.NewDesc("stele_source_gaps_total",
		"Ranges of changes the source found lost upstream before it read them (a DynamoDB stream trimmed past its 24 h retention); each is a gap record in the log. Alert on any increase.", []string{"source"}, nil)
	sourceUpDesc = prometheus.NewDesc("stele_source_up",
		"1 for the source's current state (connecting, streaming, retrying, failed), 0 for the others.", []string{"source", "state"}, nil)
)

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sourceLagBytesDesc, sourcePartitionLagDesc, sourceLagSecondsDesc, sourceRecordsDesc, sourceGapsDesc, sourceUpDesc} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, src := range c.sources {
		st, name := src.Stats(), src.Name()
		ch <- prometheus.MustNewConstMetric(sourceLagBytesDesc, prometheus.GaugeValue, float64(st.LagBytes), name)
		ch <- prometheus.MustNewConstMetric(sourceLagSecondsDesc, prometheus.GaugeValue, st.LagSeconds, name)
		ch <- prometheus.MustNewConstMetric(sourceRecordsDesc, prometheus.CounterValue, float64(st.RecordsTotal), name)
		if pl, ok := src.(interface{ PartitionLag() map[string]uint64 }); ok {
			for part, lag := range pl.PartitionLag() {
				ch <- prometheus.MustNewConstMetric(sourcePartitionLagDesc, prometheus.GaugeValue, float64(lag), name, part)
			}
		}
		if g, ok := src.(interface{ Gaps() uint64 }); ok {
			ch <- prometheus.MustNewConstMetric(sourceGapsDesc, prometheus.CounterValue, float64(g.Gaps()), name)
		}
		for _, state := range capture.States() {
			v := 0.0
			if st.State == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(sourceUpDesc, prometheus.GaugeValue, v, name, state)
		}
	}
}

// indexedSink is the log as capture sources see it: appends go to the log,
// and HasID (postgres.IDLookup) answers from the index once it covers every
// acknowledged record, so a source can tell whether its initial snapshot
// completed before a crash.
type indexedSink struct {
	*logstore.Store
	log  deadletter.Appender // the store, or the cluster on a cluster node
	ix   *index.Index
	dead *deadletter.Store
}

// Append parks records that break their schema instead of failing the
// batch, so one bad row cannot stall a source.
func (s indexedSink) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	return s.dead.AppendOrPark(ctx, s.log, recs)
}

// AppendAsync parks as Append does. It must be defined here: the one of
// the embedded store would skip the dead letters.
func (s indexedSink) AppendAsync(ctx context.Context, recs []*record.Record, after func() bool) (func(context.Context) ([]stele.Appended, error), func() bool, error) {
	return s.dead.AppendAsyncOrPark(ctx, s.log, recs, after)
}

// Park puts what a source could not decode in the dead letters.
func (s indexedSink) Park(ctx context.Context, r *record.Record, fe *record.FieldError) error {
	return s.dead.Park(ctx, r, fe)
}

func (s indexedSink) HasID(ctx context.Context, id string) (bool, error) {
	if err := s.WaitIndexed(ctx, s.Size()); err != nil {
		return false, err
	}
	_, ok, err := s.ix.LookupID(id)
	return ok, err
}
