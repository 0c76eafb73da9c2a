package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stele/stele/api"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/internal/gctune"
	"github.com/stele/stele/projection"
	"github.com/stele/stele/publish"
)

// Config is the server configuration. Precedence, lowest first: defaults,
// the YAML file (--config or STELE_CONFIG), STELE_* environment variables,
// command-line flags.
type Config struct {
	Data               string
	Addr               string
	Origin             string
	LogLevel           slog.Level
	CheckpointInterval time.Duration
	MaxBodyBytes       int64
	MaxBatch           int
	// MemoryLimit is the Go memory the server aims to stay under (see
	// gctune.LimitMemory); 0 sets none. GOMEMLIMIT, when set, wins.
	MemoryLimit int64
	// Privacy: where the keystore's master key comes from (a key file by
	// default, STELE_MASTER_KEY, or Vault Transit) and how often expired
	// retention periods are shredded.
	MasterKeyFile     string
	MasterKey         string
	VaultAddr         string
	VaultToken        string
	VaultKey          string
	VaultMount        string
	RetentionInterval time.Duration
	// CheckpointSigner is where the checkpoint signing key lives: "file"
	// (keys/checkpoint.skey in the data directory, the default) or "vault"
	// (the Vault Transit ed25519 key VaultSigningKey, reached through
	// VaultAddr, VaultToken and VaultMount).
	CheckpointSigner string
	VaultSigningKey  string
	// WitnessPolicy is a C2SP tlog-policy file naming the witnesses (with
	// their URLs) each checkpoint is sent to and the quorum that must
	// cosign it before /v1/checkpoint serves it; empty: no witnesses.
	WitnessPolicy string
	// WitnessTimeout bounds one request to one witness.
	WitnessTimeout time.Duration
	// Sources are the capture sources (sources: in the file, repeatable
	// --source URL); a pointer keeps Config comparable. See SourceConfig.
	Sources *[]SourceConfig
	// Schemas are schema files registered at serve start (schemas: in the
	// file, subject: path); a pointer keeps Config comparable.
	Schemas *[]SchemaFile
	// Projections are the read models (projections: in the file), compiled
	// and checked at load; a pointer keeps Config comparable.
	Projections *[]projection.Definition
	// Stream configures the live lineage stream (stream: in the file); its
	// zero value is the default, so Config literals need not mention it.
	Stream StreamConfig
	// Keystore chooses where the data keys live (keystore: in the file);
	// the zero value is the file store in the data directory.
	Keystore KeystoreConfig
	// TLS of the API (tls.go): the server's certificate and key (PEM
	// files), and optionally the CA whose client certificates are asked
	// for and the roles their identities map to (a pointer keeps Config
	// comparable). InsecureListen allows plain HTTP beyond loopback.
	TLSCert, TLSKey, TLSClientCA string
	TLSClientRoles               *auth.CertRoles
	InsecureListen               bool
	// Cluster, when its URLs are set, makes the server a cluster node
	// (cluster.go); the zero value is one machine.
	Cluster ClusterConfig
}

// StreamConfig is the lineage stream's configuration. Zero values are the
// defaults: enabled, embedded NATS JetStream listening on 127.0.0.1:4222,
// CloudEvents with the record as data.
type StreamConfig struct {
	Disabled bool
	// NATSURL, when set, publishes to that NATS (JetStream) server or
	// cluster instead of the embedded one.
	NATSURL string
	// Listen is the embedded server's client address; "none" keeps it
	// in-process only.
	Listen string
	// Format is "cloudevents" (default) or "debezium".
	Format string
}

// KeystoreConfig is the keystore's backend. Kind "" or "file" is
// <data>/keystore; "nats" is a JetStream KV bucket shared by a cluster's
// nodes (keystore.OpenKV), reached at NATSURL.
type KeystoreConfig struct {
	Kind     string
	NATSURL  string
	Bucket   string // default STELE_KEYS
	Replicas int    // default 3
}

