package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stele/stele"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
)

// Log is what an export reads from the store of record.
type Log interface {
	// Replay decodes records [from, to) in order, in batches.
	Replay(ctx context.Context, from, to uint64, batch int, fn func([]*record.Record) error) error
	InclusionProof(seq, size uint64) ([][]byte, error)
	ConsistencyProof(from, to uint64) ([][]byte, error)
	RootAt(size uint64) ([]byte, error)
}

// Query is what an export needs from the query engine: the filtered
// search of GET /v1/records, used when an index list can narrow the scan.
type Query interface {
	Records(ctx context.Context, f query.Filter, page query.PageRequest) (*query.Page, error)
}

// Exporter writes exports of one log.
type Exporter struct {
	log Log
	q   Query
}

// New returns an exporter over a log and its query engine. q may be nil:
// filters are then applied while scanning the whole log.
func New(l Log, q Query) *Exporter { return &Exporter{log: l, q: q} }

// Options describe one export.
type Options struct {
	Format Format
	Filter query.Filter
	// Size: export records with seqs below Size; at most the checkpoint's.
	Size uint64
	// Checkpoint is the signed checkpoint the proof refers to.
	Checkpoint *stele.Checkpoint
	// VerifierKey is the log's note verifier key, written into the proof.
	VerifierKey string
	// Reveal, when set, rewrites each record after its leaf hash is taken
	// and before its row is written (the API shows personal data in clear
	// with it). Rows so rewritten no longer match the stored leaves: such
	// a data file cannot be verified, and the proof, if written, still
	// covers the records as stored.
	Reveal func(ctx context.Context, r *record.Record) error
	// Progress, when set, is called now and then with the seq the export
	// has reached and Size, and once more with Size, Size at the end.
	Progress func(seq, size uint64)
}

// Summary describes a finished export.
type Summary struct {
	Records  uint64
	Size     uint64
	Complete bool
}

// Errors of Write that callers tell apart.
var (
	// ErrSize: Options.Size exceeds the checkpoint's tree size.
	ErrSize = errors.New("export size beyond the checkpoint")
	// ErrSelfCheck: the proof being written did not verify against the
	// log's own tree, so the export would not verify; nothing is wrong with
	// the caller's request.
	ErrSelfCheck = errors.New("export failed its own proof check")
)

