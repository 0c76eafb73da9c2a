package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele"
)

// ConflictError is a witness's 409: it holds another size than the request
// said; Size is that size.
type ConflictError struct {
	Witness string
	Size    uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("witness %s holds size %d (409)", e.Witness, e.Size)
}

// Errors of Submit, from a witness's status code.
var (
	ErrWitnessForbidden = errors.New("witness does not trust the log's key (403)")
	ErrWitnessUnknown   = errors.New("witness does not serve this log (404)")
	ErrWitnessBadProof  = errors.New("witness refused the consistency proof (422)")
	ErrWitnessAnswer    = errors.New("witness answered something else than the protocol says")
)

// maxAnswer bounds what is read of a witness's answer.
const maxAnswer = 64 << 10

// Submit sends one add-checkpoint request to the witness m and returns its
// cosignature lines, each verified with m's key over the checkpoint's body.
func Submit(ctx context.Context, client *http.Client, m *Member, req *AddCheckpoint) ([]byte, error) {
	if m.URL == "" {
		return nil, fmt.Errorf("witness %s: no URL in the policy", m.Name)
	}
	url := strings.TrimSuffix(m.URL, "/") + "/add-checkpoint"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req.Marshal()))
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", m.Name, err)
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", m.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("witness %s: read answer: %w", m.Name, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusConflict:
		n, err := ParseConflictSize(body)
		if err != nil {
			return nil, fmt.Errorf("witness %s: %w: %w", m.Name, ErrWitnessAnswer, err)
		}
		return nil, &ConflictError{Witness: m.Name, Size: n}
	case http.StatusForbidden:
		return nil, fmt.Errorf("witness %s: %w: %s", m.Name, ErrWitnessForbidden, truncate(body))
	case http.StatusNotFound:
		return nil, fmt.Errorf("witness %s: %w: %s", m.Name, ErrWitnessUnknown, truncate(body))
	case http.StatusUnprocessableEntity:
		return nil, fmt.Errorf("witness %s: %w: %s", m.Name, ErrWitnessBadProof, truncate(body))
	default:
		return nil, fmt.Errorf("witness %s: %w: status %d: %s", m.Name, ErrWitnessAnswer, resp.StatusCode, truncate(body))
	}
	cpBody, _, err := SplitNote(req.Checkpoint)
	if err != nil {
		return nil, err
	}
	sigs, err := ParseSignatureLines(body)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w: %w", m.Name, ErrWitnessAnswer, err)
	}
	var lines []byte
	for _, s := range sigs {
		// Lines of other keys are ignored, as the spec says; a line of
		// this witness's key that does not verify is garbage.
		if s.Name != m.Verifier.name || s.Hash != m.Verifier.hash {
			continue
		}
		if !m.Verifier.Verify(cpBody, s.Sig) {
			return nil, fmt.Errorf("witness %s: %w: its cosignature does not verify", m.Name, ErrWitnessAnswer)
		}
		lines = append(lines, s.Line...)
	}
	if lines == nil {
		return nil, fmt.Errorf("witness %s: %w: no cosignature by its key %s+%08x", m.Name, ErrWitnessAnswer, m.Verifier.name, m.Verifier.hash)
	}
	return lines, nil
}

// Source is what a submitter needs of the log it gets witnessed.
type Source interface {
	LatestCheckpoint() *stele.Checkpoint
	ConsistencyProof(from, to uint64) ([][]byte, error)
}