func defaultConfig() Config {
	return Config{
		Data:               "./stele-data",
		Addr:               "127.0.0.1:7070",
		Origin:             "stele.local/log",
		LogLevel:           slog.LevelInfo,
		CheckpointInterval: 500 * time.Millisecond,
		MaxBodyBytes:       api.DefaultMaxBodyBytes,
		MaxBatch:           api.DefaultMaxBatch,
		MemoryLimit:        gctune.DefaultMemoryLimit,
		RetentionInterval:  time.Hour,
		WitnessTimeout:     10 * time.Second,
	}
}

// option is one configuration setting. The same parser serves the YAML
// file, the environment and the flags, so every source accepts the same
// syntax and reports errors the same way.
type option struct {
	name  string // YAML key; the flag is the same with '-' for '_'
	usage string
	set   func(c *Config, v string) error
}

func (o option) env() string  { return "STELE_" + strings.ToUpper(o.name) }
func (o option) flag() string { return strings.ReplaceAll(o.name, "_", "-") }

var errEmpty = errors.New("must not be empty")

// options lists every setting. It is a function, not a package variable,
// so nothing at package level is mutable.
func options() []option {
	return append([]option{
		{"data", "data `directory` holding the log, its keys and the index (default ./stele-data)", func(c *Config, v string) error {
			if v == "" {
				return errEmpty
			}
			c.Data = v
			return nil
		}},
		{"addr", "listen `address` host:port (default 127.0.0.1:7070; another address needs API tokens: stele token create)", func(c *Config, v string) error {
			if v == "" {
				return errEmpty
			}
			if !strings.Contains(v, ":") {
				return errors.New("want host:port, e.g. 127.0.0.1:7070")
			}
			c.Addr = v
			return nil
		}},
		{"origin", "log `origin` named in checkpoints, e.g. stele.example.com/log, fixed when the data directory is created (default stele.local/log)", func(c *Config, v string) error {
			if v == "" || strings.ContainsAny(v, " +\n\t") {
				return errors.New("want a non-empty name without spaces or '+', e.g. stele.example.com/log")
			}
			c.Origin = v
			return nil
		}},
		{"log_level", "log `level`: debug, info, warn or error (default info)", func(c *Config, v string) error {
			return c.LogLevel.UnmarshalText([]byte(v))
		}},
		{"checkpoint_interval", "how often a checkpoint is signed while records arrive, a `duration` (default 500ms)", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("want a duration such as 500ms or 1s")
			}
			if d <= 0 {
				return errors.New("must be positive")
			}
			c.CheckpointInterval = d
			return nil
		}},
		{"max_body_bytes", "largest POST body in `bytes`; KiB, MiB, GiB suffixes allowed (default 16MiB)", func(c *Config, v string) error {
			n, err := parseBytes(v)
			if err != nil {
				return err
			}
			c.MaxBodyBytes = n
			return nil
		}},
		{"max_batch", "most `records` accepted in one POST (default 10000)", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return errors.New("want a positive integer")
			}
			c.MaxBatch = n
			return nil
		}},
		{"memory_limit", "Go memory, in `bytes` (KiB, MiB, GiB suffixes allowed), the server aims to stay under: the collector runs earlier as the heap nears it, but never holds it below twice the live heap; the binary and the index's Pebble caches come on top; off for none; the GOMEMLIMIT variable wins (default 96MiB)", func(c *Config, v string) error {
			if v == "off" {
				c.MemoryLimit = 0
				return nil
			}
			n, err := parseBytes(v)
			if err != nil {
				return fmt.Errorf("%w, or off", err)
			}
			c.MemoryLimit = n
			return nil
		}},
		{"master_key_file", "`file` holding the keystore's 32-byte master key, created on first start (default <data>/master.key; keep it on another disk or use Vault)", func(c *Config, v string) error {
			if v == "" {
				return errEmpty
			}
			c.MasterKeyFile = v
			return nil
		}},
		{"master_key", "the keystore's master key, 32 bytes in `base64`, instead of a key file (prefer the STELE_MASTER_KEY variable: flags show in ps)", func(c *Config, v string) error {
			c.MasterKey = v
			return nil
		}},
		{"vault_addr", "HashiCorp Vault `URL`; with vault_key, the keystore's master key is Vault Transit", func(c *Config, v string) error {
			c.VaultAddr = v
			return nil
		}},
		{"vault_token", "Vault `token` (prefer the STELE_VAULT_TOKEN variable)", func(c *Config, v string) error {
			c.VaultToken = v
			return nil
		}},
		{"vault_key", "Vault Transit key `name`", func(c *Config, v string) error {
			c.VaultKey = v
			return nil
		}},
		{"vault_mount", "Vault Transit mount `path` (default transit)", func(c *Config, v string) error {
			c.VaultMount = v
			return nil
		}},
		{"checkpoint_signer", "where the checkpoint signing key lives: file (keys/checkpoint.skey in the data directory) or vault (the Transit key vault_signing_key, so a copy of the data directory cannot sign) (default file)", func(c *Config, v string) error {
			if v != "file" && v != "vault" {
				return errors.New("want file or vault")
			}
			c.CheckpointSigner = v
			return nil
		}},
		{"vault_signing_key", "Vault Transit key `name` of type ed25519 that signs checkpoints when checkpoint_signer is vault", func(c *Config, v string) error {
			if v == "" || strings.ContainsAny(v, "/?#") {
				return errors.New("want a Transit key name without '/', '?' or '#'")
			}
			c.VaultSigningKey = v
			return nil
		}},
		{"witness_policy", "C2SP tlog-policy `file`: the witnesses (witness <name> <vkey> <url>) every checkpoint is sent to, and the quorum that must cosign it before /v1/checkpoint serves it (default none: checkpoints are served unwitnessed)", func(c *Config, v string) error {
			c.WitnessPolicy = v
			return nil
		}},
		{"witness_timeout", "how long one request to one witness may take, a `duration` (default 10s); a slow witness delays only its own cosignature, never an append", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New("want a positive duration such as 10s")
			}
			c.WitnessTimeout = d
			return nil
		}},
		{"retention_interval", "how often expired retention periods are shredded, a `duration` (default 1h)", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New("want a positive duration such as 1h")
			}
			c.RetentionInterval = d
			return nil
		}},
		{"nats_url", "publish the lineage stream to this NATS JetStream `URL` instead of the embedded server (YAML: stream: {nats_url: ...})", func(c *Config, v string) error {
			if !isNATSURL(v) {
				return errors.New("want a URL such as nats://127.0.0.1:4222 (several may be given, comma-separated)")
			}
			c.Stream.NATSURL = v
			return nil
		}},
		{"stream_enabled", "publish every record on the lineage stream: true or false (default true; YAML: stream: {enabled: ...})", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("want true or false")
			}
			c.Stream.Disabled = !b
			return nil
		}},
		{"stream_listen", "client `address` host:port of the embedded NATS server, or none for in-process only (default 127.0.0.1:4222; YAML: stream: {listen: ...})", func(c *Config, v string) error {
			if v != "none" && !strings.Contains(v, ":") {
				return errors.New("want host:port, e.g. 127.0.0.1:4222, or none")
			}
			c.Stream.Listen = v
			return nil
		}},
		{"keystore_kind", "where the data keys live: file (<data>/keystore, the default) or nats (a JetStream KV bucket a cluster's nodes share; YAML: keystore: {kind: nats, nats_url: ...})", func(c *Config, v string) error {
			if v != "file" && v != "nats" {
				return errors.New("want file or nats")
			}
			c.Keystore.Kind = v
			return nil
		}},
		{"keystore_nats_url", "NATS JetStream `URL` of the keystore's KV bucket, several comma-separated (YAML: keystore: {nats_url: ...})", func(c *Config, v string) error {
			if !isNATSURL(v) {
				return errors.New("want a URL such as nats://127.0.0.1:4222 (several may be given, comma-separated)")
			}
			c.Keystore.NATSURL = v
			return nil
		}},
		{"keystore_bucket", "`name` of the keystore's KV bucket (default STELE_KEYS; YAML: keystore: {bucket: ...})", func(c *Config, v string) error {
			if v == "" {
				return errEmpty
			}
			c.Keystore.Bucket = v
			return nil
		}},
		{"keystore_replicas", "replicas of the keystore's KV bucket when Stele creates it: 1, 3 or 5 (default 3; YAML: keystore: {replicas: ...})", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || (n != 1 && n != 3 && n != 5) {
				return errors.New("want 1, 3 or 5")
			}
			c.Keystore.Replicas = n
			return nil
		}},
		{"tls_cert", "TLS certificate `file` (PEM, with any intermediates) of the API; with tls_key the API speaks HTTPS only", func(c *Config, v string) error {
			if v == "" {
				return errEmpty
			}
			c.TLSCert = v
			return nil
		}},
		{"tls_key", "TLS private key `file` (PEM) of tls_cert", func(c *Config, v string) error {
			if v == "" {
				return errEmpty
			}
			c.TLSKey = v
			return nil
		}},
		{"tls_client_ca", "CA certificates `file` (PEM): clients may present a certificate it issued, and get the role tls_client_roles maps it to", func(c *Config, v string) error {
			if v == "" {
				return errEmpty
			}
			c.TLSClientCA = v
			return nil
		}},
		{"tls_client_roles", "client certificate `identities` and their roles, kind:name=role comma-separated, kind cn, dns, email or uri, e.g. cn:ingest-1=service,dns:audit.example.com=auditor (YAML: a mapping)", func(c *Config, v string) error {
			roles, err := auth.ParseCertRoles(v)
			if err != nil {
				return err
			}
			c.TLSClientRoles = roles
			return nil
		}},
		{"insecure_listen", "allow plain HTTP on an address beyond loopback (default false): tokens and personal data then cross the network in clear, so only behind a TLS-terminating proxy on the same host", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("want true or false")
			}
			c.InsecureListen = b
			return nil
		}},
		{"stream_format", "lineage event `format`: cloudevents (data = the record) or debezium (data = {before, after, source, op, ts_ms}) (YAML: stream: {format: ...})", func(c *Config, v string) error {
			if _, err := publish.ParseFormat(v); err != nil || v == "" {
				return errors.New("want cloudevents or debezium")
			}
			c.Stream.Format = v
			return nil
		}},
	}, clusterOptions()...)
}

