package dynamodb

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/smithy-go"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/record"
)

// tableStream is one captured table's stream and its shard graph.
type tableStream struct {
	table  string
	arn    string
	prefix string // of its shards' position-store keys
	// byName: the table was configured by name, so its latest stream is
	// followed when the stream is disabled and enabled again.
	byName bool
	// prev, when set, is the table's older stream, drained before any
	// shard of this one is read.
	prev   *tableStream
	listed bool
	shards map[string]*shard
}

func newTableStream(table, arn string, byName bool) *tableStream {
	return &tableStream{table: table, arn: arn, prefix: table + "/" + streamLabel(arn) + "/", byName: byName, shards: map[string]*shard{}}
}

// drained reports whether every shard of the stream is done.
func (ts *tableStream) drained() bool {
	if !ts.listed {
		return false
	}
	for _, sh := range ts.shards {
		if sh.status != statusDone {
			return false
		}
	}
	return true
}

type shardStatus int

const (
	// waiting: known, not to be read before its parent is done.
	statusWaiting shardStatus = iota
	// reading: in the schedule (or a call of it in flight).
	statusReading
	// done: drained, its last records handed to the log.
	statusDone
)

// shard is one shard of a stream. While a call of it is in flight only
// that call's goroutine touches iter, readSeq and horizon; the scheduler
// touches the rest, and those again once the call's result is back.
type shard struct {
	ts       *tableStream
	id       string
	parent   string
	key      string
	children []*shard
	closed   bool
	status   shardStatus

	readSeq string // the last sequence number handed to the log
	iter    string // the next shard iterator ("" : get one)
	horizon bool   // the next iterator is TRIM_HORIZON whatever readSeq says

	idle, backoff time.Duration
	failures      int
	lag           time.Duration
	lookedUp      bool // children asked for with CHILD_SHARDS
	forgotten     bool

	due  time.Time
	hidx int // index in the schedule heap, -1 when not in it
}

// gap is a range of a shard lost to the stream's retention.
type gap struct {
	after  string // the last sequence number held before it ("": none)
	reason string
}

type resultKind int

const (
	resultRecords resultKind = iota
	resultChildren
	resultListing
)

// result is what a call made on a worker goroutine hands back.
type result struct {
	kind resultKind
	sh   *shard
	err  error

	// resultRecords
	recs     []*record.Record
	page     int // stream records in the page, recorded or not
	lastSeq  string
	ended    bool
	gap      *gap
	newest   time.Time
	oldest   time.Time
	resumeAt string

	// resultChildren, resultListing
	ts      *tableStream
	shards  []types.Shard
	listing map[*tableStream][]types.Shard
	// newer are tables' latest streams found by a listing.
	newer []*tableStream
}

// scheduler reads every shard of the source's streams in parent-first
// order, on a heap of due times, with at most Concurrency calls in flight.
type scheduler struct {
	s        *Source
	st       *state
	ack      *capture.Acknowledger[capture.Positions]
	ddb      *dynamodb.Client
	streams  *dynamodbstreams.Client
	tables   []*tableStream
	sched    shardHeap
	results  chan result
	inflight int
	listing  bool
	// progressed: a page was read this session.
	progressed bool
}

