package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/capture/pgctx"
	"github.com/stele/stele/internal/pgtest"
	"github.com/stele/stele/record"
)

// TestConformance runs the source conformance suite against a throwaway
// PostgreSQL.
func TestConformance(t *testing.T) {
	capturetest.Run(t, &pgHarness{})
}

// TestConformanceSpilled runs the suite with every transaction spilled to
// disk (a 1-byte SpillBytes), the path of transactions larger than
// memory: appended from the spill file after the queue drained, in
// batches, with the position moved only after the last of them.
func TestConformanceSpilled(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite a second time; skipped with -short")
	}
	capturetest.Run(t, &pgHarness{spill: 1})
}

type pgHarness struct {
	srv   *pgtest.Server
	n     atomic.Int64
	spill int // Config.SpillBytes (0: the default)
}

func (h *pgHarness) Kind() string { return "postgres" }

func (h *pgHarness) Unsupported() map[capturetest.Capability]string { return nil }

func (h *pgHarness) Start(t *testing.T) { h.srv = pgtest.Start(t, pgtest.Options{}) }

const badPassword = "wrong-pw-conformance"

func (h *pgHarness) Open(t *testing.T) capturetest.Upstream {
	name := fmt.Sprintf("conform%d", h.n.Add(1))
	url := newDB(t, h.srv, name,
		`CREATE TABLE items (id bigint PRIMARY KEY, v text)`,
		`CREATE TABLE typed (id int PRIMARY KEY, i2 int2, i8 int8, n numeric, f8 float8, nan float8, b bool, t text,
			vc varchar(8), ts timestamptz, tsn timestamp, d date, j json, jb jsonb, ia int[], ta text[], by bytea,
			u uuid, iv interval, nul text)`)
	u := &pgUpstream{h: h, t: t, name: name, url: url, slot: "stele_" + name, conns: make(chan *pgx.Conn, 8)}
	t.Cleanup(u.closeConns)
	return u
}

type pgUpstream struct {
	h         *pgHarness
	t         *testing.T
	name, url string
	slot      string
	conns     chan *pgx.Conn // idle connections for Apply

	ackMu   sync.Mutex
	ackConn *pgx.Conn
}

func (u *pgUpstream) Name() string  { return u.name }
func (u *pgUpstream) Table() string { return "items" }

func (u *pgUpstream) Source(t *testing.T, bad bool) capture.Source {
	cfg := Config{
		ConnString:          u.url,
		ReplicaIdentityFull: true,
		CaptureDDL:          true,
		Heartbeat:           50 * time.Millisecond,
		MinBackoff:          20 * time.Millisecond,
		MaxBackoff:          200 * time.Millisecond,
		// Small appends, so crashes fall between the appends of one
		// transaction too.
		BatchSize:  16,
		SpillBytes: u.h.spill,
		SpillDir:   t.TempDir(),
		// Commit ids: the suite's acknowledgement check compares a
		// record's tx.position with the slot's confirmed position, which
		// only a commit LSN can be compared with (a change's own LSN
		// precedes its commit). Change ids go through the same pipeline;
		// TestCapture and TestCrashExactlyOnce run them.
		IDScheme: IDSchemeCommit,
	}
	if bad {
		cfg.ConnString = u.h.srv.PasswordURL(u.name, badPassword)
		cfg.Name = u.name + "_bad"
	} else {
		// A restarted process finds the slot free once the previous
		// one's connection is gone.
		u.waitSlotIdle(t)
	}
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("source %s (bad credentials: %v) logs:\n%s", u.name, bad, logs)
		}
	})
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func (u *pgUpstream) waitSlotIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, err := pgxQuery(u.url, fmt.Sprintf(`SELECT 1, active::int FROM pg_replication_slots WHERE slot_name = '%s'`, u.slot))
		if err == nil && rows[1] == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s still active after 30s (%v)", u.slot, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (u *pgUpstream) Ready(t *testing.T) { waitSlot(t, u.url, u.slot) }

func (u *pgUpstream) conn(ctx context.Context) (*pgx.Conn, error) {
	select {
	case c := <-u.conns:
		return c, nil
	default:
		return pgx.Connect(ctx, u.url)
	}
}

func (u *pgUpstream) release(c *pgx.Conn) {
	select {
	case u.conns <- c:
	default:
		c.Close(context.Background())
	}
}

func (u *pgUpstream) closeConns() {
	for {
		select {
		case c := <-u.conns:
			c.Close(context.Background())
		default:
			u.ackMu.Lock()
			if u.ackConn != nil {
				u.ackConn.Close(context.Background())
				u.ackConn = nil
			}
			u.ackMu.Unlock()
			return
		}
	}
}