func parseBytes(v string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if s, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(s), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > (1<<62)/mult {
		return 0, errors.New("want a positive number of bytes, e.g. 16777216 or 16MiB")
	}
	return n * mult, nil
}

// configFlags binds the --config flag and one flag per named option to fs.
type configFlags struct {
	fs     *flag.FlagSet
	config string
	values map[string]*string
	opts   []option
	// sources holds --source values (serve only).
	sources *sourceFlag
}

// addConfigFlags registers --config and the flags of the named options (all
// of them when none is named).
func addConfigFlags(fs *flag.FlagSet, names ...string) *configFlags {
	cf := &configFlags{fs: fs, values: make(map[string]*string)}
	fs.StringVar(&cf.config, "config", "", "YAML configuration `file` (default $STELE_CONFIG)")
	for _, o := range options() {
		if len(names) > 0 && !slices.Contains(names, o.name) {
			continue
		}
		cf.opts = append(cf.opts, o)
		if o.name == "insecure_listen" {
			// A switch: --insecure-listen alone means true.
			p := new(string)
			fs.Var(boolString{p}, o.flag(), o.usage+" (env "+o.env()+")")
			cf.values[o.name] = p
			continue
		}
		cf.values[o.name] = fs.String(o.flag(), "", o.usage+" (env "+o.env()+")")
	}
	if len(names) == 0 {
		cf.sources = &sourceFlag{}
		fs.Var(cf.sources, "source", "capture changes from this database `URL` (postgres://user@host:5432/db); repeatable, added to the config file's sources:")
	}
	return cf
}

