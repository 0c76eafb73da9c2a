package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/pgctx"
	"github.com/stele/stele/record"
)

var unknownActor = json.RawMessage(`{"id":"unknown","type":"unknown"}`)

// relation is what a Relation message told us about a table.
type relation struct {
	schema, table string
	cols          []*pglogrepl.RelationMessageColumn
	key           []string // key columns, in key order; nil: the full row
	skip          bool
	schemaRef     *record.SchemaRef // see ddl.go
	lay           *layout           // see rowimage.go
	// allCols is every column's name, sorted: the changed fields of
	// every insert and delete, shared by their records (clipped, so an
	// append copies).
	allCols []string
}

// txBuf holds one transaction's records until its COMMIT. Past
// Config.SpillBytes of images the runtime's buffer moves them to a
// temporary file, so a large transaction is not held whole in memory.
type txBuf struct {
	xid   uint32
	buf   capture.TxBuffer
	actor json.RawMessage
	cause json.RawMessage
}

// newTx opens the buffer of transaction xid.
func (x *stream) newTx(xid uint32) *txBuf {
	tx := &txBuf{xid: xid}
	tx.buf.Limit, tx.buf.Dir = x.src.cfg.SpillBytes, x.src.cfg.SpillDir
	tx.buf.OnSpill = func(file string) {
		x.src.logger.Info("transaction exceeds the in-memory limit; spilling its records to disk", "xid", xid, "limit_bytes", x.src.cfg.SpillBytes, "file", file)
	}
	return tx
}

// discard removes the spill file of a transaction that will not commit
// here (the connection was lost; the server sends it again).
func (tx *txBuf) discard() {
	if tx != nil {
		tx.buf.Discard()
	}
}

// state survives reconnections.
type state struct {
	flushed pglogrepl.LSN
	toast   *imageCache
	ddl     *ddlState // see ddl.go
	types   *pgtype.Map
	ids     *idScheme // nil until the first session resolved it (ids.go)
}

func newState(s *Source) *state {
	return &state{toast: newImageCache(s.cfg.ToastCacheRows), types: pgtype.NewMap()}
}

