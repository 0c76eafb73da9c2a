// Package deadletter parks captured records the log refused because they
// break their schema, so nothing a source delivered is lost and the source
// may move on. Each parked line holds the field and reason in clear and the
// record sealed under a system key (its personal fields may not have been
// sealed), plus the keyed names of the data subjects it names, so erasing a
// subject also removes its parked records: they are a copy the system keeps
// and must not outlive the subject's key.
package deadletter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/record"
)

// purpose names the system key parked records are sealed under.
const purpose = "dead-letter"

// Sealer seals a parked record under a system key.
type Sealer interface {
	SealOpaque(ctx context.Context, purpose string, plaintext []byte) ([]byte, error)
}

// SubjectNamer names the data subjects a record refers to, as the keystore
// and erasure name them (keyed hashes, never the values). It is best
// effort: a record that breaks its schema may lack its subject field.
type SubjectNamer interface {
	SubjectsOf(r *record.Record) []string
}

// Appender is the log the records go to.
type Appender interface {
	Append(ctx context.Context, recs []*record.Record) ([]stele.Appended, error)
}

// Store is the dead-letter file, <data>/deadletter/records.jsonl.
type Store struct {
	path   string
	sealer Sealer
	namer  SubjectNamer
	log    *slog.Logger
	now    func() time.Time
	mu     sync.Mutex
}

// Open returns the store at path (the file is created on first use).
func Open(path string, sealer Sealer, namer SubjectNamer, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{path: path, sealer: sealer, namer: namer, log: logger, now: time.Now}
}

// Entry is one parked record as the file holds it.
type Entry struct {
	ParkedAt time.Time `json:"parked_at"`
	Source   string    `json:"source"`
	ID       string    `json:"id"`
	Field    string    `json:"field"`
	Reason   string    `json:"reason"`
	// Subjects are the keyed names of the data subjects the record names.
	Subjects []string `json:"subjects,omitempty"`
	// Record is the record, sealed (base64).
	Record string `json:"record_sealed"`
}

// Park durably appends r with the reason it was refused.
func (s *Store) Park(ctx context.Context, r *record.Record, fe *record.FieldError) error {
	sealed, err := s.sealer.SealOpaque(ctx, purpose, record.AppendJSON(nil, r))
	if err != nil {
		return fmt.Errorf("dead letter: seal record %s: %w", r.ID, err)
	}
	e := Entry{ParkedAt: s.now().UTC(), Source: sourceName(r.Source), ID: r.ID, Field: fe.Field, Reason: fe.Reason,
		Subjects: s.namer.SubjectsOf(r), Record: base64.StdEncoding.EncodeToString(sealed)}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	_, werr := f.Write(append(line, '\n'))
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return fmt.Errorf("dead letter: write %s: %w", s.path, err)
	}
	s.log.Warn("captured record parked in the dead-letter file: it does not match its schema",
		"source", e.Source, "id", r.ID, "field", fe.Field, "reason", fe.Reason, "file", s.path)
	return nil
}

func sourceName(src record.Source) string {
	if src.Schema != "" {
		return src.Name + "." + src.Schema + "." + src.Table
	}
	return src.Name + "." + src.Table
}

// AppendOrPark appends recs; a record refused for breaking its schema is
// parked (durably) and the rest appended, so the source may acknowledge
// its position. Any other failure is returned as it is.
func (s *Store) AppendOrPark(ctx context.Context, l Appender, recs []*record.Record) ([]stele.Appended, error) {
	for {
		res, err := l.Append(ctx, recs)
		var re *stele.RecordError
		var fe *record.FieldError
		if err == nil || !errors.As(err, &re) || !errors.As(re.Err, &fe) {
			return res, err
		}
		if perr := s.Park(ctx, recs[re.Index], fe); perr != nil {
			return nil, fmt.Errorf("park a record in the dead-letter file: %w (the record: %w)", perr, err)
		}
		recs = append(recs[:re.Index:re.Index], recs[re.Index+1:]...)
		if len(recs) == 0 {
			return nil, nil
		}
	}
}

// AsyncAppender is an Appender that can queue a batch and answer later
// (*logstore.Store): see AppendAsyncOrPark.
type AsyncAppender interface {
	Appender
	AppendAsync(ctx context.Context, recs []*record.Record, after func() bool) (wait func(context.Context) ([]stele.Appended, error), failed func() bool, err error)
}

// AppendAsyncOrPark is AppendOrPark for a caller that queues its batches
// (capture.AsyncSink): a record refused for breaking its schema is refused
// while the batch is prepared, before anything is queued, so it is parked
// and the rest queued. An Appender that cannot queue appends at once, and
// wait returns its answer.
func (s *Store) AppendAsyncOrPark(ctx context.Context, l Appender, recs []*record.Record, after func() bool) (wait func(context.Context) ([]stele.Appended, error), failed func() bool, err error) {
	al, ok := l.(AsyncAppender)
	if !ok {
		if after != nil && after() {
			return nil, nil, errors.New("an earlier queued append of this caller failed")
		}
		res, err := s.AppendOrPark(ctx, l, recs)
		if err != nil {
			return nil, nil, err
		}
		return func(context.Context) ([]stele.Appended, error) { return res, nil }, func() bool { return false }, nil
	}
	for {
		wait, failed, err := al.AppendAsync(ctx, recs, after)
		var re *stele.RecordError
		var fe *record.FieldError
		if err == nil || !errors.As(err, &re) || !errors.As(re.Err, &fe) {
			return wait, failed, err
		}
		if perr := s.Park(ctx, recs[re.Index], fe); perr != nil {
			return nil, nil, fmt.Errorf("park a record in the dead-letter file: %w (the record: %w)", perr, err)
		}
		recs = append(recs[:re.Index:re.Index], recs[re.Index+1:]...)
		if len(recs) == 0 {
			return func(context.Context) ([]stele.Appended, error) { return nil, nil }, after, nil
		}
	}
}

