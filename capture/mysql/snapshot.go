package mysql

// # Initial snapshot
//
// With Config.Snapshot = "initial", a source without a stored position
// first records every captured table's rows, consistent with the binlog
// position streaming then starts from, as Debezium does:
//
//   - MariaDB: START TRANSACTION WITH CONSISTENT SNAPSHOT, then, inside it,
//     SHOW STATUS LIKE 'binlog_snapshot_%' gives the exact binlog file and
//     offset the transaction's view corresponds to (no lock at all), and
//     BINLOG_GTID_POS(file, offset) the GTID set there.
//   - MySQL: the same, where the server has binlog_snapshot_file (Percona
//     Server); else FLUSH TABLES WITH READ LOCK (the RELOAD grant), START
//     TRANSACTION WITH CONSISTENT SNAPSHOT, SHOW MASTER STATUS and
//     @@gtid_executed, UNLOCK TABLES: writes wait only while the position
//     is read. LOCK INSTANCE FOR BACKUP is not used: it does not stop DML,
//     so the position read under it need not match the transaction's view.
//
// Inside that REPEATABLE READ transaction each table (sorted by db.table)
// is read in primary-key order in keyset-paginated chunks of BatchSize rows
// (WHERE key > last key ORDER BY key LIMIT n), so no table is held in
// memory; a table without a primary key, or whose key has a type that
// does not compare as it sorts (ENUM, SET, FLOAT, …), is read by one
// streamed query. Rows come over the binary protocol with
// character_set_results = binary, so every value reaches the decoder as
// the binlog carries it (floats bit for bit, text in the column's character
// set), and goes through the same decoding (decode.go) and image building
// as a row event's: a row's snapshot image equals its next binlog before
// image. The columns are read from information_schema and described as a
// table-map event would describe them; their schema version is seeded in
// the schema history and bound to the first table-map event with the same
// columns. Each row becomes an op "snapshot" record, tx = {position:
// "snapshot@" + the binlog file:offset, index: a running number}.
// Streaming then starts at that position: the binlog holds exactly the
// changes committed after the transaction's view, so there is no gap and
// no double. (A consistent snapshot is InnoDB's: a MyISAM or MEMORY
// table is read as it is while the snapshot runs.) The source's state
// stays "connecting" until the snapshot is appended and streaming starts;
// its records count in RecordsTotal as they are appended.
//
// # Crash safety
//
// The records do not go to the log while the transaction reads: they go to
// <state>/snapshot/rows.gob, and only when the last table is read is the
// file fsync'd and <state>/snapshot/done.json (position, row count) written
// atomically. Then the file is appended to the log in batches, followed by
// a marker record (op "snapshot", table "$snapshot", key {"$snapshot":
// "complete"}), and only then is the position stored — the durable
// completion marker: a source with a stored position never snapshots again.
//
// A crash while reading (no done.json) appended nothing: the next start
// removes the partial file and redoes the snapshot at a new position. A
// crash while appending resumes from the file: the records have ids from
// the same position and index, so those already stored are not stored
// again. The cost is disk space for one copy of the snapshot's records
// in the state directory while it runs (removed at the end), and the
// snapshot's records reach the log only after the last table is read.

import (
	"bufio"
	"context"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/record"
)

// sqlExecer runs one SQL statement; *client.Conn is one. The snapshot's
// position reading takes it so that the MySQL flavor's statements, which
// no live server here runs, are tested on the SQL they issue.
type sqlExecer interface {
	Execute(query string, args ...any) (*gomysql.Result, error)
}

const (
	snapshotDirName  = "snapshot"
	snapshotRowsFile = "rows.gob"
	snapshotDoneFile = "done.json"
)

// snapshotDone is done.json: the snapshot was read completely.
type snapshotDone struct {
	GTIDMode bool      `json:"gtid_mode"`
	GTID     string    `json:"gtid,omitempty"`
	File     string    `json:"file"`
	Offset   uint32    `json:"offset"`
	Rows     int64     `json:"rows"`
	At       time.Time `json:"at"`
}

func (d snapshotDone) pos() binlogPos {
	return binlogPos{GTIDMode: d.GTIDMode, GTID: d.GTID, File: d.File, Offset: d.Offset}
}

