// Package mysql captures every committed row change of a MySQL or MariaDB
// server from its row-based binary log and appends it to Stele's log as
// lineage records, exactly once. It reads the binlog as a replica does
// (go-mysql's BinlogSyncer, COM_BINLOG_DUMP or its GTID form), decodes each
// row event with the table definition the binlog itself carries at that
// point, and keeps its position in the capture runtime's PositionStore.
//
// # Flavors
//
// Flavor "mysql" (MySQL 5.7, 8.x, 9.x) and "mariadb" (MariaDB 10.5 and
// later) are both supported; the flavor is read from the server's version
// unless Config.Flavor names it (a mariadb:// URL does). go-mysql is told
// the flavor, without which MariaDB sends MySQL-compatible dummy events.
// Only MariaDB 10.11 has been tested against a live server (Debian ships no
// MySQL server); the MySQL paths — GTID events, rows-query events, the GTID
// set positions, TIMESTAMP/JSON binary decoding — are unit-tested on
// recorded events.
//
// # Set-up checks
//
// Every (re)connection checks, failing with the exact fix in the message:
// log_bin on; binlog_format = ROW; binlog_row_metadata = FULL where the
// server has it (MySQL 8.0.1+, MariaDB 10.5+: column names, signedness,
// character sets, ENUM/SET labels and the primary key in every table-map
// event); the REPLICATION SLAVE and REPLICATION CLIENT (MariaDB: BINLOG
// MONITOR) grants; binlog retention (binlog_expire_logs_seconds,
// expire_logs_days) at least Config.MaxLag; a replica server id that is
// not the server's own. binlog_row_image other than FULL is a warning
// (before images then hold only some columns), so is a server without
// rows-query / annotate-rows events (statement comments cannot name the
// actor). See setup.go.
//
// # Records
//
// One record per inserted, updated or deleted row, keyed by the primary key
// (every column for a table without one). source is {name, kind: "mysql",
// database, table}; tx is {id: the GTID (MySQL "uuid:n", MariaDB
// "domain-server-seq"; empty on a MySQL server without GTIDs), position:
// the GTID, or "file:offset" of the transaction's first event without
// GTIDs, index: 0-based in the transaction, commit_time}; occurred_at is the
// commit time. Column values are typed as described in decode.go. DDL
// statements become op "ddl" records (after: {statement, database}), TRUNCATE
// an op "truncate" record keyed {"table": "db.table"}. Each new column list
// of a table is a new schema version (schema.go) and an op "ddl" record
// keyed {"relation": "db.table"} with the columns.
//
// # Actor and cause
//
// Two ways (context.go): a leading comment on the statement,
// /* stele {"actor": {...}, "cause": {...}} */, read from MySQL's rows-query
// events (binlog_rows_query_log_events = ON) or MariaDB's annotate-rows
// events (on by default; requested with BINLOG_SEND_ANNOTATE_ROWS_EVENT),
// applies to that statement's rows; a row written to the context table
// (stele_context; package capture/mysqlctx has its definition and the Go one-liner) inside the transaction
// applies to every other change of its transaction and is not recorded
// itself. Without either, actor is {"id": "unknown", "type": "unknown"}.
//
// # Exactly once
//
// A transaction's records are buffered until its commit event (XID, or
// COMMIT), then handed to the runtime's Acknowledger; consecutive small
// transactions share one append. Only once the records up to a transaction
// are durable does its position (the executed GTID set after it, and
// file:offset) become the source's durable position, saved in the
// PositionStore at most every Config.PositionInterval and when the source
// stops. Record ids derive from source, table, tx.position and tx.index, so
// the transactions replayed after a crash are stored once. Transactions
// larger than Config.SpillBytes spill to disk. A binlog purged past the
// stored position is a permanent error naming the gap and how to
// resnapshot (ErrBinlogPurged), never a silent skip.
package mysql

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/stele/stele/capture"
)

// Flavors.
const (
	FlavorMySQL   = "mysql"
	FlavorMariaDB = "mariadb"
)

// Errors returned by Run for permanent failures; each wraps the server's
// error and says what to change.
var (
	ErrAuth         = errors.New("mysql source: authentication failed")
	ErrNoDatabase   = errors.New("mysql source: database does not exist")
	ErrSetup        = errors.New("mysql source: the server is not set up for binlog capture")
	ErrPermission   = errors.New("mysql source: permission denied")
	ErrConfig       = errors.New("mysql source: invalid configuration")
	ErrBinlogPurged = errors.New("mysql source: the binlog no longer holds the stored position")
	ErrServerID     = errors.New("mysql source: the replica server id is in use")
)

