package mysql

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/record"
)

func asMyError(err error, target **gomysql.MyError) bool { return errors.As(err, target) }

// state survives reconnections.
type state struct {
	positions *capture.PositionStore
	history   *schemaHistory
	dir       string

	mu         sync.Mutex
	durable    binlogPos // just past the last transaction whose records are durable
	hasDurable bool
	saved      binlogPos
	flavor     string
}

func (s *Source) openState() (*state, error) {
	if s.cfg.StateDir == "" {
		return nil, fmt.Errorf("%w: the state directory (position and schema history) is not set", ErrConfig)
	}
	ps, err := capture.OpenPositions(filepath.Join(s.cfg.StateDir, "positions"))
	if err != nil {
		return nil, capture.PermanentError(err)
	}
	h, err := openHistory(s.cfg.StateDir)
	if err != nil {
		return nil, capture.PermanentError(err)
	}
	st := &state{positions: ps, history: h, dir: s.cfg.StateDir}
	p, ok, err := positionFrom(ps.All())
	if err != nil {
		return nil, capture.PermanentError(fmt.Errorf("stored position in %s: %w", s.cfg.StateDir, err))
	}
	if ok {
		st.durable, st.hasDurable, st.saved = p, true, p
		st.flavor = ps.All()[posKeyFlavor]
		s.status.setPosition(p)
	}
	return st, nil
}

func (st *state) setDurable(p binlogPos) {
	st.mu.Lock()
	st.durable, st.hasDurable = p, true
	st.mu.Unlock()
}

func (st *state) current() (binlogPos, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.durable, st.hasDurable
}

// saveDurable saves the durable position when it moved since the last save.
func (st *state) saveDurable(ctx context.Context, logger *slog.Logger) {
	if err := st.save(ctx); err != nil {
		logger.Error("saving the source position failed; a restart replays from the previous one (nothing is stored twice)", "err", err)
	}
}

func (st *state) save(ctx context.Context) error {
	st.mu.Lock()
	p, ok, flavor := st.durable, st.hasDurable, st.flavor
	changed := ok && p != st.saved
	st.mu.Unlock()
	if !changed {
		return nil
	}
	if err := st.positions.Save(ctx, p.positions(flavor)); err != nil {
		return err
	}
	st.mu.Lock()
	st.saved = p
	st.mu.Unlock()
	return nil
}

// session connects, checks the server and streams until an error.
// progressed reports whether events arrived, so the backoff starts over.
func (s *Source) session(ctx context.Context, sink capture.Sink, st *state) (progressed bool, err error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	defer func() { conn.Close() }()
	info, err := s.setup(ctx, conn)
	if err != nil {
		return false, err
	}
	if st.flavor != "" && st.flavor != info.flavor {
		return false, fmt.Errorf("%w: the stored position was read from a %s server, this one is %s: give this source another name (or state directory) to start afresh", ErrConfig, st.flavor, info.flavor)
	}
	st.mu.Lock()
	st.flavor = info.flavor
	st.mu.Unlock()

	start, ok := st.current()
	switch {
	case ok:
		// A snapshot's files outlive it only if the process died between
		// storing the position and removing them.
		_ = os.RemoveAll(filepath.Join(st.dir, snapshotDirName))
	case s.cfg.Snapshot == SnapshotInitial:
		// Stores the position once the snapshot is durable (its
		// completion marker).
		if start, err = s.initialSnapshot(ctx, info, sink, st); err != nil {
			return false, err
		}
	default:
		if start, err = currentPosition(conn, info); err != nil {
			return false, fmt.Errorf("read the current binlog position: %w", s.classify(err))
		}
		// The start is durable at once: there is nothing before it, and a
		// crash before the first transaction must not move it to "now".
		st.setDurable(start)
		if err := st.save(ctx); err != nil {
			return false, fmt.Errorf("save the start position: %w", err)
		}
		s.logger.Info("no stored position: capturing from the server's current position", "position", start.String())
	}
	if !start.GTIDMode && start.File != "" {
		if err := s.checkFileRetained(conn, start); err != nil {
			return false, err
		}
	}
	x := &stream{
		src: s, st: st, sink: sink, conn: conn, info: info,
		gtidMode: start.GTIDMode, file: start.File, offset: start.Offset,
		tables: map[uint64]*table{}, live: map[string][]liveColumn{},
	}
	if start.GTIDMode {
		if x.gset, err = parseGTIDSet(info.flavor, start.GTID); err != nil {
			return false, capture.PermanentError(fmt.Errorf("%w: stored position: %w", ErrConfig, err))
		}
	}
	err = x.run(ctx, start)
	conn = x.conn
	if errors.Is(err, ErrBinlogPurged) {
		err = s.purgedError(conn, start, err)
	}
	return x.received > 0, err
}

// currentPosition is the server's current binlog position.
func currentPosition(conn sqlExecer, info *serverInfo) (binlogPos, error) {
	p, err := masterStatus(conn)
	if err != nil {
		return p, err
	}
	switch {
	case info.flavor == FlavorMariaDB:
		res, err := conn.Execute("SELECT @@GLOBAL.gtid_binlog_pos")
		if err != nil {
			return p, err
		}
		p.GTID, _ = resultString(res, 0, 0)
		res.Close()
		p.GTIDMode = true
	case info.gtidMode:
		res, err := conn.Execute("SELECT @@GLOBAL.gtid_executed")
		if err != nil {
			return p, err
		}
		p.GTID, _ = resultString(res, 0, 0)
		res.Close()
		p.GTIDMode = true
	default:
		p.GTID = ""
	}
	return p, nil
}

