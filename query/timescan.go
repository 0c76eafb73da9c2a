package query

import (
	"bytes"
	"time"

	"github.com/stele/stele/record"
)

// rangeLog is the log's batched read, when it has one.
type rangeLog interface {
	ReadRawRange(from uint64, max int, dst [][]byte) ([][]byte, error)
}

// peekChunk is how many records one range read of a time scan takes.
const peekChunk = 256

// occurredPeek gives a time window's scan over the whole log (no posting
// list to carry the times) each record's occurred_at from stored bytes
// read a chunk at a time: read and decoded one by one, the records of a
// 4,096-record time block that fall outside the window were most of such
// a search's time. A zero time means "not known here": the page then reads
// and checks the record itself.
type occurredPeek struct {
	log  rangeLog
	lo   uint64
	raws [][]byte
}

func (e *Engine) occurredPeek() *occurredPeek {
	if l, ok := e.log.(rangeLog); ok {
		return &occurredPeek{log: l}
	}
	return nil
}

// at returns the occurred_at of the record at seq, reading the chunk that
// ends at seq (desc) or starts there (asc) when seq is not in hand.
func (p *occurredPeek) at(seq uint64, desc bool) time.Time {
	if p == nil {
		return time.Time{}
	}
	if seq < p.lo || seq-p.lo >= uint64(len(p.raws)) {
		start := seq
		if desc {
			start = seq + 1 - min(seq+1, peekChunk)
		}
		p.raws = p.raws[:0]
		// A range read may return fewer records than asked (it bounds its
		// bytes): a descending scan then moves its start up to end at seq.
		for range 3 {
			raws, err := p.log.ReadRawRange(start, int(max(seq-start+1, peekChunk)), p.raws[:0])
			if err != nil || len(raws) == 0 {
				p.raws = nil
				return time.Time{}
			}
			if p.lo, p.raws = start, raws; seq-start < uint64(len(raws)) {
				break
			}
			start = seq + 1 - uint64(len(raws))
		}
		if seq < p.lo || seq-p.lo >= uint64(len(p.raws)) {
			return time.Time{}
		}
	}
	return storedOccurredAt(p.raws[seq-p.lo])
}

// storedOccurredAt reads occurred_at from the end of a stored record,
// where appendBody writes it, as the body's last member; any other
// layout gives the zero time.
func storedOccurredAt(stored []byte) time.Time {
	const marker = `,"occurred_at":"`
	if len(stored) <= record.HeaderSize+len(marker)+2 || !bytes.HasSuffix(stored, []byte(`"}`)) {
		return time.Time{}
	}
	body := stored[record.HeaderSize : len(stored)-2]
	i := bytes.LastIndex(body, []byte(marker))
	if i < 0 {
		return time.Time{}
	}
	// The value is the last string of the text, and it closes the top
	// level object: the member is the body's own occurred_at.
	lit := body[i+len(marker):]
	if bytes.ContainsAny(lit, `"\`) {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(lit))
	if err != nil {
		return time.Time{}
	}
	return t
}
