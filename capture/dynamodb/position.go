package dynamodb

import (
	"context"
	"fmt"
	"maps"
	"math/big"
	"path/filepath"
	"strings"
	"sync"

	"github.com/stele/stele/capture"
)

// # Shard positions
//
// One PositionStore entry per shard, named "<table>/<stream label>/<shardId>"
// (the label is the stream ARN's last part, so a table's stream and the
// one it had before never mix), valued "<state> <sequence number>":
//
//	open 4900…    records up to this sequence number are durable
//	closed 4900…  the same, and the listing said the shard is closed
//	done 4900…    the shard is drained: every record of it is durable
//	gone 4900…    forgotten at the next save: the shard left the stream
//	              before it was drained (a gap record says so), or it
//	              belongs to an older stream of the table, drained
//
// and one entry per table captured by name, "stream/<table>", valued the
// ARN of the stream being followed: when the table's latest stream is
// another one (the stream was disabled and enabled again), the one named
// here is drained first.
//
// The sequence number is empty when no record of the shard was read yet.
// A done shard is forgotten once every child of it is done; a shard that
// has no entry but a descendant that has one is done too, which is how a
// restart knows the forgotten ones.

// Shard states in the position store.
const (
	stateOpen   = "open"
	stateClosed = "closed"
	stateDone   = "done"
	stateGone   = "gone"
)

type shardPos struct {
	state string
	seq   string
}

func (p shardPos) String() string { return p.state + " " + p.seq }

func parseShardPos(s string) (shardPos, error) {
	state, seq, _ := strings.Cut(s, " ")
	switch state {
	case stateOpen, stateClosed, stateDone, stateGone:
	default:
		return shardPos{}, fmt.Errorf("shard position %q: state %q: want open, closed, done or gone", s, state)
	}
	if seq != "" {
		if _, ok := new(big.Int).SetString(seq, 10); !ok {
			return shardPos{}, fmt.Errorf("shard position %q: sequence number %q is not a decimal number", s, seq)
		}
	}
	return shardPos{state, seq}, nil
}

// streamKeyPrefix starts the entries naming a table's stream.
const streamKeyPrefix = "stream/"

func shardKey(prefix, shard string) string { return prefix + shard }

// streamLabel is the last part of a stream ARN (its creation time).
func streamLabel(arn string) string {
	if i := strings.LastIndex(arn, "/stream/"); i >= 0 {
		return arn[i+len("/stream/"):]
	}
	return arn
}

// state is the source's positions: those durable now (moved by the
// acknowledger once records are in the log) and those saved.
type state struct {
	store *capture.PositionStore
	mu    sync.Mutex
	// durable holds every shard position whose records are durable.
	durable capture.Positions
	saved   capture.Positions
}

func openState(stateDir string) (*state, error) {
	dir := filepath.Join(stateDir, "positions")
	store, err := capture.OpenPositions(dir)
	if err != nil {
		return nil, fmt.Errorf("dynamodb source: %w", err)
	}
	all := store.All()
	for k, v := range all {
		if strings.HasPrefix(k, streamKeyPrefix) {
			continue
		}
		if _, err := parseShardPos(v); err != nil {
			return nil, fmt.Errorf("%w: position store %s: entry %s: %w", ErrConfig, dir, k, err)
		}
	}
	return &state{store: store, durable: all, saved: maps.Clone(all)}, nil
}

// setDurable merges positions whose records are durable.
func (st *state) setDurable(p capture.Positions) {
	st.mu.Lock()
	maps.Copy(st.durable, p)
	st.mu.Unlock()
}

// get returns the durable position of key.
func (st *state) get(key string) (shardPos, bool) {
	st.mu.Lock()
	v, ok := st.durable[key]
	st.mu.Unlock()
	if !ok {
		return shardPos{}, false
	}
	p, err := parseShardPos(v)
	return p, err == nil
}

// raw returns the durable value of key.
func (st *state) raw(key string) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	v, ok := st.durable[key]
	return v, ok
}

// keys returns the durable keys starting with prefix.
func (st *state) keys(prefix string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for k := range st.durable {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// save makes the durable positions that changed since the last save
// durable in the store, forgetting the keys of forget and every gone
// shard.
func (st *state) save(ctx context.Context, forget []string) error {
	st.mu.Lock()
	updates := capture.Positions{}
	remove := append([]string(nil), forget...)
	for k, v := range st.durable {
		if strings.HasPrefix(v, stateGone+" ") {
			remove = append(remove, k)
			continue
		}
		if st.saved[k] != v {
			updates[k] = v
		}
	}
	st.mu.Unlock()
	if len(updates) == 0 && len(remove) == 0 {
		return nil
	}
	if err := st.store.Update(ctx, updates, remove); err != nil {
		return err
	}
	st.mu.Lock()
	maps.Copy(st.saved, updates)
	for _, k := range remove {
		delete(st.saved, k)
		delete(st.durable, k)
	}
	st.mu.Unlock()
	return nil
}
