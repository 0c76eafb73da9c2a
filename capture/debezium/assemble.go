package debezium

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"unicode/utf8"

	"github.com/stele/stele/record"
)

// Assembler puts transactions back together from Debezium's transaction
// metadata: the change events of one transaction arrive on the topics of
// their tables (possibly interleaved with other transactions', possibly
// before or after its END on the metadata topic), and the END says how many
// there are. Only once all of them are there is the transaction whole; then
// its records are released together, in total_order, so the log holds
// either all of a transaction or none of it. R is what the transport needs
// to acknowledge a message later (a Kafka partition and offset, a JetStream
// message); the assembler only carries it.
//
// A change without a transaction block is released at once. Not safe for
// concurrent use.
type Assembler[R any] struct {
	txs map[string]*pendingTx[R]
	// done remembers the last completed transactions, so a message of
	// one of them read again (Debezium re-sending after its own crash) is
	// released at once instead of opening a transaction that never ends.
	done     map[string]bool
	doneRing []string
	doneNext int
}

// rememberDone bounds how many completed transaction ids are kept.
const rememberDone = 4096

func (a *Assembler[R]) finished(id string) {
	if a.done == nil {
		a.done = map[string]bool{}
		a.doneRing = make([]string, rememberDone)
	}
	if old := a.doneRing[a.doneNext]; old != "" {
		delete(a.done, old)
	}
	a.doneRing[a.doneNext] = id
	a.doneNext = (a.doneNext + 1) % rememberDone
	a.done[id] = true
}

type pendingTx[R any] struct {
	recs []*record.Record
	// seen holds the places (total_order) of the events that arrived.
	seen map[int64]bool
	refs []R
	want int64 // -1 until the END arrived
}

// Done is what a completed transaction releases: its records in order and
// the references of every message that made it up.
type Done[R any] struct {
	Records []*record.Record
	Refs    []R
}

func (a *Assembler[R]) tx(id string) *pendingTx[R] {
	if a.txs == nil {
		a.txs = map[string]*pendingTx[R]{}
	}
	p := a.txs[id]
	if p == nil {
		p = &pendingTx[R]{seen: map[int64]bool{}, want: -1}
		a.txs[id] = p
	}
	return p
}

// Add takes one decoded event (a change or a TxEnd; anything else is
// released as nothing) and returns what it completes.
func (a *Assembler[R]) Add(ev Event, ref R) (Done[R], bool) {
	switch {
	case ev.Kind == Change && (ev.TxID == "" || a.done[ev.TxID]):
		return Done[R]{Records: []*record.Record{ev.Record}, Refs: []R{ref}}, true
	case ev.Kind == Change:
		p := a.tx(ev.TxID)
		p.refs = append(p.refs, ref)
		// Debezium re-sending a change after its own crash: same place
		// in the transaction, counted once. By place, not id: two events
		// may share an id (equal key-less rows of one multi-row WAL
		// record under change ids) and must both count, or the
		// transaction would never be whole.
		if i := *ev.Record.Tx.Index; !p.seen[i] {
			p.seen[i] = true
			p.recs = append(p.recs, ev.Record)
		}
		return a.complete(ev.TxID, p)
	case ev.Kind == TxEnd && a.done[ev.TxID]:
		return Done[R]{Refs: []R{ref}}, true
	case ev.Kind == TxEnd:
		p := a.tx(ev.TxID)
		p.refs = append(p.refs, ref)
		p.want = ev.EventCount
		return a.complete(ev.TxID, p)
	}
	return Done[R]{Refs: []R{ref}}, true
}

func (a *Assembler[R]) complete(id string, p *pendingTx[R]) (Done[R], bool) {
	if p.want < 0 || int64(len(p.recs)) < p.want {
		return Done[R]{}, false
	}
	delete(a.txs, id)
	a.finished(id)
	slices.SortFunc(p.recs, func(x, y *record.Record) int {
		return cmp.Compare(*x.Tx.Index, *y.Tx.Index)
	})
	return Done[R]{Records: p.recs, Refs: p.refs}, true
}

// Held calls fn with the reference of every message held in an incomplete
// transaction (a transport must not acknowledge past them).
func (a *Assembler[R]) Held(fn func(R)) {
	for _, p := range a.txs {
		for _, r := range p.refs {
			fn(r)
		}
	}
}

// Pending is the number of incomplete transactions.
func (a *Assembler[R]) Pending() int { return len(a.txs) }

// Reset drops every incomplete transaction (their messages are sent again
// after a reconnect, since nothing acknowledged them).
func (a *Assembler[R]) Reset() { a.txs = nil }

// DeadLetter is the record a message that is no Debezium event becomes in
// the dead letters: it names where the message was (transport, e.g. "kafka
// orders.public.items/2/1234") and keeps its key and value (as text when
// they are UTF-8, else base64), so an operator can see and replay it. The
// dead-letter store seals it, since a message may hold personal data.
func DeadLetter(sourceName, transport, where string, key, value []byte, err error) (*record.Record, *record.FieldError) {
	fe := &record.FieldError{Field: "value", Reason: err.Error()}
	var de *Error
	if errors.As(err, &de) {
		fe = &record.FieldError{Field: de.Field, Reason: de.Reason}
	}
	k, _ := json.Marshal(map[string]string{"message": where})
	body := map[string]string{"transport": transport}
	for name, b := range map[string][]byte{"key": key, "value": value} {
		if utf8.Valid(b) {
			body[name] = string(b)
		} else {
			body[name+"_base64"] = base64.StdEncoding.EncodeToString(b)
		}
	}
	after, _ := json.Marshal(body)
	zero := int64(0)
	r := &record.Record{
		Source: record.Source{Name: sourceName, Kind: "debezium", Table: "$malformed"},
		Op:     record.OpEvent,
		Key:    k,
		After:  after,
		Tx:     &record.Tx{Position: transport + " " + where, Index: &zero},
	}
	r.ID = record.DeriveID(r)
	return r, fe
}