// checkFileRetained refuses a file position whose file was purged.
func (s *Source) checkFileRetained(conn *client.Conn, p binlogPos) error {
	names, _, err := binlogFiles(conn)
	if err != nil || len(names) == 0 {
		return nil // the dump reports it
	}
	if slices.Contains(names, p.File) {
		return nil
	}
	return s.purgedError(conn, p, fmt.Errorf("%w: binlog file %s is not on the server any more", ErrBinlogPurged, p.File))
}

// purgedError names the gap and how to capture again.
func (s *Source) purgedError(conn *client.Conn, p binlogPos, err error) error {
	oldest := "unknown"
	if conn != nil {
		if names, _, lerr := binlogFiles(conn); lerr == nil && len(names) > 0 {
			oldest = names[0]
		}
	}
	cause := err.Error()
	var me *gomysql.MyError
	if errors.As(err, &me) {
		cause = "the server says: " + me.Error()
	} else if c, ok := strings.CutPrefix(cause, ErrBinlogPurged.Error()+": "); ok {
		cause = c
	}
	return fmt.Errorf("%w: the source stopped at %s, but the server's oldest binlog is now %s: the changes committed in between were purged before this source read them and are not in the log. To capture again from the current position, stop Stele, remove %s (add snapshot: initial to record every table's current rows first) and start it (%s)",
		ErrBinlogPurged, p.String(), oldest, filepath.Join(s.cfg.StateDir, "positions"), cause)
}

// stream is one session's reader of the binlog.
type stream struct {
	src  *Source
	st   *state
	sink capture.Sink
	conn *client.Conn
	info *serverInfo

	gtidMode bool
	gset     *gtidSet // nil without GTIDs
	file     string   // the binlog file being read
	offset   uint32   // just past the last event read

	tables map[uint64]*table
	live   map[string][]liveColumn // live column definitions by db.table
	tx     *txState
	ids    record.IDDeriver
	buf    []byte // scratch for row values
	ends   []int  // scratch: where each value ends in buf
	images rowImages
	slab   []record.Record // see newRecord
	before rowVals         // scratch images of nativeRows
	after  rowVals

	// pend holds stamped records of committed transactions not yet handed
	// to the acknowledger, pendPos the position just past the last of them.
	pend      []*record.Record
	pendPos   binlogPos
	pendDirty bool
	pendSince time.Time
	app       *capture.Acknowledger[binlogPos]

	received int
	warned   map[string]bool
}

// txState is one transaction being read.
type txState struct {
	gtid     txGTID
	position string // tx.position
	begun    bool   // ends with XID or COMMIT, not after one statement
	buf      capture.TxBuffer
	ctx      stmtContext // from the context table
	stmt     stmtContext // the current statement's comment
	commit   time.Time   // MySQL's immediate commit time, when known
	// relations are the tables whose new version this transaction shows
	// first.
	relations []*table
}

// ackPipeline is how many appends the source keeps queued in the log at
// once (capture.AckOptions.Pipeline).
const ackPipeline = 4

// maxPendAge bounds how long a committed transaction waits for its append
// while events keep arriving.
const maxPendAge = 20 * time.Millisecond

// quietFlush is how long the stream may be silent, with an append in
// flight, before pending transactions are handed over anyway.
const quietFlush = 2 * time.Millisecond

// errSilent: the server sent nothing, not even a heartbeat, for longer
// than silenceTimeout; the connection is presumed dead and reconnected.
var errSilent = errors.New("the binlog connection went silent")

// silenceTimeout is how long the pump waits for the next event before
// presuming the connection dead: three heartbeats and some slack.
func (x *stream) silenceTimeout() time.Duration { return 3*x.src.cfg.Heartbeat + 5*time.Second }

// item is what the pump hands over: the events the syncer had ready (one
// channel hop for many events; with one hop per event the hand-over cost
// as much as decoding) or the error that ended the stream.
type item struct {
	evs []*replication.BinlogEvent
	err error
}

