package witness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/internal/atomicfile"
)

// Config configures a Witness.
type Config struct {
	// Dir holds the latest cosigned checkpoint of every log (logs/) and
	// the evidence of every refusal (evidence/).
	Dir string
	// Signer makes the cosignatures (a *Cosigner).
	Signer note.Signer
	// Logs are the verifier keys of the logs this witness serves; a log's
	// origin is its key's name (C2SP tlog-checkpoint's recommendation, and
	// what Stele and tessera logs do).
	Logs []note.Verifier
	// Registry receives the witness's metrics; nil keeps none.
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Witness cosigns checkpoints of the logs it is configured for, each only
// when consistent with the latest one it cosigned for that origin, and
// keeps every refused request that a log signed as evidence.
type Witness struct {
	dir    string
	signer note.Signer
	logs   map[string][]note.Verifier
	logger *slog.Logger

	// mu makes check-and-persist atomic (C2SP tlog-witness: two requests
	// racing must not roll a log back).
	mu sync.Mutex

	requests  *prometheus.CounterVec
	splitView *prometheus.CounterVec
}

// Status codes of add-checkpoint outcomes, as C2SP tlog-witness says.
const (
	statusCosigned   = http.StatusOK
	statusMalformed  = http.StatusBadRequest
	statusForbidden  = http.StatusForbidden
	statusUnknownLog = http.StatusNotFound
	statusConflict   = http.StatusConflict
	statusBadProof   = http.StatusUnprocessableEntity
)

// New opens (or creates) a witness's directory.
func New(cfg Config) (*Witness, error) {
	if cfg.Signer == nil {
		return nil, errors.New("witness: no signer configured")
	}
	if cfg.Dir == "" {
		return nil, errors.New("witness: no directory configured")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Witness{dir: cfg.Dir, signer: cfg.Signer, logs: map[string][]note.Verifier{}, logger: cfg.Logger}
	for _, v := range cfg.Logs {
		w.logs[v.Name()] = append(w.logs[v.Name()], v)
	}
	for _, d := range []string{"logs", "evidence"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("witness: %w", err)
		}
	}
	w.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stele_witness_requests_total",
		Help: "add-checkpoint requests by origin and HTTP status.",
	}, []string{"origin", "status"})
	w.splitView = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stele_witness_split_view_total",
		Help: "Checkpoints of a log inconsistent with the one this witness cosigned (same size with another root, or no valid consistency proof): evidence of a fork.",
	}, []string{"origin"})
	if cfg.Registry != nil {
		for _, c := range []prometheus.Collector{w.requests, w.splitView} {
			if err := cfg.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("witness: register metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Result is the outcome of one add-checkpoint request.
type Result struct {
	Status int
	// Body is the answer: the cosignature line on 200, the witness's size
	// on 409, the reason otherwise.
	Body []byte
	// Err says why a request was refused (nil on 200).
	Err error
}

func refuse(status int, err error) Result {
	return Result{Status: status, Body: []byte(err.Error() + "\n"), Err: err}
}

// Errors a refusal wraps.
var (
	ErrUnknownLog   = errors.New("unknown log origin")
	ErrConflict     = errors.New("old size is not the witness's latest cosigned size")
	ErrInconsistent = errors.New("checkpoint inconsistent with the one the witness cosigned")
)

// AddCheckpoint handles one add-checkpoint request body.
func (w *Witness) AddCheckpoint(ctx context.Context, body []byte) Result {
	res, origin := w.addCheckpoint(ctx, body)
	w.requests.WithLabelValues(origin, strconv.Itoa(res.Status)).Inc()
	return res
}

func (w *Witness) addCheckpoint(ctx context.Context, body []byte) (Result, string) {
	req, err := ParseAddCheckpoint(body)
	if err != nil {
		return refuse(statusMalformed, err), ""
	}
	origin, _, _ := strings.Cut(string(req.Checkpoint), "\n")
	verifiers, ok := w.logs[origin]
	if !ok {
		// An unknown origin is not a label: anyone can send any.
		return refuse(statusUnknownLog, fmt.Errorf("%w %q", ErrUnknownLog, truncateString(origin))), "unknown"
	}
	cp, err := openWith(req.Checkpoint, verifiers)
	if err != nil {
		if errors.Is(err, stele.ErrCheckpointSignature) {
			return refuse(statusForbidden, err), origin
		}
		return refuse(statusMalformed, err), origin
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return refuse(http.StatusServiceUnavailable, err), origin
	}
	held, err := w.load(origin, verifiers)
	if err != nil {
		w.logger.Error("witness state unreadable", "origin", origin, "err", err)
		return refuse(http.StatusInternalServerError, errors.New("witness state unreadable")), origin
	}
	if req.OldSize > cp.Size {
		return w.refuseWithEvidence(statusMalformed, fmt.Errorf("%w: old size %d is above the checkpoint's size %d", ErrMalformed, req.OldSize, cp.Size), held, req, body), origin
	}
	var heldSize uint64
	heldRoot := rfc6962.DefaultHasher.EmptyRoot()
	if held != nil {
		heldSize, heldRoot = held.Size, held.Root
	}
	if req.OldSize != heldSize {
		// The protocol's handshake (a client learns the witness's size
		// from this 409), not a sign of misbehaviour: counted, not kept,
		// so replaying a signed checkpoint with any old size cannot fill
		// the disk.
		res := refuse(statusConflict, fmt.Errorf("%w: old size %d, witness holds %d", ErrConflict, req.OldSize, heldSize))
		res.Body = []byte(strconv.FormatUint(heldSize, 10) + "\n")
		return res, origin
	}
	if cp.Size == 0 && !bytes.Equal(cp.Root, heldRoot) {
		return w.refuseWithEvidence(statusBadProof, fmt.Errorf("%w: size 0 with a root that is not the empty tree's", ErrInconsistent), held, req, body), origin
	}
	if err := verifyConsistency(heldSize, cp.Size, req.Proof, heldRoot, cp.Root); err != nil {
		status := statusBadProof
		reason := fmt.Errorf("%w: no valid consistency proof from size %d to %d: %w", ErrInconsistent, heldSize, cp.Size, err)
		if heldSize == cp.Size {
			// Same size, another root: no proof can ever make these one
			// history. The spec answers 409 here.
			status = statusConflict
			reason = fmt.Errorf("%w: size %d with root %s, witness holds root %s", ErrInconsistent, cp.Size, b64(cp.Root), b64(heldRoot))
		}
		res := w.refuseWithEvidence(status, reason, held, req, body)
		if status == statusConflict {
			res.Body = []byte(strconv.FormatUint(heldSize, 10) + "\n")
		}
		w.alarm(origin, held, cp, res.Err)
		return res, origin
	}
	line, err := w.cosign(req.Checkpoint)
	if err != nil {
		w.logger.Error("witness cannot cosign", "origin", origin, "err", err)
		return refuse(http.StatusInternalServerError, errors.New("witness cannot cosign")), origin
	}
	// Persist before answering: a cosignature the witness forgets would let
	// the log roll it back.
	if err := atomicfile.Write(w.statePath(origin), req.Checkpoint, 0o600); err != nil {
		w.logger.Error("witness cannot persist its state", "origin", origin, "err", err)
		return refuse(http.StatusInternalServerError, errors.New("witness cannot persist its state")), origin
	}
	return Result{Status: statusCosigned, Body: line}, origin
}

// Latest is the latest checkpoint the witness cosigned for origin, nil if
// none.
func (w *Witness) Latest(origin string) (*stele.Checkpoint, error) {
	verifiers, ok := w.logs[origin]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownLog, origin)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.load(origin, verifiers)
}

func openWith(msg []byte, verifiers []note.Verifier) (*stele.Checkpoint, error) {
	var firstErr error
	for _, v := range verifiers {
		cp, err := stele.OpenCheckpoint(msg, v)
		if err == nil {
			return cp, nil
		}
		if firstErr == nil || !errors.Is(err, stele.ErrCheckpointSignature) {
			firstErr = err
		}
	}
	return nil, firstErr
}

func (w *Witness) statePath(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return filepath.Join(w.dir, "logs", hex.EncodeToString(h[:16])+".checkpoint")
}

func (w *Witness) load(origin string, verifiers []note.Verifier) (*stele.Checkpoint, error) {
	b, err := os.ReadFile(w.statePath(origin))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state of %s: %w", origin, err)
	}
	cp, err := openWith(b, verifiers)
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", origin, err)
	}
	return cp, nil
}

