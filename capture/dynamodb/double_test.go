package dynamodb

// TEST DOUBLE. streamsDouble is an in-process DynamoDB Streams endpoint of
// our own, for the behaviour DynamoDB Local does not show: shard splits
// with parent/child lineage, thousands of shards, iterators that expire
// after 15 minutes, records trimmed after 24 hours, throttling. It speaks
// the service's JSON 1.0 protocol over a real httptest server, so the
// source under test runs the real AWS SDK against it; its clock is a
// field the test moves. It is not DynamoDB: only what the source calls
// (DescribeStream, GetShardIterator, GetRecords) exists, and the rules
// are the documented ones, written down below.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	doubleARN       = "arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/2026-01-01T00:00:00.000"
	doubleTable     = "Orders"
	doublePrefix    = doubleTable + "/2026-01-01T00:00:00.000/"
	iteratorTTL     = 15 * time.Minute
	streamRetention = 24 * time.Hour
)

type streamsDouble struct {
	srv *httptest.Server

	mu  sync.Mutex
	now time.Time
	seq int64
	// streams are the table's streams, the latest last; shards and byID
	// are the latest's.
	streams []*dStream
	shards  []*dShard // in creation order, the listing's order
	byID    map[string]*dShard
	iters   map[string]dIter
	calls   map[string]int            // by operation
	byShard map[string]map[string]int // shard → operation → calls
	errors  map[string]int            // error code → responses
	// events is the order of what the source did to shards: "iter <id>"
	// (its first iterator) and "end <id>" (a page without a next iterator).
	events []string
	// throttleEvery, when > 0, answers every n-th call of an operation
	// with LimitExceededException.
	throttleEvery int
}

type dStream struct {
	arn      string
	disabled bool
	shards   []*dShard
	byID     map[string]*dShard
}

type dShard struct {
	id, parent string
	recs       []dRec
	closed     bool
	closedAt   time.Time
	iterated   bool
}

type dRec struct {
	seq int64
	at  time.Time
	js  map[string]any
}

type dIter struct {
	arn    string
	shard  string
	pos    int
	issued time.Time
}

func newStreamsDouble(t *testing.T) *streamsDouble {
	d := &streamsDouble{
		now:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		iters: map[string]dIter{},
		calls: map[string]int{}, byShard: map[string]map[string]int{}, errors: map[string]int{},
	}
	d.streams = []*dStream{{arn: doubleARN, byID: map[string]*dShard{}}}
	d.byID = d.streams[0].byID
	d.srv = httptest.NewServer(d)
	t.Cleanup(d.srv.Close)
	return d
}

// advance moves the double's clock.
func (d *streamsDouble) advance(by time.Duration) {
	d.mu.Lock()
	d.now = d.now.Add(by)
	d.mu.Unlock()
}

// addShard adds an open shard (parent "" for a root).
func (d *streamsDouble) addShard(id, parent string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sh := &dShard{id: id, parent: parent}
	cur := d.streams[len(d.streams)-1]
	cur.shards = append(cur.shards, sh)
	cur.byID[id] = sh
	d.shards = cur.shards
}

// reenable disables the latest stream (its shards close) and enables a
// new one under arn, with no shards yet.
func (d *streamsDouble) reenable(arn string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.streams[len(d.streams)-1]
	cur.disabled = true
	for _, sh := range cur.shards {
		if !sh.closed {
			sh.closed, sh.closedAt = true, d.now
		}
	}
	next := &dStream{arn: arn, byID: map[string]*dShard{}}
	d.streams = append(d.streams, next)
	d.shards, d.byID = nil, next.byID
}

// stream returns the stream of arn (nil: none).
func (d *streamsDouble) stream(arn string) *dStream {
	for _, st := range d.streams {
		if st.arn == arn {
			return st
		}
	}
	return nil
}

// split closes a shard and opens its children.
func (d *streamsDouble) split(parent string, children ...string) {
	d.mu.Lock()
	p := d.byID[parent]
	p.closed, p.closedAt = true, d.now
	d.mu.Unlock()
	for _, c := range children {
		d.addShard(c, parent)
	}
}

// leaf is the open shard that key k's writes go to, starting from root:
// down the children, by k.
func (d *streamsDouble) leaf(root string, k int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := root
	for {
		sh := d.byID[id]
		if !sh.closed {
			return id
		}
		var kids []string
		for _, c := range d.shards {
			if c.parent == id {
				kids = append(kids, c.id)
			}
		}
		id = kids[k%len(kids)]
	}
}