// session resolves the streams, lists their shards and reads them until an
// error or ctx is done.
func (s *Source) session(ctx context.Context, sink capture.Sink, st *state) (bool, error) {
	ddb, streams, err := s.clients(ctx)
	if err != nil {
		return false, err
	}
	var tables []*tableStream
	for _, t := range s.cfg.Tables {
		ts, err := s.resolve(ctx, ddb, streams, t)
		if err != nil {
			return false, err
		}
		if old, ok := st.raw(streamKeyPrefix + ts.table); ok && ts.byName && old != ts.arn {
			// The stream was disabled and enabled again while Stele was
			// away: drain the one it followed first.
			prev := newTableStream(ts.table, old, true)
			ts.prev = prev
			tables = append(tables, prev)
			s.logger.Info("the table has a new stream; draining the previous one first", "table", ts.table, "previous", old, "latest", ts.arn)
		}
		tables = append(tables, ts)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ack := capture.NewAcknowledger(ctx, capture.AckOptions[capture.Positions]{
		Sink: sink, BatchSize: s.cfg.BatchSize, Progress: &s.progress,
		OnDurable: func(_ context.Context, p capture.Positions) error {
			st.setDurable(p)
			return nil
		},
	})
	defer ack.Stop()
	sc := &scheduler{s: s, st: st, ack: ack, ddb: ddb, streams: streams, tables: tables,
		results: make(chan result, s.cfg.Concurrency+2)}
	err = sc.run(ctx)
	cancel()
	for sc.inflight > 0 || sc.listing {
		if r := <-sc.results; r.kind == resultListing {
			sc.listing = false
		} else {
			sc.inflight--
		}
	}
	return sc.progressed, err
}

// resolve finds a table's stream and checks its view type.
func (s *Source) resolve(ctx context.Context, ddb *dynamodb.Client, streams *dynamodbstreams.Client, t string) (*tableStream, error) {
	if strings.HasPrefix(t, "arn:") {
		s.calls.describe.Add(1)
		out, err := streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(t), Limit: aws.Int32(1)})
		if err != nil {
			return nil, classify(err, "stream "+t)
		}
		d := out.StreamDescription
		if d.StreamViewType != types.StreamViewTypeNewAndOldImages && s.cfg.AllowPartialImages {
			s.logger.Warn("the stream lacks before or after images; records say which is missing (allow_partial_images)", "stream", t, "view_type", d.StreamViewType)
		} else if d.StreamViewType != types.StreamViewTypeNewAndOldImages {
			return nil, fmt.Errorf("%w: stream %s has view type %s, want NEW_AND_OLD_IMAGES (before and after images of every change); %s",
				ErrSetup, t, d.StreamViewType, enableFix(strOr(d.TableName, "TABLE")))
		}
		return newTableStream(strOr(d.TableName, ""), t, false), nil
	}
	out, err := ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(t)})
	if err != nil {
		return nil, classify(err, "table "+t)
	}
	spec := out.Table.StreamSpecification
	switch {
	case spec == nil || spec.StreamEnabled == nil || !*spec.StreamEnabled || out.Table.LatestStreamArn == nil:
		return nil, fmt.Errorf("%w: table %s has no stream enabled; %s", ErrSetup, t, enableFix(t))
	case spec.StreamViewType != ddbtypes.StreamViewTypeNewAndOldImages && s.cfg.AllowPartialImages:
		s.logger.Warn("the table's stream lacks before or after images; records say which is missing (allow_partial_images)", "table", t, "view_type", spec.StreamViewType)
	case spec.StreamViewType != ddbtypes.StreamViewTypeNewAndOldImages:
		return nil, fmt.Errorf("%w: table %s's stream has view type %s, want NEW_AND_OLD_IMAGES (before and after images of every change); disable the stream, then %s (or set allow_partial_images: true to capture without them)",
			ErrSetup, t, spec.StreamViewType, enableFix(t))
	}
	return newTableStream(t, *out.Table.LatestStreamArn, true), nil
}

func enableFix(table string) string {
	return fmt.Sprintf("enable it with: aws dynamodb update-table --table-name %s --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES", table)
}

// apiCode is the service's error code of err ("" for none).
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify maps the service's permanent errors to the package's
// sentinels; others are returned as they are (transient).
func classify(err error, what string) error {
	switch apiCode(err) {
	case "UnrecognizedClientException", "InvalidSignatureException", "MissingAuthenticationTokenException",
		"MissingAuthenticationToken", "IncompleteSignature", "InvalidClientTokenId", "ExpiredTokenException":
		return fmt.Errorf("%w: %s: %w; check the AWS credentials the source runs with (environment, shared config, role)", ErrAuth, what, err)
	case "AccessDeniedException":
		return fmt.Errorf("%w: %s: %w; the principal needs dynamodb:DescribeTable, dynamodb:DescribeStream, dynamodb:GetShardIterator and dynamodb:GetRecords", ErrAuth, what, err)
	case "ResourceNotFoundException":
		return fmt.Errorf("%w: %s: %w; check the name, the region and the endpoint", ErrNoTable, what, err)
	}
	return err
}

