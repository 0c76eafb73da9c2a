package capture

// # Position store
//
// A source whose upstream does not keep the consumer's position (a MySQL
// binlog reader, DynamoDB Streams, a Kafka consumer without group commits)
// keeps it here: several named positions (one per shard or partition, or a
// single "gtid"), saved only after the records up to them are durable
// (Acknowledger.OnDurable does that), and read back on start.
//
// On disk, a directory of its own per source with two files,
// positions.0 and positions.1, written alternately, each one frame of the
// codec the log and the keystore use (internal/frame: length, CRC-32C of
// length and payload, payload), whose payload is
//
//	+------------+---------+------------+----------------------+
//	| "STELEPOS" | version | generation | JSON object          |
//	|  8 bytes   | 1 byte  | uint64 BE  | name → position      |
//	+------------+---------+------------+----------------------+
//
// Save writes the
// next generation over the older file and fsyncs it; the newer file is
// never touched, so a crash or torn write mid-save leaves the previous
// positions readable. Open takes the valid file of the higher generation.
// When no file is valid: if only one exists it was the very first save,
// which never completed, so there are no positions yet; if both exist, one
// of them was written completely, so both being invalid is damage, an
// error (ErrPositionsDamaged).

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"github.com/stele/stele/internal/atomicfile"
	"github.com/stele/stele/internal/frame"
)

// Positions are a source's named upstream positions, opaque to the
// runtime (a GTID set, "file:pos", a shard's sequence number, a partition
// offset).
type Positions map[string]string

// ErrPositionsDamaged: neither position file of a source holds a valid
// frame.
var ErrPositionsDamaged = errors.New("capture position store damaged")

const (
	posMagic   = "STELEPOS"
	posVersion = 1
	posHeader  = len(posMagic) + 1 + 8
	// maxPositionsFrame bounds what Open reads as one source's positions
	// (thousands of shards or partitions fit many times over).
	maxPositionsFrame = 64 << 20
)

// PositionStore is one source's durable positions. It is safe for
// concurrent use.
type PositionStore struct {
	dir string
	mu  sync.Mutex
	gen uint64
	cur Positions
	// created records which files exist, so the directory is fsync'd
	// once after each file's creation.
	created [2]bool
}

// OpenPositions opens (creating it when missing) the position store in dir,
// a directory of one source's own.
func OpenPositions(dir string) (*PositionStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open position store %s: %w", dir, err)
	}
	s := &PositionStore{dir: dir, cur: Positions{}}
	type found struct {
		gen uint64
		pos Positions
		err error
	}
	var files [2]*found
	for i := range files {
		data, err := os.ReadFile(s.file(i))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open position store: %w", err)
		}
		s.created[i] = true
		gen, pos, err := decodePositions(data)
		files[i] = &found{gen, pos, err}
	}
	var best *found
	for _, f := range files {
		if f != nil && f.err == nil && (best == nil || f.gen > best.gen) {
			best = f
		}
	}
	switch {
	case best != nil:
		s.gen, s.cur = best.gen, best.pos
	case files[0] != nil && files[1] != nil:
		return nil, fmt.Errorf("%w: %s: %v; %s: %v; restore the directory from a backup, or remove it to capture again from the upstream's oldest retained position (records already stored keep their ids and are not stored twice)",
			ErrPositionsDamaged, s.file(0), files[0].err, s.file(1), files[1].err)
	}
	return s, nil
}

func (s *PositionStore) file(i int) string {
	return filepath.Join(s.dir, fmt.Sprintf("positions.%d", i))
}

// Get returns the position saved under name.
func (s *PositionStore) Get(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.cur[name]
	return p, ok
}

// All returns a copy of every saved position.
func (s *PositionStore) All() Positions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.cur)
}

// Save merges updates into the saved positions and makes them durable
// before it returns. Call it only once the records up to these positions
// are durable in the log: as the OnDurable of an Acknowledger[Positions],
// the runtime keeps that order.
func (s *PositionStore) Save(ctx context.Context, updates Positions) error {
	return s.Update(ctx, updates, nil)
}

// Update is Save that also forgets the positions named in remove (a
// shard that is done and whose children are done, say), in the same
// durable write, so the store does not grow with every shard a source
// ever read.
func (s *PositionStore) Update(ctx context.Context, updates Positions, remove []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(s.cur)
	maps.Copy(next, updates)
	for _, name := range remove {
		delete(next, name)
	}
	gen := s.gen + 1
	data, err := encodePositions(gen, next)
	if err != nil {
		return err
	}
	i := int(gen % 2)
	f, err := os.OpenFile(s.file(i), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save source positions: %w", err)
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("save source positions to %s: %w", s.file(i), err)
	}
	if !s.created[i] {
		if err := atomicfile.SyncDir(s.dir); err != nil {
			return fmt.Errorf("save source positions: %w", err)
		}
		s.created[i] = true
	}
	s.gen, s.cur = gen, next
	return nil
}

func encodePositions(gen uint64, pos Positions) ([]byte, error) {
	js, err := json.Marshal(pos) // map keys sorted: deterministic
	if err != nil {
		return nil, fmt.Errorf("encode source positions: %w", err)
	}
	payload := make([]byte, posHeader, posHeader+len(js))
	copy(payload, posMagic)
	payload[8] = posVersion
	binary.BigEndian.PutUint64(payload[9:], gen)
	return frame.Append(nil, append(payload, js...)), nil
}

func decodePositions(data []byte) (uint64, Positions, error) {
	payload, n, err := frame.Parse(data, maxPositionsFrame)
	switch {
	case len(data) == 0:
		return 0, nil, errors.New("empty file, not a position frame")
	case errors.Is(err, frame.ErrTorn):
		return 0, nil, fmt.Errorf("%d bytes, a frame cut short (torn write)", len(data))
	case err != nil:
		return 0, nil, err
	case n != len(data):
		return 0, nil, fmt.Errorf("%d bytes after the frame", len(data)-n)
	case len(payload) < posHeader || !bytes.Equal(payload[:8], []byte(posMagic)):
		return 0, nil, fmt.Errorf("%d bytes, not a position frame", len(data))
	case payload[8] != posVersion:
		return 0, nil, fmt.Errorf("version %d, want %d", payload[8], posVersion)
	}
	gen := binary.BigEndian.Uint64(payload[9:])
	pos := Positions{}
	if err := json.Unmarshal(payload[posHeader:], &pos); err != nil {
		return 0, nil, fmt.Errorf("payload: %w", err)
	}
	return gen, pos, nil
}