func permanent(err error) bool {
	for _, e := range []error{ErrAuth, ErrNoDatabase, ErrSetup, ErrPermission, ErrConfig, ErrBinlogPurged} {
		if errors.Is(err, e) {
			return true
		}
	}
	return capture.IsPermanent(err)
}

// SnapshotInitial is the Config.Snapshot value asking for an initial
// snapshot of the captured tables when the source has no position yet.
const SnapshotInitial = "initial"

// DefaultContextTable is the name of the context table.
const DefaultContextTable = "stele_context"

// Config configures one MySQL or MariaDB source.
type Config struct {
	// Name is the source name in records (default: the URL's database,
	// else "mysql").
	Name string
	// URL is mysql://user:password@host:3306/database (or mariadb://…,
	// which sets Flavor). The database, when given, is the one captured
	// (default: every database but the system ones). Query parameters:
	// tls=true|skip-verify, server_id=n, flavor=mysql|mariadb.
	URL string
	// Flavor is "mysql", "mariadb" or "" (read from the server's version).
	Flavor string
	// ServerID is the id this source registers with as a replica; it must
	// differ from every server and replica id of the topology (default: a
	// number derived from Name, in 0x5E000000–0x5EFFFFFF).
	ServerID uint32
	// StateDir holds the source's durable position and schema history
	// (required; stele serve uses <data>/sources/<name>).
	StateDir string
	// Tables, when not empty, are the only tables captured ("db.table", or
	// "table" in the URL's database). ExcludeTables are never captured.
	Tables        []string
	ExcludeTables []string
	// Snapshot is "" (capture changes from the current position on) or
	// "initial": a source without a stored position first records every
	// captured table's rows as op "snapshot" records, consistent with the
	// binlog position it then streams from (snapshot.go).
	Snapshot string
	// ContextTable is the name of the context table in any captured
	// database (default stele_context); CreateContextTable creates it in
	// the URL's database at set-up when missing.
	ContextTable       string
	CreateContextTable bool
	// Outbox is Debezium's outbox table ("database.table" or "table"): its
	// inserted rows become event records, the cause of the other changes
	// of their transaction (capture.JoinOutbox).
	Outbox string
	// MaxLag is the longest outage the source must survive: binlog
	// retention shorter than this fails set-up (default 24h).
	MaxLag time.Duration
	// Heartbeat is the server's heartbeat period on an idle stream, and
	// how often lag is measured (default 10s); a connection silent for
	// three heartbeats is reconnected.
	Heartbeat time.Duration
	// PositionInterval bounds how often the durable position is saved
	// (default 1s); a crash replays at most that much, stored once.
	PositionInterval time.Duration
	// MinBackoff and MaxBackoff bound the reconnection delay (default 500ms
	// and 30s).
	MinBackoff, MaxBackoff time.Duration
	// BatchSize is the most records per sink append while the log keeps
	// up (default 1000).
	BatchSize int
	// Coalesce is the most records one append merges from the batches
	// queued behind a slow append (default BatchSize: no merging; more
	// lets a log that falls far behind catch up with fewer fsyncs). In
	// same-run comparisons (TestCaptureBenchmark with STELE_BENCH_AB, six
	// runs on a loaded 2-core machine) 16 batches captured slower
	// than no merging in every run (3–23 %): the merged appends wait longer and
	// decoding stalls behind them, so merging is off by default.
	Coalesce int
	// SpillBytes is how much of a transaction's records is held in memory
	// before they move to a temporary file in SpillDir (default 16 MiB and
	// the system's temporary directory).
	SpillBytes int
	SpillDir   string
	// MaxValueBytes bounds one column value's JSON (default 8 MiB); a
	// larger value is recorded as {"$too_large": {"bytes": n, "sha256": …}}.
	MaxValueBytes int
	Logger        *slog.Logger
}

// Source is a MySQL/MariaDB change-data-capture source.
type Source struct {
	cfg      Config
	host     string
	port     uint16
	user     string
	password string
	database string
	tls      *tls.Config
	tables   tableFilter
	logger   *slog.Logger
	progress capture.Progress
	status   statusBox
}

var _ capture.Source = (*Source)(nil)