func (u *pgUpstream) Apply(ctx context.Context, tx capturetest.Tx) error {
	c, err := u.conn(ctx)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, c, func(ptx pgx.Tx) error {
		for i, ch := range tx.Changes {
			var err error
			switch ch.Op {
			case record.OpInsert:
				_, err = ptx.Exec(ctx, `INSERT INTO items (id, v) VALUES ($1, $2)`, ch.ID, ch.V)
			case record.OpUpdate:
				_, err = ptx.Exec(ctx, `UPDATE items SET v = $2 WHERE id = $1`, ch.ID, ch.V)
			case record.OpDelete:
				_, err = ptx.Exec(ctx, `DELETE FROM items WHERE id = $1`, ch.ID)
			default:
				err = fmt.Errorf("op %s", ch.Op)
			}
			if err != nil {
				return err
			}
			// The context message after the first change: it applies
			// to the whole transaction wherever it stands.
			if i == 0 && tx.Actor != nil {
				actor := map[string]any{}
				for k, v := range tx.Actor {
					actor[k] = v
				}
				if err := pgctx.SetContext(ctx, ptx, actor, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		c.Close(context.Background())
		return err
	}
	u.release(c)
	return nil
}

// Acknowledged reads the slot's confirmed flush position: PostgreSQL
// never sends again a transaction whose commit LSN is before it.
func (u *pgUpstream) Acknowledged(ctx context.Context) (func(*record.Record) bool, error) {
	u.ackMu.Lock()
	defer u.ackMu.Unlock()
	if u.ackConn == nil {
		c, err := pgx.Connect(ctx, u.url)
		if err != nil {
			return nil, err
		}
		u.ackConn = c
	}
	var confirmed *string
	err := u.ackConn.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, u.slot).Scan(&confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return func(*record.Record) bool { return false }, nil
	}
	if err != nil {
		u.ackConn.Close(context.Background())
		u.ackConn = nil
		return nil, err
	}
	if confirmed == nil {
		return func(*record.Record) bool { return false }, nil
	}
	lsn, err := pglogrepl.ParseLSN(*confirmed)
	if err != nil {
		return nil, err
	}
	return func(r *record.Record) bool {
		if r.Tx == nil {
			return false
		}
		commit, err := pglogrepl.ParseLSN(r.Tx.Position)
		return err == nil && commit < lsn
	}, nil
}

func (u *pgUpstream) Restart(t *testing.T) {
	u.closeConns()
	u.h.srv.Restart(t)
}

func (u *pgUpstream) Truncate(ctx context.Context) error {
	return u.exec(ctx, `TRUNCATE items`)
}

func (u *pgUpstream) DDL(ctx context.Context) error {
	return u.exec(ctx, `ALTER TABLE items ADD COLUMN extra text`)
}

func (u *pgUpstream) exec(ctx context.Context, q string) error {
	c, err := u.conn(ctx)
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, q); err != nil {
		c.Close(context.Background())
		return err
	}
	u.release(c)
	return nil
}

func (u *pgUpstream) WriteTyped(ctx context.Context) (capturetest.TypedRow, error) {
	err := u.exec(ctx, `INSERT INTO typed VALUES (1, -5, 9223372036854775807,
		12345678901234567890.123456789012345678901234567890, 1.5e-7, 'NaN', true, 'héllo "q" <x>', 'abc',
		'2026-01-02 03:04:05.123456+02', '2026-01-02 03:04:05', '2026-01-02',
		'{"b": 2, "a": [1, "x"]}', '{"b": 2, "a": [1, "x"]}', '{1,2,NULL}', '{"a","b c"}',
		'\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:03:04', NULL)`)
	return capturetest.TypedRow{Table: "typed", Key: `{"id":1}`, Want: map[string]string{
		"id": "1", "i2": "-5", "i8": "9223372036854775807",
		"n":  "12345678901234567890.123456789012345678901234567890",
		"f8": "1.5e-07", "nan": `"NaN"`,
		"b": "true", "t": `"héllo \"q\" <x>"`, "vc": `"abc"`,
		"ts": `"2026-01-02T01:04:05.123456Z"`, "tsn": `"2026-01-02T03:04:05Z"`, "d": `"2026-01-02"`,
		"j": `{"a":[1,"x"],"b":2}`, "jb": `{"a":[1,"x"],"b":2}`, "ia": "[1,2,null]", "ta": `["a","b c"]`,
		"by": `"3q2+7w=="`, "u": `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, "iv": `"1 day 02:03:04"`, "nul": "null",
	}}, err
}

func (u *pgUpstream) CheckCredentialError(t *testing.T, err error) {
	if !errors.Is(err, ErrAuth) {
		t.Errorf("bad password: err = %v, want ErrAuth", err)
	}
	for _, want := range []string{"authentication failed", "check the user and password"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("bad password: error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), badPassword) {
		t.Errorf("the error reveals the password: %v", err)
	}
}