// put appends a stream record of key k to shard: op INSERT, MODIFY or
// REMOVE; oldV and newV the item's v before and after ("" for none);
// ttl marks a Time to Live deletion.
func (d *streamsDouble) put(shard string, op string, k int, oldV, newV string, ttl bool) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	sh := d.byID[shard]
	if sh.closed {
		panic("put to closed shard " + shard)
	}
	d.seq++
	seq := fmt.Sprintf("%021d", d.seq)
	key := map[string]any{"id": map[string]any{"N": fmt.Sprint(k)}}
	image := func(v string) map[string]any {
		return map[string]any{"id": map[string]any{"N": fmt.Sprint(k)}, "v": map[string]any{"S": v}}
	}
	sr := map[string]any{
		"ApproximateCreationDateTime": float64(d.now.UnixMilli()) / 1000,
		"Keys":                        key, "SequenceNumber": seq, "SizeBytes": 40, "StreamViewType": "NEW_AND_OLD_IMAGES",
	}
	if oldV != "" {
		sr["OldImage"] = image(oldV)
	}
	if newV != "" {
		sr["NewImage"] = image(newV)
	}
	js := map[string]any{"eventID": "ev" + seq, "eventName": op, "eventSource": "aws:dynamodb", "eventVersion": "1.1", "awsRegion": "us-east-1", "dynamodb": sr}
	if ttl {
		js["userIdentity"] = map[string]any{"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
	}
	sh.recs = append(sh.recs, dRec{seq: d.seq, at: d.now, js: js})
	return seq
}

// callsOf returns the calls of op made so far.
func (d *streamsDouble) callsOf(op string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[op]
}

func (d *streamsDouble) errorsOf(code string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.errors[code]
}

func (d *streamsDouble) eventLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.events...)
}

// shardCalls returns a copy of the calls per shard.
func (d *streamsDouble) shardCalls() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for id, ops := range d.byShard {
		for _, n := range ops {
			out[id] += n
		}
	}
	return out
}

// trimmed: a record older than the retention is gone.
func (d *streamsDouble) trimmed(r dRec) bool { return d.now.Sub(r.at) > streamRetention }

// listed: a closed shard whose every record is trimmed, closed longer
// ago than the retention, is no longer in the stream.
func (d *streamsDouble) listed(sh *dShard) bool {
	if !sh.closed || d.now.Sub(sh.closedAt) <= streamRetention {
		return true
	}
	for _, r := range sh.recs {
		if !d.trimmed(r) {
			return true
		}
	}
	return false
}

type apiErr struct{ code, msg string }

func (d *streamsDouble) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	target := req.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "DynamoDBStreams_20120810.")
	if !ok {
		op, ok = strings.CutPrefix(target, "DynamoDB_20120810.")
		ok = ok && op == "DescribeTable"
	}
	body, _ := io.ReadAll(req.Body)
	var in map[string]any
	if !ok || json.Unmarshal(body, &in) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	d.calls[op]++
	n := d.calls[op]
	var out any
	var e *apiErr
	if d.throttleEvery > 0 && n%d.throttleEvery == 0 {
		e = &apiErr{"LimitExceededException", "Rate exceeded for shard"}
	} else {
		switch op {
		case "DescribeStream":
			out, e = d.describe(in)
		case "GetShardIterator":
			out, e = d.getIterator(in)
		case "GetRecords":
			out, e = d.getRecords(in)
		case "DescribeTable":
			out, e = d.describeTable(in)
		default:
			e = &apiErr{"UnknownOperationException", op}
		}
	}
	if e != nil {
		d.errors[e.code]++
	}
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	if e != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.dynamodb.v20120810#" + e.code, "message": e.msg})
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (d *streamsDouble) count(shard, op string) {
	if d.byShard[shard] == nil {
		d.byShard[shard] = map[string]int{}
	}
	d.byShard[shard][op]++
}

func str(in map[string]any, k string) string { s, _ := in[k].(string); return s }

func (d *streamsDouble) describeTable(in map[string]any) (any, *apiErr) {
	if str(in, "TableName") != doubleTable {
		return nil, &apiErr{"ResourceNotFoundException", "Requested resource not found: Table: " + str(in, "TableName") + " not found"}
	}
	return map[string]any{"Table": map[string]any{
		"TableName": doubleTable, "TableStatus": "ACTIVE",
		"KeySchema":            []map[string]any{{"AttributeName": "id", "KeyType": "HASH"}},
		"AttributeDefinitions": []map[string]any{{"AttributeName": "id", "AttributeType": "N"}},
		"StreamSpecification":  map[string]any{"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"},
		"LatestStreamArn":      d.streams[len(d.streams)-1].arn,
		"LatestStreamLabel":    streamLabel(d.streams[len(d.streams)-1].arn),
	}}, nil
}