// boolString is a flag that may be given alone (--insecure-listen) or with
// a value (--insecure-listen=false); the option's setter parses it.
type boolString struct{ p *string }

func (b boolString) String() string {
	if b.p == nil {
		return ""
	}
	return *b.p
}

func (b boolString) Set(v string) error {
	*b.p = v
	return nil
}

func (boolString) IsBoolFlag() bool { return true }

// load builds the configuration after fs has been parsed. getenv is
// os.Getenv outside tests.
func (cf *configFlags) load(getenv func(string) string) (Config, error) {
	cfg := defaultConfig()
	path := cf.config
	if path == "" {
		path = getenv("STELE_CONFIG")
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config file: %w", err)
		}
		if err := applyYAML(&cfg, path, data); err != nil {
			return cfg, err
		}
	}
	for _, o := range options() {
		if v := getenv(o.env()); v != "" {
			if err := o.set(&cfg, v); err != nil {
				return cfg, fmt.Errorf("environment variable %s=%q: %w", o.env(), v, err)
			}
		}
	}
	var err error
	cf.fs.Visit(func(f *flag.Flag) {
		if err != nil {
			return
		}
		for _, o := range cf.opts {
			if o.flag() == f.Name {
				if e := o.set(&cfg, *cf.values[o.name]); e != nil {
					err = fmt.Errorf("flag --%s=%q: %w", f.Name, *cf.values[o.name], e)
				}
			}
		}
	})
	if err == nil {
		err = cfg.clusterKeystore()
	}
	if err != nil || cf.sources == nil {
		return cfg, err
	}
	var flagSources []SourceConfig
	for _, raw := range *cf.sources {
		sc, err := sourceFromURL(raw)
		if err == nil {
			err = sc.validate()
		}
		if err != nil {
			return cfg, fmt.Errorf("flag --source: %w", err)
		}
		flagSources = append(flagSources, sc)
	}
	if err := cfg.addSources(flagSources); err != nil {
		return cfg, fmt.Errorf("flag --source: %w", err)
	}
	return cfg, nil
}