// initialSnapshot records every captured table's rows (or finishes the
// appending of an interrupted snapshot), stores the position they are
// consistent with and returns it; streaming starts there.
func (s *Source) initialSnapshot(ctx context.Context, info *serverInfo, sink capture.Sink, st *state) (binlogPos, error) {
	dir := filepath.Join(st.dir, snapshotDirName)
	done, ok, err := readSnapshotDone(dir)
	if err != nil {
		return binlogPos{}, capture.PermanentError(err)
	}
	if ok {
		s.logger.Info("snapshot: resuming the appending of a snapshot read completely before a restart", "position", done.pos().String(), "rows", done.Rows)
	} else {
		if err := os.RemoveAll(dir); err != nil {
			return binlogPos{}, fmt.Errorf("remove the partial snapshot %s: %w", dir, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return binlogPos{}, fmt.Errorf("snapshot directory: %w", err)
		}
		if done, err = s.readSnapshot(ctx, info, st, dir); err != nil {
			return binlogPos{}, fmt.Errorf("initial snapshot: %w", err)
		}
	}
	if err := s.appendSnapshot(ctx, sink, dir, done); err != nil {
		return binlogPos{}, fmt.Errorf("initial snapshot: %w", err)
	}
	pos := done.pos()
	st.setDurable(pos)
	if err := st.save(ctx); err != nil {
		return binlogPos{}, fmt.Errorf("save the position after the snapshot: %w", err)
	}
	s.status.setPosition(pos)
	if err := os.RemoveAll(dir); err != nil {
		s.logger.Warn("snapshot: cannot remove its files; they are not read again", "dir", dir, "err", err)
	}
	s.logger.Info("snapshot: complete", "rows", done.Rows, "position", pos.String())
	return pos, nil
}

func readSnapshotDone(dir string) (snapshotDone, bool, error) {
	var d snapshotDone
	data, err := os.ReadFile(filepath.Join(dir, snapshotDoneFile))
	if errors.Is(err, fs.ErrNotExist) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("read %s: %w", filepath.Join(dir, snapshotDoneFile), err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, false, fmt.Errorf("snapshot state %s is damaged (%v): remove the directory %s to redo the snapshot", filepath.Join(dir, snapshotDoneFile), err, dir)
	}
	return d, true, nil
}

// appendSnapshot appends the snapshot file's records, then the marker.
// Records an earlier attempt stored come back as duplicates.
func (s *Source) appendSnapshot(ctx context.Context, sink capture.Sink, dir string, done snapshotDone) error {
	name := filepath.Join(dir, snapshotRowsFile)
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("open snapshot rows: %w", err)
	}
	defer f.Close()
	dec := gob.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	bs := s.cfg.BatchSize
	out := capture.Batcher{Sink: sink, Size: bs, Progress: &s.progress}
	txPos := snapshotTxPosition(done.pos())
	var idxs []int64
	for i := range done.Rows {
		r := &record.Record{}
		if err := dec.Decode(r); err != nil {
			// Reconnecting would read the same bytes again.
			return capture.PermanentError(fmt.Errorf("read back snapshot record %d of %d from %s (remove %s to redo the snapshot): %w", i, done.Rows, name, dir, err))
		}
		// A batch's indexes share one allocation (the log may keep
		// the records).
		if i%int64(bs) == 0 {
			idxs = make([]int64, bs)
		}
		idx := &idxs[i%int64(bs)]
		*idx = i
		r.Actor = unknownActor
		r.Tx = &record.Tx{Position: txPos, Index: idx}
		r.OccurredAt = done.At
		r.ID = record.DeriveID(r)
		if err := out.Add(ctx, r); err != nil {
			return err
		}
	}
	if err := out.Add(ctx, s.snapshotMarker(done)); err != nil {
		return err
	}
	return out.Flush(ctx)
}

// snapshotTxPosition is the tx.position of a snapshot's records.
func snapshotTxPosition(p binlogPos) string { return "snapshot@" + p.binlog() }

// snapshotMarker is the record appended after a snapshot's rows; its id
// depends only on the source.
func (s *Source) snapshotMarker(d snapshotDone) *record.Record {
	return capture.SnapshotMarker(record.Source{Name: s.cfg.Name, Kind: "mysql", Database: s.database}, "snapshot",
		map[string]any{"position": d.pos().String(), "binlog": d.pos().binlog(), "rows": d.Rows}, d.At)
}

