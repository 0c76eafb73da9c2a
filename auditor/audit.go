// Package auditor checks a running Stele server from the outside, as an
// independent auditor would: it trusts nothing but the log's public verifier
// key and, optionally, the checkpoint it verified last time.
//
// One Check does the following, over the HTTP API v1 only (docs/api.md):
//
//  1. Fetch GET /v1/checkpoint, verify its Ed25519 signature against the
//     verifier key (golang.org/x/mod/sumdb/note) and parse the C2SP
//     tlog-checkpoint body: origin (which must equal the key name), decimal
//     tree size, base64 root hash.
//  2. If a state file holds a previously verified checkpoint, require the new
//     one to extend it: a smaller size is a rollback (ErrRollback); the same
//     size with another root, or a larger size whose consistency proof from
//     GET /v1/proof/consistency does not verify, is a fork (ErrInconsistent).
//  3. Spot-check inclusion of randomly chosen records, always including the
//     newest one: fetch GET /v1/records/{seq}?tree_size=N, recompute the RFC
//     6962 leaf hash from the served stored bytes, check the seq in the leaf
//     header, check the served record JSON is the record the leaf encodes, and
//     verify the inclusion proof against the checkpoint's root (ErrInclusion).
//  4. Only when every check passed, atomically replace the state file with the
//     new checkpoint, so a failed check never erases the evidence it needs.
//
// Every failure wraps one of the sentinel errors below, so callers can test
// with errors.Is, and names the seq or tree sizes involved.
package auditor

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/record"
)

// Sentinel errors. Every error returned by Check wraps exactly one of them.
var (
	// ErrOptions: the caller's options are unusable (bad URL, bad key).
	ErrOptions = errors.New("audit: invalid options")
	// ErrBadSignature: the checkpoint is not signed by the verifier key, or
	// its origin is not the key's name.
	ErrBadSignature = errors.New("audit: checkpoint signature does not verify")
	// ErrRollback: the log now claims fewer records than a checkpoint it
	// signed earlier.
	ErrRollback = errors.New("audit: log rolled back")
	// ErrInconsistent: the new checkpoint does not extend the previously
	// verified one (same size with another root, or a failing consistency
	// proof): the history was rewritten or the log forked.
	ErrInconsistent = errors.New("audit: log is not consistent with the previous checkpoint")
	// ErrInclusion: a spot-checked record is not what the checkpoint commits
	// to (leaf hash, seq, record body or inclusion proof mismatch).
	ErrInclusion = errors.New("audit: record inclusion check failed")
	// ErrBadResponse: the server answered with an error status or a body
	// that does not follow the API (malformed checkpoint, JSON, base64).
	ErrBadResponse = errors.New("audit: bad server response")
	// ErrState: the local state file cannot be read, parsed or written, or
	// belongs to another log.
	ErrState = errors.New("audit: state file")
)

// DefaultSpotChecks is the number of records checked when Options.SpotChecks
// is zero.
const DefaultSpotChecks = 16

// maxResponseBytes bounds every response body read. A record is at most
// record.MaxRecordBytes; served twice (JSON and base64 leaf) plus a proof it
// stays well under this.
const maxResponseBytes = 8 * record.MaxRecordBytes

// Options configure one Check.
type Options struct {
	// URL is the server's base URL, e.g. "https://stele.example.com". A path
	// prefix is kept: "/v1/..." is appended to it.
	URL string
	// VerifierKey is the log's note verifier key, "<origin>+<hash>+<base64>",
	// as served by GET /v1/log/key but obtained out of band.
	VerifierKey string
	// StatePath is the file holding the last verified checkpoint. Empty means
	// no state: nothing is read or written.
	StatePath string
	// SpotChecks is how many records to check for inclusion; 0 means
	// DefaultSpotChecks, negative is an error. If it is at least the tree
	// size, every record is checked.
	SpotChecks int
	// HTTPClient is used for every request; nil means a client with a
	// 60-second timeout.
	HTTPClient *http.Client
	// Token is a bearer token for servers that require one (the spot
	// checks read records; any role may).
	Token string
	// Progress, if set, is called with the number of records checked so far
	// and the number to check: once before the first and after each one.
	Progress func(done, total int)
}

// Checkpoint is a parsed, signature-verified checkpoint.
type Checkpoint struct {
	Origin   string
	Size     uint64
	RootHash []byte
	// Text is the signed note exactly as served.
	Text string
}