// throttled reports whether err is the service pushing back (or failing
// for a moment), as opposed to a client error.
func throttled(err error) bool {
	switch apiCode(err) {
	case "LimitExceededException", "ProvisionedThroughputExceededException", "ThrottlingException",
		"RequestLimitExceeded", "InternalServerError", "ServiceUnavailable", "TooManyRequestsException":
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() >= http.StatusInternalServerError
}

func (sc *scheduler) run(ctx context.Context) error {
	cfg := sc.s.cfg
	for _, ts := range sc.tables {
		if err := sc.start(ctx, ts); err != nil {
			return err
		}
	}
	sc.s.progress.SetState(capture.StateStreaming)
	listTick := time.NewTicker(cfg.ListInterval)
	defer listTick.Stop()
	saveTick := time.NewTicker(cfg.PositionInterval)
	defer saveTick.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		for sc.inflight < cfg.Concurrency && len(sc.sched) > 0 && !sc.sched[0].due.After(now) {
			sh := heap.Pop(&sc.sched).(*shard)
			sc.inflight++
			go func() { sc.results <- sc.read(ctx, sh) }()
		}
		var wait <-chan time.Time
		if len(sc.sched) > 0 && sc.inflight < cfg.Concurrency {
			timer.Reset(sc.sched[0].due.Sub(now))
			wait = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-sc.results:
			if r.kind == resultListing {
				sc.listing = false
			} else {
				sc.inflight--
			}
			if err := sc.handle(ctx, r); err != nil {
				return err
			}
		case <-wait:
		case <-listTick.C:
			if !sc.listing {
				sc.listing = true
				tables := slices.Clone(sc.tables)
				go func() { sc.results <- sc.listEvery(ctx, tables) }()
			}
		case <-saveTick.C:
			sc.save(ctx)
		}
		if err := sc.ack.Failed(); err != nil {
			return err
		}
	}
}

// start lists a stream's shards for the first time in the session. A
// previous stream of a table that is no longer there at all (more than
// 24 h after it was disabled) has no shards: what was not read of it is
// reported as gaps.
func (sc *scheduler) start(ctx context.Context, ts *tableStream) error {
	shards, err := sc.listAll(ctx, ts)
	if err != nil && !(ts.prev == nil && ts.byName && errors.Is(err, ErrNoTable) && sc.isPrev(ts)) {
		return err
	}
	if err := sc.merge(ctx, ts, shards, true); err != nil {
		return err
	}
	if ts.prev == nil && !sc.isPrev(ts) {
		if old, _ := sc.st.raw(streamKeyPrefix + ts.table); ts.byName && old != ts.arn {
			return sc.ack.Submit(ctx, nil, capture.Positions{streamKeyPrefix + ts.table: ts.arn})
		}
	}
	return sc.streamDrained(ctx, ts)
}

// isPrev reports whether ts is another stream's previous one.
func (sc *scheduler) isPrev(ts *tableStream) bool {
	for _, x := range sc.tables {
		if x.prev == ts {
			return true
		}
	}
	return false
}

