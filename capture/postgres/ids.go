package postgres

// # Record ids
//
// Two schemes, recorded per source in its position store
// (<StateDir>/positions, keys "id_scheme" and "id_scheme_from"):
//
//   - "change" (new sources): tx.position is the LSN of the change's own
//     WAL record (the XLogData's WALStart, which pgoutput sets to the
//     change's LSN for every row, truncate and logical message, in a
//     streamed in-progress transaction too) and the id is
//     record.DeriveChangeID: source, that LSN and the key. A Debezium
//     PostgreSQL event carries the same LSN as source.lsn, so a Kafka or
//     NATS source that mirrors this one (its `mirrors:` names this
//     source) derives the same id and the change is one record. Rows of
//     one multi-row WAL record (COPY, multi-row INSERT) share the LSN and
//     differ by key; rows of a key-less table that are equal in every
//     column within one such record are told apart by their order,
//     "<lsn>+<n>" (Debezium's side cannot tell them apart). Snapshot rows
//     carry the slot's consistent point.
//   - "commit" (sources that ran before the change scheme existed):
//     tx.position is the transaction's commit LSN and the id
//     record.DeriveID of it and tx.index.
//
// Migration: a source whose slot already exists and which has no scheme
// recorded ran under the commit scheme. It switches to the change scheme
// at a recorded boundary, the server's WAL insert position when the
// switch is made: a transaction committed before it may already be in the
// log under its commit-scheme ids, so a replay of it (the slot resends
// everything after its confirmed position) derives those again and stores
// nothing twice; every later transaction gets change ids. Config.IDScheme
// "commit" keeps the commit scheme for good; a source recorded as
// "change" refuses to go back, which would store the replayed changes
// twice.

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/capture"
)

// The Config.IDScheme values.
const (
	IDSchemeChange = "change"
	IDSchemeCommit = "commit"
)

// Position-store keys of the id scheme.
const (
	posKeyIDScheme = "id_scheme"
	posKeyIDFrom   = "id_scheme_from"
)

// idScheme is how the source derives record ids.
type idScheme struct {
	change bool
	// from: transactions committed before it keep commit-scheme ids
	// (they may be stored so from before the switch).
	from pglogrepl.LSN
}

// changeIDs reports whether a transaction committed at commit gets change
// ids.
func (s idScheme) changeIDs(commit pglogrepl.LSN) bool {
	return s.change && commit >= s.from
}

// resolveIDScheme decides the scheme once per Run, before the first
// snapshot or stream, recording a new decision durably first.
func (s *Source) resolveIDScheme(ctx context.Context, conn *pgx.Conn) (idScheme, error) {
	want := s.cfg.IDScheme
	if s.cfg.StateDir == "" {
		// Nothing to record it in (library use without a state
		// directory; the server always gives one).
		return idScheme{change: want != IDSchemeCommit}, nil
	}
	ps, err := capture.OpenPositions(filepath.Join(s.cfg.StateDir, "positions"))
	if err != nil {
		return idScheme{}, err
	}
	stored, ok := ps.Get(posKeyIDScheme)
	switch {
	case ok && stored == IDSchemeChange:
		if want == IDSchemeCommit {
			return idScheme{}, fmt.Errorf("%w: id_scheme: %q, but this source already records %q ids (%s); going back would store the changes a replay resends twice — remove id_scheme", ErrConfig, want, stored, s.cfg.StateDir)
		}
		from, _ := ps.Get(posKeyIDFrom)
		lsn, err := pglogrepl.ParseLSN(from)
		if err != nil {
			return idScheme{}, fmt.Errorf("%w: %s: id_scheme_from %q: %w", ErrConfig, s.cfg.StateDir, from, err)
		}
		return idScheme{change: true, from: lsn}, nil
	case ok && stored == IDSchemeCommit && want != IDSchemeChange:
		return idScheme{}, nil
	case ok && stored != IDSchemeCommit:
		return idScheme{}, fmt.Errorf("%w: %s: id_scheme %q is neither change nor commit", ErrConfig, s.cfg.StateDir, stored)
	}
	// No scheme recorded, or commit recorded and change asked for.
	if want == IDSchemeCommit {
		return idScheme{}, ps.Save(ctx, capture.Positions{posKeyIDScheme: IDSchemeCommit})
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", s.cfg.Slot).Scan(&exists); err != nil {
		return idScheme{}, fmt.Errorf("look up replication slot %s: %w", s.cfg.Slot, classify(err))
	}
	var from pglogrepl.LSN
	if exists {
		// The slot may resend transactions already stored under commit
		// ids; every one of them committed before the insert position.
		var at string
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&at); err != nil {
			return idScheme{}, fmt.Errorf("read the WAL insert position: %w", classify(err))
		}
		if from, err = pglogrepl.ParseLSN(at); err != nil {
			return idScheme{}, fmt.Errorf("WAL insert position %q: %w", at, err)
		}
		s.logger.Info("record ids: switching to change ids; transactions committed before the boundary keep commit ids", "boundary", from.String())
	}
	err = ps.Save(ctx, capture.Positions{posKeyIDScheme: IDSchemeChange, posKeyIDFrom: from.String()})
	return idScheme{change: true, from: from}, err
}