func (w *Witness) cosign(msg []byte) ([]byte, error) {
	body, _, err := SplitNote(msg)
	if err != nil {
		return nil, err
	}
	sig, err := w.signer.Sign(body)
	if err != nil {
		return nil, err
	}
	raw := binary.BigEndian.AppendUint32(nil, w.signer.KeyHash())
	return []byte("— " + w.signer.Name() + " " + base64.StdEncoding.EncodeToString(append(raw, sig...)) + "\n"), nil
}

// refuseWithEvidence answers a refusal of a checkpoint its log signed and
// keeps the request next to the checkpoint the witness held: a log's own
// signature on an inconsistent checkpoint is proof of misbehaviour that no
// one can later deny.
func (w *Witness) refuseWithEvidence(status int, reason error, held *stele.Checkpoint, req *AddCheckpoint, body []byte) Result {
	var b bytes.Buffer
	fmt.Fprintf(&b, "refused %d at %s: %v\n\n--- held checkpoint\n", status, time.Now().UTC().Format(time.RFC3339), reason)
	if held != nil {
		b.Write(held.Note)
	} else {
		b.WriteString("(none)\n")
	}
	b.WriteString("\n--- request\n")
	b.Write(body)
	origin, _, _ := strings.Cut(string(req.Checkpoint), "\n")
	// Named by the request's hash: the same request sent again is one
	// piece of evidence, not one more file.
	h := sha256.Sum256(body)
	path := filepath.Join(w.dir, "evidence", hex.EncodeToString(h[:16])+".txt")
	if _, err := os.Stat(path); err == nil {
		return refuse(status, reason)
	}
	if err := atomicfile.Write(path, b.Bytes(), 0o600); err != nil {
		w.logger.Error("witness cannot record evidence of a refusal", "origin", origin, "err", err)
	} else {
		w.logger.Warn("witness refused a checkpoint", "origin", origin, "status", status, "reason", reason.Error(), "evidence", path)
	}
	return refuse(status, reason)
}