// New validates cfg and fills in defaults. It does not connect.
func New(cfg Config) (*Source, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: the URL is empty; want mysql://user:password@host:3306/dbname", ErrConfig)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL: %v", ErrConfig, redactErr(err))
	}
	s := &Source{cfg: cfg}
	switch u.Scheme {
	case "mysql":
	case "mariadb":
		if s.cfg.Flavor == "" {
			s.cfg.Flavor = FlavorMariaDB
		}
	default:
		return nil, fmt.Errorf("%w: URL scheme %q: want mysql:// or mariadb://", ErrConfig, u.Scheme)
	}
	s.host = u.Hostname()
	if s.host == "" {
		return nil, fmt.Errorf("%w: URL has no host; want mysql://user@host:3306/dbname", ErrConfig)
	}
	s.port = 3306
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%w: URL port %q is not a port number", ErrConfig, p)
		}
		s.port = uint16(n)
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.password, _ = u.User.Password()
	}
	if s.user == "" {
		return nil, fmt.Errorf("%w: URL has no user; want mysql://user:password@host:3306/dbname", ErrConfig)
	}
	s.database = strings.Trim(u.Path, "/")
	if strings.Contains(s.database, "/") {
		return nil, fmt.Errorf("%w: URL path %q: want one database name", ErrConfig, u.Path)
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "tls", "server_id", "flavor":
		default:
			return nil, fmt.Errorf("%w: URL parameter %q is unknown (known: tls, server_id, flavor)", ErrConfig, k)
		}
	}
	switch q.Get("tls") {
	case "", "false":
	case "true":
		s.tls = &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
	case "skip-verify":
		s.tls = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for by the operator
	default:
		return nil, fmt.Errorf("%w: URL parameter tls=%q: want true, skip-verify or false", ErrConfig, q.Get("tls"))
	}
	if v := q.Get("server_id"); v != "" && s.cfg.ServerID == 0 {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%w: URL parameter server_id=%q: want a number from 1 to 4294967295", ErrConfig, v)
		}
		s.cfg.ServerID = uint32(n)
	}
	if v := q.Get("flavor"); v != "" && s.cfg.Flavor == "" {
		s.cfg.Flavor = v
	}
	switch s.cfg.Flavor {
	case "", FlavorMySQL, FlavorMariaDB:
	default:
		return nil, fmt.Errorf("%w: flavor %q: want mysql or mariadb", ErrConfig, s.cfg.Flavor)
	}
	if s.cfg.Name == "" {
		s.cfg.Name = s.database
		if s.cfg.Name == "" {
			s.cfg.Name = "mysql"
		}
	}
	if s.cfg.ServerID == 0 {
		h := fnv.New32a()
		h.Write([]byte(s.cfg.Name))
		s.cfg.ServerID = 0x5E000000 | h.Sum32()&0x00FFFFFF
	}
	if s.cfg.ContextTable == "" {
		s.cfg.ContextTable = DefaultContextTable
	}
	if s.cfg.CreateContextTable && s.database == "" {
		return nil, fmt.Errorf("%w: create_context_table needs the URL to name the database to create %s in", ErrConfig, s.cfg.ContextTable)
	}
	if s.tables, err = newTableFilter(s.database, s.cfg.Tables, s.cfg.ExcludeTables, s.cfg.ContextTable); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch s.cfg.Snapshot {
	case "":
	case SnapshotInitial:
	default:
		return nil, fmt.Errorf("%w: snapshot %q: want \"initial\" or nothing", ErrConfig, s.cfg.Snapshot)
	}
	if s.cfg.MaxLag <= 0 {
		s.cfg.MaxLag = 24 * time.Hour
	}
	if s.cfg.Heartbeat <= 0 {
		s.cfg.Heartbeat = 10 * time.Second
	}
	if s.cfg.PositionInterval <= 0 {
		s.cfg.PositionInterval = time.Second
	}
	if s.cfg.MinBackoff <= 0 {
		s.cfg.MinBackoff = 500 * time.Millisecond
	}
	if s.cfg.MaxBackoff <= 0 {
		s.cfg.MaxBackoff = 30 * time.Second
	}
	if s.cfg.BatchSize <= 0 {
		s.cfg.BatchSize = 1000
	}
	if s.cfg.Coalesce <= 0 {
		s.cfg.Coalesce = s.cfg.BatchSize
	}
	if s.cfg.SpillBytes <= 0 {
		// Measured: the records held take about twice the estimate
		// once the garbage collector's headroom is counted, so 16 MiB
		// keeps a spilled transaction's heap near 100 MiB.
		s.cfg.SpillBytes = 16 << 20
	}
	if s.cfg.MaxValueBytes <= 0 {
		s.cfg.MaxValueBytes = 8 << 20
	}
	if s.cfg.Logger == nil {
		s.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.cfg.Logger.With("source", s.cfg.Name, "kind", "mysql", "conn", s.Redacted())
	return s, nil
}