// snapshotWriter writes snapshot records to the rows file; they are
// stamped (tx, id) when read back, from their order.
type snapshotWriter struct {
	f    *os.File
	w    *bufio.Writer
	enc  *gob.Encoder
	rows int64
}

func (w *snapshotWriter) add(r *record.Record) error {
	if err := w.enc.Encode(r); err != nil {
		return fmt.Errorf("write snapshot rows to %s: %w", w.f.Name(), err)
	}
	w.rows++
	return nil
}

// readSnapshot reads every captured table inside one consistent-snapshot
// transaction into dir's rows file and writes done.json.
func (s *Source) readSnapshot(ctx context.Context, info *serverInfo, st *state, dir string) (snapshotDone, error) {
	var done snapshotDone
	conn, err := s.connect(ctx)
	if err != nil {
		return done, err
	}
	defer conn.Close()
	// A canceled context ends the reading: closing the connection fails
	// the query in progress.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	for _, q := range []string{
		// Rows in each column's own character set, as the binlog has them.
		"SET SESSION character_set_results = binary",
		"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
	} {
		if _, err := conn.Execute(q); err != nil {
			return done, fmt.Errorf("%s: %w", q, s.classify(err))
		}
	}
	pos, err := s.snapshotPosition(conn, info)
	if err != nil {
		return done, err
	}
	defer conn.Execute("ROLLBACK")
	res, err := conn.Execute("SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ')")
	if err != nil {
		return done, fmt.Errorf("read the snapshot time: %w", s.classify(err))
	}
	ts, _ := resultString(res, 0, 0)
	res.Close()
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return done, fmt.Errorf("snapshot time %q: %w", ts, err)
	}
	s.logger.Info("snapshot: consistent snapshot open", "position", pos.String(), "binlog", pos.binlog())

	f, err := os.Create(filepath.Join(dir, snapshotRowsFile))
	if err != nil {
		return done, fmt.Errorf("snapshot rows file: %w", err)
	}
	defer f.Close()
	w := &snapshotWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	w.enc = gob.NewEncoder(w.w)

	tables, err := s.snapshotTables(conn)
	if err != nil {
		return done, err
	}
	x := &stream{src: s, st: st, info: info}
	for _, tn := range tables {
		n0 := w.rows
		if err := x.snapshotTable(ctx, conn, tn, pos, w); err != nil {
			return done, fmt.Errorf("table %s.%s: %w", tn.db, tn.table, err)
		}
		s.logger.Info("snapshot: table read", "table", tn.db+"."+tn.table, "rows", w.rows-n0)
	}
	if err := w.w.Flush(); err != nil {
		return done, fmt.Errorf("write snapshot rows: %w", err)
	}
	if err := f.Sync(); err != nil {
		return done, fmt.Errorf("sync snapshot rows: %w", err)
	}
	done = snapshotDone{GTIDMode: pos.GTIDMode, GTID: pos.GTID, File: pos.File, Offset: pos.Offset, Rows: w.rows, At: at}
	data, _ := json.Marshal(done)
	if err := atomicfile.Write(filepath.Join(dir, snapshotDoneFile), data, 0o600); err != nil {
		return done, fmt.Errorf("snapshot state: %w", err)
	}
	return done, nil
}