func (x *stream) syncerConfig() replication.BinlogSyncerConfig {
	s := x.src
	cfg := replication.BinlogSyncerConfig{
		ServerID:                s.cfg.ServerID,
		Flavor:                  x.info.flavor,
		Host:                    s.host,
		Port:                    s.port,
		User:                    s.user,
		Password:                s.password,
		TLSConfig:               s.tls,
		TimestampStringLocation: time.UTC,
		// DATETIME and TIMESTAMP as time.Time (zero and pre-1970 dates
		// stay text): formatting them as text costs go-mysql a
		// fmt.Sprintf per value, and decode.go writes RFC 3339 from
		// either form alike.
		ParseTime:             true,
		RenderJSONAsMySQLText: true,
		HeartbeatPeriod:       s.cfg.Heartbeat,
		// No ReadTimeout: go-mysql would move the socket's read deadline
		// for every packet, three times (a tenth of the whole capture's
		// CPU in a profile). The pump bounds each wait for an event
		// instead (silenceTimeout), which a heartbeat also ends.
		DisableRetrySync: true, // the supervisor reconnects, from the durable position
		// Row events of a large transaction are up to 8 KiB and more
		// decoded; 1024 of them, three times over (below), were 40 MiB
		// of a spilled transaction's heap.
		EventCacheCount: 256,
		// Rows are decoded by the stream, mostly straight to JSON
		// (rowdecode.go).
		RowsEventDecodeFunc: deferRows,
		Logger:              slog.New(warnOnly{s.logger.Handler().WithAttrs([]slog.Attr{slog.String("component", "go-mysql")})}),
		Localhost:           "stele-" + s.cfg.Name,
	}
	if x.info.flavor == FlavorMariaDB {
		cfg.DumpCommandFlag = replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT
	}
	return cfg
}

// warnOnly drops go-mysql's records below Warn (it logs every connection
// at Info).
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnOnly) WithAttrs(a []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(a)} }
func (w warnOnly) WithGroup(n string) slog.Handler      { return warnOnly{w.Handler.WithGroup(n)} }

