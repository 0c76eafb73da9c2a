package capture

import (
	"bufio"
	"encoding/gob"
	"fmt"
	"io"
	"os"

	"github.com/stele/stele/record"
)

// TxBuffer holds one upstream transaction's records until it commits. Past
// Limit bytes of images the records move to a temporary file (gob-encoded,
// read back in order by Replay), so a transaction larger than memory can
// still be appended whole and in order. The zero value is not usable; set
// Limit (and Dir) first.
type TxBuffer struct {
	// Limit is how many image bytes are kept in memory before spilling.
	Limit int
	// Dir is where the spill file goes ("" is the system's temporary
	// directory).
	Dir string
	// OnSpill, when set, is called once with the spill file's name when the
	// buffer first spills (a source logs it).
	OnSpill func(file string)

	recs  []*record.Record // in memory, after the spilled ones
	bytes int              // image bytes in recs

	file    *os.File
	w       *bufio.Writer
	enc     *gob.Encoder
	spilled int
}

// Add appends r to the transaction. Once the buffer has spilled, every
// later record goes straight to the file: memory stays at what the first
// Limit bytes took, however large the transaction grows.
func (b *TxBuffer) Add(r *record.Record) error {
	if b.file != nil {
		if err := b.enc.Encode(r); err != nil {
			return fmt.Errorf("spill a transaction to %s: %w", b.file.Name(), err)
		}
		b.spilled++
		return nil
	}
	b.recs = append(b.recs, r)
	b.bytes += len(r.Key) + len(r.Before) + len(r.After) + 256
	if b.bytes <= b.Limit {
		return nil
	}
	if b.file == nil {
		f, err := os.CreateTemp(b.Dir, "stele-tx-*.gob")
		if err != nil {
			return fmt.Errorf("spill a large transaction to disk (set the spill directory to a writable place): %w", err)
		}
		b.file, b.w = f, bufio.NewWriterSize(f, 1<<20)
		b.enc = gob.NewEncoder(b.w)
		if b.OnSpill != nil {
			b.OnSpill(f.Name())
		}
	}
	for _, r := range b.recs {
		if err := b.enc.Encode(r); err != nil {
			return fmt.Errorf("spill a transaction to %s: %w", b.file.Name(), err)
		}
	}
	b.spilled += len(b.recs)
	// Dropped, not truncated: a truncated slice would keep every record
	// reachable through its backing array.
	b.recs, b.bytes = nil, 0
	return nil
}

// Spilled reports whether part of the transaction is on disk; then Replay,
// not Records, gives all of it.
func (b *TxBuffer) Spilled() bool { return b.file != nil }

// Len is the number of records in the transaction.
func (b *TxBuffer) Len() int { return b.spilled + len(b.recs) }

// Held is the number of records held in memory (the rest are on disk).
func (b *TxBuffer) Held() int { return len(b.recs) }

// Records are the records held in memory: the whole transaction unless it
// Spilled.
func (b *TxBuffer) Records() []*record.Record { return b.recs }

// Replay calls fn with the transaction's records in order, in batches of
// at most batchSize, reading the spilled ones back from disk first. fn may
// keep a batch.
func (b *TxBuffer) Replay(batchSize int, fn func([]*record.Record) error) error {
	if b.file != nil {
		if err := b.w.Flush(); err != nil {
			return fmt.Errorf("spill a transaction to %s: %w", b.file.Name(), err)
		}
		if _, err := b.file.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("read back spilled transaction %s: %w", b.file.Name(), err)
		}
		dec := gob.NewDecoder(bufio.NewReaderSize(b.file, 1<<20))
		batch := make([]*record.Record, 0, batchSize)
		for i := range b.spilled {
			r := &record.Record{}
			if err := dec.Decode(r); err != nil {
				return fmt.Errorf("read back spilled transaction %s, record %d: %w", b.file.Name(), i, err)
			}
			batch = append(batch, r)
			if len(batch) == batchSize || i == b.spilled-1 {
				if err := fn(batch); err != nil {
					return err
				}
				batch = make([]*record.Record, 0, batchSize)
			}
		}
	}
	for lo := 0; lo < len(b.recs); lo += batchSize {
		if err := fn(b.recs[lo:min(lo+batchSize, len(b.recs))]); err != nil {
			return err
		}
	}
	return nil
}

// Discard removes the spill file, if any (the transaction was appended, or
// will be sent again by the upstream after a reconnection). It may be
// called on a nil buffer and more than once.
func (b *TxBuffer) Discard() {
	if b != nil && b.file != nil {
		b.file.Close()
		os.Remove(b.file.Name())
		b.file = nil
	}
}
