package postgres

// # Initial snapshot
//
// With Config.Snapshot = "initial", a source that creates its replication
// slot creates it on the replication connection with EXPORT_SNAPSHOT. While
// that connection stays open and idle, a second (normal) connection opens a
// REPEATABLE READ READ ONLY transaction on the exported snapshot and reads
// every published table (sorted by schema.table, skipping ExcludeTables;
// rows ordered by primary key, else by the replica-identity index, else by
// every column). Each row becomes
// an op "snapshot" record typed exactly like a streamed after image (the
// rows are read in text format and go through the same decoding), with tx =
// {position: the slot's consistent point, index: a running number across
// all tables} and, under change ids (ids.go), an id of the consistent point
// and the row's key (else of the position and index), so a redone snapshot
// at the same point yields the same ids.
// Streaming then starts from the slot: PostgreSQL sends exactly the changes
// committed after the consistent point, so there is no gap and no double.
//
// After the last row, a marker record (op "snapshot", source.table
// "$snapshot", key {"$snapshot": "complete"}, tx.position "snapshot/<slot>")
// is appended. Its id depends only on the source and the slot name.
//
// Crash mid-snapshot: when the slot exists on a later start, the source
// asks the sink whether the marker is stored, if the sink implements IDLookup.
// When the marker is absent the slot is dropped and the whole snapshot is
// redone with a new slot (new consistent point). Limits: the rows appended by
// the interrupted attempt stay in the log (the log is append-only) with ids of
// the old consistent point, so a crash mid-snapshot leaves a partial earlier
// snapshot next to the complete one (the final state per key is still right,
// because the later snapshot and the stream follow it); an existing slot of a
// source whose snapshot setting was turned on later is also dropped and
// redone when the sink can look ids up. A sink without IDLookup (the plain
// log store) cannot tell: an existing slot is then taken as having completed
// its snapshot and a warning says so. An error inside the process during the
// snapshot drops the slot at once, so the next attempt starts over.

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/record"
)

// SnapshotInitial is the Config.Snapshot value asking for an initial
// snapshot of the published tables when the slot is created.
const SnapshotInitial = "initial"

// IDLookup is an optional capability of a capture.Sink: whether a record id
// is stored. The source uses it to find out whether an initial snapshot
// completed before a crash.
type IDLookup interface {
	HasID(ctx context.Context, id string) (bool, error)
}

// snapshotMarker returns the record appended after a complete snapshot.
func (s *Source) snapshotMarker(pos string, rows int64) *record.Record {
	return capture.SnapshotMarker(record.Source{Name: s.cfg.Name, Kind: "postgres", Database: s.database}, "snapshot/"+s.cfg.Slot,
		map[string]any{"slot": s.cfg.Slot, "position": pos, "rows": rows}, time.Time{})
}

// initialSnapshot runs before streaming starts: with Config.Snapshot set it
// creates the slot with an exported snapshot and appends the snapshot when
// the slot is missing (or left by an interrupted snapshot).
func (s *Source) initialSnapshot(ctx context.Context, conn *pgx.Conn, repl *pgconn.PgConn, sink capture.Sink, st *state) error {
	if s.cfg.Snapshot != SnapshotInitial {
		return nil
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", s.cfg.Slot).Scan(&exists); err != nil {
		return fmt.Errorf("look up replication slot %s: %w", s.cfg.Slot, classify(err))
	}
	if exists {
		lk, ok := sink.(IDLookup)
		if !ok {
			s.logger.Warn("snapshot: replication slot exists and the sink cannot look up the snapshot marker; assuming the initial snapshot completed", "slot", s.cfg.Slot)
			return nil
		}
		done, err := lk.HasID(ctx, s.snapshotMarker("", 0).ID)
		if err != nil {
			return fmt.Errorf("look up the snapshot marker: %w", err)
		}
		if done {
			s.logger.Info("snapshot: initial snapshot already complete", "slot", s.cfg.Slot)
			return nil
		}
		s.logger.Warn("snapshot: replication slot exists but its initial snapshot did not complete; dropping the slot and redoing the snapshot", "slot", s.cfg.Slot)
		if err := pglogrepl.DropReplicationSlot(ctx, repl, s.cfg.Slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return fmt.Errorf("drop replication slot %s of an incomplete snapshot: %w", s.cfg.Slot, classify(err))
		}
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, s.cfg.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return fmt.Errorf("create replication slot %s with an exported snapshot: %w", s.cfg.Slot, classify(err))
	}
	s.logger.Info("set-up: created permanent replication slot with an exported snapshot", "slot", s.cfg.Slot, "consistent_point", res.ConsistentPoint, "snapshot", res.SnapshotName)
	if err := s.readSnapshot(ctx, conn, sink, st, res); err != nil {
		// Start over next time; the exported snapshot dies with this
		// attempt anyway.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if derr := pglogrepl.DropReplicationSlot(dctx, repl, s.cfg.Slot, pglogrepl.DropReplicationSlotOptions{}); derr != nil {
			s.logger.Warn("snapshot failed and its replication slot could not be dropped; the next start redoes the snapshot only when the sink can look up its marker", "slot", s.cfg.Slot, "err", derr)
		}
		return fmt.Errorf("initial snapshot: %w", err)
	}
	return nil
}