// session connects, sets up and streams until an error. progressed reports
// whether replication started, so the backoff can start over.
func (s *Source) session(ctx context.Context, sink capture.Sink, st *state) (progressed bool, err error) {
	sqlCfg, err := pgx.ParseConfig(s.cfg.ConnString)
	if err != nil {
		return false, fmt.Errorf("%w: connection string: %w", ErrConfig, err)
	}
	conn, err := pgx.ConnectConfig(ctx, sqlCfg)
	if err != nil {
		return false, fmt.Errorf("connect to %s: %w", s.Redacted(), classify(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if st.ids == nil {
		// Before set-up, which may create the slot: whether the slot
		// existed tells a source that ran before from a new one.
		ids, err := s.resolveIDScheme(ctx, conn)
		if err != nil {
			return false, err
		}
		st.ids = &ids
	}
	if err := s.setup(ctx, conn); err != nil {
		return false, err
	}
	toastAt, err := toastThreshold(ctx, conn)
	if err != nil {
		return false, err
	}

	replCfg := s.pgcfg.Copy()
	if replCfg.RuntimeParams == nil {
		replCfg.RuntimeParams = map[string]string{}
	}
	replCfg.RuntimeParams["replication"] = "database"
	repl, err := pgconn.ConnectConfig(ctx, replCfg)
	if err != nil {
		return false, fmt.Errorf("open replication connection to %s: %w", s.Redacted(), classify(err))
	}
	defer repl.Close(context.WithoutCancel(ctx))
	if err := s.initialSnapshot(ctx, conn, repl, sink, st); err != nil {
		return false, err
	}
	args := []string{"proto_version '2'", "publication_names " + quoteLiteral(s.cfg.Publication), "messages 'true'"}
	if err := pglogrepl.StartReplication(ctx, repl, s.cfg.Slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return false, fmt.Errorf("start replication on slot %s: %w", s.cfg.Slot, classify(err))
	}
	s.logger.Info("streaming changes", "slot", s.cfg.Slot, "publication", s.cfg.Publication)
	s.progress.SetState(capture.StateStreaming)
	str := &stream{src: s, sink: sink, st: st, conn: conn, repl: repl, rels: map[uint32]*relation{}, toastAt: toastAt}
	return true, str.loop(ctx)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

type stream struct {
	src  *Source
	sink capture.Sink
	st   *state
	conn *pgx.Conn // catalog look-ups
	repl *pgconn.PgConn
	rels map[uint32]*relation
	// toastAt is the server's TOAST_TUPLE_THRESHOLD (toast.go); 0 caches
	// every image.
	toastAt int
	tx      *txBuf
	msg     rowMessage // reused by each row message
	// lsn is the WALStart of the message being handled: a change's own
	// LSN, its position under change ids (ids.go). lsnText caches its
	// text and dup counts the records of one key at one LSN.
	lsn     pglogrepl.LSN
	lsnText string
	lsnOf   pglogrepl.LSN
	dup     map[string]int
	// pend holds stamped records of committed transactions not yet
	// appended, and pendEnd the end LSN of the last of them: consecutive
	// small transactions share one append (one fsync) instead of one each.
	pend      []*record.Record
	pendEnd   pglogrepl.LSN
	pendSince time.Time
	// app appends committed transactions on its own goroutine, in commit
	// order, so decoding the next ones overlaps with making the last ones
	// durable; its Durable position is what may be acknowledged.
	app *capture.Acknowledger[pglogrepl.LSN]
}

// durable is the end LSN of the last transaction known durable (0: none).
func (x *stream) durable() pglogrepl.LSN {
	d, _ := x.app.Durable()
	return d
}

// syncFlushed moves the acknowledged position up to what the appender has
// made durable.
func (x *stream) syncFlushed() {
	if d := x.durable(); d > x.st.flushed {
		x.st.flushed = d
	}
}

// quietFlush is how long the stream may be silent before pending
// transactions are appended without waiting for a full batch.
const quietFlush = 2 * time.Millisecond

// maxPendAge bounds how long a committed transaction may wait for its
// append while messages keep arriving, so a busy stream still makes
// changes queryable (and acknowledges them) promptly.
const maxPendAge = 20 * time.Millisecond

func (x *stream) sendStatus(ctx context.Context) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, x.repl, pglogrepl.StandbyStatusUpdate{WALWritePosition: x.st.flushed})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

// Appends are not pipelined (capture.AckOptions.Pipeline): with 4 queued,
// commit-to-queryable p99 measured 105-531 ms against 20-30 ms for one
// append at a time, alternated on the same machine, while the throughput
// figures did not clearly move.

func (x *stream) loop(ctx context.Context) error {
	x.app = capture.NewAcknowledger(ctx, capture.AckOptions[pglogrepl.LSN]{
		Sink: x.sink, BatchSize: x.src.cfg.BatchSize, Progress: &x.src.progress,
		OnDurable: func(_ context.Context, end pglogrepl.LSN) error {
			x.src.progress.Observe(0, uint64(end))
			return nil
		},
	})
	defer func() {
		x.app.Stop()
		x.syncFlushed()
		x.tx.discard()
		// Best effort: acknowledge what is durable before leaving.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if x.st.flushed != 0 {
			_ = x.sendStatus(sctx)
		}
	}()
	// One read deadline on the connection, moved only when it changes,
	// instead of a deadline context per message (a timer and a cancel
	// registration each, a fifth of the stream's CPU): ctx's cancellation
	// moves the deadline to the past, and the loop checks ctx after every
	// move, so a cancellation is never overwritten unseen.
	netConn := x.repl.Conn()
	stopWatch := context.AfterFunc(ctx, func() { _ = netConn.SetReadDeadline(time.Unix(1, 0)) })
	defer stopWatch()
	var deadlineSet time.Time
	next := time.Now().Add(x.src.cfg.Heartbeat)
	for {
		if err := x.app.Failed(); err != nil {
			return err
		}
		x.syncFlushed()
		if !time.Now().Before(next) {
			if x.st.flushed != 0 {
				if err := x.sendStatus(ctx); err != nil {
					return err
				}
			}
			next = time.Now().Add(x.src.cfg.Heartbeat)
		}
		deadline := next
		if quiet := time.Now().Add(quietFlush); len(x.pend) > 0 && quiet.Before(deadline) {
			deadline = quiet
		}
		if deadline.Before(deadlineSet) || deadline.Sub(deadlineSet) > time.Millisecond {
			if err := netConn.SetReadDeadline(deadline); err != nil {
				return fmt.Errorf("receive: set read deadline: %w", err)
			}
			deadlineSet = deadline
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		raw, err := x.repl.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				if err := x.flushPending(ctx); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("receive: %w", classify(err))
		}
		switch m := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", classify(pgconn.ErrorResponseToPgError(m)))
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				// Nothing in flight: every transaction the server has
				// sent so far is durable, so its position may be
				// acknowledged and an idle database pins no WAL.
				if x.tx == nil && len(x.pend) == 0 && x.app.Inflight() == 0 && ka.ServerWALEnd > x.st.flushed {
					x.st.flushed = ka.ServerWALEnd
				}
				x.src.progress.Observe(uint64(ka.ServerWALEnd), uint64(x.st.flushed))
				if ka.ReplyRequested {
					next = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse XLogData: %w", err)
				}
				x.src.progress.Observe(uint64(xld.ServerWALEnd), uint64(x.st.flushed))
				x.lsn = xld.WALStart
				if err := x.handle(ctx, xld.WALData); err != nil {
					return err
				}
				if len(x.pend) > 0 && time.Since(x.pendSince) >= maxPendAge {
					if err := x.flushPending(ctx); err != nil {
						return err
					}
				}
			}
		}
	}
}

