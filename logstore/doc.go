// Package logstore is Stele's store of record: an append-only file of records,
// an RFC 6962 Merkle tree over them persisted level by level, and signed
// checkpoints (C2SP tlog-checkpoint). It assigns each record its seq, makes
// it durable with group commit, proves inclusion and consistency, and
// verifies a whole data directory.
//
// Files in the data directory:
//
//	records.log      frames, one per record in seq order, each group commit
//	                 followed by one batch trailer frame (the only source of truth)
//	FORMAT           "stele-log 2 batches-from OFFSET": from OFFSET on every batch
//	                 ends with a trailer (format 2); missing = format 1, no trailers
//	records.idx      8-byte little-endian frame offset per seq (derived; rebuilt on demand)
//	tree/L00..L63    32-byte node hashes per tree level, L00 = leaf hashes (derived)
//	checkpoints.log  frames holding every signed checkpoint note, oldest first
//	LOCK             flock'd by the Store (or its caller, Options.Lock) while open
//	keys/            checkpoint signing key (note format) and its verifier key
//
// A frame:
//
//	+----------------+----------------------+----------------------+
//	| length  uint32 | crc32c       uint32  | payload (length B)   |
//	| little endian  | of length || payload | = record.Encode(r)   |
//	+----------------+----------------------+----------------------+
//
// (internal/frame is the one codec, shared with the keystore.) A batch
// trailer is a frame whose payload starts with 0xB7, a byte no record
// encoding starts with:
//
//	+------+---------+-------------+-----------+-------------+------------+
//	| 0xB7 | version | size uint64 | root      | auth length | auth       |
//	|      | 1       | big endian  | 32 bytes  | uint16 BE   | (BatchSealer)
//	+------+---------+-------------+-----------+-------------+------------+
//
// size and root are the log's after the batch; auth is what
// Options.BatchSealer returns for them (empty without one, and accepted).
// Recovery adopts a batch only with its trailer, and checks the root
// against the tree and auth against the BatchSealer: records after the
// last trailer are a batch that was never acknowledged, and are cut
// (kept under quarantine/), never adopted. A data directory without
// FORMAT was written before trailers (format 1): its records are adopted
// as they always were, and FORMAT is written at their end on first open.
//
// Why a plain file and not an LSM: the log is written once, in order, and
// read by position; an LSM's memtable, WAL and compactions would write each
// byte several times. docs/storage.md has the measurements behind the choice.
//
// Durability order: records.log is fsync'd before a batch is acknowledged;
// derived files are written after it and fsync'd before each checkpoint, so
// after a crash everything past the last checkpoint is recomputed from
// records.log, and a torn final batch (never acknowledged) is cut off. A
// failed write is cut back to the last durable batch before the callers
// are answered; a full disk (ENOSPC, EDQUOT) then only pauses appends
// (ErrNoSpace) until a probe write succeeds, while any other write error
// and every fsync error stops the store (ErrFailed) until it is reopened.
package logstore