// snapTable is one published table to read.
type snapTable struct {
	oid           uint32
	schema, table string
	ident         string
}

func (s *Source) readSnapshot(ctx context.Context, conn *pgx.Conn, sink capture.Sink, st *state, res pglogrepl.CreateReplicationSlotResult) error {
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("consistent point %q: %w", res.ConsistentPoint, err)
	}
	pos := lsn.String()
	change := st.ids.changeIDs(lsn)
	var ids record.IDDeriver
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin snapshot transaction: %w", classify(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(res.SnapshotName)); err != nil {
		return fmt.Errorf("set transaction snapshot %s: %w", res.SnapshotName, classify(err))
	}
	var at time.Time
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&at); err != nil {
		return fmt.Errorf("read snapshot time: %w", classify(err))
	}
	at = at.UTC()
	rows, err := tx.Query(ctx, `
SELECT c.oid, pt.schemaname, pt.tablename, c.relreplident::text
FROM pg_publication_tables pt
JOIN pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE pt.pubname = $1
ORDER BY 2, 3`, s.cfg.Publication)
	if err != nil {
		return fmt.Errorf("list published tables: %w", classify(err))
	}
	var tables []snapTable
	for rows.Next() {
		var t snapTable
		if err := rows.Scan(&t.oid, &t.schema, &t.table, &t.ident); err != nil {
			rows.Close()
			return fmt.Errorf("list published tables: %w", err)
		}
		tables = append(tables, t)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list published tables: %w", classify(err))
	}

	x := &stream{src: s, sink: sink, st: st, conn: conn}
	var next int64
	out := capture.Batcher{Sink: sink, Size: s.cfg.BatchSize, Progress: &s.progress}
	for _, t := range tables {
		rel, err := snapshotRelation(ctx, tx, t)
		if err != nil {
			return err
		}
		full := t.schema + "." + t.table
		if isExcluded(s.cfg.ExcludeTables, t.schema, t.table) || len(rel.cols) == 0 {
			continue
		}
		if err := x.relationVersion(ctx, rel); err != nil {
			return err
		}
		n, err := x.snapshotTable(ctx, tx, rel, func(r *record.Record) error {
			idx := next
			next++
			r.Actor = unknownActor
			r.Tx = &record.Tx{Position: pos, Index: &idx}
			r.OccurredAt = at
			if change {
				// Every row of a snapshot has the consistent point: the
				// key tells them apart (ids.go).
				r.ID = ids.DeriveChange(r)
			} else {
				r.ID = ids.Derive(r)
			}
			return out.Add(ctx, r)
		})
		if err != nil {
			return fmt.Errorf("table %s: %w", full, err)
		}
		s.logger.Info("snapshot: table read", "table", full, "rows", n)
	}
	if err := out.Add(ctx, s.snapshotMarker(pos, next)); err != nil {
		return err
	}
	if err := out.Flush(ctx); err != nil {
		return err
	}
	s.logger.Info("snapshot: complete", "rows", next, "consistent_point", pos)
	return nil
}