// Report describes a successful Check.
type Report struct {
	// Checkpoint is the checkpoint verified in this run.
	Checkpoint Checkpoint
	// Previous is the checkpoint loaded from the state file, nil when there
	// was none. The new checkpoint was proved to extend it.
	Previous *Checkpoint
	// PreviousCheckedAt is when Previous was verified.
	PreviousCheckedAt time.Time
	// SpotChecked lists the seqs whose inclusion was verified, ascending.
	SpotChecked []uint64
	// StatePath is the state file written, empty when Options.StatePath was.
	StatePath string
	// CheckedAt is when this check finished.
	CheckedAt time.Time
}

// Summary renders the report for people.
func (r *Report) Summary() string {
	var b strings.Builder
	cp := r.Checkpoint
	fmt.Fprintf(&b, "log %s: checkpoint verified: size %d, root %s\n",
		cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.RootHash))
	switch {
	case r.Previous == nil:
		b.WriteString("no previous checkpoint: first check, consistency not checked\n")
	case r.Previous.Size == cp.Size:
		fmt.Fprintf(&b, "unchanged since the check at %s (size %d, same root)\n",
			r.PreviousCheckedAt.UTC().Format(time.RFC3339), cp.Size)
	default:
		fmt.Fprintf(&b, "consistent with the checkpoint verified at %s: size %d -> %d (%d new records)\n",
			r.PreviousCheckedAt.UTC().Format(time.RFC3339), r.Previous.Size, cp.Size, cp.Size-r.Previous.Size)
	}
	if len(r.SpotChecked) == 0 {
		b.WriteString("no records to spot-check (empty log)\n")
	} else {
		fmt.Fprintf(&b, "%d records spot-checked (leaf hash, seq, record body, inclusion proof): %s\n",
			len(r.SpotChecked), seqList(r.SpotChecked, 20))
	}
	if r.StatePath != "" {
		fmt.Fprintf(&b, "state saved to %s\n", r.StatePath)
	}
	b.WriteString("OK\n")
	return b.String()
}

func seqList(seqs []uint64, limit int) string {
	parts := make([]string, 0, min(len(seqs), limit)+1)
	for i, s := range seqs {
		if i == limit {
			parts = append(parts, fmt.Sprintf("… %d more", len(seqs)-limit))
			break
		}
		parts = append(parts, strconv.FormatUint(s, 10))
	}
	return strings.Join(parts, ", ")
}

// Check verifies the log at opts.URL once; see the package comment. On
// success it returns a report and, when opts.StatePath is set, has saved the
// new checkpoint there. On failure the state file is left untouched.
func Check(ctx context.Context, opts Options) (*Report, error) {
	c, err := newChecker(opts)
	if err != nil {
		return nil, err
	}

	var prev *state
	if opts.StatePath != "" {
		if prev, err = loadState(opts.StatePath, c.verifier); err != nil {
			return nil, err
		}
	}

	text, err := c.get(ctx, "/v1/checkpoint", nil)
	if err != nil {
		return nil, fmt.Errorf("fetching checkpoint: %w", err)
	}
	cp, err := openCheckpoint(text, c.verifier)
	if err != nil {
		return nil, err
	}

	rep := &Report{Checkpoint: *cp}
	if prev != nil {
		pcp := prev.checkpoint
		rep.Previous = &pcp
		rep.PreviousCheckedAt = prev.checkedAt
		if err := c.checkConsistency(ctx, &pcp, cp); err != nil {
			return nil, err
		}
	}

	oldSize := uint64(0)
	if prev != nil {
		oldSize = prev.checkpoint.Size
	}
	seqs := pickSeqs(cp.Size, oldSize, prev != nil, c.spot)
	if opts.Progress != nil {
		opts.Progress(0, len(seqs))
	}
	for i, seq := range seqs {
		if err := c.checkInclusion(ctx, cp, seq); err != nil {
			return nil, err
		}
		if opts.Progress != nil {
			opts.Progress(i+1, len(seqs))
		}
	}
	rep.SpotChecked = seqs
	rep.CheckedAt = time.Now().UTC()

	if opts.StatePath != "" {
		if err := saveState(opts.StatePath, cp, rep.CheckedAt); err != nil {
			return nil, err
		}
		rep.StatePath = opts.StatePath
	}
	return rep, nil
}

