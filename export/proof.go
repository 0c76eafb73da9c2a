package export

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// ProofVersion is the version of the proof sidecar format.
const ProofVersion = 1

// ProofSuffix is appended to the data file's name to name its proof.
const ProofSuffix = ".proof.json"

// Header is the proof sidecar's part before the leaves.
type Header struct {
	Version int        `json:"stele_export"`
	Format  Format     `json:"format"`
	Filter  FilterJSON `json:"filter"`
	// Complete: the export holds every record below Size (no filter).
	Complete bool `json:"complete"`
	// Size: the export covers seqs below Size.
	Size        uint64 `json:"size"`
	VerifierKey string `json:"verifier_key"`
	// Checkpoint is the signed note, of a tree size at least Size.
	Checkpoint string `json:"checkpoint"`
	// Consistency proves tree Size a prefix of the checkpoint's tree
	// (complete exports only).
	Consistency [][]byte `json:"consistency,omitempty"`
}

// Leaf is one row's entry in the proof: its leaf hash and, for a filtered
// export, its inclusion proof against the checkpoint.
type Leaf struct {
	Seq      uint64   `json:"seq"`
	LeafHash []byte   `json:"leaf_hash"`
	Proof    [][]byte `json:"proof,omitempty"`
}

// FilterJSON is a query.Filter as written in the proof, with the names of
// the query parameters.
type FilterJSON struct {
	Source string `json:"source,omitempty"`
	Table  string `json:"table,omitempty"`
	Key    string `json:"key,omitempty"`
	Actor  string `json:"actor,omitempty"`
	Op     string `json:"op,omitempty"`
	Since  string `json:"since,omitempty"`
	Until  string `json:"until,omitempty"`
	Cause  string `json:"cause,omitempty"`
}

func filterJSON(f query.Filter) FilterJSON {
	out := FilterJSON{Source: f.Source, Table: f.Table, Key: f.Key, Actor: f.Actor, Op: string(f.Op), Cause: f.Cause}
	if !f.Since.IsZero() {
		out.Since = formatTime(f.Since)
	}
	if !f.Until.IsZero() {
		out.Until = formatTime(f.Until)
	}
	return out
}

func (fj FilterJSON) filter() (query.Filter, error) {
	f := query.Filter{Source: fj.Source, Table: fj.Table, Key: fj.Key, Actor: fj.Actor, Op: record.Op(fj.Op), Cause: fj.Cause}
	var err error
	if fj.Since != "" {
		if f.Since, err = time.Parse(timeLayout, fj.Since); err != nil {
			return f, fmt.Errorf("filter.since: %w", err)
		}
	}
	if fj.Until != "" {
		if f.Until, err = time.Parse(timeLayout, fj.Until); err != nil {
			return f, fmt.Errorf("filter.until: %w", err)
		}
	}
	return f, nil
}

// unfiltered reports whether f selects every record.
func unfiltered(f query.Filter) bool {
	return f.Source == "" && f.Table == "" && f.Key == "" && f.Actor == "" && f.Op == "" &&
		f.Since.IsZero() && f.Until.IsZero() && f.Blind == nil && f.Cause == ""
}

// matches applies f to r with the query engine's semantics: since is
// inclusive and until exclusive on occurred_at, key compares canonical key
// strings.
func matches(f query.Filter, r *record.Record) bool {
	if (f.Source != "" && r.Source.Name != f.Source) ||
		(f.Table != "" && r.Source.Table != f.Table) ||
		(f.Op != "" && r.Op != f.Op) ||
		(f.Actor != "" && r.ActorID() != f.Actor) ||
		(f.Cause != "" && r.CauseID() != f.Cause) ||
		(!f.Since.IsZero() && r.OccurredAt.Before(f.Since)) ||
		(!f.Until.IsZero() && !r.OccurredAt.Before(f.Until)) {
		return false
	}
	if f.Key != "" {
		k, err := record.KeyString(r.Key)
		return err == nil && k == f.Key
	}
	return true
}

// proofWriter streams the sidecar: the header, one leaf at a time, the
// trailer.
type proofWriter struct {
	w   *bufio.Writer
	n   uint64
	buf []byte
}

func newProofWriter(w io.Writer, h *Header) (*proofWriter, error) {
	head, err := marshal(h)
	if err != nil {
		return nil, err
	}
	pw := &proofWriter{w: bufio.NewWriterSize(w, 256<<10)}
	// Keep the header's members and open the leaves array inside the same
	// object.
	pw.w.Write(head[:len(head)-1])
	pw.w.WriteString(`,"leaves":[`)
	return pw, nil
}

