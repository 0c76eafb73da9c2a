package mysql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/capture/mysqlctx"
	"github.com/stele/stele/internal/mysqltest"
	"github.com/stele/stele/record"
)

// TestConformance runs the source conformance suite against a throwaway
// MariaDB (the only flavor that runs here).
func TestConformance(t *testing.T) {
	capturetest.Run(t, &myHarness{})
}

// TestConformanceSpilled runs the suite with every transaction spilled to
// disk (a 1-byte SpillBytes).
func TestConformanceSpilled(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite a second time; skipped with -short")
	}
	capturetest.Run(t, &myHarness{spill: 1})
}

type myHarness struct {
	srv   *mysqltest.Server
	n     atomic.Int64
	spill int
}

func (h *myHarness) Kind() string { return "mysql" }

func (h *myHarness) Unsupported() map[capturetest.Capability]string { return nil }

func (h *myHarness) Start(t *testing.T) { h.srv = mysqltest.Start(t, mysqltest.Options{}) }

const myBadPassword = "wrong-pw-conformance"

func (h *myHarness) Open(t *testing.T) capturetest.Upstream {
	name := fmt.Sprintf("conform%d", h.n.Add(1))
	h.srv.CreateDatabase(t, name,
		`CREATE TABLE items (id BIGINT PRIMARY KEY, v TEXT)`,
		`CREATE TABLE typed (id INT PRIMARY KEY, ti TINYINT, biu BIGINT UNSIGNED, de DECIMAL(40,20), d DOUBLE,
			b BOOL, vc VARCHAR(20), dtm DATETIME(6), dt DATE, y YEAR, j JSON, bl BLOB, e ENUM('s','l'), st SET('x','y'), nul TEXT)`,
		mysqlctx.TableDDL)
	return &myUpstream{h: h, name: name, stateDir: t.TempDir()}
}

type myUpstream struct {
	h        *myHarness
	name     string
	stateDir string // survives the sources a restarted process builds

	mu   sync.Mutex
	last *Source // the latest good-credentials source, for Ready
}

func (u *myUpstream) Name() string  { return u.name }
func (u *myUpstream) Table() string { return "items" }

func (u *myUpstream) Source(t *testing.T, bad bool) capture.Source {
	cfg := testConfig(t, Config{
		Name:     u.name,
		URL:      u.h.srv.URL(u.name),
		StateDir: u.stateDir,
		// Small appends, so crashes fall between the appends of one
		// transaction too.
		BatchSize:  16,
		SpillBytes: u.h.spill,
		SpillDir:   t.TempDir(),
	})
	if bad {
		cfg.URL = u.h.srv.PasswordURL(u.name, myBadPassword)
		cfg.Name = u.name + "_bad"
		cfg.StateDir = t.TempDir()
	}
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("source %s (bad credentials: %v) logs:\n%s", cfg.Name, bad, logs)
		}
	})
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bad {
		u.mu.Lock()
		u.last = src
		u.mu.Unlock()
	}
	return src
}

// Ready waits until the latest source streams: its start position is
// read, so every later commit is after it.
func (u *myUpstream) Ready(t *testing.T) {
	t.Helper()
	u.mu.Lock()
	src := u.last
	u.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for src.Stats().State != capture.StateStreaming {
		if time.Now().After(deadline) {
			t.Fatalf("source %s not streaming after 30s (state %s)", u.name, src.Stats().State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (u *myUpstream) Apply(ctx context.Context, tx capturetest.Tx) error {
	stmts := []string{"BEGIN"}
	for i, ch := range tx.Changes {
		switch ch.Op {
		case record.OpInsert:
			stmts = append(stmts, fmt.Sprintf(`INSERT INTO items (id, v) VALUES (%d, %s)`, ch.ID, sqlString(ch.V)))
		case record.OpUpdate:
			stmts = append(stmts, fmt.Sprintf(`UPDATE items SET v = %s WHERE id = %d`, sqlString(ch.V), ch.ID))
		case record.OpDelete:
			stmts = append(stmts, fmt.Sprintf(`DELETE FROM items WHERE id = %d`, ch.ID))
		default:
			return fmt.Errorf("op %s", ch.Op)
		}
		// The context row after the first change: it applies to the
		// whole transaction wherever it stands.
		if i == 0 && tx.Actor != nil {
			actor, err := json.Marshal(tx.Actor)
			if err != nil {
				return err
			}
			stmts = append(stmts, strings.NewReplacer("?, ?", sqlString(string(actor))+", NULL").Replace(mysqlctx.Statement))
		}
	}
	return u.h.srv.ExecIn(ctx, u.name, append(stmts, "COMMIT")...)
}

// sqlString quotes s as a MariaDB string literal.
func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Acknowledged reads the position the source saved: it resumes after that
// GTID set, so a transaction inside it is never sent again.
func (u *myUpstream) Acknowledged(context.Context) (func(*record.Record) bool, error) {
	ps, err := capture.OpenPositions(filepath.Join(u.stateDir, "positions"))
	if err != nil {
		return nil, err
	}
	saved, ok := ps.Get(posKeyGTID)
	if !ok || saved == "" {
		return func(*record.Record) bool { return false }, nil
	}
	set, err := gomysql.ParseMariadbGTIDSet(saved)
	if err != nil {
		return nil, fmt.Errorf("saved GTID set %q: %w", saved, err)
	}
	return func(r *record.Record) bool {
		if r.Tx == nil || r.Tx.ID == "" {
			return false
		}
		g, err := gomysql.ParseMariadbGTIDSet(r.Tx.ID)
		return err == nil && set.Contain(g)
	}, nil
}

func (u *myUpstream) Restart(t *testing.T) { u.h.srv.Restart(t) }

func (u *myUpstream) Truncate(ctx context.Context) error {
	return u.h.srv.ExecIn(ctx, u.name, `TRUNCATE items`)
}

func (u *myUpstream) DDL(ctx context.Context) error {
	return u.h.srv.ExecIn(ctx, u.name, `ALTER TABLE items ADD COLUMN extra TEXT NULL`)
}

func (u *myUpstream) WriteTyped(ctx context.Context) (capturetest.TypedRow, error) {
	err := u.h.srv.ExecIn(ctx, u.name, `INSERT INTO typed VALUES (1, -128, 18446744073709551615,
		12345678901234567890.12345678901234567890, 1.5e-7, TRUE, 'héllo "q" <x>',
		'2026-01-02 03:04:05.123456', '2026-01-02', 2026, '{"b": 2, "a": [1, "x"]}', x'deadbeef', 'l', 'x,y', NULL)`)
	return capturetest.TypedRow{Table: "typed", Key: `{"id":1}`, Want: map[string]string{
		"id": "1", "ti": "-128", "biu": "18446744073709551615",
		"de": "12345678901234567890.12345678901234567890", "d": "1.5e-07",
		"b": "1", "vc": `"héllo \"q\" <x>"`,
		"dtm": `"2026-01-02T03:04:05.123456Z"`, "dt": `"2026-01-02"`, "y": "2026",
		"j": `{"a":[1,"x"],"b":2}`, "bl": `"3q2+7w=="`, "e": `"l"`, "st": `["x","y"]`, "nul": "null",
	}}, err
}

func (u *myUpstream) CheckCredentialError(t *testing.T, err error) {
	if !errors.Is(err, ErrAuth) {
		t.Errorf("bad password: err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "check the user and password") {
		t.Errorf("bad password: error %q does not say how to fix it", err)
	}
	if strings.Contains(err.Error(), myBadPassword) {
		t.Errorf("the error reveals the password: %v", err)
	}
}
