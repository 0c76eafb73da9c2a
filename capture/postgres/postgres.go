// Package postgres captures every committed change of a PostgreSQL database
// through logical replication with the built-in pgoutput plugin (protocol
// version 2, logical decoding messages on) and appends it to Stele's log as
// lineage records, exactly once.
//
// # Set-up
//
// On every (re)connection the source checks wal_level = logical, creates the
// publication (FOR ALL TABLES, or FOR TABLE the configured tables) and a
// permanent logical replication slot when they are missing, and checks each
// published table's REPLICA IDENTITY: with ReplicaIdentityFull it sets FULL,
// otherwise it warns that update and delete before images hold only the key.
// Tables without a primary key are keyed by the full row.
//
// # Records
//
// One record per inserted, updated or deleted row, and one truncate record per
// truncated table, keyed {"table": "schema.table"}. source is {name, kind:
// "postgres", database, schema, table}; tx is {id: xid, position: the LSN of
// the change ("0/16B3748"), index: 0-based position in the transaction,
// commit_time}; occurred_at is the commit time. The id is derived from
// source, position and key (record.DeriveChangeID), so replaying a
// transaction after a crash yields the same ids and the log stores each
// change once, and a Debezium event of the same change gets the same id.
// Sources that ran before change ids keep commit-LSN positions and ids up
// to a recorded boundary (ids.go). Column values are typed
// as columnJSON documents. Unchanged TOAST values (sent as 'u') in an update
// are filled from the old tuple, else from the last image of the row this
// source saw (a bounded in-memory cache); failing both the field is set to
// {"$unchanged_toast": true} and a warning is logged — never dropped. A value
// over Config.MaxValueBytes is recorded as {"$too_large": {"bytes", "sha256"}}.
//
// # Actor and cause
//
// A transactional logical message with prefix "stele" (see package
// capture/pgctx) whose content is {"actor": {...}, "cause": {...}} applies to
// every change of its transaction, wherever it appears in it. Without one,
// actor is {"id": "unknown", "type": "unknown"}.
//
// # Exactly once
//
// A transaction's records are buffered until its COMMIT, then appended; only
// after the sink returns is the flush position advanced to the transaction's
// end LSN and reported to the server (StandbyStatusUpdate) on the next
// heartbeat or keepalive request. While no transaction is in flight, the
// server's keepalive position is acknowledged too, so an idle source does
// not pin WAL. A transaction whose records exceed Config.SpillBytes (16 MiB)
// is spilled to a temporary file and read back at COMMIT.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stele/stele/capture"
)

// Errors returned by Run for permanent failures; each wraps the server's
// error and says what to change.
var (
	ErrAuth       = errors.New("postgres source: authentication failed")
	ErrNoDatabase = errors.New("postgres source: database does not exist")
	ErrWALLevel   = errors.New("postgres source: wal_level is not logical")
	ErrSlotInUse  = errors.New("postgres source: replication slot is in use by another consumer")
	ErrConfig     = errors.New("postgres source: invalid configuration")
	ErrPermission = errors.New("postgres source: permission denied")
)