func (w *Witness) alarm(origin string, held, got *stele.Checkpoint, reason error) {
	w.splitView.WithLabelValues(origin).Inc()
	attrs := []any{"origin", origin, "submitted_size", got.Size, "submitted_root", b64(got.Root), "reason", reason.Error()}
	if held != nil {
		attrs = append(attrs, "held_size", held.Size, "held_root", b64(held.Root))
	}
	w.logger.Error("SPLIT VIEW: log signed a checkpoint inconsistent with one this witness cosigned", attrs...)
}

// verifyConsistency is RFC 6962's check, where every tree extends the
// empty one with an empty proof (the merkle module refuses size 0 as
// meaningless; a witness's first checkpoint of a log is exactly that).
func verifyConsistency(size1, size2 uint64, p [][]byte, root1, root2 []byte) error {
	if size1 == 0 {
		if len(p) > 0 {
			return fmt.Errorf("proof from the empty tree has %d hashes, want none", len(p))
		}
		return nil
	}
	return proof.VerifyConsistency(rfc6962.DefaultHasher, size1, size2, p, root1, root2)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Handler serves POST <prefix>/add-checkpoint; mount it under the prefix.
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxRequestSize))
		if err != nil {
			http.Error(rw, "request body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		res := w.AddCheckpoint(r.Context(), body)
		switch res.Status {
		case statusConflict:
			rw.Header().Set("Content-Type", ContentTypeSize)
		default:
			rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		rw.WriteHeader(res.Status)
		_, _ = rw.Write(res.Body)
	})
	return mux
}
