package integration_test

// An independent verifier: it checks what the server serves against the
// documented formats using only third-party libraries, never Stele's own
// packages, so a bug shared by the server and its own verifier cannot hide.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// checkpoint is a verified C2SP tlog-checkpoint.
type checkpoint struct {
	origin string
	size   uint64
	root   []byte
	note   string
}

// openCheckpoint checks the note's signature with vkey and parses its body:
// origin line (the key's name), decimal size, base64 root hash.
func openCheckpoint(text []byte, vkey string) (checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return checkpoint{}, fmt.Errorf("verifier key %q: %w", vkey, err)
	}
	n, err := note.Open(text, note.VerifierList(v))
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint %q: signature: %w", text, err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return checkpoint{}, fmt.Errorf("checkpoint %q: want origin, size and root lines", n.Text)
	}
	if lines[0] != v.Name() {
		return checkpoint{}, fmt.Errorf("checkpoint origin %q is not the key's name %q", lines[0], v.Name())
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("checkpoint size line %q is not a decimal number without leading zeros", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return checkpoint{}, fmt.Errorf("checkpoint root line %q is not a base64 SHA-256 hash", lines[2])
	}
	return checkpoint{origin: lines[0], size: size, root: root, note: string(text)}, nil
}

func decodeHashes(in []string) ([][]byte, error) {
	out := make([][]byte, len(in))
	for i, h := range in {
		b, err := base64.StdEncoding.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("proof hash %d %q is not a base64 SHA-256 hash", i, h)
		}
		out[i] = b
	}
	return out, nil
}

// recordResponse is the body of GET /v1/records/{seq}.
type recordResponse struct {
	Record   json.RawMessage `json:"record"`
	Leaf     string          `json:"leaf"`
	LeafHash string          `json:"leaf_hash"`
	Proof    struct {
		LeafIndex uint64   `json:"leaf_index"`
		TreeSize  uint64   `json:"tree_size"`
		Hashes    []string `json:"hashes"`
	} `json:"proof"`
	Checkpoint string `json:"checkpoint"`
}

// Stored record bytes (record/encoding.go): version 0x01, seq (8 bytes big
// endian), recorded_at (8 bytes big endian, Unix ns), canonical JSON body
// without seq and recorded_at. The API form is the body with "seq" first and
// "recorded_at" last.
const leafHeader = 1 + 8 + 8

// apiFormOfLeaf returns the API representation of the record a leaf encodes.
func apiFormOfLeaf(leaf []byte) (seq uint64, api []byte, err error) {
	if len(leaf) < leafHeader+2 || leaf[0] != 1 {
		return 0, nil, fmt.Errorf("leaf %q: not a version 1 record", leaf)
	}
	seq = binary.BigEndian.Uint64(leaf[1:9])
	ns := int64(binary.BigEndian.Uint64(leaf[9:17]))
	body := leaf[leafHeader:]
	if body[0] != '{' || body[len(body)-1] != '}' || !json.Valid(body) {
		return 0, nil, fmt.Errorf("leaf body %q is not a JSON object", body)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"seq":%d,`, seq)
	b.Write(body[1 : len(body)-1])
	fmt.Fprintf(&b, `,"recorded_at":%q}`, time.Unix(0, ns).UTC().Format(time.RFC3339Nano))
	return seq, b.Bytes(), nil
}

// checkRecordResponse verifies one GET /v1/records/{seq} answer: the leaf
// hash, the seq in the leaf, that the record is the one the leaf encodes,
// and the inclusion proof against root (a tree of size size).
func checkRecordResponse(rr recordResponse, seq, size uint64, root []byte) error {
	leaf, err := base64.StdEncoding.DecodeString(rr.Leaf)
	if err != nil {
		return fmt.Errorf("seq %d: leaf is not base64: %w", seq, err)
	}
	lh := rfc6962.DefaultHasher.HashLeaf(leaf)
	if got, err := base64.StdEncoding.DecodeString(rr.LeafHash); err != nil || !bytes.Equal(got, lh) {
		return fmt.Errorf("seq %d: leaf_hash %s is not SHA-256(0x00 || leaf) = %s", seq, rr.LeafHash, base64.StdEncoding.EncodeToString(lh))
	}
	lseq, api, err := apiFormOfLeaf(leaf)
	if err != nil {
		return fmt.Errorf("seq %d: %w", seq, err)
	}
	if lseq != seq {
		return fmt.Errorf("seq %d: the leaf holds seq %d", seq, lseq)
	}
	if !bytes.Equal(api, rr.Record) {
		return fmt.Errorf("seq %d: served record\n%s\nis not the one the leaf encodes\n%s", seq, rr.Record, api)
	}
	if rr.Proof.LeafIndex != seq || rr.Proof.TreeSize != size {
		return fmt.Errorf("seq %d: proof is for leaf %d in tree size %d, want %d in %d", seq, rr.Proof.LeafIndex, rr.Proof.TreeSize, seq, size)
	}
	hashes, err := decodeHashes(rr.Proof.Hashes)
	if err != nil {
		return fmt.Errorf("seq %d: %w", seq, err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, size, lh, hashes, root); err != nil {
		return fmt.Errorf("seq %d: inclusion proof in tree size %d: %w", seq, size, err)
	}
	return nil
}

// consistencyResponse is the body of GET /v1/proof/consistency.
type consistencyResponse struct {
	From   uint64   `json:"from"`
	To     uint64   `json:"to"`
	Hashes []string `json:"hashes"`
}

// fetchConsistency asks base for the proof that old is a prefix of cur and
// verifies it against both roots.
func fetchConsistency(base string, old, cur checkpoint) error {
	if old.size > cur.size {
		return fmt.Errorf("checkpoint size went back from %d to %d", old.size, cur.size)
	}
	path := fmt.Sprintf("/v1/proof/consistency?from=%d&to=%d", old.size, cur.size)
	r, err := request(base, http.MethodGet, path, "", nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, r)
	}
	var cr consistencyResponse
	if err := json.Unmarshal(r.body, &cr); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if cr.From != old.size || cr.To != cur.size {
		return fmt.Errorf("GET %s: answered from=%d to=%d", path, cr.From, cr.To)
	}
	hashes, err := decodeHashes(cr.Hashes)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if old.size == 0 {
		// Every tree extends the empty one; merkle v0.0.3 refuses to
		// verify a proof from size 0 at all.
		if len(hashes) != 0 {
			return fmt.Errorf("consistency 0 -> %d: %d hashes, want none", cur.size, len(hashes))
		}
		return nil
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.size, cur.size, hashes, old.root, cur.root); err != nil {
		return fmt.Errorf("consistency %d -> %d: %w", old.size, cur.size, err)
	}
	return nil
}