func (x *stream) handle(ctx context.Context, data []byte) error {
	if len(data) > 0 && (data[0] == 'I' || data[0] == 'U' || data[0] == 'D') {
		// Row messages are most of the stream: parse them without a copy
		// per column. data is the connection's buffer: the values built
		// from it must own their bytes.
		data = bytes.Clone(data)
		m := &x.msg
		if err := parseRowMessage(data, m); err != nil {
			return fmt.Errorf("parse pgoutput message: %w", err)
		}
		op := record.OpInsert
		switch data[0] {
		case 'U':
			op = record.OpUpdate
		case 'D':
			op = record.OpDelete
		}
		var old, tuple []tupleCol
		if m.hasOld {
			old = m.old
		}
		if m.hasNew {
			tuple = m.new
		}
		return x.row(op, m.relID, old, m.hasOld, m.oldType, tuple, m.hasNew)
	}
	msg, err := pglogrepl.ParseV2(data, false)
	if err != nil {
		return fmt.Errorf("parse pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessageV2:
		return x.relation(ctx, &m.RelationMessage)
	case *pglogrepl.BeginMessage:
		x.tx.discard()
		x.tx = x.newTx(m.Xid)
		// The oldest transaction not yet appended sets the lag.
		x.src.progress.Pending(m.CommitTime)
	case *pglogrepl.LogicalDecodingMessageV2:
		if m.Prefix == DDLPrefix {
			return x.ddlMessage(&m.LogicalDecodingMessage)
		}
		x.message(&m.LogicalDecodingMessage)
	case *pglogrepl.TruncateMessageV2:
		for _, id := range m.RelationIDs {
			rel, ok := x.rels[id]
			if !ok {
				return fmt.Errorf("truncate of unknown relation %d", id)
			}
			if rel.skip {
				continue
			}
			key, _ := json.Marshal(map[string]string{"table": rel.schema + "." + rel.table})
			if err := x.add(&record.Record{Op: record.OpTruncate, Source: x.source(rel), Key: key}); err != nil {
				return err
			}
		}
	case *pglogrepl.CommitMessage:
		return x.commit(ctx, m)
	}
	return nil
}

func (x *stream) source(rel *relation) record.Source {
	return record.Source{Name: x.src.cfg.Name, Kind: "postgres", Database: x.src.database, Schema: rel.schema, Table: rel.table}
}

func (x *stream) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	rel := &relation{schema: m.Namespace, table: m.RelationName, cols: m.Columns}
	full := m.Namespace + "." + m.RelationName
	rel.skip = slices.Contains(x.src.cfg.ExcludeTables, full) || m.Namespace == "public" && slices.Contains(x.src.cfg.ExcludeTables, m.RelationName)
	pk, err := primaryKey(ctx, x.conn, m.RelationID)
	if err != nil {
		return err
	}
	switch {
	case len(pk) > 0:
		rel.key = pk
	case m.ReplicaIdentity == 'i':
		for _, c := range m.Columns {
			if c.Flags&1 != 0 {
				rel.key = append(rel.key, c.Name)
			}
		}
	}
	if rel.key == nil && !rel.skip {
		x.src.logger.Warn("table has no primary key; its records are keyed by the full row", "table", full)
	}
	if err := x.relationVersion(ctx, rel); err != nil {
		return err
	}
	if _, err := rel.layout(); err != nil {
		return err
	}
	x.rels[m.RelationID] = rel
	return nil
}