// applyYAML reads the file as a mapping of option names to scalars. It
// walks the YAML nodes itself rather than decoding into a struct so that an
// unknown key and a bad value are reported with the key, file and line.
func applyYAML(cfg *Config, path string, data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s: line %d: want a mapping of option: value", path, root.Line)
	}
	byName := make(map[string]option)
	for _, o := range options() {
		byName[o.name] = o
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if sec, ok := yamlSections()[k.Value]; ok {
			if seen[k.Value] {
				return fmt.Errorf("config file %s: line %d: key %q given twice", path, k.Line, k.Value)
			}
			seen[k.Value] = true
			if err := applySectionYAML(cfg, path, k.Value, sec, v); err != nil {
				return err
			}
			continue
		}
		if k.Value == "cluster" && v.Kind == yaml.MappingNode {
			if seen[k.Value] {
				return fmt.Errorf("config file %s: line %d: key %q given twice", path, k.Line, k.Value)
			}
			seen[k.Value] = true
			if err := applySectionYAML(cfg, path, "cluster", clusterYAMLSection(), v); err != nil {
				return err
			}
			continue
		}
		if k.Value == "sources" {
			if seen[k.Value] {
				return fmt.Errorf("config file %s: line %d: key %q given twice", path, k.Line, k.Value)
			}
			seen[k.Value] = true
			list, err := parseSourcesYAML(path, v)
			if err != nil {
				return err
			}
			if err := cfg.addSources(list); err != nil {
				return fmt.Errorf("config file %s: line %d: sources: %w", path, v.Line, err)
			}
			continue
		}
		if k.Value == "schemas" {
			if seen[k.Value] {
				return fmt.Errorf("config file %s: line %d: key %q given twice", path, k.Line, k.Value)
			}
			seen[k.Value] = true
			list, err := parseSchemasYAML(path, v)
			if err != nil {
				return err
			}
			cfg.Schemas = &list
			continue
		}
		if k.Value == "projections" {
			if seen[k.Value] {
				return fmt.Errorf("config file %s: line %d: key %q given twice", path, k.Line, k.Value)
			}
			seen[k.Value] = true
			list, err := parseProjectionsYAML(path, v)
			if err != nil {
				return err
			}
			cfg.Projections = &list
			continue
		}
		if k.Value == "tls_client_roles" && v.Kind == yaml.MappingNode {
			if seen[k.Value] {
				return fmt.Errorf("config file %s: line %d: key %q given twice", path, k.Line, k.Value)
			}
			seen[k.Value] = true
			pairs := map[string]string{}
			for j := 0; j+1 < len(v.Content); j += 2 {
				id, role := v.Content[j], v.Content[j+1]
				if role.Kind != yaml.ScalarNode {
					return fmt.Errorf("config file %s: line %d: tls_client_roles.%s: want a role", path, role.Line, id.Value)
				}
				if _, dup := pairs[id.Value]; dup {
					return fmt.Errorf("config file %s: line %d: tls_client_roles: %q given twice", path, id.Line, id.Value)
				}
				pairs[id.Value] = role.Value
			}
			roles, err := auth.NewCertRoles(pairs)
			if err != nil {
				return fmt.Errorf("config file %s: line %d: tls_client_roles: %w", path, v.Line, err)
			}
			cfg.TLSClientRoles = roles
			continue
		}
		o, ok := byName[k.Value]
		if !ok {
			known := make([]string, 0, len(byName)+1)
			for _, o := range options() {
				known = append(known, o.name)
			}
			known = append(known, "sources", "schemas", "projections", "stream", "keystore")
			return fmt.Errorf("config file %s: line %d: unknown key %q (known keys: %s)", path, k.Line, k.Value, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return fmt.Errorf("config file %s: line %d: key %q given twice", path, k.Line, k.Value)
		}
		seen[k.Value] = true
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("config file %s: line %d: option %s: want a single value", path, v.Line, k.Value)
		}
		if err := o.set(cfg, v.Value); err != nil {
			return fmt.Errorf("config file %s: line %d: option %s=%q: %w", path, v.Line, k.Value, v.Value, err)
		}
	}
	return nil
}

