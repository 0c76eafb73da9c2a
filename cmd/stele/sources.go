package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/stele/stele"
	"github.com/stele/stele/deadletter"
	"github.com/stele/stele/index"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/record"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/postgres"
)

// SourceConfig is one change-data-capture source, from the config file's
// sources: list or a --source flag:
//
//	sources:
//	  - name: shop                 # default: the database name
//	    kind: postgres             # the only kind so far (default)
//	    url: postgres://stele@db:5432/shop
//	    slot: stele_shop           # default stele_<name>
//	    publication: stele_shop    # default stele_<name>
//	    tables: [public.orders]    # default: all tables
//	    exclude_tables: [public.sessions]
//	    replica_identity: full     # full | default (default: default)
//	    setup: skip                # auto | skip: skip creating publication/slot (default auto)
//	    snapshot: initial          # snapshot existing rows when the slot is created (default: none)
//	    capture_ddl: true          # install a DDL event trigger (needs a superuser; default false)
type SourceConfig struct {
	Name            string
	Kind            string
	URL             string
	Slot            string
	Publication     string
	Tables          []string
	ExcludeTables   []string
	ReplicaIdentity string
	Setup           string
	Snapshot        string
	CaptureDDL      bool
}

// sourceKeys lists the keys a sources: entry may have.
func sourceKeys() []string {
	return []string{"name", "kind", "url", "slot", "publication", "tables", "exclude_tables", "replica_identity", "setup", "snapshot", "capture_ddl"}
}

// postgresConfig builds the adapter's configuration.
func (sc SourceConfig) postgresConfig(logger *slog.Logger) postgres.Config {
	return postgres.Config{
		Name:                sc.Name,
		ConnString:          sc.URL,
		Slot:                sc.Slot,
		Publication:         sc.Publication,
		Tables:              sc.Tables,
		ExcludeTables:       sc.ExcludeTables,
		ReplicaIdentityFull: sc.ReplicaIdentity == "full",
		SkipSetup:           sc.Setup == "skip",
		Snapshot:            sc.Snapshot,
		CaptureDDL:          sc.CaptureDDL,
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
	switch scheme {
	case "postgres", "postgresql":
		return SourceConfig{Kind: "postgres", URL: raw}, nil
	}
	return SourceConfig{}, fmt.Errorf("%s: unknown source kind %q (known: postgres)", redactURL(raw), scheme)
}

// parseSourcesYAML reads the sources: list.
func parseSourcesYAML(path string, v *yaml.Node) ([]SourceConfig, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("config file %s: line %d: sources: want a list of sources", path, v.Line)
	}
	var out []SourceConfig
	for i, item := range v.Content {
		where := fmt.Sprintf("config file %s: line %d: sources[%d]", path, item.Line, i)
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: want a mapping with kind, url, …", where)
		}
		sc := SourceConfig{}
		seen := map[string]bool{}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, val := item.Content[j], item.Content[j+1]
			if !slices.Contains(sourceKeys(), k.Value) {
				return nil, fmt.Errorf("%s: unknown key %q (known keys: %s)", where, k.Value, strings.Join(sourceKeys(), ", "))
			}
			if seen[k.Value] {
				return nil, fmt.Errorf("%s: key %q given twice", where, k.Value)
			}
			seen[k.Value] = true
			if k.Value == "tables" || k.Value == "exclude_tables" {
				var list []string
				if val.Kind == yaml.ScalarNode {
					list = []string{val.Value}
				} else if err := val.Decode(&list); err != nil {
					return nil, fmt.Errorf("%s: %s: want a list of table names (schema.table): %w", where, k.Value, err)
				}
				if k.Value == "tables" {
					sc.Tables = list
				} else {
					sc.ExcludeTables = list
				}
				continue
			}
			if val.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s: %s: want a single value", where, k.Value)
			}
			switch k.Value {
			case "name":
				sc.Name = val.Value
			case "kind":
				sc.Kind = val.Value
			case "url":
				sc.URL = val.Value
			case "slot":
				sc.Slot = val.Value
			case "publication":
				sc.Publication = val.Value
			case "replica_identity":
				sc.ReplicaIdentity = val.Value
			case "setup":
				sc.Setup = val.Value
			case "snapshot":
				sc.Snapshot = val.Value
			case "capture_ddl":
				if err := val.Decode(&sc.CaptureDDL); err != nil {
					return nil, fmt.Errorf("%s: capture_ddl: want true or false: %w", where, err)
				}
			}
		}
		if err := sc.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, sc)
	}
	return out, nil
}