// redactErr drops the URL text (which may hold the password) from a
// url.Parse error.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Name returns the source name.
func (s *Source) Name() string { return s.cfg.Name }

// Config returns the configuration with defaults filled in.
func (s *Source) Config() Config { return s.cfg }

// Redacted describes the connection without its password.
func (s *Source) Redacted() string {
	scheme := "mysql"
	if s.cfg.Flavor == FlavorMariaDB {
		scheme = "mariadb"
	}
	return fmt.Sprintf("%s://%s@%s/%s", scheme, s.user, s.addr(), s.database)
}

func (s *Source) addr() string {
	return net.JoinHostPort(s.host, strconv.Itoa(int(s.port)))
}

// Run captures changes into sink until ctx is done. Connection losses are
// retried by the runtime's supervisor with capped exponential backoff; a
// permanent failure (ErrAuth, ErrNoDatabase, ErrSetup, ErrPermission,
// ErrConfig, ErrBinlogPurged, and ErrServerID five times in a row) is
// returned.
func (s *Source) Run(ctx context.Context, sink capture.Sink) error {
	st, err := s.openState()
	if err != nil {
		s.progress.SetError(err, nil)
		s.progress.SetState(capture.StateFailed)
		return err
	}
	idBusy := 0
	sup := capture.Supervisor{
		MinBackoff: s.cfg.MinBackoff, MaxBackoff: s.cfg.MaxBackoff,
		Progress: &s.progress, Redact: capture.Redactor(s.password), Logger: s.logger,
		Permanent: func(err error) bool {
			if errors.Is(err, ErrServerID) {
				// Our own previous connection may linger a moment after
				// a reconnect; another replica keeps the id for good.
				idBusy++
				return idBusy >= 5
			}
			idBusy = 0
			return permanent(err)
		},
	}
	err = sup.Run(ctx, func(ctx context.Context) (bool, error) { return s.session(ctx, sink, st) })
	st.saveDurable(context.WithoutCancel(ctx), s.logger)
	return err
}

// classify maps server errors to the package's sentinels.
func (s *Source) classify(err error) error {
	var me *gomysql.MyError
	if !errors.As(err, &me) {
		return err
	}
	switch me.Code {
	case gomysql.ER_ACCESS_DENIED_ERROR, gomysql.ER_ACCESS_DENIED_NO_PASSWORD_ERROR:
		return fmt.Errorf("%w: %w; check the user and password in the source's URL", ErrAuth, err)
	case gomysql.ER_BAD_DB_ERROR:
		return fmt.Errorf("%w: %w; create the database or fix its name in the URL", ErrNoDatabase, err)
	case gomysql.ER_SPECIFIC_ACCESS_DENIED_ERROR, gomysql.ER_DBACCESS_DENIED_ERROR, gomysql.ER_TABLEACCESS_DENIED_ERROR:
		return fmt.Errorf("%w: %w; %s", ErrPermission, err, s.grantFix())
	case gomysql.ER_MASTER_FATAL_ERROR_READING_BINLOG, 1789 /* ER_MASTER_HAS_PURGED_REQUIRED_GTIDS */ :
		msg := strings.ToLower(me.Message)
		if strings.Contains(msg, "same server_uuid") || strings.Contains(msg, "same server_id") || strings.Contains(msg, "same server id") {
			return fmt.Errorf("%w: %w; give this source its own server_id (URL parameter server_id=n), distinct from every server and replica", ErrServerID, err)
		}
		if strings.Contains(msg, "purged") || strings.Contains(msg, "could not find") || strings.Contains(msg, "not in the master's binlog") ||
			strings.Contains(msg, "not in the binlog") || strings.Contains(msg, "first log file name") {
			return fmt.Errorf("%w: %w", ErrBinlogPurged, err)
		}
	}
	return err
}

func (s *Source) grantFix() string {
	return fmt.Sprintf("the user needs GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO '%s'@'%%' (MariaDB 10.5+: REPLICATION SLAVE, BINLOG MONITOR, SELECT)", s.user)
}