// yamlSection is a YAML mapping whose keys are options of their own
// (stream: {nats_url: ...} is the option nats_url).
type yamlSection struct {
	keys    []string          // in the order errors list them
	options map[string]string // key -> option name
	example string
}

// yamlSections are the mappings of the configuration file read by
// applySectionYAML (a function, like options, so no package state).
func yamlSections() map[string]yamlSection {
	return map[string]yamlSection{
		"stream": {[]string{"enabled", "nats_url", "listen", "format"},
			map[string]string{"enabled": "stream_enabled", "nats_url": "nats_url", "listen": "stream_listen", "format": "stream_format"},
			"{enabled: true, nats_url: nats://host:4222}"},
		"keystore": {[]string{"kind", "nats_url", "bucket", "replicas"},
			map[string]string{"kind": "keystore_kind", "nats_url": "keystore_nats_url", "bucket": "keystore_bucket", "replicas": "keystore_replicas"},
			"{kind: nats, nats_url: nats://host:4222, replicas: 3}"},
	}
}

// applySectionYAML reads the mapping of section through the same setters
// as its STELE_* variables and flags.
func applySectionYAML(cfg *Config, path, section string, sec yamlSection, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s: line %d: %s: want a mapping such as %s", path, n.Line, section, sec.example)
	}
	byName := make(map[string]option)
	for _, o := range options() {
		byName[o.name] = o
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := sec.options[k.Value]
		if !ok {
			return fmt.Errorf("config file %s: line %d: %s: unknown key %q (known keys: %s)", path, k.Line, section, k.Value, strings.Join(sec.keys, ", "))
		}
		if seen[k.Value] {
			return fmt.Errorf("config file %s: line %d: %s: key %q given twice", path, k.Line, section, k.Value)
		}
		seen[k.Value] = true
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("config file %s: line %d: %s.%s: want a single value", path, v.Line, section, k.Value)
		}
		if err := byName[name].set(cfg, v.Value); err != nil {
			return fmt.Errorf("config file %s: line %d: %s.%s=%q: %w", path, v.Line, section, k.Value, v.Value, err)
		}
	}
	return nil
}

// isNATSURL reports whether v starts as a NATS client URL does.
func isNATSURL(v string) bool {
	for _, p := range []string{"nats://", "tls://", "ws://", "wss://"} {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	return false
}
