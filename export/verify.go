package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// ErrVerify: an export does not verify. Every such error is a *VerifyError.
var ErrVerify = errors.New("export does not verify")

// VerifyError says where an export failed verification: the data row
// (1-based, header excluded; 0 when no single row is at fault) and its seq.
type VerifyError struct {
	Row    uint64
	Seq    uint64
	HasSeq bool
	Reason string
	Err    error
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	switch {
	case e.Row > 0 && e.HasSeq:
		fmt.Fprintf(&b, "row %d (seq %d): ", e.Row, e.Seq)
	case e.Row > 0:
		fmt.Fprintf(&b, "row %d: ", e.Row)
	case e.HasSeq:
		fmt.Fprintf(&b, "seq %d: ", e.Seq)
	}
	b.WriteString(e.Reason)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is find ErrVerify and the underlying cause.
func (e *VerifyError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrVerify, e.Err}
	}
	return []error{ErrVerify}
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// VerifierKey pins the log's note verifier key. Empty trusts the key
	// written in the proof, which proves only that the export is
	// self-consistent: anyone can sign a checkpoint with a key of their own.
	VerifierKey string
	// Progress, when set, is called now and then with the seq reached and
	// the export's size (records with seqs below it).
	Progress func(seq, size uint64)
}

// VerifyReport describes an export that verified.
type VerifyReport struct {
	Format     Format
	Records    uint64
	Size       uint64
	Complete   bool
	Filter     FilterJSON
	Checkpoint *stele.Checkpoint
	// KeyPinned: the checkpoint was checked against VerifyOptions.VerifierKey.
	KeyPinned bool
}

// VerifyFile verifies the export in path against its proof in
// path+ProofSuffix.
func VerifyFile(ctx context.Context, path string, opts VerifyOptions) (*VerifyReport, error) {
	data, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open export: %w", err)
	}
	defer data.Close()
	st, err := data.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat export: %w", err)
	}
	pf, err := os.Open(path + ProofSuffix)
	if err != nil {
		return nil, fmt.Errorf("open the export's proof (it travels next to the export as FILE%s): %w", ProofSuffix, err)
	}
	defer pf.Close()
	return Verify(ctx, data, st.Size(), pf, opts)
}

