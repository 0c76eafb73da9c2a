package cluster

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Header names of a log stream message.
const (
	hdrFirst = "Stele-First"
	hdrCount = "Stele-Count"
)

// ErrBadBatch: a log stream message is not a batch this build can read.
var ErrBadBatch = errors.New("malformed log stream batch")

// batch is one sequenced group commit as it travels on the log stream.
type batch struct {
	first uint64
	note  []byte   // the writer's signed checkpoint after the batch
	raws  [][]byte // stored record bytes, seqs first, first+1, …
}

func encodeBatch(b batch) *nats.Msg {
	size := binary.MaxVarintLen64 + len(b.note)
	for _, r := range b.raws {
		size += binary.MaxVarintLen64 + len(r)
	}
	body := make([]byte, 0, size)
	body = binary.AppendUvarint(body, uint64(len(b.note)))
	body = append(body, b.note...)
	for _, r := range b.raws {
		body = binary.AppendUvarint(body, uint64(len(r)))
		body = append(body, r...)
	}
	sum := sha256.Sum256(body)
	m := nats.NewMsg("")
	m.Data = body
	m.Header.Set(hdrFirst, strconv.FormatUint(b.first, 10))
	m.Header.Set(hdrCount, strconv.Itoa(len(b.raws)))
	// Content-specific, so a retry of the same batch is dropped as a
	// duplicate while another writer's batch at the same position is not
	// mistaken for this one.
	m.Header.Set(nats.MsgIdHdr, strconv.FormatUint(b.first, 10)+"-"+hex.EncodeToString(sum[:8]))
	return m
}

func batchFirst(h nats.Header) (uint64, error) {
	first, err := strconv.ParseUint(h.Get(hdrFirst), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: header %s %q: %w", ErrBadBatch, hdrFirst, h.Get(hdrFirst), err)
	}
	return first, nil
}

func decodeBatch(h nats.Header, body []byte) (batch, error) {
	first, err := batchFirst(h)
	if err != nil {
		return batch{}, err
	}
	count, err := strconv.Atoi(h.Get(hdrCount))
	if err != nil || count < 1 {
		return batch{}, fmt.Errorf("%w: header %s %q is not a positive count", ErrBadBatch, hdrCount, h.Get(hdrCount))
	}
	next := func(what string) ([]byte, error) {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return nil, fmt.Errorf("%w: %s of the batch from seq %d: length cut short", ErrBadBatch, what, first)
		}
		p := body[k : k+int(n)]
		body = body[k+int(n):]
		return p, nil
	}
	b := batch{first: first, raws: make([][]byte, 0, count)}
	if b.note, err = next("checkpoint"); err != nil {
		return batch{}, err
	}
	for i := 0; i < count; i++ {
		r, err := next(fmt.Sprintf("record %d", i))
		if err != nil {
			return batch{}, err
		}
		b.raws = append(b.raws, r)
	}
	if len(body) != 0 {
		return batch{}, fmt.Errorf("%w: %d bytes after the %d records of the batch from seq %d", ErrBadBatch, len(body), count, first)
	}
	return b, nil
}