// streamDrained moves on from a previous stream once it is drained: its
// successor's shards start, the successor becomes the table's stream, and
// the previous one's positions are forgotten.
func (sc *scheduler) streamDrained(ctx context.Context, prev *tableStream) error {
	if !prev.drained() {
		return nil
	}
	for _, ts := range sc.tables {
		if ts.prev != prev {
			continue
		}
		pos := capture.Positions{streamKeyPrefix + ts.table: ts.arn}
		for _, sh := range prev.shards {
			pos[sh.key] = shardPos{stateGone, sh.readSeq}.String()
		}
		for _, k := range sc.st.keys(prev.prefix) {
			if _, ok := pos[k]; !ok {
				pos[k] = stateGone + " "
			}
		}
		if err := sc.ack.Submit(ctx, nil, pos); err != nil {
			return err
		}
		sc.s.logger.Info("the previous stream of the table is drained; following its latest stream", "table", ts.table, "previous", prev.arn, "latest", ts.arn)
		ts.prev = nil
		sc.tables = slices.DeleteFunc(sc.tables, func(x *tableStream) bool { return x == prev })
		for _, sh := range ts.shards {
			sc.maybeStart(sh)
		}
	}
	return nil
}

// save saves the durable positions, forgetting every done shard whose
// children are all done, and publishes the figures.
func (sc *scheduler) save(ctx context.Context) {
	var forget []string
	open, done := 0, 0
	var lag time.Duration
	for _, ts := range sc.tables {
		for _, sh := range ts.shards {
			lag = max(lag, sh.lag)
			if sh.status != statusDone {
				open++
				continue
			}
			done++
			if sh.forgotten || len(sh.children) == 0 {
				continue
			}
			if p, ok := sc.st.get(sh.key); !ok || p.state != stateDone {
				continue
			}
			all := true
			for _, c := range sh.children {
				if p, ok := sc.st.get(c.key); c.status != statusDone || !c.forgotten && (!ok || p.state != stateDone) {
					all = false
					break
				}
			}
			if all {
				forget = append(forget, sh.key)
			}
		}
	}
	if err := sc.st.save(ctx, forget); err != nil {
		if ctx.Err() == nil {
			sc.s.logger.Error("saving the shard positions failed; a restart replays from the previous ones (nothing is stored twice)", "err", err)
		}
		return
	}
	for _, ts := range sc.tables {
		for _, k := range forget {
			if sh := ts.shards[strings.TrimPrefix(k, ts.prefix)]; sh != nil && sh.key == k {
				sh.forgotten = true
			}
		}
	}
	sc.s.lagNanos.Store(int64(lag))
	pos := fmt.Sprintf("%d shards: %d not done, %d done", open+done, open, done)
	sc.s.position.Store(&pos)
}

// schedule makes sh due after d.
func (sc *scheduler) schedule(sh *shard, d time.Duration) {
	sh.status = statusReading
	sh.due = time.Now().Add(d)
	if sh.hidx >= 0 {
		heap.Fix(&sc.sched, sh.hidx)
		return
	}
	heap.Push(&sc.sched, sh)
}