// message applies a "stele" context message to the open transaction.
func (x *stream) message(m *pglogrepl.LogicalDecodingMessage) {
	if m.Prefix != pgctx.Prefix {
		return
	}
	if !m.Transactional || x.tx == nil {
		x.src.logger.Warn("ignoring a non-transactional stele context message: emit it with pg_logical_emit_message(true, 'stele', …) inside the transaction")
		return
	}
	var c struct {
		Actor json.RawMessage `json:"actor"`
		Cause json.RawMessage `json:"cause"`
	}
	if err := json.Unmarshal(m.Content, &c); err != nil {
		x.src.logger.Warn("ignoring a stele context message that is not a JSON object with actor and cause objects", "err", err, "xid", x.tx.xid)
		return
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *json.RawMessage
	}{{"actor", c.Actor, &x.tx.actor}, {"cause", c.Cause, &x.tx.cause}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		canon, err := record.Canonical(f.raw)
		if err != nil || canon[0] != '{' {
			x.src.logger.Warn("ignoring the "+f.name+" of a stele context message: want a JSON object", "xid", x.tx.xid)
			continue
		}
		*f.dst = canon
	}
}

func (x *stream) add(r *record.Record) error {
	if x.tx == nil {
		x.tx = x.newTx(0)
	}
	if x.st.ids.change {
		// The change's own position; the stamper keeps it for a
		// transaction that gets change ids.
		r.Tx = &record.Tx{Position: x.changePosition(r.Source.Table, r.Key)}
	}
	if err := x.tx.buf.Add(r); err != nil {
		return fmt.Errorf("transaction %d: %w", x.tx.xid, err)
	}
	return nil
}

// changePosition is the position of a change with key in table at x.lsn:
// the LSN, and for the second and later change of one key at one LSN (a
// key-less table's equal rows in one multi-row WAL record) "+n".
func (x *stream) changePosition(table string, key []byte) string {
	if x.lsn != x.lsnOf || x.lsnText == "" {
		x.lsnOf, x.lsnText = x.lsn, x.lsn.String()
		clear(x.dup)
		if x.dup == nil {
			x.dup = map[string]int{}
		}
	}
	k := table + "\x00" + string(key)
	n := x.dup[k]
	x.dup[k] = n + 1
	if n == 0 {
		return x.lsnText
	}
	return x.lsnText + "+" + strconv.Itoa(n)
}

// row turns one insert, update or delete into a record.
func (x *stream) row(op record.Op, relID uint32, old []tupleCol, hasOld bool, oldType uint8, tuple []tupleCol, hasNew bool) error {
	rel, ok := x.rels[relID]
	if !ok {
		return fmt.Errorf("change to relation %d before its Relation message", relID)
	}
	if rel.skip {
		return nil
	}
	lay, err := rel.layout()
	if err != nil {
		return err
	}
	table := lay.full
	var oldVals, newVals rowVals
	if hasOld {
		if oldVals, err = x.columns(rel, old); err != nil {
			return fmt.Errorf("table %s: old row: %w", table, err)
		}
		if oldType == 'K' {
			// A key-only old tuple sends NULL for the other columns.
			for i, c := range rel.cols {
				if c.Flags&1 == 0 {
					oldVals[i] = nil
				}
			}
		}
	}
	if hasNew {
		if newVals, err = x.columns(rel, tuple); err != nil {
			return fmt.Errorf("table %s: new row: %w", table, err)
		}
	}
	r := &record.Record{Op: op, Source: x.source(rel), Schema: rel.schemaRef}

	// The row's key, from the new image or else the old one.
	keySrc := newVals
	if keySrc == nil {
		keySrc = oldVals
	}
	key, err := lay.keyOf(keySrc)
	if err != nil {
		return fmt.Errorf("table %s: %w", table, err)
	}
	keyStr := string(key)

	// Fill unchanged TOAST values.
	for i, v := range newVals {
		if !unsent(v) {
			continue
		}
		if ov := oldVals.at(i); ov != nil && !unsent(ov) {
			newVals[i] = ov
		} else if last := x.st.toast.value(table, keyStr, rel, i); last != nil {
			newVals[i] = last
		} else {
			x.src.logger.Warn("unchanged TOAST value not sent by PostgreSQL and not known from an earlier image; recorded as {\"$unchanged_toast\": true} (replica_identity: full avoids this)", "table", table, "column", rel.cols[i].Name)
			newVals[i] = unchangedToast
		}
	}
	for i, v := range oldVals {
		if unsent(v) {
			oldVals[i] = unchangedToast
		}
	}
	switch op {
	case record.OpInsert, record.OpUpdate:
		if rel.mayBeToasted(tuple, x.toastAt) {
			x.st.toast.put(table, keyStr, rel, newVals)
		}
	case record.OpDelete:
		x.st.toast.remove(table, keyStr)
	}

	oldVals = x.capValues(rel, oldVals)
	newVals = x.capValues(rel, newVals)
	r.Key = key
	if op == record.OpUpdate && oldVals == nil {
		// Default replica identity and an unchanged key: the before image
		// holds the key only.
		oldVals = make(rowVals, len(rel.cols))
		if rel.key != nil {
			for _, i := range lay.key {
				oldVals[i] = newVals[i]
			}
		}
	}
	r.Before = lay.image(oldVals)
	r.After = lay.image(newVals)
	r.Changed = rel.changed(oldVals, newVals)
	return x.add(r)
}

