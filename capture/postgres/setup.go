package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// setup prepares the database for capture; each step is logged.
func (s *Source) setup(ctx context.Context, conn *pgx.Conn) error {
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", classify(err))
	}
	if walLevel != "logical" {
		return fmt.Errorf("%w: wal_level is %q: set wal_level = logical in postgresql.conf and restart PostgreSQL", ErrWALLevel, walLevel)
	}
	s.logger.Info("set-up: wal_level is logical")

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", s.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("look up publication %s: %w", s.cfg.Publication, classify(err))
	}
	switch {
	case exists:
		s.logger.Info("set-up: publication exists", "publication", s.cfg.Publication)
	case s.cfg.SkipSetup:
		return fmt.Errorf("%w: publication %s does not exist and set-up is skipped: create it (CREATE PUBLICATION %s FOR ALL TABLES) or let Stele do it", ErrConfig, s.cfg.Publication, s.cfg.Publication)
	default:
		target := "ALL TABLES"
		if len(s.cfg.Tables) > 0 {
			names := make([]string, len(s.cfg.Tables))
			for i, t := range s.cfg.Tables {
				schema, table := splitTable(t)
				names[i] = pgx.Identifier{schema, table}.Sanitize()
			}
			target = "TABLE " + strings.Join(names, ", ")
		}
		if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{s.cfg.Publication}.Sanitize()+" FOR "+target); err != nil {
			return fmt.Errorf("create publication %s FOR %s: %w", s.cfg.Publication, target, classify(err))
		}
		s.logger.Info("set-up: created publication", "publication", s.cfg.Publication, "for", target)
	}

	rows, err := conn.Query(ctx, `
SELECT pt.schemaname, pt.tablename, c.relreplident,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
FROM pg_publication_tables pt
JOIN pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE pt.pubname = $1
ORDER BY 1, 2`, s.cfg.Publication)
	if err != nil {
		return fmt.Errorf("list published tables: %w", classify(err))
	}
	type table struct {
		schema, name string
		ident        byte
		hasPK        bool
	}
	var tables []table
	for rows.Next() {
		var t table
		var ident string
		if err := rows.Scan(&t.schema, &t.name, &ident, &t.hasPK); err != nil {
			rows.Close()
			return fmt.Errorf("list published tables: %w", err)
		}
		if ident != "" {
			t.ident = ident[0]
		}
		tables = append(tables, t)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list published tables: %w", classify(err))
	}
	for _, t := range tables {
		name := t.schema + "." + t.name
		if !t.hasPK {
			s.logger.Warn("set-up: table has no primary key; its records are keyed by the full row, and PostgreSQL refuses its updates and deletes unless REPLICA IDENTITY is FULL (replica_identity: full)", "table", name)
		}
		if t.ident == 'f' {
			continue
		}
		if s.cfg.ReplicaIdentityFull && !s.cfg.SkipSetup {
			if _, err := conn.Exec(ctx, "ALTER TABLE "+pgx.Identifier{t.schema, t.name}.Sanitize()+" REPLICA IDENTITY FULL"); err != nil {
				return fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", name, classify(err))
			}
			s.logger.Info("set-up: set REPLICA IDENTITY FULL", "table", name)
			continue
		}
		s.logger.Warn("set-up: table's REPLICA IDENTITY is not FULL; before images of updates and deletes hold only the key (set replica_identity: full for complete before images)", "table", name)
	}
	// The event trigger, like the replica identity, comes before the slot,
	// so the slot's first DDL already emits its message.
	if err := s.setupDDL(ctx, conn); err != nil {
		return err
	}
	// The slot comes last, so the first change it sees already has the
	// replica identity and the DDL trigger set above.
	var plugin string
	err = conn.QueryRow(ctx, "SELECT coalesce(plugin, '') FROM pg_replication_slots WHERE slot_name = $1", s.cfg.Slot).Scan(&plugin)
	switch {
	case err == pgx.ErrNoRows && s.cfg.SkipSetup:
		return fmt.Errorf("%w: replication slot %s does not exist and set-up is skipped: create it (SELECT pg_create_logical_replication_slot('%s', 'pgoutput')) or let Stele do it", ErrConfig, s.cfg.Slot, s.cfg.Slot)
	case err == pgx.ErrNoRows && s.cfg.Snapshot == SnapshotInitial:
		s.logger.Info("set-up: replication slot missing; it is created with an exported snapshot for the initial snapshot", "slot", s.cfg.Slot)
	case err == pgx.ErrNoRows:
		if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s.cfg.Slot); err != nil {
			return fmt.Errorf("create replication slot %s: %w", s.cfg.Slot, classify(err))
		}
		s.logger.Info("set-up: created permanent replication slot", "slot", s.cfg.Slot)
	case err != nil:
		return fmt.Errorf("look up replication slot %s: %w", s.cfg.Slot, classify(err))
	case plugin != "pgoutput":
		return fmt.Errorf("%w: replication slot %s exists with plugin %q, not pgoutput: drop it or configure another slot name", ErrConfig, s.cfg.Slot, plugin)
	default:
		s.logger.Info("set-up: replication slot exists", "slot", s.cfg.Slot)
	}
	return nil
}

// splitTable splits "schema.table" (default schema public).
func splitTable(t string) (schema, table string) {
	if s, tb, ok := strings.Cut(t, "."); ok {
		return s, tb
	}
	return "public", t
}

// primaryKey returns the primary-key columns of relation oid in key order.
func primaryKey(ctx context.Context, conn *pgx.Conn, oid uint32) ([]string, error) {
	rows, err := conn.Query(ctx, `
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisprimary
ORDER BY k.ord`, oid)
	if err != nil {
		return nil, fmt.Errorf("look up primary key of relation %d: %w", oid, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
