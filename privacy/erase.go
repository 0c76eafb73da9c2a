package privacy

import (
	"context"
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
	"github.com/stele/stele/sysrecord"
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

// ReceiptResult is what an erasure returns.
type ReceiptResult struct {
	Seq     uint64            `json:"seq"`
	Receipt sysrecord.Receipt `json:"receipt"`
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
	var refs []sysrecord.SubjectRef
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
			refs = append(refs, sysrecord.SubjectRef{Group: group, Ref: name})
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
	rc := sysrecord.Receipt{Type: "erasure", RequestedBy: &req.By, Reason: req.Reason, Subjects: refs, Records: &records, KeysDestroyed: destroyed, CopiesRemoved: copies}
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
		rc := sysrecord.Receipt{Type: "retention", Period: name, KeysDestroyed: len(kids)}
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
func (l *Ledger) appendReceipt(ctx context.Context, rc sysrecord.Receipt, by *auth.Principal, erased []string, cp *stele.Checkpoint) (*ReceiptResult, error) {
	if cp == nil || cp.Size < l.log.Size() {
		var err error
		if cp, err = l.log.Checkpoint(ctx); err != nil {
			return nil, fmt.Errorf("receipt: checkpoint: %w", err)
		}
	}
	r, signed, err := sysrecord.ReceiptRecord(&rc, cp, l.log.Signer(), by, erased, l.g.now())
	if err != nil {
		return nil, err
	}
	res, err := l.log.Append(ctx, []*record.Record{r})
	if err != nil {
		return nil, fmt.Errorf("receipt: append (keys are already destroyed; retry to record the receipt): %w", err)
	}
	return &ReceiptResult{Seq: res[0].Seq, Receipt: rc, Signed: signed}, nil
}

// RecordAccess appends an access record (who read which records with
// personal data in clear, through which endpoint) and returns once it is
// durable.
func (l *Ledger) RecordAccess(ctx context.Context, by auth.Principal, endpoint string, seqs []uint64, fields int) error {
	r, err := sysrecord.Access(by, endpoint, seqs, fields, l.g.now())
	if err != nil {
		return err
	}
	if _, err := l.log.Append(ctx, []*record.Record{r}); err != nil {
		return fmt.Errorf("record access: %w", err)
	}
	return nil
}
