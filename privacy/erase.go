package privacy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/auth"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
)

// Log is what erasure, retention and access logging need from the log.
type Log interface {
	Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error)
	Size() uint64
	WaitIndexed(ctx context.Context, n uint64) error
	Checkpoint(ctx context.Context) (*stele.Checkpoint, error)
	// Signer signs receipts with the log's checkpoint key, so a receipt is
	// checked with the verifier key auditors already hold.
	Signer() note.Signer
}

// SubjectCounter is what erasure needs from the index.
type SubjectCounter interface {
	SubjectCount(subject string) (uint64, error)
}

// The source of the records Stele writes about itself.
const (
	SystemSource   = "stele"
	ErasuresTable  = "erasures"
	AccessTable    = "access"
	AdminTable     = "admin"
	receiptVersion = 1
)

// ErrUnknownGroup: erasure named a data group no schema declares.
var ErrUnknownGroup = errors.New("no schema declares this data group")

// Ledger performs erasures and retention and records them, and every clear
// read of personal data, in the log itself.
type Ledger struct {
	g      *Guard
	log    Log
	ix     SubjectCounter
	copies []CopyPurger
}

// NewLedger ties a Guard to the log and index it erases from.
func NewLedger(g *Guard, l Log, ix SubjectCounter) *Ledger { return &Ledger{g: g, log: l, ix: ix} }

// CopyPurger removes a store's copies of records naming erased subjects
// (keyed subject names): copies the system keeps outside the log, not
// sealed under the subjects' keys, such as parked dead letters.
type CopyPurger interface {
	PurgeSubjects(ctx context.Context, subjects []string) (int, error)
}

// PurgeCopiesWith makes every later erasure also purge p's copies. Call it
// before the ledger is in use.
func (l *Ledger) PurgeCopiesWith(p CopyPurger) { l.copies = append(l.copies, p) }

// EraseRequest names a data subject to erase.
type EraseRequest struct {
	// Subject is the value of the subject field (a customer id, an email).
	Subject string
	// Group restricts erasure to one data group; empty means every group
	// any schema declares.
	Group string
	By    auth.Principal
	// Reason is free text for the receipt (e.g. a ticket number); it must
	// not be personal data.
	Reason string
}

// Receipt is the proof of an erasure or a retention shredding, appended to
// the log and signed with the log's key.
type Receipt struct {
	Version       int               `json:"version"`
	Type          string            `json:"type"` // "erasure" or "retention"
	ID            string            `json:"id"`
	At            time.Time         `json:"at"`
	RequestedBy   *auth.Principal   `json:"requested_by,omitempty"`
	Reason        string            `json:"reason,omitempty"`
	Subjects      []SubjectRef      `json:"subjects,omitempty"`
	Period        string            `json:"period,omitempty"`
	Records       *uint64           `json:"records,omitempty"`
	KeysDestroyed int               `json:"keys_destroyed"`
	CopiesRemoved int               `json:"copies_removed,omitempty"` // parked dead letters removed
	Checkpoint    ReceiptCheckpoint `json:"checkpoint"`
}

// SubjectRef names an erased subject by its keyed pseudonym, never by the
// value: the receipt lives forever in the log.
type SubjectRef struct {
	Group string `json:"group"`
	Ref   string `json:"ref"`
}

// ReceiptCheckpoint is the log's signed state when the keys were destroyed.
type ReceiptCheckpoint struct {
	Size uint64 `json:"size"`
	Root string `json:"root"`
	Note string `json:"note"`
}

// ReceiptResult is what an erasure returns.
type ReceiptResult struct {
	Seq     uint64  `json:"seq"`
	Receipt Receipt `json:"receipt"`
	// Signed is the receipt as a signed note (verifiable with the log's
	// verifier key); it is also stored in the receipt record.
	Signed string `json:"signed"`
}