// snapshotPosition opens the consistent-snapshot transaction on conn and
// returns the binlog position its view corresponds to.
func (s *Source) snapshotPosition(conn sqlExecer, info *serverInfo) (binlogPos, error) {
	const begin = "START TRANSACTION WITH CONSISTENT SNAPSHOT"
	if info.flavor == FlavorMariaDB {
		if _, err := conn.Execute(begin); err != nil {
			return binlogPos{}, fmt.Errorf("%s: %w", begin, s.classify(err))
		}
		p, ok, err := snapshotStatus(conn)
		if err != nil {
			return p, err
		}
		if !ok {
			return p, fmt.Errorf("%w: SHOW STATUS LIKE 'binlog_snapshot_%%' is empty inside a consistent snapshot: is the binary log on?", ErrSetup)
		}
		res, err := conn.Execute("SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Offset)
		if err != nil {
			return p, fmt.Errorf("BINLOG_GTID_POS(%s): %w", p.binlog(), s.classify(err))
		}
		defer res.Close()
		if v, _ := res.GetValue(0, 0); v == nil {
			return p, fmt.Errorf("BINLOG_GTID_POS(%s) is NULL: the server does not know the GTID set at its own snapshot position", p.binlog())
		}
		p.GTID, _ = resultString(res, 0, 0)
		p.GTIDMode = true
		return p, nil
	}
	// Percona Server has MariaDB's lock-free status variables.
	if _, err := conn.Execute(begin); err != nil {
		return binlogPos{}, fmt.Errorf("%s: %w", begin, s.classify(err))
	}
	if p, ok, err := snapshotStatus(conn); err != nil {
		return p, err
	} else if ok && !info.gtidMode {
		return p, nil
	}
	if _, err := conn.Execute("ROLLBACK"); err != nil {
		return binlogPos{}, fmt.Errorf("ROLLBACK: %w", s.classify(err))
	}
	// Writers wait for the global read lock only while the position is
	// read; a long-running statement makes the lock fail fast instead of
	// stalling every writer behind it.
	if _, err := conn.Execute("SET SESSION lock_wait_timeout = 10"); err != nil {
		return binlogPos{}, fmt.Errorf("SET lock_wait_timeout: %w", s.classify(err))
	}
	if _, err := conn.Execute("FLUSH TABLES WITH READ LOCK"); err != nil {
		err = s.classify(err)
		if errors.Is(err, ErrPermission) {
			return binlogPos{}, fmt.Errorf("%w: snapshot: initial on MySQL reads the binlog position under FLUSH TABLES WITH READ LOCK: GRANT RELOAD ON *.* TO '%s'@'%%'", err, s.user)
		}
		return binlogPos{}, fmt.Errorf("FLUSH TABLES WITH READ LOCK: %w", err)
	}
	unlock := func() {
		// Best effort: closing the connection releases the lock too.
		_, _ = conn.Execute("UNLOCK TABLES")
	}
	if _, err := conn.Execute(begin); err != nil {
		unlock()
		return binlogPos{}, fmt.Errorf("%s: %w", begin, s.classify(err))
	}
	p, err := currentPosition(conn, info)
	unlock()
	if err != nil {
		return p, fmt.Errorf("read the binlog position under the read lock: %w", s.classify(err))
	}
	return p, nil
}

// snapshotStatus reads binlog_snapshot_file and binlog_snapshot_position
// (ok false: the server has neither).
func snapshotStatus(conn sqlExecer) (binlogPos, bool, error) {
	var p binlogPos
	res, err := conn.Execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return p, false, fmt.Errorf("SHOW STATUS LIKE 'binlog_snapshot_%%': %w", err)
	}
	defer res.Close()
	var file, off string
	for i := range res.RowNumber() {
		k, _ := resultString(res, i, 0)
		v, _ := resultString(res, i, 1)
		switch strings.ToLower(k) {
		case "binlog_snapshot_file":
			file = v
		case "binlog_snapshot_position":
			off = v
		}
	}
	if file == "" || off == "" {
		return p, false, nil
	}
	n, err := strconv.ParseUint(off, 10, 32)
	if err != nil {
		return p, false, fmt.Errorf("binlog_snapshot_position %q: %w", off, err)
	}
	p.File, p.Offset = file, uint32(n)
	return p, true, nil
}

// snapshotTables lists the captured base tables, sorted.
func (s *Source) snapshotTables(conn sqlExecer) ([]tableName, error) {
	res, err := conn.Execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME")
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", s.classify(err))
	}
	defer res.Close()
	var out []tableName
	for i := range res.RowNumber() {
		db, _ := resultString(res, i, 0)
		tb, _ := resultString(res, i, 1)
		if s.tables.captured(db, tb) {
			out = append(out, tableName{db, tb})
		}
	}
	return out, nil
}