// at is the value of column i (nil: not in the tuple).
func (v rowVals) at(i int) json.RawMessage {
	if i < len(v) {
		return v[i]
	}
	return nil
}

// capValues replaces a value larger than Config.MaxValueBytes by a stand-in
// naming its size and SHA-256, so one huge value cannot make a record larger
// than the log accepts; a warning names the table and column. vals may be
// held by the TOAST cache, so a change is made to a copy.
func (x *stream) capValues(rel *relation, vals rowVals) rowVals {
	out, copied := vals, false
	for i, v := range vals {
		if len(v) <= x.src.cfg.MaxValueBytes {
			continue
		}
		if !copied {
			out, copied = slices.Clone(vals), true
		}
		sum := sha256.Sum256(v)
		x.src.logger.Warn("value too large for a record; recorded as its size and SHA-256", "table", rel.schema+"."+rel.table, "column", rel.cols[i].Name, "bytes", len(v), "limit", x.src.cfg.MaxValueBytes)
		out[i] = json.RawMessage(fmt.Sprintf(`{"$too_large":{"bytes":%d,"sha256":"%x"}}`, len(v), sum))
	}
	return out
}

// columns types a tuple's values (see rowVals).
func (x *stream) columns(rel *relation, t []tupleCol) (rowVals, error) {
	if len(t) > len(rel.cols) {
		return nil, fmt.Errorf("tuple has more columns than the relation")
	}
	out := make(rowVals, len(rel.cols))
	for i, c := range t {
		col := rel.cols[i]
		switch c.kind {
		case pglogrepl.TupleDataTypeNull:
			out[i] = jsonNull
		case pglogrepl.TupleDataTypeToast:
			out[i] = json.RawMessage{}
		case pglogrepl.TupleDataTypeText:
			v, err := columnJSON(x.st.types, col.DataType, c.data)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", col.Name, err)
			}
			out[i] = v
		default:
			return nil, fmt.Errorf("column %s: unexpected tuple data kind %q", col.Name, c.kind)
		}
	}
	return out, nil
}

// commit stamps the transaction's records and appends them; only then does
// the flush position move past the transaction.
func (x *stream) commit(ctx context.Context, m *pglogrepl.CommitMessage) error {
	if err := x.flushRelationDDL(); err != nil {
		return err
	}
	tx := x.tx
	x.tx = nil
	if tx != nil {
		defer tx.discard()
		if tx.buf.Spilled() {
			// A spilled transaction streams from its file; everything
			// before it must be durable first so the log keeps commit order.
			if err := x.flushPending(ctx); err != nil {
				return err
			}
			if err := x.app.Drain(ctx); err != nil {
				return err
			}
			x.syncFlushed()
			if err := x.appendTx(ctx, tx, m); err != nil {
				return err
			}
		} else {
			recs := tx.buf.Records()
			x.stamper(tx, m)(recs)
			recs = capture.JoinOutbox(recs, x.src.cfg.Outbox)
			if len(x.pend) == 0 {
				x.pendSince = time.Now()
			}
			x.pend = append(x.pend, recs...)
		}
	}
	x.pendEnd = max(x.pendEnd, m.TransactionEndLSN)
	if len(x.pend) >= x.src.cfg.BatchSize || len(x.pend) == 0 || time.Since(x.pendSince) >= maxPendAge {
		return x.flushPending(ctx)
	}
	return nil
}