// Verify checks an export offline: the checkpoint's signature, then every
// row in step with its proof entry — rebuilt stored bytes, leaf hash, seq
// order, the export's filter, and either its inclusion proof or, for a
// complete export, the root of all rows and its consistency with the
// checkpoint. It reads both files once, as streams.
func Verify(ctx context.Context, data io.ReaderAt, dataSize int64, proofR io.Reader, opts VerifyOptions) (*VerifyReport, error) {
	pr, err := newProofReader(proofR)
	if err != nil {
		return nil, &VerifyError{Reason: "proof", Err: err}
	}
	h := &pr.Header
	rep := &VerifyReport{Format: h.Format, Size: h.Size, Complete: h.Complete, Filter: h.Filter}
	key := strings.TrimSpace(opts.VerifierKey)
	rep.KeyPinned = key != ""
	if key == "" {
		key = h.VerifierKey
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, &VerifyError{Reason: "verifier key is not a note verifier key", Err: err}
	}
	cp, err := stele.OpenCheckpoint([]byte(h.Checkpoint), v)
	if err != nil {
		return nil, &VerifyError{Reason: "checkpoint does not verify with the log's key", Err: err}
	}
	rep.Checkpoint = cp
	if h.Size > cp.Size {
		return nil, &VerifyError{Reason: fmt.Sprintf("proof: export size %d exceeds the checkpoint's tree size %d", h.Size, cp.Size)}
	}
	f, err := h.Filter.filter()
	if err != nil {
		return nil, &VerifyError{Reason: "proof", Err: err}
	}
	if h.Complete != unfiltered(f) {
		return nil, &VerifyError{Reason: fmt.Sprintf("proof: complete is %v for a filter %+v", h.Complete, h.Filter)}
	}

	var rows rowReader
	switch h.Format {
	case JSONL:
		rows = &jsonlReader{r: bufioReader(io.NewSectionReader(data, 0, dataSize))}
	case CSV:
		if rows, err = newCSVReader(io.NewSectionReader(data, 0, dataSize)); err != nil {
			return nil, &VerifyError{Reason: "data file", Err: err}
		}
	case Parquet:
		if rows, err = newParquetReader(data, dataSize); err != nil {
			return nil, &VerifyError{Reason: "data file", Err: err}
		}
	}

	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	var enc []byte
	var row, prev uint64
	for ; ; row++ {
		if row%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		n := row + 1
		r, rerr := rows.next()
		l, lerr := pr.next()
		if lerr != nil && lerr != io.EOF {
			return nil, &VerifyError{Row: n, Reason: "proof", Err: lerr}
		}
		if rerr == io.EOF && lerr == io.EOF {
			break
		}
		if rerr == io.EOF {
			return nil, &VerifyError{Row: n, Seq: l.Seq, HasSeq: true,
				Reason: fmt.Sprintf("the proof lists seq %d but the data file ends after %d rows: rows were dropped", l.Seq, row)}
		}
		if rerr != nil {
			e := &VerifyError{Row: n, Reason: "row altered", Err: rerr}
			if r != nil {
				e.Seq, e.HasSeq = r.Seq, true
			}
			return nil, e
		}
		if lerr == io.EOF {
			return nil, &VerifyError{Row: n, Seq: r.Seq, HasSeq: true, Reason: "the row has no entry in the proof: a row was added"}
		}
		fail := func(reason string, err error) error {
			return &VerifyError{Row: n, Seq: r.Seq, HasSeq: true, Reason: reason, Err: err}
		}
		switch {
		case r.Seq != l.Seq:
			return nil, fail(fmt.Sprintf("the proof's entry %d is for seq %d: rows were dropped, added or reordered", n, l.Seq), nil)
		case row > 0 && r.Seq <= prev:
			return nil, fail(fmt.Sprintf("does not follow seq %d: rows were reordered or repeated", prev), nil)
		case r.Seq >= h.Size:
			return nil, fail(fmt.Sprintf("is beyond the export's size %d", h.Size), nil)
		case h.Complete && r.Seq != row:
			return nil, fail(fmt.Sprintf("a complete export holds every seq in order, so seq %d belongs here: rows were dropped or reordered", row), nil)
		case !matches(f, r):
			return nil, fail("does not match the export's filter", nil)
		}
		prev = r.Seq
		if opts.Progress != nil && row%256 == 0 {
			opts.Progress(r.Seq+1, h.Size)
		}
		enc = record.AppendEncoded(enc[:0], r)
		leaf := rfc6962.DefaultHasher.HashLeaf(enc)
		if !bytes.Equal(leaf, l.LeafHash) {
			return nil, fail("the row's content does not hash to its proven leaf: a value was changed", nil)
		}
		if h.Complete {
			if err := rng.Append(leaf, nil); err != nil {
				return nil, err
			}
			continue
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, r.Seq, cp.Size, leaf, l.Proof, cp.Root); err != nil {
			return nil, fail(fmt.Sprintf("inclusion proof does not lead to the checkpoint's root (tree size %d)", cp.Size), err)
		}
	}
	rep.Records = row
	if opts.Progress != nil {
		opts.Progress(h.Size, h.Size)
	}
	if h.Complete {
		if row != h.Size {
			return nil, &VerifyError{Reason: fmt.Sprintf("a complete export of size %d must hold %d rows, not %d", h.Size, h.Size, row)}
		}
		if h.Size > 0 {
			root, err := rng.GetRootHash(nil)
			if err != nil {
				return nil, err
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, h.Size, cp.Size, h.Consistency, root, cp.Root); err != nil {
				return nil, &VerifyError{Reason: fmt.Sprintf("the rows do not hash to the signed tree: the root of their %d leaves is not consistent with the checkpoint of size %d", h.Size, cp.Size), Err: err}
			}
		}
	}
	return rep, nil
}

// CheckFilter applies the query engine's rules to f, so an export is
// refused exactly when the same search would be.
func CheckFilter(f query.Filter) error {
	if f.Blind != nil {
		// A recipient could not check a blind-index match offline, and the
		// proof would have to name the searched value.
		return &record.FieldError{Field: "pii", Reason: "searching by a personal value is not available for exports"}
	}
	if f.Key != "" && (f.Source == "" || f.Table == "") {
		return &record.FieldError{Field: "key", Reason: "needs source and table"}
	}
	if f.Op != "" && !f.Op.Valid() {
		return &record.FieldError{Field: "op", Reason: fmt.Sprintf("%q is not one of %s", f.Op, record.OpList())}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return &record.FieldError{Field: "until", Reason: "must be after since"}
	}
	return nil
}