type checker struct {
	base     string
	verifier note.Verifier
	client   *http.Client
	spot     int
	token    string
}

func newChecker(opts Options) (*checker, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: server URL %q: want http(s)://host[:port][/prefix]", ErrOptions, opts.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: server URL %q must not have a query or fragment", ErrOptions, opts.URL)
	}
	v, err := note.NewVerifier(strings.TrimSpace(opts.VerifierKey))
	if err != nil {
		return nil, fmt.Errorf("%w: verifier key %q: %v (want <origin>+<hash>+<base64 key>, as served by /v1/log/key)",
			ErrOptions, opts.VerifierKey, err)
	}
	spot := opts.SpotChecks
	switch {
	case spot < 0:
		return nil, fmt.Errorf("%w: spot checks %d: must be >= 0", ErrOptions, spot)
	case spot == 0:
		spot = DefaultSpotChecks
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	return &checker{
		base:     strings.TrimRight(u.String(), "/"),
		verifier: v,
		client:   client,
		spot:     spot,
		token:    opts.Token,
	}, nil
}

// get fetches base+path?query and returns the body of a 200 answer. Any other
// status is an ErrBadResponse carrying the server's {"error": ...} message;
// the status is also returned through statusError for callers that treat one
// specially.
func (c *checker) get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %v", ErrBadResponse, u, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrBadResponse, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: reading body: %w", ErrBadResponse, u, err)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("%w: GET %s: body exceeds %d bytes", ErrBadResponse, u, maxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{url: u, status: resp.StatusCode, msg: errorMessage(body)}
	}
	return body, nil
}