// merge adds listed shards to ts's graph, decides each new one's state
// from the stored positions, and schedules those whose parent is done.
// initial marks the first listing of a session: stored shards no longer in
// the stream then get a gap record (or are forgotten, when done).
func (sc *scheduler) merge(ctx context.Context, ts *tableStream, listed []types.Shard, initial bool) error {
	var added []*shard
	for _, l := range listed {
		id := strOr(l.ShardId, "")
		if id == "" {
			continue
		}
		sh := ts.shards[id]
		if sh == nil {
			sh = &shard{ts: ts, id: id, parent: strOr(l.ParentShardId, ""), key: shardKey(ts.prefix, id), hidx: -1, status: -1}
			ts.shards[id] = sh
			added = append(added, sh)
		}
		if l.SequenceNumberRange != nil && l.SequenceNumberRange.EndingSequenceNumber != nil {
			sh.closed = true
		}
	}
	for _, sh := range added {
		if p := ts.shards[sh.parent]; p != nil && !contains(p.children, sh) {
			p.children = append(p.children, sh)
		}
	}
	for _, sh := range added {
		sh.status = statusWaiting
		if p, ok := sc.st.get(sh.key); ok {
			sh.readSeq = p.seq
			if p.state == stateDone {
				sh.status = statusDone
			}
		} else if sc.storedDescendant(sh) {
			// Done and forgotten: its children were done before it was.
			sh.status = statusDone
			sh.forgotten = true
		}
	}
	if initial {
		ts.listed = true
		for _, k := range sc.st.keys(ts.prefix) {
			id := strings.TrimPrefix(k, ts.prefix)
			if ts.shards[id] != nil {
				continue
			}
			p, _ := sc.st.get(k)
			var recs []*record.Record
			if p.state != stateDone {
				g := &gap{after: p.seq, reason: "the shard is no longer in the stream: its records were trimmed (24 h retention) before Stele read them"}
				recs = append(recs, sc.gapRecord(ts, id, g, "", time.Now()))
				sc.s.gaps.Add(1)
				sc.s.logger.Warn("records lost to the stream's retention: a gap record names them", "table", ts.table, "shard", id, "after_sequence_number", p.seq)
			}
			if err := sc.ack.Submit(ctx, recs, capture.Positions{k: shardPos{stateGone, p.seq}.String()}); err != nil {
				return err
			}
		}
	}
	for _, sh := range ts.shards {
		sc.maybeStart(sh)
	}
	return nil
}

// storedDescendant reports whether a descendant of sh has a stored
// position.
func (sc *scheduler) storedDescendant(sh *shard) bool {
	for _, c := range sh.children {
		if _, ok := sc.st.get(c.key); ok || sc.storedDescendant(c) {
			return true
		}
	}
	return false
}

// maybeStart schedules a waiting shard whose parent is done (or not in the
// stream any more), once the table's previous stream is drained.
func (sc *scheduler) maybeStart(sh *shard) {
	if sh.status != statusWaiting || sh.ts.prev != nil {
		return
	}
	if p := sh.ts.shards[sh.parent]; p != nil && p.status != statusDone {
		return
	}
	sc.schedule(sh, 0)
}

func contains(list []*shard, sh *shard) bool {
	for _, x := range list {
		if x == sh {
			return true
		}
	}
	return false
}