// flushPending hands the pending transactions to the appender; the flush
// position moves past them once the appender reports them durable.
func (x *stream) flushPending(ctx context.Context) error {
	if len(x.pend) == 0 && x.app.Inflight() == 0 {
		// Nothing in flight: an empty transaction can be acknowledged now.
		x.st.flushed = max(x.st.flushed, x.pendEnd)
		x.src.progress.Observe(0, uint64(x.st.flushed))
		return nil
	}
	if len(x.pend) == 0 && x.pendEnd <= x.durable() {
		return nil
	}
	recs := x.pend
	x.pend = nil
	return x.app.Submit(ctx, recs, x.pendEnd)
}

// stamper returns a function that gives a committed transaction's records,
// in order, their actor, cause, tx position and index, and so their ids.
func (x *stream) stamper(tx *txBuf, m *pglogrepl.CommitMessage) func([]*record.Record) {
	actor := tx.actor
	if actor == nil {
		actor = unknownActor
	}
	commitTime := m.CommitTime.UTC()
	pos := m.CommitLSN.String()
	change := x.st.ids.changeIDs(m.CommitLSN)
	xid := strconv.FormatUint(uint64(tx.xid), 10)
	next := int64(0)
	var ids record.IDDeriver
	return func(recs []*record.Record) {
		txs := make([]record.Tx, len(recs))
		idxs := make([]int64, len(recs))
		for i, r := range recs {
			idxs[i] = next
			next++
			r.Actor, r.Cause = actor, tx.cause
			if change && r.Tx != nil {
				txs[i] = record.Tx{ID: xid, Position: r.Tx.Position, Index: &idxs[i], CommitTime: &commitTime}
				r.Tx = &txs[i]
				r.OccurredAt = commitTime
				r.ID = ids.DeriveChange(r)
				continue
			}
			txs[i] = record.Tx{ID: xid, Position: pos, Index: &idxs[i], CommitTime: &commitTime}
			r.Tx = &txs[i]
			r.OccurredAt = commitTime
			r.ID = ids.Derive(r)
		}
	}
}

// appendTx appends a spilled transaction, reading it back from its file.
func (x *stream) appendTx(ctx context.Context, tx *txBuf, m *pglogrepl.CommitMessage) error {
	stamp := x.stamper(tx, m)
	return tx.buf.Replay(x.src.cfg.BatchSize, func(batch []*record.Record) error {
		stamp(batch)
		// Joined per batch: changes in batches before the outbox row's
		// miss its cause (a transaction over Config.SpillBytes).
		if batch = capture.JoinOutbox(batch, x.src.cfg.Outbox); len(batch) == 0 {
			return nil
		}
		return x.app.Append(ctx, batch)
	})
}

// imageCache keeps the last after image of up to n rows, evicting the
// oldest entry first. Images are shared, not copied: nothing changes a
// rowVals once it is cached (capValues copies).
type imageCache struct {
	n     int
	m     map[string]cachedImage
	order []string // ring of the cached keys, oldest at head
	head  int
}

type cachedImage struct {
	rel  *relation // the columns vals is laid out by
	vals rowVals
}

func newImageCache(n int) *imageCache {
	return &imageCache{n: n, m: map[string]cachedImage{}}
}

func cacheKey(table, key string) string { return table + "\x00" + key }

// value is column col of rel in the row's last image, by name when the
// image was laid out by an earlier Relation message (nil: not known).
func (c *imageCache) value(table, key string, rel *relation, col int) json.RawMessage {
	e, ok := c.m[cacheKey(table, key)]
	if !ok {
		return nil
	}
	if e.rel == rel {
		return e.vals.at(col)
	}
	lay, err := e.rel.layout()
	if err != nil {
		return nil
	}
	if i, ok := lay.byName[rel.cols[col].Name]; ok {
		return e.vals.at(i)
	}
	return nil
}

func (c *imageCache) put(table, key string, rel *relation, vals rowVals) {
	k := cacheKey(table, key)
	if _, ok := c.m[k]; !ok {
		if len(c.order) < c.n {
			c.order = append(c.order, k)
		} else {
			delete(c.m, c.order[c.head])
			c.order[c.head] = k
			c.head = (c.head + 1) % c.n
		}
	}
	c.m[k] = cachedImage{rel: rel, vals: vals}
}

func (c *imageCache) remove(table, key string) { delete(c.m, cacheKey(table, key)) }
