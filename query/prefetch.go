package query

import (
	"sync"

	"github.com/stele/stele/index"
	"github.com/stele/stele/record"
)

// prefetchReaders bounds the reads in flight for one page. A page's
// records lie far apart in the log; read one after another, a page of an
// entity's history whose records are not in the page cache waited for
// each disk read in turn, while a disk serves several at once.
const prefetchReaders = 8

// prefetched holds the records a page is expected to need, read
// concurrently before the page's scan reads them in order.
type prefetched struct {
	recs map[uint64]*record.Record
}

// take returns the record at seq if it was prefetched.
func (p *prefetched) take(seq uint64) (*record.Record, bool) {
	if p == nil {
		return nil, false
	}
	r, ok := p.recs[seq]
	if ok {
		delete(p.recs, seq)
	}
	return r, ok
}

// prefetch reads, on up to prefetchReaders goroutines, the records of the
// first want postings of l from from on (in the scan's order) whose
// posting time is in f's window. It is only a head start: a record it
// could not read is left out, and the page's own read reports the error.
func (e *Engine) prefetch(l *index.List, blocks *index.Blocks, desc bool, from, size uint64, want int, f Filter) *prefetched {
	if l == nil || want < 2 {
		return nil
	}
	seqs := make([]uint64, 0, want)
	_ = e.ix.ScanBlocks(*l, desc, from, blocks, func(p index.Posting) bool {
		if p.Seq >= size {
			return desc
		}
		if p.OccurredAt.IsZero() || inWindow(p.OccurredAt, f) {
			seqs = append(seqs, p.Seq)
		}
		return len(seqs) < want
	})
	if len(seqs) < 2 {
		return nil
	}
	recs := make([]*record.Record, len(seqs))
	// Two reads per reader at least, the caller being one of them: in
	// the page cache a read is a few microseconds, near a goroutine's
	// start.
	readers := min(prefetchReaders, (len(seqs)+1)/2)
	read := func(w int) {
		for i := w; i < len(seqs); i += readers {
			if r, err := e.log.Read(seqs[i]); err == nil {
				recs[i] = r
			}
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < readers; w++ {
		wg.Go(func() { read(w) })
	}
	read(0)
	wg.Wait()
	p := &prefetched{recs: make(map[uint64]*record.Record, len(seqs))}
	for i, r := range recs {
		if r != nil {
			p.recs[seqs[i]] = r
		}
	}
	return p
}