// handle applies a call's result on the scheduler's goroutine.
func (sc *scheduler) handle(ctx context.Context, r result) error {
	cfg := sc.s.cfg
	switch r.kind {
	case resultListing:
		if r.err != nil {
			if permanent(r.err) {
				return r.err
			}
			sc.s.logger.Warn("listing the stream's shards failed; trying again at the next interval", "err", r.err)
			return nil
		}
		for ts, shards := range r.listing {
			if err := sc.merge(ctx, ts, shards, false); err != nil {
				return err
			}
		}
		for _, ts := range r.newer {
			sc.s.logger.Info("the table has a new stream; draining the previous one first", "table", ts.table, "previous", ts.prev.arn, "latest", ts.arn)
			sc.tables = append(sc.tables, ts)
			if err := sc.start(ctx, ts); err != nil {
				return err
			}
			if err := sc.streamDrained(ctx, ts.prev); err != nil {
				return err
			}
		}
		return nil
	case resultChildren:
		if r.err != nil {
			// The periodic listing finds the children all the same.
			sc.s.logger.Warn("asking for a closed shard's children failed; the next listing finds them", "shard", r.sh.id, "err", r.err)
			return nil
		}
		return sc.merge(ctx, r.ts, r.shards, false)
	}
	sh := r.sh
	if r.err != nil {
		if err := classify(r.err, "shard "+sh.id); permanent(err) {
			return err
		}
		sh.failures++
		if sh.failures >= cfg.MaxShardFailures {
			return fmt.Errorf("dynamodb source: table %s shard %s: %d failures in a row, the last: %w", sh.ts.table, sh.id, sh.failures, r.err)
		}
		sh.backoff = min(max(sh.backoff*2, cfg.MinBackoff), cfg.MaxBackoff)
		if throttled(r.err) {
			sc.s.logger.Debug("shard throttled; backing off", "table", sh.ts.table, "shard", sh.id, "wait", sh.backoff, "err", r.err)
		} else {
			sc.s.logger.Warn("reading a shard failed; backing off", "table", sh.ts.table, "shard", sh.id, "wait", sh.backoff, "err", r.err)
		}
		sc.schedule(sh, sh.backoff)
		return nil
	}
	sh.failures, sh.backoff = 0, 0
	sc.progressed = true
	if r.lastSeq != "" {
		sh.readSeq = r.lastSeq
	}
	recs := r.recs
	if r.gap != nil {
		sc.s.gaps.Add(1)
		sc.s.logger.Warn("records lost to the stream's retention: a gap record names them", "table", sh.ts.table, "shard", sh.id, "after_sequence_number", r.gap.after)
		recs = append([]*record.Record{sc.gapRecord(sh.ts, sh.id, r.gap, r.resumeAt, time.Now())}, recs...)
	}
	if r.page > 0 {
		sh.lag = max(0, time.Since(r.newest))
	} else {
		sh.lag = 0
	}
	state := stateOpen
	switch {
	case r.ended:
		state = stateDone
	case sh.closed:
		state = stateClosed
	}
	if len(recs) > 0 || r.page > 0 || r.ended {
		if !r.oldest.IsZero() {
			sc.s.progress.Pending(r.oldest)
		}
		if err := sc.ack.Submit(ctx, recs, capture.Positions{sh.key: shardPos{state, sh.readSeq}.String()}); err != nil {
			return err
		}
	}
	switch {
	case r.ended:
		sh.status = statusDone
		for _, c := range sh.children {
			sc.maybeStart(c)
		}
		if err := sc.streamDrained(ctx, sh.ts); err != nil {
			return err
		}
		if len(sh.children) == 0 && !sh.lookedUp {
			sh.lookedUp = true
			sc.inflight++
			go func() { sc.results <- sc.children(ctx, sh) }()
		}
	case r.page > 0 || sh.closed:
		// A closed shard has an end to reach, so even an empty page of
		// it is no reason to wait: draining closed shards fast is what
		// lets their children start.
		sh.idle = 0
		sc.schedule(sh, 0)
	default:
		sh.idle = min(max(sh.idle*2, cfg.PollMin), cfg.PollMax)
		sc.schedule(sh, sh.idle)
	}
	return nil
}

// gapRecord is the record of a range of a shard lost to the stream's
// retention. Its id derives from the shard and the last sequence number
// held, so a gap found again after a crash is stored once.
func (sc *scheduler) gapRecord(ts *tableStream, shardID string, g *gap, resumeAt string, now time.Time) *record.Record {
	after := map[string]any{
		"event": "gap", "stream_arn": ts.arn, "shard": shardID, "reason": g.reason,
		"after_sequence_number": nullable(g.after), "resumed_at_sequence_number": nullable(resumeAt),
	}
	js, _ := json.Marshal(after) // strings only
	key, _ := json.Marshal(map[string]string{"shard": shardID})
	idx := int64(0)
	r := &record.Record{
		Source: record.Source{Name: sc.s.cfg.Name, Kind: Kind, Table: ts.table},
		Op:     record.OpEvent, Key: key, After: js,
		Actor:      json.RawMessage(`{"id":"stele","type":"system"}`),
		Tx:         &record.Tx{Position: "gap/" + shardID + "/" + g.after, Index: &idx},
		OccurredAt: now.UTC(),
	}
	r.ID = record.DeriveID(r)
	return r
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// read is one step of a shard, on a worker goroutine: an iterator when it
// has none, then one GetRecords.
func (sc *scheduler) read(ctx context.Context, sh *shard) result {
	r := result{kind: resultRecords, sh: sh}
	for range 4 {
		if sh.iter == "" {
			it, g, err := sc.iterator(ctx, sh)
			if err != nil {
				r.err = err
				return r
			}
			if g != nil {
				r.gap = g
			}
			if it == "" {
				r.ended = true
				return r
			}
			sh.iter = it
		}
		sc.s.calls.records.Add(1)
		out, err := sc.streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: aws.String(sh.iter), Limit: aws.Int32(sc.s.cfg.PageLimit)})
		switch apiCode(err) {
		case "":
		case "ExpiredIteratorException":
			// Iterators live 15 minutes; carry on after the last
			// record read.
			sh.iter = ""
			continue
		case "TrimmedDataAccessException":
			sh.iter, sh.horizon = "", true
			r.gap = &gap{after: sh.readSeq, reason: "TrimmedDataAccessException: the records after this sequence number were trimmed (24 h retention) before Stele read them"}
			continue
		default:
			r.err = err
			return r
		}
		if err != nil {
			r.err = err
			return r
		}
		if err := sc.decodePage(sh, out.Records, &r); err != nil {
			r.err = capture.PermanentError(err)
			return r
		}
		if out.NextShardIterator == nil {
			sh.iter = ""
			r.ended = true
		} else {
			sh.iter = *out.NextShardIterator
		}
		return r
	}
	r.err = fmt.Errorf("shard %s: its iterator expired again and again", sh.id)
	return r
}