// statusError is a non-200 answer. It wraps ErrBadResponse.
type statusError struct {
	url    string
	status int
	msg    string
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("%v: GET %s: HTTP %d", ErrBadResponse, e.url, e.status)
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

func (e *statusError) Unwrap() error { return ErrBadResponse }

// HTTPStatus is the HTTP status of the error answer behind err (401 for a
// refused or missing token), or 0 when err is not one.
func HTTPStatus(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	return 0
}

func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// openCheckpoint verifies the signed note and parses its C2SP
// tlog-checkpoint body with the one strict parser every part of Stele uses.
func openCheckpoint(text []byte, v note.Verifier) (*Checkpoint, error) {
	cp, err := stele.OpenCheckpoint(text, v)
	switch {
	case errors.Is(err, stele.ErrCheckpointSignature):
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	return &Checkpoint{Origin: cp.Origin, Size: cp.Size, RootHash: cp.Root, Text: string(text)}, nil
}

// checkConsistency proves that cp extends prev.
func (c *checker) checkConsistency(ctx context.Context, prev, cp *Checkpoint) error {
	switch {
	case cp.Size < prev.Size:
		return fmt.Errorf("%w: checkpoint size %d is smaller than the previously verified size %d",
			ErrRollback, cp.Size, prev.Size)
	case cp.Size == prev.Size:
		if !bytes.Equal(cp.RootHash, prev.RootHash) {
			return fmt.Errorf("%w: size %d has root %s now but %s in the previously verified checkpoint (fork)",
				ErrInconsistent, cp.Size, b64(cp.RootHash), b64(prev.RootHash))
		}
		return nil
	case prev.Size == 0:
		// Every tree extends the empty tree.
		return nil
	}
	q := url.Values{"from": {strconv.FormatUint(prev.Size, 10)}, "to": {strconv.FormatUint(cp.Size, 10)}}
	body, err := c.get(ctx, "/v1/proof/consistency", q)
	if err != nil {
		return fmt.Errorf("fetching consistency proof %d -> %d: %w", prev.Size, cp.Size, err)
	}
	var resp struct {
		From   *uint64  `json:"from"`
		To     *uint64  `json:"to"`
		Hashes []string `json:"hashes"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("%w: consistency proof %d -> %d: %v", ErrBadResponse, prev.Size, cp.Size, err)
	}
	if resp.From == nil || resp.To == nil || *resp.From != prev.Size || *resp.To != cp.Size {
		return fmt.Errorf("%w: asked for consistency proof %d -> %d, got from=%s to=%s",
			ErrBadResponse, prev.Size, cp.Size, optU64(resp.From), optU64(resp.To))
	}
	hashes, err := decodeHashes(resp.Hashes)
	if err != nil {
		return fmt.Errorf("%w: consistency proof %d -> %d: %v", ErrBadResponse, prev.Size, cp.Size, err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prev.Size, cp.Size, hashes, prev.RootHash, cp.RootHash); err != nil {
		return fmt.Errorf("%w: tree of size %d (root %s) does not extend the previously verified tree of size %d (root %s): %s",
			ErrInconsistent, cp.Size, b64(cp.RootHash), prev.Size, b64(prev.RootHash), proofError(err))
	}
	return nil
}

// recordResponse is the body of GET /v1/records/{seq}.
type recordResponse struct {
	Record   json.RawMessage `json:"record"`
	Leaf     *string         `json:"leaf"`
	LeafHash *string         `json:"leaf_hash"`
	Proof    *struct {
		LeafIndex *uint64  `json:"leaf_index"`
		TreeSize  *uint64  `json:"tree_size"`
		Hashes    []string `json:"hashes"`
	} `json:"proof"`
}

// checkInclusion verifies that seq is in the tree of cp, and that the record
// the server shows for it is the one the leaf encodes.
func (c *checker) checkInclusion(ctx context.Context, cp *Checkpoint, seq uint64) error {
	// view=stored: the record as the leaf holds it, not as a role reveals it.
	q := url.Values{"tree_size": {strconv.FormatUint(cp.Size, 10)}, "view": {"stored"}}
	body, err := c.get(ctx, "/v1/records/"+strconv.FormatUint(seq, 10), q)
	if err != nil {
		var se *statusError
		if errors.As(err, &se) && se.status == http.StatusNotFound {
			return fmt.Errorf("%w: seq %d: server answers 404 but the checkpoint of size %d commits to it: %v",
				ErrInclusion, seq, cp.Size, err)
		}
		return fmt.Errorf("fetching seq %d: %w", seq, err)
	}
	var resp recordResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("%w: seq %d: %v", ErrBadResponse, seq, err)
	}
	switch {
	case len(resp.Record) == 0 || resp.Record[0] != '{':
		return fmt.Errorf("%w: seq %d: response has no \"record\" object", ErrBadResponse, seq)
	case resp.Leaf == nil:
		return fmt.Errorf("%w: seq %d: response has no \"leaf\"", ErrBadResponse, seq)
	case resp.LeafHash == nil:
		return fmt.Errorf("%w: seq %d: response has no \"leaf_hash\"", ErrBadResponse, seq)
	case resp.Proof == nil || resp.Proof.LeafIndex == nil || resp.Proof.TreeSize == nil:
		return fmt.Errorf("%w: seq %d: response has no \"proof\" with leaf_index and tree_size", ErrBadResponse, seq)
	}
	leaf, err := base64.StdEncoding.Strict().DecodeString(*resp.Leaf)
	if err != nil {
		return fmt.Errorf("%w: seq %d: leaf is not standard base64: %v", ErrBadResponse, seq, err)
	}
	servedHash, err := base64.StdEncoding.Strict().DecodeString(*resp.LeafHash)
	if err != nil {
		return fmt.Errorf("%w: seq %d: leaf_hash is not standard base64: %v", ErrBadResponse, seq, err)
	}
	proofHashes, err := decodeHashes(resp.Proof.Hashes)
	if err != nil {
		return fmt.Errorf("%w: seq %d: inclusion proof: %v", ErrBadResponse, seq, err)
	}

	if li, ts := *resp.Proof.LeafIndex, *resp.Proof.TreeSize; li != seq || ts != cp.Size {
		return fmt.Errorf("%w: seq %d: asked for a proof at tree size %d, got leaf_index %d tree_size %d",
			ErrInclusion, seq, cp.Size, li, ts)
	}
	leafHash := rfc6962.DefaultHasher.HashLeaf(leaf)
	if !bytes.Equal(leafHash, servedHash) {
		return fmt.Errorf("%w: seq %d: leaf_hash %s is not the hash of the served leaf bytes (%s)",
			ErrInclusion, seq, b64(servedHash), b64(leafHash))
	}
	leafSeq, err := record.Seq(leaf)
	if err != nil {
		return fmt.Errorf("%w: seq %d: leaf: %v", ErrInclusion, seq, err)
	}
	if leafSeq != seq {
		return fmt.Errorf("%w: seq %d: leaf header carries seq %d (record moved)", ErrInclusion, seq, leafSeq)
	}
	rec, err := record.Decode(leaf)
	if err != nil {
		return fmt.Errorf("%w: seq %d: leaf: %v", ErrInclusion, seq, err)
	}
	if err := sameJSON(record.AppendJSON(nil, rec), resp.Record); err != nil {
		return fmt.Errorf("%w: seq %d: served record is not the record in the leaf: %v", ErrInclusion, seq, err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, cp.Size, leafHash, proofHashes, cp.RootHash); err != nil {
		return fmt.Errorf("%w: seq %d: inclusion proof does not lead to the root of tree size %d: %s",
			ErrInclusion, seq, cp.Size, proofError(err))
	}
	return nil
}

// sameJSON reports whether two JSON objects are semantically equal: member
// order and whitespace are ignored; numbers compare by their literal text,
// which the stored encoding preserves.
func sameJSON(want, got []byte) error {
	w, err := decodeJSON(want)
	if err != nil {
		return fmt.Errorf("decoding the leaf's record JSON: %v", err)
	}
	g, err := decodeJSON(got)
	if err != nil {
		return fmt.Errorf("decoding the served record: %v", err)
	}
	wm, wok := w.(map[string]any)
	gm, gok := g.(map[string]any)
	if !wok || !gok {
		return errors.New("not a JSON object")
	}
	names := make([]string, 0, len(wm)+len(gm))
	for k := range wm {
		names = append(names, k)
	}
	for k := range gm {
		if _, ok := wm[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		wv, inW := wm[k]
		gv, inG := gm[k]
		switch {
		case !inG:
			return fmt.Errorf("member %q is missing", k)
		case !inW:
			return fmt.Errorf("member %q is not in the leaf", k)
		case !reflect.DeepEqual(wv, gv):
			return fmt.Errorf("member %q differs", k)
		}
	}
	return nil
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func decodeHashes(in []string) ([][]byte, error) {
	out := make([][]byte, len(in))
	for i, s := range in {
		h, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("hash %d is not standard base64: %v", i, err)
		}
		if len(h) != rfc6962.DefaultHasher.Size() {
			return nil, fmt.Errorf("hash %d is %d bytes, want %d", i, len(h), rfc6962.DefaultHasher.Size())
		}
		out[i] = h
	}
	return out, nil
}

// pickSeqs chooses up to n distinct seqs in [0, size), ascending: always
// size-1 (the newest record, which is also in the new range when the log
// grew), one more random seq from the new range [oldSize, size) when it holds
// more than one record and there was a previous checkpoint, and the rest
// uniformly at random. With n >= size every seq is returned.
func pickSeqs(size, oldSize uint64, hadPrev bool, n int) []uint64 {
	if size == 0 || n <= 0 {
		return nil
	}
	if uint64(n) >= size {
		all := make([]uint64, size)
		for i := range all {
			all[i] = uint64(i)
		}
		return all
	}
	picked := make(map[uint64]struct{}, n)
	picked[size-1] = struct{}{}
	if hadPrev && n > 1 && oldSize < size-1 {
		picked[oldSize+rand.Uint64N(size-1-oldSize)] = struct{}{}
	}
	if uint64(n) > size/2 {
		// Dense sample: draw the seqs to leave out instead, so rejection
		// sampling never has to hit the last few free seqs.
		skip := make(map[uint64]struct{}, size-uint64(n))
		for uint64(len(skip)) < size-uint64(n) {
			s := rand.Uint64N(size)
			if _, req := picked[s]; !req {
				skip[s] = struct{}{}
			}
		}
		out := make([]uint64, 0, n)
		for s := range size {
			if _, ok := skip[s]; !ok {
				out = append(out, s)
			}
		}
		return out
	}
	for len(picked) < n {
		picked[rand.Uint64N(size)] = struct{}{}
	}
	out := make([]uint64, 0, len(picked))
	for s := range picked {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// proofError renders a proof verification failure on one line (the
// library's RootMismatchError prints raw byte slices over several lines).
func proofError(err error) string {
	var rm proof.RootMismatchError
	if errors.As(err, &rm) {
		return fmt.Sprintf("proof yields root %s, want %s", b64(rm.CalculatedRoot), b64(rm.ExpectedRoot))
	}
	return err.Error()
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func optU64(p *uint64) string {
	if p == nil {
		return "(missing)"
	}
	return strconv.FormatUint(*p, 10)
}