func (x *stream) run(ctx context.Context, start binlogPos) error {
	s := x.src
	syncer := replication.NewBinlogSyncer(x.syncerConfig())
	defer syncer.Close()
	var streamer *replication.BinlogStreamer
	var err error
	if start.GTIDMode {
		set, perr := gomysql.ParseGTIDSet(x.info.flavor, start.GTID)
		if perr != nil {
			return capture.PermanentError(fmt.Errorf("%w: stored GTID set %q: %w", ErrConfig, start.GTID, perr))
		}
		streamer, err = syncer.StartSyncGTID(set)
	} else {
		streamer, err = syncer.StartSync(gomysql.Position{Name: start.File, Pos: start.Offset})
	}
	if err != nil {
		return fmt.Errorf("start reading the binlog at %s: %w", start.String(), s.classify(err))
	}
	s.logger.Info("streaming changes", "from", start.String(), "replica_server_id", s.cfg.ServerID)
	s.progress.SetState(capture.StateStreaming)

	x.app = capture.NewAcknowledger(ctx, capture.AckOptions[binlogPos]{
		Sink: x.sink, BatchSize: s.cfg.BatchSize, Progress: &s.progress,
		// Up to 32 jobs wait while one is appended, so decoding the next
		// transactions overlaps each append's fsync; Coalesce (off by
		// default, see Config) merges queued jobs into one append.
		Queue: 32, Coalesce: s.cfg.Coalesce,
		// The next batch is prepared while the last one's fsync runs.
		Pipeline: ackPipeline,
		OnDurable: func(_ context.Context, p binlogPos) error {
			x.st.setDurable(p)
			s.status.setPosition(p)
			return nil
		},
	})
	pctx, stopPump := context.WithCancel(ctx)
	silence := x.silenceTimeout()
	// Two batches of at most EventCacheCount events each (a batch is what
	// the syncer's cache held): with the cache itself, the stream reads at
	// most three caches ahead of decoding.
	events := make(chan item, 2)
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		for {
			var it item
			// The bound covers only the wait for the server: while the
			// stream is behind, the events are already here.
			gctx, cancel := context.WithTimeoutCause(pctx, silence, errSilent)
			ev, err := streamer.GetEvent(gctx)
			if err != nil && pctx.Err() == nil && errors.Is(context.Cause(gctx), errSilent) {
				err = fmt.Errorf("%w: nothing for %v, not even a heartbeat (every %v)", errSilent, silence, s.cfg.Heartbeat)
			}
			cancel()
			if err != nil {
				it.err = err
			} else {
				// Whatever else the syncer has ready comes along
				// (DumpEvents does not block).
				it.evs = append([]*replication.BinlogEvent{ev}, streamer.DumpEvents()...)
			}
			select {
			case events <- it:
			case <-pctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// The durable position is saved on a goroutine of its own: a save
	// waits for an fsync, and made on the stream's goroutine it held up
	// decoding, and so every change behind it (the MariaDB
	// commit-to-queryable p99 was one of these waits).
	// The lag is measured there too, on a connection of its own: a query
	// on a connection that went silent waits for its read timeout
	// (minutes), and the stream must meanwhile notice the silence.
	saved := make(chan struct{})
	go func() {
		defer close(saved)
		t := time.NewTicker(min(s.cfg.PositionInterval, s.cfg.Heartbeat))
		defer t.Stop()
		var lag lagMeter
		defer lag.close()
		stopLag := context.AfterFunc(pctx, lag.interrupt)
		defer stopLag()
		lastLag := time.Time{}
		for {
			select {
			case <-t.C:
				// Not cut short by the stop: the final save follows it.
				x.st.saveDurable(context.WithoutCancel(pctx), s.logger)
				if time.Since(lastLag) >= s.cfg.Heartbeat {
					lag.measure(pctx, x)
					lastLag = time.Now()
				}
			case <-pctx.Done():
				return
			}
		}
	}()
	defer func() {
		stopPump()
		syncer.Close()
		<-pumped
		<-saved
		x.app.Stop()
		if x.tx != nil {
			x.tx.buf.Discard()
		}
		x.st.saveDurable(context.WithoutCancel(ctx), s.logger)
	}()

	quiet := time.NewTimer(time.Hour)
	defer quiet.Stop()
	for {
		if err := x.app.Failed(); err != nil {
			return err
		}
		var it item
		select {
		case it = <-events:
		default:
			// The stream is quiet: pending transactions are handed over
			// after quietFlush more of silence (or at maxPendAge, or a
			// full batch), so a burst shares one append.
			var quietC <-chan time.Time
			if x.pendDirty {
				quiet.Reset(quietFlush)
				quietC = quiet.C
			}
			select {
			case it = <-events:
			case <-quietC:
				if err := x.flushPending(ctx); err != nil {
					return err
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if it.err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read the binlog: %w", s.classify(it.err))
		}
		for _, ev := range it.evs {
			x.received++
			if err := x.handle(ctx, ev); err != nil {
				return err
			}
			if x.pendDirty && len(x.pend) >= s.cfg.BatchSize {
				if err := x.flushPending(ctx); err != nil {
					return err
				}
			}
		}
		// The age is checked once per hand-over of events, not after each
		// event (three clock reads a change): a hand-over holds at most
		// EventCacheCount events, decoded in well under a millisecond.
		if x.pendDirty && time.Since(x.pendSince) >= maxPendAge {
			if err := x.flushPending(ctx); err != nil {
				return err
			}
		}
	}
}

// lagMeter measures the lag on a SQL connection of its own, opened on
// first use and again after an error.
type lagMeter struct {
	mu   sync.Mutex
	conn *client.Conn
}

// close closes the connection; only the measuring goroutine may call it
// (go-mysql's Close races with a query in flight).
func (l *lagMeter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
}

// interrupt ends a query that hangs, from any goroutine: it closes the
// socket under the connection (a net.Conn may be closed while in use),
// which fails the query; the measuring goroutine then closes the rest.
func (l *lagMeter) interrupt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil && l.conn.Conn != nil && l.conn.Conn.Conn != nil {
		l.conn.Conn.Conn.Close()
	}
}

// measure sets the lag in bytes: the binlog written past the durable
// position (SHOW BINARY LOGS).
func (l *lagMeter) measure(ctx context.Context, x *stream) {
	l.mu.Lock()
	conn := l.conn
	l.mu.Unlock()
	if conn == nil {
		c, err := x.src.connect(ctx)
		if err != nil {
			return
		}
		l.mu.Lock()
		if ctx.Err() != nil {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.conn, conn = c, c
		l.mu.Unlock()
	}
	names, sizes, err := binlogFiles(conn)
	if err != nil {
		l.close()
		return
	}
	x.setLag(names, sizes)
}

// setLag sets the lag from the server's binlog files and their sizes.
func (x *stream) setLag(names []string, sizes []uint64) {
	p, ok := x.st.current()
	if !ok {
		return
	}
	var lag uint64
	found := false
	for i, n := range names {
		switch {
		case n == p.File:
			found = true
			if sizes[i] > uint64(p.Offset) {
				lag += sizes[i] - uint64(p.Offset)
			}
		case found:
			lag += sizes[i]
		}
	}
	x.src.status.lagBytes.Store(lag)
}

// reconnectSQL replaces a broken catalog connection (best effort).
func (x *stream) reconnectSQL() {
	if err := x.conn.Ping(); err == nil {
		return
	}
	c, err := x.src.connect(context.Background())
	if err != nil {
		return
	}
	x.conn.Close()
	x.conn = c
}

// flushPending hands the pending transactions to the acknowledger.
func (x *stream) flushPending(ctx context.Context) error {
	if !x.pendDirty {
		return nil
	}
	recs, pos := x.pend, x.pendPos
	x.pend, x.pendDirty, x.pendSince = nil, false, time.Time{}
	return x.app.Submit(ctx, recs, pos)
}

func (x *stream) handle(ctx context.Context, ev *replication.BinlogEvent) error {
	h := ev.Header
	var evStart uint32
	if h.LogPos >= h.EventSize {
		evStart = h.LogPos - h.EventSize
	}
	if _, rot := ev.Event.(*replication.RotateEvent); !rot && h.LogPos > 0 {
		x.offset = h.LogPos
	}
	return x.event(ctx, h, evStart, ev.Event)
}

func (x *stream) event(ctx context.Context, h *replication.EventHeader, evStart uint32, e replication.Event) error {
	switch e := e.(type) {
	case *replication.RotateEvent:
		x.file, x.offset = string(e.NextLogName), uint32(e.Position)
		if len(x.tables) > 4096 {
			clear(x.tables)
		}
	case *replication.GTIDEvent:
		g, err := mysqlTxGTID(e, gomysql.Tag{})
		if err != nil {
			return err
		}
		x.begin(g, evStart)
		if e.ImmediateCommitTimestamp != 0 {
			x.tx.commit = e.ImmediateCommitTime()
		}
	case *replication.GtidTaggedLogEvent:
		g, err := mysqlTxGTID(&e.GTIDEvent, e.Tag)
		if err != nil {
			return err
		}
		x.begin(g, evStart)
		if e.ImmediateCommitTimestamp != 0 {
			x.tx.commit = e.ImmediateCommitTime()
		}
	case *replication.MariadbGTIDEvent:
		x.begin(mariadbTxGTID(e), evStart)
		x.tx.begun = !e.IsStandalone()
	case *replication.QueryEvent:
		return x.query(ctx, h, evStart, e)
	case *replication.TableMapEvent:
		return x.tableMap(e)
	case *replication.RowsEvent:
		return x.rows(h.EventType, e)
	case *replication.XIDEvent:
		return x.commit(ctx, h)
	case *replication.MariadbAnnotateRowsEvent:
		x.statement(e.Query)
	case *replication.RowsQueryEvent:
		x.statement(e.Query)
	case *replication.TransactionPayloadEvent:
		for _, inner := range e.Events {
			if err := x.event(ctx, inner.Header, evStart, inner.Event); err != nil {
				return err
			}
		}
	}
	return nil
}

// begin opens a transaction at its GTID event (or its BEGIN without one).
func (x *stream) begin(g txGTID, start uint32) {
	if x.tx != nil {
		x.src.logger.Warn("transaction without a commit event before the next one; its changes are dropped", "position", x.tx.position)
		x.tx.buf.Discard()
	}
	tx := &txState{gtid: g, position: g.text}
	if tx.position == "" {
		tx.position = fmt.Sprintf("%s:%d", x.file, start)
	}
	tx.buf.Limit, tx.buf.Dir = x.src.cfg.SpillBytes, x.src.cfg.SpillDir
	tx.buf.OnSpill = func(file string) {
		x.src.logger.Info("transaction exceeds the in-memory limit; spilling its records to disk", "tx", tx.position, "limit_bytes", x.src.cfg.SpillBytes, "file", file)
	}
	x.tx = tx
}

// statement notes the text of the statement whose rows follow.
func (x *stream) statement(q []byte) {
	if x.tx == nil {
		return
	}
	x.tx.stmt, _ = commentContext(q)
}

func (x *stream) query(ctx context.Context, h *replication.EventHeader, start uint32, e *replication.QueryEvent) error {
	verb := firstWords(e.Query)
	switch verb {
	case "BEGIN", "START TRANSACTION":
		if x.tx == nil {
			x.begin(txGTID{}, start)
		}
		x.tx.begun = true
		return nil
	case "COMMIT", "ROLLBACK", "XA COMMIT", "XA ROLLBACK":
		// A ROLLBACK that reaches the binlog ends a transaction whose
		// non-transactional changes took effect: what it logged happened.
		return x.commit(ctx, h)
	case "SAVEPOINT", "ROLLBACK TO", "RELEASE SAVEPOINT", "XA START", "XA BEGIN", "XA END":
		return nil
	}
	if x.tx == nil {
		x.begin(txGTID{}, start)
	}
	if err := x.ddl(e); err != nil {
		return err
	}
	if !x.tx.begun {
		return x.commit(ctx, h)
	}
	return nil
}

// ddl records a statement logged as text: DDL (op ddl) or TRUNCATE (op
// truncate).
func (x *stream) ddl(e *replication.QueryEvent) error {
	f := x.src.tables
	t := parseDDL(e.Query, string(e.Schema))
	for _, name := range t.tables {
		delete(x.live, name.db+"."+name.table)
	}
	if t.verb == "TRUNCATE" && len(t.tables) == 1 {
		n := t.tables[0]
		if !f.captured(n.db, n.table) {
			return nil
		}
		key, _ := json.Marshal(map[string]string{"table": n.db + "." + n.table})
		return x.add(&record.Record{Op: record.OpTruncate, Source: x.source(n.db, n.table), Key: key})
	}
	var src record.Source
	var object string
	switch {
	case len(t.tables) > 0:
		keep := false
		for _, n := range t.tables {
			if f.captured(n.db, n.table) {
				keep = true
				if object == "" {
					src, object = x.source(n.db, n.table), n.db+"."+n.table
				}
			}
		}
		if !keep {
			return nil
		}
	case t.database != "":
		if !f.databaseCaptured(t.database) {
			return nil
		}
		src, object = x.source(t.database, ""), t.database
	default:
		if !f.databaseCaptured(string(e.Schema)) {
			return nil
		}
		src, object = x.source(string(e.Schema), ""), t.verb
	}
	after, err := json.Marshal(map[string]string{"statement": string(e.Query), "database": string(e.Schema)})
	if err != nil {
		return err
	}
	if after, err = record.Canonical(after); err != nil {
		return err
	}
	key, _ := json.Marshal(map[string]string{"object": object})
	r := &record.Record{Op: record.OpDDL, Source: src, Key: key, After: after}
	if c, ok := commentContext(e.Query); ok {
		r.Actor, r.Cause = c.actor, c.cause
	}
	return x.add(r)
}

func (x *stream) source(db, tbl string) record.Source {
	return record.Source{Name: x.src.cfg.Name, Kind: "mysql", Database: db, Table: tbl}
}

func (x *stream) add(r *record.Record) error {
	if err := x.tx.buf.Add(r); err != nil {
		return fmt.Errorf("transaction %s: %w", x.tx.position, err)
	}
	return nil
}

// tableMap resolves a table-map event to the table version its rows are
// decoded with.
func (x *stream) tableMap(e *replication.TableMapEvent) error {
	if x.tx == nil {
		x.begin(txGTID{}, x.offset)
	}
	t, ok := x.tables[e.TableID]
	// Every transaction repeats its tables' maps: comparing one with the
	// last of its table id field by field is cheap, building the signature
	// is not (it was a third of the stream's own CPU in a profile).
	if !ok || !sameTableMap(t.ev, e) {
		sig := signature(e)
		if !ok || t.sig != sig {
			var err error
			if t, err = x.newTable(e, sig); err != nil {
				return err
			}
			x.tables[e.TableID] = t
		}
		t.ev = e
	}
	if t.version != nil && t.version.Version > 1 && t.version.Since == x.tx.position && !slices.Contains(x.tx.relations, t) {
		x.tx.relations = append(x.tx.relations, t)
	}
	return nil
}

func (x *stream) newTable(e *replication.TableMapEvent, sig tableMapSig) (*table, error) {
	db, name := string(e.Schema), string(e.Table)
	f := x.src.tables
	isContext := f.isContext(name) && !slices.Contains(systemDatabases, db)
	if !isContext && !f.captured(db, name) {
		return &table{db: db, name: name, skip: true, sig: sig}, nil
	}
	var live []liveColumn
	if len(e.ColumnName) == 0 || x.info.flavor == FlavorMariaDB && hasTextBlob(e) {
		live = x.liveColumns(db, name)
		if len(e.ColumnName) == 0 && !x.warned[db+"."+name] {
			if x.warned == nil {
				x.warned = map[string]bool{}
			}
			x.warned[db+"."+name] = true
			x.src.logger.Warn("table-map event without column names (binlog_row_metadata is not FULL where the event was written): naming its columns from the live table definition, which is wrong if the table was altered since", "table", db+"."+name)
		}
	}
	cols, pk, err := buildColumns(e, x.info.collations, live)
	if err != nil {
		return nil, err
	}
	t, err := newTable(db, name, cols, pk)
	if err != nil {
		return nil, err
	}
	t.sig, t.context = sig, isContext
	if isContext {
		return t, nil
	}
	t.native = !slices.ContainsFunc(cols, func(c column) bool { return !nativeColumn(&c) })
	if !t.hasPK {
		x.src.logger.Debug("table has no primary key; its records are keyed by the full row", "table", t.full)
	}
	desc, pkNames := describe(cols, pk)
	binlog := fmt.Sprintf("%s:%d", x.file, x.offset)
	v, err := x.st.history.lookup(t.full, sig.hash(), desc, pkNames, x.tx.position, binlog)
	if err != nil {
		return nil, err
	}
	t.version = v
	t.schemaRef = &record.SchemaRef{Subject: x.src.cfg.Name + "." + t.full, Version: v.Version}
	if v.Since == x.tx.position && v.Version > 1 {
		x.src.logger.Info("table definition changed; new schema version", "table", t.full, "version", v.Version)
	}
	return t, nil
}

func hasTextBlob(e *replication.TableMapEvent) bool {
	coll := e.CollationMap()
	for i, tp := range e.ColumnType {
		if tp == gomysql.MYSQL_TYPE_BLOB {
			if c, ok := coll[i]; ok && c != 63 {
				return true
			}
		}
	}
	return false
}

// liveColumns reads a table's definition from information_schema (cached
// until the table's next DDL). Errors leave it empty.
func (x *stream) liveColumns(db, name string) []liveColumn {
	full := db + "." + name
	if c, ok := x.live[full]; ok {
		return c
	}
	cols, err := readLiveColumns(x.conn, db, name, x.info.flavor)
	if err != nil {
		x.reconnectSQL()
		if cols, err = readLiveColumns(x.conn, db, name, x.info.flavor); err != nil {
			x.src.logger.Warn("cannot read the table definition from information_schema", "table", full, "err", err)
		}
	}
	x.live[full] = cols
	return cols
}

func readLiveColumns(conn sqlExecer, db, name, flavor string) ([]liveColumn, error) {
	res, err := conn.Execute(`SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY, COALESCE(CHARACTER_SET_NAME, '')
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, db, name)
	if err != nil {
		return nil, err
	}
	var out []liveColumn
	for i := range res.RowNumber() {
		var c liveColumn
		c.name, _ = resultString(res, i, 0)
		typ, _ := resultString(res, i, 1)
		key, _ := resultString(res, i, 2)
		c.charset, _ = resultString(res, i, 3)
		c.unsigned = containsFold(typ, "unsigned")
		c.pk = key == "PRI"
		c.labels = enumLabels(typ)
		out = append(out, c)
	}
	res.Close()
	if flavor == FlavorMariaDB {
		res, err := conn.Execute(`SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?`, db, name)
		if err == nil {
			for i := range res.RowNumber() {
				cn, _ := resultString(res, i, 0)
				clause, _ := resultString(res, i, 1)
				for j := range out {
					if out[j].name == cn && clause == "json_valid(`"+cn+"`)" {
						out[j].json = true
					}
				}
			}
			res.Close()
		}
	}
	return out, nil
}

// rows turns a rows event into records.
func (x *stream) rows(et replication.EventType, e *replication.RowsEvent) error {
	t, ok := x.tables[e.TableID]
	if !ok {
		return fmt.Errorf("rows event for table id %d before its table-map event", e.TableID)
	}
	if t.skip {
		return nil
	}
	if x.tx == nil {
		x.begin(txGTID{}, x.offset)
	}
	var op record.Op
	step := 1
	switch e.Type() {
	case replication.EnumRowsEventTypeInsert:
		op = record.OpInsert
	case replication.EnumRowsEventTypeUpdate:
		op, step = record.OpUpdate, 2
	case replication.EnumRowsEventTypeDelete:
		op = record.OpDelete
	default:
		return fmt.Errorf("table %s: rows event of unknown type %v", t.full, e.Type())
	}
	if u, ok := undecodedOf(e); ok {
		if t.native && nativeEvent(et) {
			err := x.images.decode(t, e, u.data, u.pos, step == 2)
			if err == nil {
				return x.nativeRows(t, op, step)
			}
			if errors.Is(err, errNoColumns) {
				return fmt.Errorf("table %s: decode a rows event: %w", t.full, err)
			}
		}
		if err := decodeRows(e); err != nil {
			return fmt.Errorf("table %s: decode a rows event: %w", t.full, err)
		}
	}
	for i := 0; i+step <= len(e.Rows); i += step {
		var before, after rowVals
		var err error
		switch op {
		case record.OpInsert:
			after, err = x.values(t, e.Rows[i], skipped(e, i))
		case record.OpDelete:
			before, err = x.values(t, e.Rows[i], skipped(e, i))
		case record.OpUpdate:
			if before, err = x.values(t, e.Rows[i], skipped(e, i)); err == nil {
				after, err = x.values(t, e.Rows[i+1], skipped(e, i+1))
			}
		}
		if err != nil {
			return fmt.Errorf("table %s: %w", t.full, err)
		}
		if t.context {
			if after != nil {
				x.tx.ctx = contextRow(t, after)
			}
			continue
		}
		if err := x.row(t, op, before, after); err != nil {
			return err
		}
	}
	return nil
}

func skipped(e *replication.RowsEvent, i int) []int {
	if i < len(e.SkippedColumns) {
		return e.SkippedColumns[i]
	}
	return nil
}

// values types one row image's values (see decode.go).
func (x *stream) values(t *table, row []any, skip []int) (rowVals, error) {
	if len(row) != len(t.cols) {
		return nil, fmt.Errorf("row of %d columns, table map of %d", len(row), len(t.cols))
	}
	out := make(rowVals, len(t.cols))
	buf := x.buf[:0]
	if cap(x.ends) < len(t.cols) {
		x.ends = make([]int, len(t.cols))
	}
	ends := x.ends[:len(t.cols)]
	for i, v := range row {
		if len(skip) > 0 && slices.Contains(skip, i) {
			ends[i] = -1
			continue
		}
		var err error
		if buf, err = appendValue(buf, &t.cols[i], v); err != nil {
			return nil, fmt.Errorf("column %s: %w", t.cols[i].name, err)
		}
		ends[i] = len(buf)
	}
	// The values own one copy of the buffer; the scratch is reused.
	owned := make([]byte, len(buf))
	copy(owned, buf)
	x.buf = buf
	split(out, owned, ends, 0)
	x.capValues(t, out)
	return out, nil
}

// split sets vals[i] to the value of buf ending at ends[i] (-1: none),
// the first starting at startAt and each next one where the one before
// ended; it returns where the last ended.
func split(vals rowVals, buf []byte, ends []int, startAt int) int {
	for i, end := range ends {
		if end < 0 {
			vals[i] = nil
			continue
		}
		vals[i] = buf[startAt:end:end]
		startAt = end
	}
	return startAt
}

// capValues replaces each value larger than MaxValueBytes by its size and
// SHA-256.
func (x *stream) capValues(t *table, vals rowVals) {
	max := x.src.cfg.MaxValueBytes
	for i, v := range vals {
		if len(v) > max {
			sum := sha256.Sum256(v)
			x.src.logger.Warn("value too large for a record; recorded as its size and SHA-256", "table", t.full, "column", t.cols[i].name, "bytes", len(v), "limit", max)
			vals[i] = json.RawMessage(fmt.Sprintf(`{"$too_large":{"bytes":%d,"sha256":"%x"}}`, len(v), sum))
		}
	}
}

// nativeRows adds the records of the rows x.images decoded. The images
// point into x.images' buffer, reused for the next event: row copies
// what it keeps.
func (x *stream) nativeRows(t *table, op record.Op, step int) error {
	n := len(t.cols)
	if cap(x.before) < n {
		x.before, x.after = make(rowVals, n), make(rowVals, n)
	}
	b, a := x.before[:n], x.after[:n]
	buf, ends := x.images.buf, x.images.ends
	// ends are offsets into the whole buffer: each image's first value
	// starts where the last image's ended.
	startAt := 0
	image := func(vals rowVals, k int) rowVals {
		startAt = split(vals, buf, ends[k*n:(k+1)*n], startAt)
		x.capValues(t, vals)
		return vals
	}
	for k := 0; (k+step)*n <= len(ends); k += step {
		var before, after rowVals
		switch op {
		case record.OpInsert:
			after = image(a, k)
		case record.OpDelete:
			before = image(b, k)
		case record.OpUpdate:
			before, after = image(b, k), image(a, k+1)
		}
		if err := x.row(t, op, before, after); err != nil {
			return err
		}
	}
	return nil
}

// row adds the record of one changed row.
func (x *stream) row(t *table, op record.Op, before, after rowVals) error {
	keySrc := after
	if keySrc == nil {
		keySrc = before
	}
	key, b, a, err := t.keyAndImages(keySrc, before, after)
	if err != nil {
		return fmt.Errorf("table %s: %w", t.full, err)
	}
	r := x.newRecord(len(key) + len(b) + len(a))
	*r = record.Record{
		Op: op, Source: x.source(t.db, t.name), Schema: t.schemaRef, Key: key,
		Before: b, After: a, Changed: t.changed(before, after),
		Actor: x.tx.stmt.actor, Cause: x.tx.stmt.cause,
	}
	return x.add(r)
}

// slabRecords is how many records one slab allocation holds, and
// slabMaxBytes the largest key and images a record taken from a slab may
// have: a record kept alive keeps its whole slab alive, and with it its
// neighbours' images, so those of large rows (a large transaction's,
// spilled to disk and dropped one by one) are allocated alone.
const (
	slabRecords  = 64
	slabMaxBytes = 1024
)

// newRecord returns a zero record for a change whose key and images take
// size bytes: from the stream's slab when small, one allocation for many
// records instead of one each (the record was the stream's largest
// allocation per change).
func (x *stream) newRecord(size int) *record.Record {
	if size > slabMaxBytes {
		return &record.Record{}
	}
	if len(x.slab) == 0 {
		x.slab = make([]record.Record, slabRecords)
	}
	r := &x.slab[0]
	x.slab = x.slab[1:]
	return r
}

// commit stamps the transaction's records and queues them; its position
// becomes durable once they are.
func (x *stream) commit(ctx context.Context, h *replication.EventHeader) error {
	tx := x.tx
	x.tx = nil
	pos := binlogPos{GTIDMode: x.gtidMode, File: x.file, Offset: x.offset}
	if tx != nil && x.gset != nil {
		if err := x.gset.add(tx.gtid); err != nil {
			return fmt.Errorf("transaction %s: %w", tx.position, err)
		}
	}
	if x.gset != nil {
		pos.GTID = x.gset.String()
	}
	if tx != nil {
		defer tx.buf.Discard()
		for _, t := range tx.relations {
			r, err := x.relationRecord(t)
			if err != nil {
				return err
			}
			if err := tx.buf.Add(r); err != nil {
				return fmt.Errorf("transaction %s: %w", tx.position, err)
			}
		}
	}
	if tx != nil && tx.buf.Len() > 0 {
		commitTime := tx.commit
		if commitTime.IsZero() {
			commitTime = time.Unix(int64(h.Timestamp), 0)
		}
		commitTime = commitTime.UTC()
		x.src.progress.Pending(commitTime)
		stamp := x.stamper(tx, commitTime)
		if tx.buf.Spilled() {
			// Everything before it must be durable first, to keep the
			// log in commit order; it then streams from its file.
			if err := x.flushPending(ctx); err != nil {
				return err
			}
			if err := x.app.Drain(ctx); err != nil {
				return err
			}
			err := tx.buf.Replay(x.src.cfg.BatchSize, func(batch []*record.Record) error {
				stamp(batch)
				// Joined per batch, see capture/postgres' appendTx.
				if batch = capture.JoinOutbox(batch, x.src.cfg.Outbox); len(batch) == 0 {
					return nil
				}
				return x.app.Append(ctx, batch)
			})
			if err != nil {
				return err
			}
			return x.app.Submit(ctx, nil, pos)
		}
		recs := tx.buf.Records()
		stamp(recs)
		x.pend = append(x.pend, capture.JoinOutbox(recs, x.src.cfg.Outbox)...)
	}
	x.pendPos = pos
	if !x.pendDirty {
		x.pendDirty, x.pendSince = true, time.Now()
	}
	return nil
}

// stamper returns a function that gives a committed transaction's records,
// in order, their actor, cause, tx and index, and so their ids.
func (x *stream) stamper(tx *txState, commitTime time.Time) func([]*record.Record) {
	actor := tx.ctx.actor
	if actor == nil {
		actor = unknownActor
	}
	next := int64(0)
	return func(recs []*record.Record) {
		txs := make([]record.Tx, len(recs))
		idxs := make([]int64, len(recs))
		for i, r := range recs {
			idxs[i] = next
			next++
			if r.Actor == nil {
				r.Actor = actor
			}
			if r.Cause == nil {
				r.Cause = tx.ctx.cause
			}
			txs[i] = record.Tx{ID: tx.gtid.text, Position: tx.position, Index: &idxs[i], CommitTime: &commitTime}
			r.Tx = &txs[i]
			r.OccurredAt = commitTime
			r.ID = x.ids.Derive(r)
		}
	}
}