func (d *streamsDouble) describe(in map[string]any) (any, *apiErr) {
	st := d.stream(str(in, "StreamArn"))
	if st == nil {
		return nil, &apiErr{"ResourceNotFoundException", "Requested resource not found: Stream: " + str(in, "StreamArn") + " not found"}
	}
	limit := 100
	if l, ok := in["Limit"].(float64); ok && l >= 1 && l <= 100 {
		limit = int(l)
	}
	var shards []*dShard
	if f, ok := in["ShardFilter"].(map[string]any); ok {
		if str(f, "Type") != "CHILD_SHARDS" {
			return nil, &apiErr{"ValidationException", "ShardFilter type"}
		}
		for _, sh := range st.shards {
			if sh.parent == str(f, "ShardId") && d.listed(sh) {
				shards = append(shards, sh)
			}
		}
		d.count(str(f, "ShardId"), "DescribeStream")
	} else {
		start := str(in, "ExclusiveStartShardId")
		past := start == ""
		for _, sh := range st.shards {
			if !past {
				past = sh.id == start
				continue
			}
			if d.listed(sh) {
				shards = append(shards, sh)
			}
		}
	}
	var last string
	if len(shards) > limit {
		shards = shards[:limit]
		last = shards[limit-1].id
	}
	list := make([]map[string]any, 0, len(shards))
	for _, sh := range shards {
		m := map[string]any{"ShardId": sh.id}
		if sh.parent != "" {
			m["ParentShardId"] = sh.parent
		}
		rng := map[string]any{"StartingSequenceNumber": "0"}
		if len(sh.recs) > 0 {
			rng["StartingSequenceNumber"] = fmt.Sprintf("%021d", sh.recs[0].seq)
		}
		if sh.closed {
			end := "0"
			if len(sh.recs) > 0 {
				end = fmt.Sprintf("%021d", sh.recs[len(sh.recs)-1].seq)
			}
			rng["EndingSequenceNumber"] = end
		}
		m["SequenceNumberRange"] = rng
		list = append(list, m)
	}
	status := "ENABLED"
	if st.disabled {
		status = "DISABLED"
	}
	desc := map[string]any{
		"StreamArn": st.arn, "StreamLabel": streamLabel(st.arn), "StreamStatus": status,
		"StreamViewType": "NEW_AND_OLD_IMAGES", "TableName": doubleTable,
		"KeySchema": []map[string]any{{"AttributeName": "id", "KeyType": "HASH"}},
		"Shards":    list,
	}
	if last != "" {
		desc["LastEvaluatedShardId"] = last
	}
	return map[string]any{"StreamDescription": desc}, nil
}

func (d *streamsDouble) newIter(arn, shard string, pos int) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	tok := "it-" + hex.EncodeToString(b[:])
	d.iters[tok] = dIter{arn: arn, shard: shard, pos: pos, issued: d.now}
	return tok
}

func (d *streamsDouble) getIterator(in map[string]any) (any, *apiErr) {
	st := d.stream(str(in, "StreamArn"))
	var sh *dShard
	if st != nil {
		sh = st.byID[str(in, "ShardId")]
	}
	if sh == nil || !d.listed(sh) {
		return nil, &apiErr{"ResourceNotFoundException", "Requested resource not found: Shard does not exist"}
	}
	d.count(sh.id, "GetShardIterator")
	if !sh.iterated {
		sh.iterated = true
		d.events = append(d.events, "iter "+sh.id)
	}
	first := 0 // the trim horizon
	for first < len(sh.recs) && d.trimmed(sh.recs[first]) {
		first++
	}
	pos := first
	switch typ := str(in, "ShardIteratorType"); typ {
	case "TRIM_HORIZON":
	case "LATEST":
		pos = len(sh.recs)
	case "AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER":
		var after int64
		if _, err := fmt.Sscan(strings.TrimLeft(str(in, "SequenceNumber"), "0"), &after); err != nil && str(in, "SequenceNumber") != "" {
			return nil, &apiErr{"ValidationException", "bad SequenceNumber"}
		}
		if typ == "AT_SEQUENCE_NUMBER" {
			after--
		}
		pos = 0
		for pos < len(sh.recs) && sh.recs[pos].seq <= after {
			pos++
		}
		if pos < first {
			return nil, &apiErr{"TrimmedDataAccessException", "The requested sequence number is beyond the trim horizon"}
		}
	default:
		return nil, &apiErr{"ValidationException", "ShardIteratorType " + typ}
	}
	return map[string]any{"ShardIterator": d.newIter(st.arn, sh.id, pos)}, nil
}

func (d *streamsDouble) getRecords(in map[string]any) (any, *apiErr) {
	it, ok := d.iters[str(in, "ShardIterator")]
	if !ok {
		return nil, &apiErr{"ValidationException", "Invalid ShardIterator"}
	}
	d.count(it.shard, "GetRecords")
	if d.now.Sub(it.issued) > iteratorTTL {
		return nil, &apiErr{"ExpiredIteratorException", "Iterator expired. The iterator was created at time " + it.issued.String()}
	}
	sh := d.stream(it.arn).byID[it.shard]
	if it.pos < len(sh.recs) && d.trimmed(sh.recs[it.pos]) {
		return nil, &apiErr{"TrimmedDataAccessException", "The operation attempted to read past the oldest stream record in a shard"}
	}
	limit := 1000
	if l, ok := in["Limit"].(float64); ok && l >= 1 && l <= 1000 {
		limit = int(l)
	}
	end := min(len(sh.recs), it.pos+limit)
	recs := make([]map[string]any, 0, end-it.pos)
	for _, r := range sh.recs[it.pos:end] {
		recs = append(recs, r.js)
	}
	out := map[string]any{"Records": recs}
	if sh.closed && end == len(sh.recs) {
		d.events = append(d.events, "end "+sh.id)
	} else {
		out["NextShardIterator"] = d.newIter(it.arn, sh.id, end)
	}
	return out, nil
}
