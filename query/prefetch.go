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

// prefetched is the head of a page's scan: the postings a scan of the list
// met, in its order, and the records of those the page is expected to
// read, read concurrently. The page walks these postings first and scans
// the list again only past them, if it needs more.
type prefetched struct {
	postings []index.Posting
	// done: the list has no posting after these.
	done bool
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

// rest is where the scan continues after the prefetched postings, or
// false when nothing is left.
func (p *prefetched) rest(desc bool) (uint64, bool) {
	if p.done || len(p.postings) == 0 {
		return 0, false
	}
	last := p.postings[len(p.postings)-1].Seq
	if desc {
		return last - 1, last > 0
	}
	return last + 1, true
}

// prefetch scans l from from on (in the scan's order) until it has met
// want postings of the snapshot whose posting time is in f's window, and
// reads their records on up to prefetchReaders goroutines. A record it
// could not read is left out, and the page's own read reports the error.
// It returns nil when there is no list to scan.
func (e *Engine) prefetch(l *index.List, blocks *index.Blocks, desc bool, from, size uint64, want int, f Filter) (*prefetched, error) {
	if l == nil || want < 2 {
		return nil, nil
	}
	pre := &prefetched{done: true}
	seqs := make([]uint64, 0, want)
	err := e.ix.ScanBlocks(*l, desc, from, blocks, func(p index.Posting) bool {
		pre.postings = append(pre.postings, p)
		if p.Seq >= size {
			// As the page treats it: skipped descending, the end ascending.
			return desc
		}
		if p.OccurredAt.IsZero() || inWindow(p.OccurredAt, f) {
			seqs = append(seqs, p.Seq)
		}
		// A page looks at maxScan postings at most.
		if len(seqs) == want || len(pre.postings) == maxScan {
			pre.done = false
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(seqs) < 2 {
		return pre, nil
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
	pre.recs = make(map[uint64]*record.Record, len(seqs))
	for i, r := range recs {
		if r != nil {
			pre.recs[seqs[i]] = r
		}
	}
	return pre, nil
}