func (sc *scheduler) decodePage(sh *shard, page []types.Record, r *result) error {
	r.page = len(page)
	if len(page) == 0 {
		return nil
	}
	d := decoder{source: sc.s.cfg.Name, table: sh.ts.table, partial: sc.s.cfg.AllowPartialImages}
	r.recs = make([]*record.Record, 0, len(page))
	for i := range page {
		rec, err := d.decode(sh.id, &page[i])
		if err != nil {
			return fmt.Errorf("dynamodb source: table %s: %w", sh.ts.table, err)
		}
		if sr := page[i].Dynamodb; sr.ApproximateCreationDateTime != nil {
			t := *sr.ApproximateCreationDateTime
			if r.oldest.IsZero() || t.Before(r.oldest) {
				r.oldest = t
			}
			if t.After(r.newest) {
				r.newest = t
			}
		}
		r.lastSeq = *page[i].Dynamodb.SequenceNumber
		if rec != nil {
			r.recs = append(r.recs, rec)
		}
	}
	if r.gap != nil {
		r.resumeAt = *page[0].Dynamodb.SequenceNumber
	}
	return nil
}

// iterator gets sh a shard iterator after the last record read (from the
// trim horizon when none was read, or after a trim). A gap is returned
// when the records after readSeq are gone.
func (sc *scheduler) iterator(ctx context.Context, sh *shard) (string, *gap, error) {
	in := &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(sh.ts.arn), ShardId: aws.String(sh.id)}
	if sh.readSeq == "" || sh.horizon {
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	} else {
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.SequenceNumber = aws.String(sh.readSeq)
	}
	sc.s.calls.iterator.Add(1)
	out, err := sc.streams.GetShardIterator(ctx, in)
	var g *gap
	switch apiCode(err) {
	case "TrimmedDataAccessException":
		g = &gap{after: sh.readSeq, reason: "TrimmedDataAccessException: the records after this sequence number were trimmed (24 h retention) before Stele read them"}
		in.ShardIteratorType, in.SequenceNumber = types.ShardIteratorTypeTrimHorizon, nil
		sc.s.calls.iterator.Add(1)
		out, err = sc.streams.GetShardIterator(ctx, in)
	case "ResourceNotFoundException":
		// The shard left the stream: everything after readSeq is gone.
		return "", &gap{after: sh.readSeq, reason: "the shard is no longer in the stream: its records were trimmed (24 h retention) before Stele read them"}, nil
	}
	if err != nil {
		return "", nil, err
	}
	sh.horizon = false
	return strOr(out.ShardIterator, ""), g, nil
}