// snapshotColumns describes a table's columns as its table-map event
// would (binlog_row_metadata = FULL), from information_schema.
func snapshotColumns(conn sqlExecer, db, name, flavor string) ([]column, []int, error) {
	live, err := readLiveColumns(conn, db, name, flavor)
	if err != nil {
		return nil, nil, fmt.Errorf("read the columns: %w", err)
	}
	res, err := conn.Execute(`SELECT DATA_TYPE, COLUMN_TYPE, COALESCE(CHARACTER_OCTET_LENGTH, 0), COALESCE(NUMERIC_PRECISION, 0),
COALESCE(NUMERIC_SCALE, 0), COALESCE(DATETIME_PRECISION, 0)
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, db, name)
	if err != nil {
		return nil, nil, fmt.Errorf("read the column types: %w", err)
	}
	defer res.Close()
	if res.RowNumber() != len(live) || len(live) == 0 {
		return nil, nil, fmt.Errorf("the table has %d columns and %d column types (changed while read?)", len(live), res.RowNumber())
	}
	cols := make([]column, len(live))
	for i, lc := range live {
		dataType, _ := resultString(res, i, 0)
		colType, _ := resultString(res, i, 1)
		octets, _ := res.GetUint(i, 2)
		prec, _ := res.GetUint(i, 3)
		scale, _ := res.GetUint(i, 4)
		fsp, _ := res.GetUint(i, 5)
		c := &cols[i]
		c.name, c.unsigned, c.charset, c.labels = lc.name, lc.unsigned, lc.charset, lc.labels
		if c.typ, c.meta, err = binlogType(strings.ToLower(dataType), colType, octets, prec, scale, fsp); err != nil {
			return nil, nil, fmt.Errorf("column %s: %w", c.name, err)
		}
		if c.charset == "" && isBinaryType(c.typ) {
			c.charset = "binary"
		}
		c.kind, c.fixedLen = columnKind(c.typ, c.meta, c.unsigned, c.charset)
		if lc.json && c.typ == gomysql.MYSQL_TYPE_BLOB {
			c.kind = kindTextJSON
		}
	}
	kres, err := conn.Execute(`SELECT COLUMN_NAME FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`, db, name)
	if err != nil {
		return nil, nil, fmt.Errorf("read the primary key: %w", err)
	}
	defer kres.Close()
	var pk []int
	for i := range kres.RowNumber() {
		n, _ := resultString(kres, i, 0)
		for j := range live {
			if strings.EqualFold(live[j].name, n) {
				pk = append(pk, j)
			}
		}
	}
	return cols, pk, nil
}

func isBinaryType(tp byte) bool {
	switch tp {
	case gomysql.MYSQL_TYPE_STRING, gomysql.MYSQL_TYPE_VARCHAR, gomysql.MYSQL_TYPE_BLOB:
		return true
	}
	return false
}

// binlogType is the binlog type and metadata a table-map event gives a
// column of this information_schema definition.
func binlogType(dataType, colType string, octets, prec, scale, fsp uint64) (byte, uint16, error) {
	switch dataType {
	case "tinyint":
		return gomysql.MYSQL_TYPE_TINY, 0, nil
	case "smallint":
		return gomysql.MYSQL_TYPE_SHORT, 0, nil
	case "mediumint":
		return gomysql.MYSQL_TYPE_INT24, 0, nil
	case "int", "integer":
		return gomysql.MYSQL_TYPE_LONG, 0, nil
	case "bigint":
		return gomysql.MYSQL_TYPE_LONGLONG, 0, nil
	case "decimal", "numeric":
		return gomysql.MYSQL_TYPE_NEWDECIMAL, uint16(prec<<8 | scale&0xFF), nil
	case "float":
		return gomysql.MYSQL_TYPE_FLOAT, 4, nil
	case "double", "real", "double precision":
		return gomysql.MYSQL_TYPE_DOUBLE, 8, nil
	case "bit":
		return gomysql.MYSQL_TYPE_BIT, uint16((prec/8)<<8 | prec%8), nil
	case "year":
		return gomysql.MYSQL_TYPE_YEAR, 0, nil
	case "date":
		return gomysql.MYSQL_TYPE_DATE, 0, nil
	case "time":
		return gomysql.MYSQL_TYPE_TIME2, uint16(fsp), nil
	case "datetime":
		return gomysql.MYSQL_TYPE_DATETIME2, uint16(fsp), nil
	case "timestamp":
		return gomysql.MYSQL_TYPE_TIMESTAMP2, uint16(fsp), nil
	case "char", "binary":
		// The real type and the byte length, as realType reads them back.
		return gomysql.MYSQL_TYPE_STRING, uint16(gomysql.MYSQL_TYPE_STRING^byte((octets&0x300)>>4))<<8 | uint16(octets&0xFF), nil
	case "varchar", "varbinary":
		return gomysql.MYSQL_TYPE_VARCHAR, uint16(octets), nil
	case "tinytext", "tinyblob":
		return gomysql.MYSQL_TYPE_BLOB, 1, nil
	case "text", "blob":
		return gomysql.MYSQL_TYPE_BLOB, 2, nil
	case "mediumtext", "mediumblob":
		return gomysql.MYSQL_TYPE_BLOB, 3, nil
	case "longtext", "longblob":
		return gomysql.MYSQL_TYPE_BLOB, 4, nil
	case "enum":
		return gomysql.MYSQL_TYPE_ENUM, 0, nil
	case "set":
		return gomysql.MYSQL_TYPE_SET, 0, nil
	case "json":
		return gomysql.MYSQL_TYPE_JSON, 4, nil
	case "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection", "geomcollection":
		return gomysql.MYSQL_TYPE_GEOMETRY, 4, nil
	case "vector":
		_, n, _ := strings.Cut(strings.TrimSuffix(colType, ")"), "(")
		d, _ := strconv.ParseUint(n, 10, 16)
		return gomysql.MYSQL_TYPE_VECTOR, uint16(4 * d), nil
	}
	return 0, 0, fmt.Errorf("type %s is not supported by the snapshot", colType)
}

// snapshotTable reads one table into w.
func (x *stream) snapshotTable(ctx context.Context, conn *client.Conn, tn tableName, pos binlogPos, w *snapshotWriter) error {
	s := x.src
	cols, pk, err := snapshotColumns(conn, tn.db, tn.table, x.info.flavor)
	if err != nil {
		return err
	}
	t, err := newTable(tn.db, tn.table, cols, pk)
	if err != nil {
		return err
	}
	desc, pkNames := describe(cols, pk)
	v, err := x.st.history.seed(t.full, desc, pkNames, snapshotTxPosition(pos))
	if err != nil {
		return err
	}
	t.version = v
	t.schemaRef = &record.SchemaRef{Subject: s.cfg.Name + "." + t.full, Version: v.Version}

	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c.name)
	}
	from := "SELECT " + strings.Join(names, ", ") + " FROM " + quoteIdent(tn.db) + "." + quoteIdent(tn.table)
	row := make([]any, len(cols))
	emit := func(vals []gomysql.FieldValue) error {
		for i := range vals {
			row[i] = snapshotValue(&cols[i], &vals[i])
		}
		img, err := x.values(t, row, nil)
		if err != nil {
			return err
		}
		key, err := t.keyOf(img)
		if err != nil {
			return err
		}
		return w.add(&record.Record{
			Op: record.OpSnapshot, Source: x.source(t.db, t.name), Schema: t.schemaRef, Key: key,
			After: t.image(img), Changed: t.changed(nil, img),
		})
	}
	if !t.hasPK || !keysetable(cols, pk) {
		stmt, err := conn.Prepare(from)
		if err != nil {
			return fmt.Errorf("read rows: %w", s.classify(err))
		}
		defer stmt.Close()
		var res gomysql.Result
		err = stmt.ExecuteSelectStreaming(&res, func(vals []gomysql.FieldValue) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return emit(vals)
		}, nil)
		if err != nil {
			return fmt.Errorf("read rows: %w", s.classify(err))
		}
		return nil
	}
	order := make([]string, len(pk))
	for i, k := range pk {
		order[i] = names[k]
	}
	limit := " ORDER BY " + strings.Join(order, ", ") + " LIMIT " + strconv.Itoa(s.cfg.BatchSize)
	var last []string // the last row's key values as SQL literals
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		q := from
		if last != nil {
			q += " WHERE " + keysetAfter(order, last)
		}
		stmt, err := conn.Prepare(q + limit)
		if err != nil {
			return fmt.Errorf("read rows: %w", s.classify(err))
		}
		res, err := stmt.Execute()
		stmt.Close()
		if err != nil {
			return fmt.Errorf("read rows: %w", s.classify(err))
		}
		n := len(res.Values)
		for _, vals := range res.Values {
			if err := emit(vals); err != nil {
				res.Close()
				return err
			}
		}
		if n > 0 {
			vals := res.Values[n-1]
			last = make([]string, len(pk))
			for i, k := range pk {
				last[i] = keyLiteral(&cols[k], &vals[k])
			}
		}
		res.Close()
		if n < s.cfg.BatchSize {
			return nil
		}
	}
}

// keysetable reports whether every key column compares in SQL as ORDER BY
// sorts it, with a literal that round-trips exactly.
func keysetable(cols []column, pk []int) bool {
	for _, i := range pk {
		switch cols[i].kind {
		case kindInt, kindUint, kindYear, kindDecimal, kindDate, kindTime, kindDatetime, kindTimestamp, kindString, kindBinary, kindFixedBinary:
		default:
			return false
		}
	}
	return true
}

// keysetAfter is the condition "key > last" in the key's order, written
// out (a OR (= AND …)) so that every server's range optimizer uses the
// primary key.
func keysetAfter(cols, last []string) string {
	var or []string
	for i := range cols {
		var and []string
		for j := range i {
			and = append(and, cols[j]+" = "+last[j])
		}
		and = append(and, cols[i]+" > "+last[i])
		or = append(or, "("+strings.Join(and, " AND ")+")")
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

// keyLiteral writes a key value read over the binary protocol as a SQL
// literal that compares equal to it: numbers as digits, text as a hex
// literal in its own character set (the bytes arrive unconverted), the
// temporal and decimal text quoted (it is ASCII).
func keyLiteral(c *column, v *gomysql.FieldValue) string {
	switch v.Type {
	case gomysql.FieldValueTypeSigned:
		return strconv.FormatInt(v.AsInt64(), 10)
	case gomysql.FieldValueTypeUnsigned:
		return strconv.FormatUint(v.AsUint64(), 10)
	case gomysql.FieldValueTypeNull:
		return "NULL"
	}
	b := v.AsString()
	switch c.kind {
	case kindString:
		return "_" + c.charset + " X'" + hex.EncodeToString(b) + "'"
	case kindBinary, kindFixedBinary:
		return "X'" + hex.EncodeToString(b) + "'"
	}
	return "'" + strings.ReplaceAll(string(b), "'", "''") + "'"
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// snapshotValue turns a value read over the binary protocol into the Go
// value go-mysql's binlog decoder gives the same column, so that
// appendValue writes the same JSON for both.
func snapshotValue(c *column, v *gomysql.FieldValue) any {
	switch v.Type {
	case gomysql.FieldValueTypeNull:
		return nil
	case gomysql.FieldValueTypeSigned:
		return v.AsInt64()
	case gomysql.FieldValueTypeUnsigned:
		return v.AsUint64()
	case gomysql.FieldValueTypeFloat:
		return v.AsFloat64()
	}
	b := v.AsString()
	switch c.kind {
	case kindBit:
		var n uint64
		for _, x := range b {
			n = n<<8 | uint64(x)
		}
		return n
	case kindEnum:
		if i := labelIndex(c, b); i > 0 {
			return int64(i)
		}
		if len(b) == 0 {
			return int64(0)
		}
	case kindSet:
		var bits int64
		if len(b) > 0 {
			for part := range strings.SplitSeq(string(b), ",") {
				i := labelIndex(c, []byte(part))
				if i == 0 || i > 64 {
					return string(b)
				}
				bits |= 1 << (i - 1)
			}
		}
		return bits
	}
	return b
}

// labelIndex is the 1-based position of an ENUM/SET label (0: none).
func labelIndex(c *column, b []byte) int {
	for i, l := range c.labels {
		if l == string(b) {
			return i + 1
		}
	}
	// Labels from information_schema are UTF-8, the value is in the
	// column's character set.
	if enc := charsetEncoding(c.charset); enc != nil {
		if u, err := enc.NewDecoder().Bytes(b); err == nil {
			for i, l := range c.labels {
				if l == string(u) {
					return i + 1
				}
			}
		}
	}
	return 0
}