func isExcluded(exclude []string, schema, table string) bool {
	for _, e := range exclude {
		if e == schema+"."+table || schema == "public" && e == table {
			return true
		}
	}
	return false
}

// snapshotRelation describes a table like a Relation message would: the
// published columns (not dropped, not generated) and the key columns the
// stream would use.
func snapshotRelation(ctx context.Context, tx pgx.Tx, t snapTable) (*relation, error) {
	rel := &relation{schema: t.schema, table: t.table}
	rows, err := tx.Query(ctx, `
SELECT a.attname, a.atttypid, a.atttypmod
FROM pg_attribute a
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum`, t.oid)
	if err != nil {
		return nil, fmt.Errorf("list columns of %s.%s: %w", t.schema, t.table, classify(err))
	}
	for rows.Next() {
		c := &pglogrepl.RelationMessageColumn{}
		if err := rows.Scan(&c.Name, &c.DataType, &c.TypeModifier); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list columns of %s.%s: %w", t.schema, t.table, err)
		}
		rel.cols = append(rel.cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list columns of %s.%s: %w", t.schema, t.table, classify(err))
	}
	key, err := keyColumns(ctx, tx, t.oid, "indisprimary")
	if err != nil {
		return nil, err
	}
	if len(key) == 0 && t.ident == "i" {
		if key, err = keyColumns(ctx, tx, t.oid, "indisreplident"); err != nil {
			return nil, err
		}
	}
	if len(key) > 0 {
		rel.key = key
	}
	return rel, nil
}

// keyColumns lists the columns of relation oid's index flagged by flag
// (indisprimary or indisreplident), in key order.
func keyColumns(ctx context.Context, tx pgx.Tx, oid uint32, flag string) ([]string, error) {
	rows, err := tx.Query(ctx, `
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.`+flag+`
ORDER BY k.ord`, oid)
	if err != nil {
		return nil, fmt.Errorf("look up key of relation %d: %w", oid, classify(err))
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// snapshotTable reads one table in key order, in text format (the simple
// protocol), and hands each row to emit as a snapshot record typed like a
// streamed after image.
func (x *stream) snapshotTable(ctx context.Context, tx pgx.Tx, rel *relation, emit func(*record.Record) error) (int64, error) {
	names := make([]string, len(rel.cols))
	for i, c := range rel.cols {
		names[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	order := names
	if rel.key != nil {
		order = make([]string, len(rel.key))
		for i, k := range rel.key {
			order[i] = pgx.Identifier{k}.Sanitize()
		}
	}
	table := rel.schema + "." + rel.table
	q := "SELECT " + strings.Join(names, ", ") + " FROM ONLY " + pgx.Identifier{rel.schema, rel.table}.Sanitize() + " ORDER BY " + strings.Join(order, ", ")
	rows, err := tx.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return 0, fmt.Errorf("read rows: %w", classify(err))
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		raw := rows.RawValues()
		tuple := make([]tupleCol, len(raw))
		for i, v := range raw {
			if v == nil {
				tuple[i] = tupleCol{kind: pglogrepl.TupleDataTypeNull}
			} else {
				// RawValues are the connection's buffer: own the bytes.
				tuple[i] = tupleCol{kind: pglogrepl.TupleDataTypeText, data: bytes.Clone(v)}
			}
		}
		cols, err := x.columns(rel, tuple)
		if err != nil {
			return n, err
		}
		lay, err := rel.layout()
		if err != nil {
			return n, err
		}
		key, err := lay.keyOf(cols)
		if err != nil {
			return n, err
		}
		x.st.toast.put(table, string(key), rel, cols)
		cols = x.capValues(rel, cols)
		r := &record.Record{Op: record.OpSnapshot, Source: x.source(rel), Key: key, Schema: rel.schemaRef}
		r.After = lay.image(cols)
		if r.Changed, err = record.ChangedFields(nil, r.After); err != nil {
			return n, fmt.Errorf("changed fields: %w", err)
		}
		if err := emit(r); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read rows: %w", classify(err))
	}
	return n, nil
}