// SubmitterConfig configures a Submitter.
type SubmitterConfig struct {
	Policy *Policy
	Log    Source
	// Client sends the requests (default: one with keep-alive).
	Client *http.Client
	// Timeout bounds one request to one witness (default 10s): a slow
	// witness delays only its own cosignature.
	Timeout time.Duration
	// Interval is how often the log's latest checkpoint is looked at
	// (default 250ms).
	Interval time.Duration
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Submitter gets each new checkpoint of a log cosigned by the witnesses of
// a policy and keeps the latest one whose cosignatures meet the quorum. It
// runs in its own goroutine and only reads the log, so a witness that is
// down, slow or answering garbage never holds an append back.
type Submitter struct {
	cfg       SubmitterConfig
	sizes     []uint64 // per witness, the size we believe it holds
	witnessed atomic.Pointer[stele.Checkpoint]
	since     atomic.Int64 // unix nanos of the oldest checkpoint not yet witnessed; 0 when none

	submissions *prometheus.CounterVec
	splitView   *prometheus.CounterVec
}

// NewSubmitter makes a submitter; Run starts it.
func NewSubmitter(cfg SubmitterConfig) (*Submitter, error) {
	if cfg.Policy == nil || cfg.Log == nil {
		return nil, errors.New("witness submitter: a policy and a log are required")
	}
	for _, w := range cfg.Policy.Witnesses {
		if w.URL == "" {
			return nil, fmt.Errorf("witness submitter: witness %s has no URL in the policy", w.Name)
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Submitter{cfg: cfg, sizes: make([]uint64, len(cfg.Policy.Witnesses))}
	s.submissions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stele_witness_submissions_total",
		Help: "add-checkpoint requests sent to each witness, by result (cosigned, conflict, forbidden, unknown, bad_proof, error).",
	}, []string{"witness", "result"})
	s.splitView = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stele_witness_split_view_total",
		Help: "Witnesses holding a checkpoint of this log inconsistent with this log's history: someone showed them another history under this log's key.",
	}, []string{"witness"})
	if cfg.Registry != nil {
		lagRecords := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stele_witness_lag_records",
			Help: "Records the log's latest checkpoint covers beyond the latest checkpoint witnessed by the policy's quorum.",
		}, func() float64 { return float64(s.lagRecords()) })
		lagSeconds := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stele_witness_lag_seconds",
			Help: "How long the log has had a checkpoint newer than the latest witnessed one.",
		}, func() float64 {
			if t := s.since.Load(); t != 0 {
				return time.Since(time.Unix(0, t)).Seconds()
			}
			return 0
		})
		for _, c := range []prometheus.Collector{s.submissions, s.splitView, lagRecords, lagSeconds} {
			if err := cfg.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("witness submitter: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Witnessed is the latest checkpoint cosigned by the quorum, its note with
// the cosignature lines appended; nil until the quorum first signs.
func (s *Submitter) Witnessed() *stele.Checkpoint { return s.witnessed.Load() }

func (s *Submitter) lagRecords() uint64 {
	cp := s.cfg.Log.LatestCheckpoint()
	if cp == nil {
		return 0
	}
	var w uint64
	if wc := s.witnessed.Load(); wc != nil {
		w = wc.Size
	}
	if cp.Size < w {
		return 0
	}
	return cp.Size - w
}

// Run submits until ctx ends. One round at a time, always of the latest
// checkpoint: a checkpoint superseded while a round runs is skipped, so
// the work is bounded whatever the witnesses do.
func (s *Submitter) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	// last was witnessed, tried was sent last. A checkpoint that missed
	// the quorum is sent again after a growing pause (up to maxBackoff),
	// so witnesses that refuse are not asked 4 times a second; a newer
	// checkpoint is sent at once.
	var last, tried *stele.Checkpoint
	var failures int
	var retryAt time.Time
	const maxBackoff = 30 * time.Second
	same := func(a, b *stele.Checkpoint) bool {
		return a != nil && b != nil && a.Size == b.Size && bytes.Equal(a.Root, b.Root)
	}
	for {
		cp := s.cfg.Log.LatestCheckpoint()
		if cp != nil && !same(cp, last) && (!same(cp, tried) || time.Now().After(retryAt)) {
			if w := s.witnessed.Load(); w == nil || w.Size < cp.Size {
				s.since.CompareAndSwap(0, time.Now().UnixNano())
			}
			tried = cp
			if s.Round(ctx, cp) {
				last, failures = cp, 0
			} else {
				failures++
				retryAt = time.Now().Add(min(s.cfg.Interval<<min(failures, 10), maxBackoff))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round submits cp to every witness at once and publishes it when the
// quorum cosigned it; it reports whether it did.
func (s *Submitter) Round(ctx context.Context, cp *stele.Checkpoint) bool {
	ws := s.cfg.Policy.Witnesses
	lines := make([][]byte, len(ws))
	var wg sync.WaitGroup
	for i := range ws {
		wg.Go(func() { lines[i] = s.submitOne(ctx, i, cp) })
	}
	wg.Wait()
	signed := map[string]bool{}
	note := bytes.Clone(cp.Note)
	for i, l := range lines {
		if l != nil {
			signed[ws[i].Name] = true
			note = append(note, l...)
		}
	}
	if !s.cfg.Policy.Satisfied(signed) {
		s.cfg.Logger.Debug("checkpoint not yet witnessed by the quorum", "size", cp.Size, "cosigned_by", len(signed), "quorum", s.cfg.Policy.Quorum())
		return false
	}
	if w := s.witnessed.Load(); w == nil || w.Size <= cp.Size {
		s.witnessed.Store(&stele.Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: cp.Root, Note: note})
		if latest := s.cfg.Log.LatestCheckpoint(); latest == nil || latest.Size <= cp.Size {
			s.since.Store(0)
		} else {
			s.since.Store(time.Now().UnixNano())
		}
	}
	return true
}

// submitOne gets one witness's cosignature of cp, nil when it gave none.
func (s *Submitter) submitOne(ctx context.Context, i int, cp *stele.Checkpoint) []byte {
	m := &s.cfg.Policy.Witnesses[i]
	// Two attempts: the second from the size a 409 named.
	for attempt := 0; attempt < 2; attempt++ {
		old := s.sizes[i]
		if old > cp.Size {
			// The witness holds a larger tree of this origin than this log
			// has: another history under our key, or our log rolled back.
			s.alarm(m, fmt.Errorf("witness holds size %d, the log's latest checkpoint is %d", old, cp.Size))
			s.sizes[i] = 0 // ask again next round, in case it was a lie
			return nil
		}
		var p [][]byte
		if old > 0 {
			var err error
			if p, err = s.cfg.Log.ConsistencyProof(old, cp.Size); err != nil {
				s.result(m, "error")
				s.cfg.Logger.Warn("witness: no consistency proof", "witness", m.Name, "from", old, "to", cp.Size, "err", err)
				return nil
			}
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		lines, err := Submit(rctx, s.cfg.Client, m, &AddCheckpoint{OldSize: old, Proof: p, Checkpoint: cp.Note})
		cancel()
		var conflict *ConflictError
		switch {
		case err == nil:
			s.sizes[i] = cp.Size
			s.result(m, "cosigned")
			return lines
		case errors.As(err, &conflict):
			s.result(m, "conflict")
			if conflict.Size == old {
				// It says it holds what we sent: same size, other root.
				s.alarm(m, err)
				return nil
			}
			s.sizes[i] = conflict.Size
			continue
		case errors.Is(err, ErrWitnessBadProof):
			s.result(m, "bad_proof")
			s.alarm(m, err)
			s.sizes[i] = 0
			return nil
		case errors.Is(err, ErrWitnessForbidden):
			s.result(m, "forbidden")
		case errors.Is(err, ErrWitnessUnknown):
			s.result(m, "unknown")
		default:
			s.result(m, "error")
		}
		s.cfg.Logger.Warn("witness gave no cosignature", "witness", m.Name, "size", cp.Size, "err", err)
		return nil
	}
	return nil
}

func (s *Submitter) result(m *Member, r string) { s.submissions.WithLabelValues(m.Name, r).Inc() }

func (s *Submitter) alarm(m *Member, err error) {
	s.splitView.WithLabelValues(m.Name).Inc()
	s.cfg.Logger.Error("SPLIT VIEW: a witness holds a checkpoint of this log inconsistent with its history", "witness", m.Name, "err", err.Error())
}