// Entries lists the parked records, oldest first.
func (s *Store) Entries() ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Entry
	err := s.scan(func(e Entry, _ []byte) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

func (s *Store) scan(fn func(e Entry, line []byte) error) error {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 256<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("dead letter %s line %d: %w", s.path, n, err)
		}
		if err := fn(e, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("dead letter %s: %w", s.path, err)
	}
	return nil
}

// PurgeSubjects removes every parked record naming one of subjects and
// returns how many it removed. The file is rewritten without them (temp
// file, fsync, rename, directory fsync), so no copy stays behind in the
// file the store keeps.
func (s *Store) PurgeSubjects(ctx context.Context, subjects []string) (int, error) {
	if len(subjects) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept bytes.Buffer
	removed := 0
	err := s.scan(func(e Entry, line []byte) error {
		for _, subj := range e.Subjects {
			if slices.Contains(subjects, subj) {
				removed++
				return ctx.Err()
			}
		}
		kept.Write(line)
		kept.WriteByte('\n')
		return ctx.Err()
	})
	if err != nil || removed == 0 {
		return 0, err
	}
	if err := atomicfile.Write(s.path, kept.Bytes(), 0o600); err != nil {
		return 0, fmt.Errorf("dead letter: rewrite without the erased subjects: %w", err)
	}
	s.log.Info("erasure removed parked records from the dead-letter file", "records", removed, "file", s.path)
	return removed, nil
}

// Opener opens what a Sealer sealed.
type Opener interface {
	OpenOpaque(ctx context.Context, purpose string, sealed []byte) ([]byte, error)
}

// ReplayResult is what a replay did.
type ReplayResult struct {
	// Appended counts the records the log took (Duplicates of them were
	// already there, from a replay cut short before the file was
	// rewritten).
	Appended   int `json:"appended"`
	Duplicates int `json:"duplicates"`
	// StillParked are the records that still break their schema, with
	// today's reason; their sealed form is left out.
	StillParked []Entry `json:"still_parked"`
}

// Replay offers every parked record to the log again, typically after the
// schema was fixed: those it takes leave the file, the others stay with
// the reason they fail now. A failure that is not the record's own (the
// log refusing writes) stops the replay; what was appended until then has
// left the file. A crash between the appends and the file's rewrite only
// makes the next replay count those records as duplicates: their ids are
// the same, and the log stores them once.
func (s *Store) Replay(ctx context.Context, l Appender, o Opener) (*ReplayResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines [][]byte
	var entries []Entry
	if err := s.scan(func(e Entry, line []byte) error {
		lines = append(lines, bytes.Clone(line))
		entries = append(entries, e)
		return nil
	}); err != nil {
		return nil, err
	}
	res := &ReplayResult{StillParked: []Entry{}}
	var kept bytes.Buffer
	var stop error
	for i, e := range entries {
		if stop != nil {
			kept.Write(lines[i])
			kept.WriteByte('\n')
			continue
		}
		r, err := s.open(ctx, o, e)
		if err != nil {
			stop = err
			kept.Write(lines[i])
			kept.WriteByte('\n')
			continue
		}
		out, err := l.Append(ctx, []*record.Record{r})
		var fe *record.FieldError
		switch {
		case err == nil:
			res.Appended++
			if len(out) == 1 && out[0].Duplicate {
				res.Duplicates++
			}
		case errors.As(err, &fe):
			e.Field, e.Reason = fe.Field, fe.Reason
			line, merr := json.Marshal(e)
			if merr != nil {
				line = lines[i]
			}
			kept.Write(line)
			kept.WriteByte('\n')
			e.Record = ""
			res.StillParked = append(res.StillParked, e)
		default:
			stop = fmt.Errorf("dead letter: replay record %s: %w", e.ID, err)
			kept.Write(lines[i])
			kept.WriteByte('\n')
		}
	}
	if res.Appended > 0 || len(res.StillParked) > 0 {
		if err := atomicfile.Write(s.path, kept.Bytes(), 0o600); err != nil {
			return res, errors.Join(stop, fmt.Errorf("dead letter: rewrite after replay: %w", err))
		}
	}
	if stop != nil {
		return res, stop
	}
	s.log.Info("dead letters replayed", "appended", res.Appended, "still_parked", len(res.StillParked))
	return res, nil
}

// open decrypts a parked record.
func (s *Store) open(ctx context.Context, o Opener, e Entry) (*record.Record, error) {
	sealed, err := base64.StdEncoding.DecodeString(e.Record)
	if err != nil {
		return nil, fmt.Errorf("dead letter %s: sealed record: %w", e.ID, err)
	}
	plain, err := o.OpenOpaque(ctx, purpose, sealed)
	if err != nil {
		return nil, fmt.Errorf("dead letter %s: open: %w", e.ID, err)
	}
	r := new(record.Record)
	if err := json.Unmarshal(plain, r); err != nil {
		return nil, fmt.Errorf("dead letter %s: decode: %w", e.ID, err)
	}
	r.Seq, r.RecordedAt = 0, time.Time{}
	return r, nil
}