// validate fills the kind and checks the entry by building its adapter.
func (sc *SourceConfig) validate() error {
	if sc.Kind == "" {
		sc.Kind = "postgres"
	}
	if sc.Kind != "postgres" {
		return fmt.Errorf("kind: unknown source kind %q (known: postgres)", sc.Kind)
	}
	if sc.URL == "" {
		return fmt.Errorf("url: required, e.g. postgres://user@host:5432/dbname")
	}
	switch sc.ReplicaIdentity {
	case "", "default", "full":
	default:
		return fmt.Errorf("replica_identity: %q is not full or default", sc.ReplicaIdentity)
	}
	switch sc.Setup {
	case "", "auto", "skip":
	default:
		return fmt.Errorf("setup: %q is not auto or skip", sc.Setup)
	}
	src, err := postgres.New(sc.postgresConfig(nil))
	if err != nil {
		return fmt.Errorf("%s: %w", redactURL(sc.URL), err)
	}
	sc.Name = src.Name()
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
	return nil
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
	for _, sc := range cfg.sourceList() {
		src, err := postgres.New(sc.postgresConfig(logger))
		if err != nil {
			logger.Error("capture source not started", "source", sc.Name, "err", err)
			continue
		}
		coll.sources = append(coll.sources, src)
		wg.Go(func() {
			logger.Info("capture source starting", "source", src.Name(), "kind", sc.Kind, "conn", src.Redacted())
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

// sourceCollector exports the running sources' Stats as Prometheus metrics,
// read at scrape time.
type sourceCollector struct {
	sources []*postgres.Source
}

var (
	sourceLagBytesDesc = prometheus.NewDesc("stele_source_lag_bytes",
		"WAL bytes the source's server has written past the position acknowledged as durable in the log.", []string{"source"}, nil)
	sourceLagSecondsDesc = prometheus.NewDesc("stele_source_lag_seconds",
		"Age of the oldest transaction committed at the source but not yet appended to the log (0 when caught up).", []string{"source"}, nil)
	sourceRecordsDesc = prometheus.NewDesc("stele_source_records_total",
		"Records the source appended to the log since the server started.", []string{"source"}, nil)
	sourceUpDesc = prometheus.NewDesc("stele_source_up",
		"1 for the source's current state (connecting, streaming, retrying, failed), 0 for the others.", []string{"source", "state"}, nil)
)

// sourceStates are the values of stele_source_up's state label.
var sourceStates = []string{postgres.StateConnecting, postgres.StateStreaming, postgres.StateRetrying, postgres.StateFailed}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sourceLagBytesDesc, sourceLagSecondsDesc, sourceRecordsDesc, sourceUpDesc} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, src := range c.sources {
		st, name := src.Stats(), src.Name()
		ch <- prometheus.MustNewConstMetric(sourceLagBytesDesc, prometheus.GaugeValue, float64(st.LagBytes), name)
		ch <- prometheus.MustNewConstMetric(sourceLagSecondsDesc, prometheus.GaugeValue, st.LagSeconds, name)
		ch <- prometheus.MustNewConstMetric(sourceRecordsDesc, prometheus.CounterValue, float64(st.RecordsTotal), name)
		for _, state := range sourceStates {
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
	ix   *index.Index
	dead *deadletter.Store
}

// Append parks records that break their schema instead of failing the
// batch, so one bad row cannot stall a source.
func (s indexedSink) Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error) {
	return s.dead.AppendOrPark(ctx, s.Store, recs)
}

func (s indexedSink) HasID(ctx context.Context, id string) (bool, error) {
	if err := s.WaitIndexed(ctx, s.Size()); err != nil {
		return false, err
	}
	_, ok, err := s.ix.LookupID(id)
	return ok, err
}