func permanent(err error) bool {
	for _, e := range []error{ErrAuth, ErrNoDatabase, ErrWALLevel, ErrSlotInUse, ErrConfig, ErrPermission} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Config configures one PostgreSQL source.
type Config struct {
	// Name is the source name in records (default: the database name).
	Name string
	// ConnString is a postgres:// URL or key=value string; the source adds
	// replication=database for the replication connection.
	ConnString string
	// Slot is the replication slot (default stele_<name>).
	Slot string
	// Publication is the publication (default stele_<name>).
	Publication string
	// Tables, when not empty, is what a new publication publishes (schema.table
	// or table, meaning public.table). ExcludeTables are published but
	// their changes are skipped.
	Tables        []string
	ExcludeTables []string
	// ReplicaIdentityFull sets REPLICA IDENTITY FULL on published tables
	// that lack it, so before images are complete.
	ReplicaIdentityFull bool
	// SkipSetup makes the source only check the database: it creates no
	// publication or slot (their absence is an ErrConfig) and alters no
	// table.
	SkipSetup bool
	// Snapshot is "" (no snapshot) or "initial": when the source creates
	// its slot, the published tables' rows become op "snapshot" records
	// consistent with the slot's start (see snapshot.go).
	Snapshot string
	// CaptureDDL makes set-up install an event trigger that reports DDL
	// as logical messages, recorded as op "ddl" records (see ddl.go).
	CaptureDDL bool
	// Heartbeat is how often the flush position is reported (default 10s).
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound the reconnection delay (default 500ms
	// and 30s).
	MinBackoff, MaxBackoff time.Duration
	// BatchSize is the most records per sink append (default 1000).
	BatchSize int
	// SpillBytes is how much of a transaction's records is held in memory
	// before they move to a temporary file in SpillDir (default 16 MiB and
	// the system's temporary directory).
	SpillBytes int
	SpillDir   string
	// MaxValueBytes bounds one column value's JSON (default 8 MiB); a
	// larger value is recorded as {"$too_large": {"bytes": n, "sha256": …}},
	// because the log refuses records over 64 MiB.
	MaxValueBytes int
	// ToastCacheRows bounds the rows whose last image is kept to fill
	// unchanged TOAST values (default 10000). Only row versions large
	// enough to have been toasted are kept (toast.go).
	ToastCacheRows int
	// IDScheme is how record ids are derived: "" (the default: change ids
	// for a new source, and for a source that ran before with commit ids
	// a switch at a recorded boundary), IDSchemeChange or IDSchemeCommit
	// (see ids.go).
	IDScheme string
	// Outbox is Debezium's outbox table ("schema.table", or "table" in
	// public): its inserted rows become event records, the cause of the
	// other changes of their transaction (capture.JoinOutbox).
	Outbox string
	// StateDir is the source's own directory, where the id scheme is
	// recorded (the server gives <data>/sources/<name>). Without one the
	// scheme is not recorded: IDScheme, or change ids.
	StateDir string
	Logger   *slog.Logger
}

// Source is a PostgreSQL change-data-capture source.
type Source struct {
	cfg      Config
	pgcfg    *pgconn.Config
	database string
	logger   *slog.Logger
	progress capture.Progress
}

var _ capture.Source = (*Source)(nil)

// New validates cfg and fills in defaults. It does not connect.
func New(cfg Config) (*Source, error) {
	if cfg.ConnString == "" {
		return nil, fmt.Errorf("%w: the connection string is empty; want postgres://user@host:5432/dbname", ErrConfig)
	}
	pgcfg, err := pgconn.ParseConfig(cfg.ConnString)
	if err != nil {
		// pgconn's parse errors redact the password.
		return nil, fmt.Errorf("%w: connection string: %w", ErrConfig, err)
	}
	s := &Source{cfg: cfg, pgcfg: pgcfg, database: pgcfg.Database}
	if s.database == "" {
		s.database = pgcfg.User
	}
	if s.cfg.Name == "" {
		s.cfg.Name = s.database
	}
	ident := identifier(s.cfg.Name)
	if s.cfg.Slot == "" {
		s.cfg.Slot = "stele_" + ident
	}
	if s.cfg.Publication == "" {
		s.cfg.Publication = "stele_" + ident
	}
	if identifier(s.cfg.Slot) != s.cfg.Slot {
		return nil, fmt.Errorf("%w: slot %q: a replication slot name may hold only lower-case letters, digits and _", ErrConfig, s.cfg.Slot)
	}
	if s.cfg.Heartbeat <= 0 {
		s.cfg.Heartbeat = 10 * time.Second
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
	if s.cfg.SpillBytes <= 0 {
		// 16 MiB, as the MySQL source: at GOGC=200 a transaction held in
		// memory costs about three times its records in heap, and 64 MiB
		// made a 64 MiB transaction's capture peak 216 MiB above the
		// process's RSS before it.
		s.cfg.SpillBytes = 16 << 20
	}
	if s.cfg.MaxValueBytes <= 0 {
		s.cfg.MaxValueBytes = 8 << 20
	}
	if s.cfg.ToastCacheRows <= 0 {
		s.cfg.ToastCacheRows = 10000
	}
	if s.cfg.Snapshot != "" && s.cfg.Snapshot != SnapshotInitial {
		return nil, fmt.Errorf("%w: snapshot %q: want \"initial\" or nothing", ErrConfig, s.cfg.Snapshot)
	}
	if s.cfg.Outbox != "" && !strings.Contains(s.cfg.Outbox, ".") {
		s.cfg.Outbox = "public." + s.cfg.Outbox
	}
	switch s.cfg.IDScheme {
	case "", IDSchemeChange, IDSchemeCommit:
	default:
		return nil, fmt.Errorf("%w: id_scheme %q: want \"change\", \"commit\" or nothing", ErrConfig, s.cfg.IDScheme)
	}
	if s.cfg.Logger == nil {
		s.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.cfg.Logger.With("source", s.cfg.Name, "kind", "postgres", "conn", s.Redacted())
	return s, nil
}

// Name returns the source name.
func (s *Source) Name() string { return s.cfg.Name }

// Config returns the configuration with defaults filled in.
func (s *Source) Config() Config { return s.cfg }

// Redacted describes the connection without its password.
func (s *Source) Redacted() string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s", s.pgcfg.User, s.pgcfg.Host, s.pgcfg.Port, s.pgcfg.Database)
}

// identifier lower-cases name and replaces what a slot name may not hold.
func identifier(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Run captures changes into sink until ctx is done. Connection losses are
// retried by the runtime's supervisor with capped exponential backoff; a
// permanent misconfiguration (ErrAuth, ErrNoDatabase, ErrWALLevel,
// ErrSlotInUse, ErrPermission, ErrConfig) is returned.
func (s *Source) Run(ctx context.Context, sink capture.Sink) error {
	st := newState(s)
	slotBusy := 0
	sup := capture.Supervisor{
		MinBackoff: s.cfg.MinBackoff, MaxBackoff: s.cfg.MaxBackoff,
		Progress: &s.progress, Redact: capture.Redactor(s.pgcfg.Password), Logger: s.logger,
		Permanent: func(err error) bool {
			if errors.Is(err, ErrSlotInUse) {
				// Our own previous connection may still hold the slot
				// for a moment after a reconnect; another consumer
				// holds it for good.
				slotBusy++
				return slotBusy >= 5
			}
			slotBusy = 0
			return permanent(err)
		},
	}
	return sup.Run(ctx, func(ctx context.Context) (bool, error) { return s.session(ctx, sink, st) })
}

// classify maps server errors to the package's sentinels.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "28P01", "28000":
		return fmt.Errorf("%w: %w; check the user and password in the source's connection string (and pg_hba.conf)", ErrAuth, err)
	case "3D000":
		return fmt.Errorf("%w: %w; create the database or fix its name in the connection string", ErrNoDatabase, err)
	case "55006":
		return fmt.Errorf("%w: %w; stop the other consumer, or give this source its own slot name", ErrSlotInUse, err)
	case "42501":
		return fmt.Errorf("%w: %w; the user needs the REPLICATION attribute and ownership of the published tables (or use a superuser)", ErrPermission, err)
	}
	return err
}