// children asks for a closed shard's children, on a worker goroutine.
func (sc *scheduler) children(ctx context.Context, sh *shard) result {
	r := result{kind: resultChildren, sh: sh, ts: sh.ts}
	sc.paceDescribe(ctx)
	sc.s.calls.describe.Add(1)
	out, err := sc.streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{
		StreamArn:   aws.String(sh.ts.arn),
		ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeChildShards, ShardId: aws.String(sh.id)},
	})
	if err != nil {
		r.err = err
		return r
	}
	r.shards = out.StreamDescription.Shards
	return r
}

// listEvery lists every stream's shards, and asks each table captured by
// name for its latest stream, on a worker goroutine. It reads only what
// the scheduler does not change while a listing is in flight (the tables'
// names and ARNs).
func (sc *scheduler) listEvery(ctx context.Context, tables []*tableStream) result {
	r := result{kind: resultListing, listing: map[*tableStream][]types.Shard{}}
	arns := map[string]bool{}
	for _, ts := range tables {
		arns[ts.arn] = true
	}
	for _, ts := range tables {
		shards, err := sc.listAll(ctx, ts)
		if err != nil {
			r.err = err
			return r
		}
		r.listing[ts] = shards
		if !ts.byName {
			continue
		}
		out, err := sc.ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(ts.table)})
		if err != nil {
			r.err = classify(err, "table "+ts.table)
			return r
		}
		if latest := strOr(out.Table.LatestStreamArn, ""); latest != "" && !arns[latest] {
			arns[latest] = true
			next := newTableStream(ts.table, latest, true)
			next.prev = ts
			r.newer = append(r.newer, next)
		}
	}
	return r
}

// listAll lists every shard of ts's stream, page after page.
func (sc *scheduler) listAll(ctx context.Context, ts *tableStream) ([]types.Shard, error) {
	var out []types.Shard
	var start *string
	throttles := 0
	for {
		sc.paceDescribe(ctx)
		sc.s.calls.describe.Add(1)
		resp, err := sc.streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{
			StreamArn: aws.String(ts.arn), Limit: aws.Int32(100), ExclusiveStartShardId: start,
		})
		if err != nil {
			if throttled(err) && throttles < sc.s.cfg.MaxShardFailures {
				throttles++
				if err := sleep(ctx, min(sc.s.cfg.MinBackoff<<throttles, sc.s.cfg.MaxBackoff)); err != nil {
					return nil, err
				}
				continue
			}
			return nil, classify(err, "stream of table "+ts.table)
		}
		d := resp.StreamDescription
		out = append(out, d.Shards...)
		if d.LastEvaluatedShardId == nil {
			return out, nil
		}
		start = d.LastEvaluatedShardId
	}
}

// paceDescribe keeps DescribeStream within its documented 10 calls per
// second. Only the scheduler's listing goroutine and child lookups call
// it; a racy read costs at most one early call, which throttling covers.
func (sc *scheduler) paceDescribe(ctx context.Context) {
	every := sc.s.cfg.DescribeInterval
	if every <= 0 {
		return
	}
	if wait := time.Until(sc.lastDescribe().Add(every)); wait > 0 {
		_ = sleep(ctx, wait)
	}
	sc.s.descMu.Lock()
	sc.s.lastDesc = time.Now()
	sc.s.descMu.Unlock()
}

func (sc *scheduler) lastDescribe() time.Time {
	sc.s.descMu.Lock()
	defer sc.s.descMu.Unlock()
	return sc.s.lastDesc
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// shardHeap orders shards by due time.
type shardHeap []*shard

func (h shardHeap) Len() int           { return len(h) }
func (h shardHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h shardHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *shardHeap) Push(x any) {
	sh := x.(*shard)
	sh.hidx = len(*h)
	*h = append(*h, sh)
}
func (h *shardHeap) Pop() any {
	old := *h
	sh := old[len(old)-1]
	old[len(old)-1] = nil
	sh.hidx = -1
	*h = old[:len(old)-1]
	return sh
}
