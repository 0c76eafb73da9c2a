package index

// Settled reports whether the index has no background work running right
// now: its id filter is built and Pebble is not compacting. Right after a large
// load or a restart both take the machine's cores for a while; a
// measurement of query latency waits for this so that it measures the
// queries, and says so.
func (ix *Index) Settled() bool {
	ix.ids.mu.RLock()
	ready := ix.ids.ready
	ix.ids.mu.RUnlock()
	if !ready {
		return false
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.readable() != nil {
		return false
	}
	m := ix.db.Metrics()
	// Pebble's estimated debt can stay above zero with nothing
	// scheduled, so only a running compaction counts as work.
	return m.Compact.NumInProgress == 0
}