// groupsOf lists the data groups with a subject field across all schemas.
func (g *Guard) groupsOf() []string {
	var out []string
	for _, subj := range g.schemas.Subjects() {
		s, err := g.schemas.Latest(subj)
		if err != nil {
			continue
		}
		for _, gr := range s.Groups {
			if len(gr.SubjectField) > 0 && !slices.Contains(out, gr.Name) {
				out = append(out, gr.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Erase destroys a data subject's keys — in one group or in all — and
// appends a signed receipt. Its cost depends on the keystore shard, not on
// how many records name the subject. Retrying after a failure is safe: keys
// already gone stay gone, and the receipt is appended again.
func (l *Ledger) Erase(ctx context.Context, req EraseRequest) (*ReceiptResult, error) {
	if req.Subject == "" {
		return nil, &record.FieldError{Field: "subject", Reason: "is empty"}
	}
	groups := l.g.groupsOf()
	if req.Group != "" {
		if !slices.Contains(groups, req.Group) {
			return nil, fmt.Errorf("group %q: %w", req.Group, ErrUnknownGroup)
		}
		groups = []string{req.Group}
	}
	// The receipt cites a checkpoint, whose fsyncs can cost more than the
	// rest of the erasure: issue it now, alongside.
	early := l.earlyCheckpoint(ctx)
	defer early() // nothing left running
	// Count against an index that covers everything already acknowledged.
	if err := l.log.WaitIndexed(ctx, l.log.Size()); err != nil {
		return nil, fmt.Errorf("erase: wait for the index: %w", err)
	}
	var refs []SubjectRef
	var names, allNames []string
	var records uint64
	destroyed := 0
	for _, group := range groups {
		name := l.g.subjectName(group, req.Subject)
		allNames = append(allNames, name)
		n, err := l.ix.SubjectCount(name)
		if err != nil {
			return nil, fmt.Errorf("erase: %w", err)
		}
		kids, err := l.g.keys.Destroy(ctx, keystore.KindSubject, name)
		// Destroy may fail after the keys stopped being served; no cache
		// may serve them either way.
		l.g.forget(kids)
		if err != nil {
			return nil, fmt.Errorf("erase: destroy subject key: %w", err)
		}
		destroyed += len(kids)
		if len(kids) > 0 || n > 0 {
			refs = append(refs, SubjectRef{Group: group, Ref: name})
			names = append(names, name)
			records += n
		}
	}
	// Every group's name is purged, even one with no key or count: a
	// parked record is counted nowhere else.
	copies := 0
	for _, p := range l.copies {
		n, err := p.PurgeSubjects(ctx, allNames)
		if err != nil {
			return nil, fmt.Errorf("erase: purge copies (keys are already destroyed; retry): %w", err)
		}
		copies += n
	}
	rc := Receipt{Type: "erasure", RequestedBy: &req.By, Reason: req.Reason, Subjects: refs, Records: &records, KeysDestroyed: destroyed, CopiesRemoved: copies}
	return l.appendReceipt(ctx, rc, &req.By, names, early())
}

// earlyCheckpoint issues a checkpoint in the background; the function it
// returns waits for it (nil if it failed).
func (l *Ledger) earlyCheckpoint(ctx context.Context) func() *stele.Checkpoint {
	done := make(chan *stele.Checkpoint, 1)
	go func() {
		cp, err := l.log.Checkpoint(ctx)
		if err != nil {
			cp = nil // the receipt asks again, and reports the error
		}
		done <- cp
	}()
	return sync.OnceValue(func() *stele.Checkpoint { return <-done })
}

// ExpirePeriods shreds every retention period whose time is up at now,
// with one receipt per period. It returns the periods shredded.
func (l *Ledger) ExpirePeriods(ctx context.Context) ([]string, error) {
	now := l.g.now()
	var done []string
	for _, name := range l.g.keys.Names(keystore.KindPeriod) {
		exp, ok := periodExpiry(name)
		if !ok || exp.After(now) {
			continue
		}
		kids, err := l.g.keys.Destroy(ctx, keystore.KindPeriod, name)
		l.g.forget(kids)
		if err != nil {
			return done, fmt.Errorf("retention: destroy period %s: %w", name, err)
		}
		rc := Receipt{Type: "retention", Period: name, KeysDestroyed: len(kids)}
		if _, err := l.appendReceipt(ctx, rc, nil, nil, nil); err != nil {
			return done, err
		}
		l.g.log.Info("retention period shredded", "period", name, "expired", exp)
		done = append(done, name)
	}
	return done, nil
}

// RunRetention shreds expired periods every interval until ctx ends.
func (l *Ledger) RunRetention(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := l.ExpirePeriods(ctx); err != nil && ctx.Err() == nil {
			l.g.log.Error("retention job", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// appendReceipt signs and appends a receipt citing cp, or a checkpoint of
// the log as it is now if cp is nil or older.
func (l *Ledger) appendReceipt(ctx context.Context, rc Receipt, by *auth.Principal, erased []string, cp *stele.Checkpoint) (*ReceiptResult, error) {
	if cp == nil || cp.Size < l.log.Size() {
		var err error
		if cp, err = l.log.Checkpoint(ctx); err != nil {
			return nil, fmt.Errorf("receipt: checkpoint: %w", err)
		}
	}
	rc.Version = receiptVersion
	rc.ID = newID()
	rc.At = l.g.now().UTC()
	rc.Checkpoint = ReceiptCheckpoint{Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root), Note: string(cp.Note)}
	body, err := json.Marshal(rc)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	signed, err := note.Sign(&note.Note{Text: "stele receipt\n" + string(body) + "\n"}, l.log.Signer())
	if err != nil {
		return nil, fmt.Errorf("receipt: sign: %w", err)
	}
	after, err := json.Marshal(map[string]any{"receipt": json.RawMessage(body), "signed": string(signed)})
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	r, err := systemRecord(ErasuresTable, rc.Type, "receipt", rc.ID, after, by, rc.At)
	if err != nil {
		return nil, err
	}
	if len(erased) > 0 {
		r.Derived = &record.Derived{Erased: erased}
	}
	res, err := l.log.Append(ctx, []*record.Record{r})
	if err != nil {
		return nil, fmt.Errorf("receipt: append (keys are already destroyed; retry to record the receipt): %w", err)
	}
	return &ReceiptResult{Seq: res[0].Seq, Receipt: rc, Signed: string(signed)}, nil
}

// RecordAccess appends an access record: who read which records with
// personal data in clear, through which endpoint.
func (l *Ledger) RecordAccess(ctx context.Context, by auth.Principal, endpoint string, seqs []uint64, fields int) error {
	after := mustJSON(map[string]any{"endpoint": endpoint, "records": seqs, "fields_in_clear": fields})
	r, err := systemRecord(AccessTable, "access", "access", newID(), after, &by, l.g.now())
	if err != nil {
		return err
	}
	if _, err := l.log.Append(ctx, []*record.Record{r}); err != nil {
		return fmt.Errorf("record access: %w", err)
	}
	return nil
}

// AdminRecord is an administrative action recorded in the log.
func AdminRecord(by auth.Principal, action string, detail map[string]any, at time.Time) (*record.Record, error) {
	d := map[string]any{"action": action}
	for k, v := range detail {
		d[k] = v
	}
	return systemRecord(AdminTable, "admin", "action", newID(), mustJSON(d), &by, at)
}

// systemRecord builds an event record Stele writes about itself (source
// "stele"), with id "<idPrefix>-<id>" and key {keyName: id}.
func systemRecord(table, idPrefix, keyName, id string, after json.RawMessage, by *auth.Principal, at time.Time) (*record.Record, error) {
	r := &record.Record{
		ID:         idPrefix + "-" + id,
		Source:     record.Source{Name: SystemSource, Kind: SystemSource, Table: table},
		Op:         record.OpEvent,
		Key:        mustJSON(map[string]string{keyName: id}),
		After:      after,
		Actor:      actorJSON(by),
		OccurredAt: at.UTC(),
	}
	return r, canonicalize(r)
}

func canonicalize(r *record.Record) error {
	for _, p := range []*json.RawMessage{&r.Key, &r.After, &r.Actor} {
		if len(*p) == 0 {
			continue
		}
		c, err := record.Canonical(*p)
		if err != nil {
			return fmt.Errorf("privacy: canonical record: %w", err)
		}
		*p = c
	}
	return nil
}

func actorJSON(by *auth.Principal) json.RawMessage {
	if by == nil {
		return mustJSON(map[string]string{"id": "stele", "type": "system"})
	}
	return mustJSON(map[string]string{"id": by.Name, "type": "token", "role": string(by.Role)})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of strings and numbers reach here
	}
	return b
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