// Write streams the export's data file to data and its proof to proof, in
// one pass over the log; either writer may be nil to skip that file. Memory
// stays bounded whatever the export's size.
func (e *Exporter) Write(ctx context.Context, opts Options, data, proofW io.Writer) (*Summary, error) {
	cp := opts.Checkpoint
	if cp == nil {
		return nil, errors.New("export: no checkpoint given")
	}
	if opts.Size > cp.Size {
		return nil, fmt.Errorf("%w: size %d, checkpoint tree size %d", ErrSize, opts.Size, cp.Size)
	}
	if _, err := ParseFormat(string(opts.Format)); err != nil {
		return nil, err
	}
	if err := CheckFilter(opts.Filter); err != nil {
		return nil, err
	}
	sum := &Summary{Size: opts.Size, Complete: unfiltered(opts.Filter)}
	var rows rowWriter
	if data != nil {
		var err error
		if rows, err = newRowWriter(opts.Format, data); err != nil {
			return nil, err
		}
	}
	var pw *proofWriter
	var rng *compact.Range
	if proofW != nil {
		h := &Header{Version: ProofVersion, Format: opts.Format, Filter: filterJSON(opts.Filter), Complete: sum.Complete,
			Size: opts.Size, VerifierKey: opts.VerifierKey, Checkpoint: string(cp.Note)}
		if sum.Complete && opts.Size < cp.Size {
			var err error
			if h.Consistency, err = e.log.ConsistencyProof(opts.Size, cp.Size); err != nil {
				return nil, fmt.Errorf("consistency proof %d to %d: %w", opts.Size, cp.Size, err)
			}
		}
		var err error
		if pw, err = newProofWriter(proofW, h); err != nil {
			return nil, err
		}
		rng = (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	}

	var enc []byte
	emit := func(r *record.Record) error {
		sum.Records++
		if opts.Progress != nil && sum.Records%256 == 0 {
			opts.Progress(r.Seq+1, opts.Size)
		}
		var leaf Leaf
		if pw != nil {
			// The leaf is rebuilt from the decoded record exactly as a
			// recipient will rebuild it from the row, and checked against
			// the log's tree before the row goes out.
			enc = record.AppendEncoded(enc[:0], r)
			leaf = Leaf{Seq: r.Seq, LeafHash: rfc6962.DefaultHasher.HashLeaf(enc)}
			if sum.Complete {
				if err := rng.Append(leaf.LeafHash, nil); err != nil {
					return err
				}
			} else {
				hashes, err := e.log.InclusionProof(r.Seq, cp.Size)
				if err != nil {
					return fmt.Errorf("inclusion proof of seq %d: %w", r.Seq, err)
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, r.Seq, cp.Size, leaf.LeafHash, hashes, cp.Root); err != nil {
					return fmt.Errorf("%w: seq %d: %w", ErrSelfCheck, r.Seq, err)
				}
				leaf.Proof = hashes
			}
		}
		if rows != nil {
			if opts.Reveal != nil {
				if err := opts.Reveal(ctx, r); err != nil {
					return fmt.Errorf("reveal seq %d: %w", r.Seq, err)
				}
			}
			if err := rows.write(r); err != nil {
				return fmt.Errorf("write seq %d: %w", r.Seq, err)
			}
		}
		if pw != nil {
			return pw.leaf(&leaf)
		}
		return nil
	}
	if err := e.scan(ctx, opts.Filter, opts.Size, emit); err != nil {
		return nil, err
	}
	if opts.Progress != nil {
		opts.Progress(opts.Size, opts.Size)
	}
	if rows != nil {
		if err := rows.close(); err != nil {
			return nil, fmt.Errorf("finish %s data: %w", opts.Format, err)
		}
	}
	if pw != nil {
		if sum.Complete && opts.Size > 0 {
			root, err := rng.GetRootHash(nil)
			if err != nil {
				return nil, err
			}
			want, err := e.log.RootAt(opts.Size)
			if err != nil {
				return nil, fmt.Errorf("root of tree size %d: %w", opts.Size, err)
			}
			if !bytes.Equal(root, want) {
				return nil, fmt.Errorf("%w: the exported records do not hash to the log's root of tree size %d", ErrSelfCheck, opts.Size)
			}
		}
		if err := pw.close(); err != nil {
			return nil, fmt.Errorf("finish proof: %w", err)
		}
	}
	return sum, nil
}

// replayBatch is the records decoded per Replay callback.
const replayBatch = 1024

// scan hands fn every record below size that f selects, ascending. Filters
// an index list narrows (source, actor, key, cause) go through the query engine;
// the rest are applied during one sequential pass over the log, which is
// faster than the engine's per-record reads when nearly every record must
// be looked at anyway.
func (e *Exporter) scan(ctx context.Context, f query.Filter, size uint64, fn func(*record.Record) error) error {
	if e.q == nil || (f.Source == "" && f.Actor == "" && f.Key == "" && f.Cause == "") {
		return e.log.Replay(ctx, 0, size, replayBatch, func(recs []*record.Record) error {
			for _, r := range recs {
				if matches(f, r) {
					if err := fn(r); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	// Exports carry records as stored: no read hook may reveal sealed
	// fields, whatever the caller's context holds.
	ctx = query.WithReadHook(ctx, nil)
	page := query.PageRequest{Order: query.Asc, Limit: query.MaxLimit}
	for {
		res, err := e.q.Records(ctx, f, page)
		if err != nil {
			return err
		}
		for _, r := range res.Records {
			if r.Seq >= size {
				return nil
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if res.NextCursor == "" {
			return nil
		}
		page.Cursor = res.NextCursor
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