func (p *proofWriter) leaf(l *Leaf) error {
	b := p.buf[:0]
	if p.n > 0 {
		b = append(b, ',')
	}
	b = append(b, "\n"...)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, l.Seq, 10)
	b = append(b, `,"leaf_hash":"`...)
	b = b64(b, l.LeafHash)
	b = append(b, '"')
	if len(l.Proof) > 0 {
		b = append(b, `,"proof":[`...)
		for i, h := range l.Proof {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = b64(b, h)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	p.buf = b
	p.n++
	_, err := p.w.Write(b)
	return err
}

func (p *proofWriter) close() error {
	p.w.WriteString("\n],\"records\":")
	p.w.WriteString(strconv.FormatUint(p.n, 10))
	p.w.WriteString("}\n")
	return p.w.Flush()
}

// proofReader streams a sidecar back.
type proofReader struct {
	dec     *jsontext.Decoder
	Header  Header
	records *uint64
	n       uint64
	done    bool
}

// ErrProofFormat reports a proof sidecar that is not well formed.
var ErrProofFormat = errors.New("malformed export proof")

func proofErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProofFormat, fmt.Sprintf(format, args...))
}

func newProofReader(r io.Reader) (*proofReader, error) {
	p := &proofReader{dec: jsontext.NewDecoder(bufio.NewReaderSize(r, 256<<10))}
	if tok, err := p.dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, proofErr("not a JSON object (%v)", err)
	}
	seen := map[string]bool{}
	for {
		tok, err := p.dec.ReadToken()
		if err != nil {
			return nil, proofErr("%v", err)
		}
		if tok.Kind() == '}' {
			return nil, proofErr("no leaves")
		}
		name := tok.String()
		if seen[name] {
			return nil, proofErr("member %q given twice", name)
		}
		seen[name] = true
		if name == "leaves" {
			break
		}
		v, err := p.dec.ReadValue()
		if err != nil {
			return nil, proofErr("%s: %v", name, err)
		}
		var dst any
		switch name {
		case "stele_export":
			dst = &p.Header.Version
		case "format":
			dst = &p.Header.Format
		case "filter":
			dst = &p.Header.Filter
		case "complete":
			dst = &p.Header.Complete
		case "size":
			dst = &p.Header.Size
		case "verifier_key":
			dst = &p.Header.VerifierKey
		case "checkpoint":
			dst = &p.Header.Checkpoint
		case "consistency":
			dst = &p.Header.Consistency
		default:
			return nil, proofErr("unknown member %q before the leaves", name)
		}
		if err := unmarshalStrict(string(v), dst); err != nil {
			return nil, proofErr("%s: %v", name, err)
		}
	}
	for _, name := range []string{"stele_export", "format", "size", "verifier_key", "checkpoint"} {
		if !seen[name] {
			return nil, proofErr("%s is missing (it must come before the leaves)", name)
		}
	}
	if p.Header.Version != ProofVersion {
		return nil, proofErr("stele_export version %d is not %d", p.Header.Version, ProofVersion)
	}
	if _, err := ParseFormat(string(p.Header.Format)); err != nil {
		return nil, proofErr("%v", err)
	}
	if tok, err := p.dec.ReadToken(); err != nil || tok.Kind() != '[' {
		return nil, proofErr("leaves is not an array (%v)", err)
	}
	return p, nil
}

// next returns the next leaf, or io.EOF after the last one.
func (p *proofReader) next() (*Leaf, error) {
	if p.done {
		return nil, io.EOF
	}
	if p.dec.PeekKind() == ']' {
		if err := p.finish(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	v, err := p.dec.ReadValue()
	if err != nil {
		return nil, proofErr("leaf %d: %v", p.n+1, err)
	}
	l := new(Leaf)
	if err := unmarshalStrict(string(v), l); err != nil {
		return nil, proofErr("leaf %d: %v", p.n+1, err)
	}
	if len(l.LeafHash) != 32 {
		return nil, proofErr("leaf %d (seq %d): leaf_hash is not 32 bytes", p.n+1, l.Seq)
	}
	p.n++
	return l, nil
}

func (p *proofReader) finish() error {
	p.done = true
	if _, err := p.dec.ReadToken(); err != nil {
		return proofErr("%v", err)
	}
	for {
		tok, err := p.dec.ReadToken()
		if err != nil {
			return proofErr("%v", err)
		}
		if tok.Kind() == '}' {
			break
		}
		if name := tok.String(); name != "records" {
			return proofErr("unknown member %q after the leaves", name)
		}
		v, err := p.dec.ReadValue()
		if err != nil {
			return proofErr("records: %v", err)
		}
		var n uint64
		if err := json.Unmarshal(v, &n); err != nil {
			return proofErr("records: %v", err)
		}
		p.records = &n
	}
	if p.records == nil {
		return proofErr("records count is missing after the leaves")
	}
	if *p.records != p.n {
		return proofErr("records says %d but %d leaves are listed", *p.records, p.n)
	}
	return nil
}

func b64(dst, src []byte) []byte {
	return base64.StdEncoding.AppendEncode(dst, src)
}
